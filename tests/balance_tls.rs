//! The balanced channel over TLS, with the verified name overridden because the
//! instance is registered by IP address. Certificates: tests/fixtures/balance_tls/README.md.
#![cfg(feature = "tls-ring")]

mod balance_util;
mod support;

use std::time::Duration;

use balance_util::{call, discovery, state};
use support::eventually;
use tonic::transport::{Identity, Server, ServerTlsConfig};
use tonic_discovery::balance::{BalancedChannel, EndpointState, TlsConfig};
use tonic_discovery_testkit::EchoService;
use tonic_discovery_testkit::pb::echo_server::EchoServer;

const CA: &str = include_str!("fixtures/balance_tls/ca.pem");
const CERT: &str = include_str!("fixtures/balance_tls/server.pem");
const KEY: &str = include_str!("fixtures/balance_tls/server.key");

async fn tls_server(id: &str) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let incoming = futures_util::stream::unfold(listener, |l| async move {
        Some((l.accept().await.map(|(s, _)| s), l))
    });
    let server = Server::builder()
        .tls_config(ServerTlsConfig::new().identity(Identity::from_pem(CERT, KEY)))
        .expect("tls config")
        .add_service(EchoServer::new(EchoService::new(id)))
        .serve_with_incoming(incoming);
    let task = tokio::spawn(async move {
        server.await.expect("server");
    });
    (addr, task)
}

#[tokio::test]
async fn connects_over_tls_with_a_domain_override() {
    support::trace_init();
    let (addr, server) = tls_server("tls-a").await;
    let tls = TlsConfig::new(CA).expect("CA").domain_name("echo.test");
    let (feed, disc) = discovery();
    let channel = BalancedChannel::builder("echo")
        .tls(tls)
        .build(disc)
        .expect("valid balancer settings");
    feed.insert_at("tls-a", addr);
    eventually(Duration::from_secs(5), "TLS endpoint ready", || async {
        state(&channel, "tls-a") == Some(EndpointState::Ready)
    })
    .await;
    assert_eq!(call(&channel).await.expect("call over TLS"), "tls-a");
    server.abort();
}

#[tokio::test]
async fn a_wrong_name_never_becomes_ready() {
    support::trace_init();
    let (addr, server) = tls_server("tls-b").await;
    // Without the override the certificate (for echo.test) does not match 127.0.0.1.
    let tls = TlsConfig::new(CA).expect("CA");
    let (feed, disc) = discovery();
    let channel = BalancedChannel::builder("echo")
        .tls(tls)
        .failfast_timeout(Duration::from_millis(200))
        .build(disc)
        .expect("valid balancer settings");
    feed.insert_at("tls-b", addr);
    eventually(
        Duration::from_secs(5),
        "TLS endpoint backing off",
        || async { state(&channel, "tls-b") == Some(EndpointState::Backoff) },
    )
    .await;
    let status = call(&channel).await.expect_err("unverifiable");
    assert_eq!(status.code(), tonic::Code::Unavailable);
    server.abort();
}

#[test]
fn bad_pem_is_a_config_error() {
    let err = TlsConfig::new("not a certificate").expect_err("no CA");
    assert!(err.is_config(), "{err}");
}

#[tokio::test]
async fn a_rustls_client_config_of_its_own_is_used_as_given() {
    support::trace_init();
    let (addr, server) = tls_server("tls-c").await;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(CA.as_bytes()) {
        roots.add(cert.expect("CA PEM")).expect("CA accepted");
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    // No ALPN set on the config: the channel offers h2 itself.
    let tls = TlsConfig::from_rustls(config).domain_name("echo.test");
    let (feed, disc) = discovery();
    let channel = BalancedChannel::builder("echo")
        .tls(tls)
        .build(disc)
        .expect("valid balancer settings");
    feed.insert_at("tls-c", addr);
    assert_eq!(call(&channel).await.expect("call over TLS"), "tls-c");
    // The identity belongs on the rustls config.
    let err = TlsConfig::from_rustls(rustls::ClientConfig::clone(&rustls_config()))
        .identity(CERT, KEY)
        .expect_err("no identity on a given config");
    assert!(err.to_string().contains("from_rustls"), "{err}");
    server.abort();
}

fn rustls_config() -> rustls::ClientConfig {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth()
}

#[cfg(feature = "tls-webpki-roots")]
#[tokio::test]
async fn webpki_roots_do_not_trust_a_private_ca() {
    support::trace_init();
    let (addr, server) = tls_server("tls-d").await;
    let tls = TlsConfig::webpki_roots()
        .expect("Mozilla's roots")
        .domain_name("echo.test");
    let (feed, disc) = discovery();
    let channel = BalancedChannel::builder("echo")
        .tls(tls)
        .build(disc)
        .expect("valid balancer settings");
    feed.insert_at("tls-d", addr);
    eventually(
        Duration::from_secs(5),
        "an endpoint whose certificate is not trusted backing off",
        || async { state(&channel, "tls-d") == Some(EndpointState::Backoff) },
    )
    .await;
    server.abort();
}

#[tokio::test]
async fn native_roots_load_or_say_why_not() {
    // Machines without a CA bundle have nothing to load: the error says so.
    match TlsConfig::native_roots() {
        Ok(tls) => assert!(format!("{tls:?}").contains("roots: Some(")),
        Err(e) => assert!(e.to_string().contains("trust store"), "{e}"),
    }
}
