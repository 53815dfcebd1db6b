//! Client configuration through the public API: token handling, Debug redaction and
//! TLS (CA, server-name override, mutual TLS) against `ConsulDev` on loopback,
//! serving HTTPS with the certificates in `fixtures/tls`.
//! The environment-variable table is tested in `src/consul/env.rs` over a lookup
//! closure, without touching the process environment.

mod support;

use std::io::Write;
use std::time::Duration;

use consul_dev::ConsulDev;
use tonic_discovery::consul::{Client, Discovery};

use support::eventually;

const T: Duration = Duration::from_secs(5);
const SECRET: &str = "s3cr3t-token";

fn watch(client: &Client) -> Discovery {
    client
        .discovery("echo")
        .backoff(tonic_discovery::Backoff::new(
            Duration::from_millis(20),
            Duration::from_millis(100),
        ))
        .build()
}

async fn synced(d: &Discovery) {
    eventually(T, "the discovery syncs", || async { d.state().is_synced() }).await;
}

async fn failing(d: &Discovery) -> String {
    eventually(T, "the discovery fails", || async {
        d.state().consecutive_failures() >= 1
    })
    .await;
    assert!(!d.state().is_synced());
    d.state().last_error().unwrap_or_default().to_owned()
}

#[test]
fn debug_never_shows_the_token_or_key_material() {
    let builder = Client::builder("127.0.0.1:8500")
        .token(SECRET)
        .client_identity(
            "-----BEGIN CERTIFICATE-----",
            "-----BEGIN PRIVATE KEY----- k3y",
        );
    let shown = format!("{builder:?}");
    assert!(!shown.contains(SECRET) && !shown.contains("k3y"), "{shown}");
    let client = Client::builder("127.0.0.1:8500")
        .token(SECRET)
        .build()
        .unwrap();
    let shown = format!("{client:?} {:?}", client.discovery("echo"));
    assert!(!shown.contains(SECRET), "{shown}");
}

#[tokio::test]
async fn token_file_wins_and_travels_in_the_header() {
    support::trace_init();
    let server = ConsulDev::start().await.unwrap();
    let mut file = tempfile::NamedTempFile::new().unwrap();
    writeln!(file, "{SECRET}").unwrap();
    let client = Client::builder(server.url())
        .token("ignored-token")
        .token_file(file.path())
        .build()
        .unwrap();
    let d = watch(&client);
    synced(&d).await;
    let first = &server.requests()[0];
    assert_eq!(first.header("x-consul-token"), Some(SECRET), "{first:?}");
    let head = format!("{} {:?}", first.uri(), first.headers());
    assert!(!head.contains("ignored-token"), "{head}");
}

#[tokio::test]
async fn connect_checks_that_the_agent_answers() {
    support::trace_init();
    let server = ConsulDev::start().await.unwrap();
    let client = Client::builder(server.url())
        .token(SECRET)
        .connect()
        .await
        .expect("the agent answers");
    let asked = server.requests();
    let leader = asked
        .iter()
        .find(|r| r.uri().path() == "/v1/status/leader")
        .expect("connect asked for the leader");
    assert_eq!(leader.header("x-consul-token"), Some(SECRET), "{leader:?}");
    let d = watch(&client);
    synced(&d).await;

    // Nothing listens on a port just released: `connect` fails, `build` does not.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let err = Client::connect(closed.to_string()).await.unwrap_err();
    assert!(err.is_transport() || err.is_timeout(), "{err:?}");
    assert!(err.to_string().contains("status/leader"), "{err}");
    Client::builder(closed.to_string())
        .build()
        .expect("build does no I/O");
}

#[test]
fn unreadable_token_file_is_a_config_error_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing.token");
    let err = Client::builder("127.0.0.1:8500")
        .token_file(&path)
        .build()
        .unwrap_err();
    assert!(err.is_config(), "{err:?}");
    assert!(err.to_string().contains("missing.token"), "{err}");
}

#[cfg(not(feature = "tls-ring"))]
#[test]
fn https_without_the_tls_feature_is_a_config_error() {
    let err = Client::builder("https://127.0.0.1:8501")
        .build()
        .unwrap_err();
    assert!(
        err.is_config() && err.to_string().contains("tls-ring"),
        "{err}"
    );
}

#[cfg(feature = "tls-ring")]
mod tls {
    use std::sync::Arc;

    use rustls::server::WebPkiClientVerifier;
    use rustls::{RootCertStore, ServerConfig};
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};

    use super::*;

    const CA: &str = include_str!("fixtures/tls/ca.pem");
    const SERVER_CERT: &str = include_str!("fixtures/tls/server.pem");
    const SERVER_KEY: &str = include_str!("fixtures/tls/server.key");
    const CLIENT_CERT: &str = include_str!("fixtures/tls/client.pem");
    const CLIENT_KEY: &str = include_str!("fixtures/tls/client.key");
    /// The only name in the server certificate; the server listens on 127.0.0.1.
    const NAME: &str = "server.dc1.consul";

    async fn https_server(require_client_cert: bool) -> ConsulDev {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = if require_client_cert {
            let mut roots = RootCertStore::empty();
            roots
                .add(CertificateDer::from_pem_slice(CA.as_bytes()).unwrap())
                .unwrap();
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .unwrap();
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let certs = vec![CertificateDer::from_pem_slice(SERVER_CERT.as_bytes()).unwrap()];
        let key = PrivateKeyDer::from_pem_slice(SERVER_KEY.as_bytes()).unwrap();
        let config = builder.with_single_cert(certs, key).unwrap();
        ConsulDev::builder()
            .tls(Arc::new(config))
            .start()
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn verifies_against_the_configured_server_name() {
        support::trace_init();
        let server = https_server(false).await;
        let client = Client::builder(server.url())
            .ca_cert_pem(CA)
            .tls_server_name(NAME)
            .build()
            .unwrap();
        synced(&watch(&client)).await;

        // Without the override the certificate does not match 127.0.0.1.
        let client = Client::builder(server.url())
            .ca_cert_pem(CA)
            .build()
            .unwrap();
        failing(&watch(&client)).await;
    }

    #[tokio::test]
    async fn https_flag_and_ca_file_as_from_the_environment() {
        support::trace_init();
        let server = https_server(false).await;
        let addr = server.url().replace("https://", "");
        let mut ca = tempfile::NamedTempFile::new().unwrap();
        ca.write_all(CA.as_bytes()).unwrap();
        let client = Client::builder(addr)
            .https(true)
            .ca_cert_file(ca.path())
            .tls_server_name(NAME)
            .build()
            .unwrap();
        assert!(client.address().starts_with("https://"));
        synced(&watch(&client)).await;
    }

    #[tokio::test]
    async fn an_untrusted_certificate_fails_unless_verification_is_off() {
        support::trace_init();
        let server = https_server(false).await;
        let other_ca = include_str!("fixtures/tls/client.pem"); // not a CA of the server
        let client = Client::builder(server.url())
            .ca_cert_pem(other_ca)
            .tls_server_name(NAME)
            .build()
            .unwrap();
        failing(&watch(&client)).await;
        let client = Client::builder(server.url())
            .danger_accept_invalid_certs(true)
            .build()
            .unwrap();
        synced(&watch(&client)).await;
    }

    #[tokio::test]
    async fn presents_a_client_identity_for_mutual_tls() {
        support::trace_init();
        let server = https_server(true).await;
        let base = || {
            Client::builder(server.url())
                .ca_cert_pem(CA)
                .tls_server_name(NAME)
        };
        failing(&watch(&base().build().unwrap())).await;
        let client = base()
            .client_identity(CLIENT_CERT, CLIENT_KEY)
            .build()
            .unwrap();
        synced(&watch(&client)).await;
    }

    #[test]
    fn bad_pem_is_a_config_error() {
        let err = Client::builder("https://127.0.0.1:1")
            .ca_cert_pem("not pem")
            .build()
            .unwrap_err();
        assert!(err.is_config(), "{err:?}");
        let err = Client::builder("https://127.0.0.1:1")
            .ca_cert_pem(CA)
            .client_identity(CLIENT_CERT, "no key here")
            .build()
            .unwrap_err();
        assert!(
            err.is_config() && err.to_string().contains("client key"),
            "{err}"
        );
    }
}
