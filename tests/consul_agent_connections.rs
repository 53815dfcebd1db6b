//! Connections to the agent: over HTTPS every blocking query is an HTTP/2 stream of
//! one shared connection; over plain HTTP (one connection per waiting query) the
//! client can cap its blocking watches, and queued watches still follow changes.

mod support;

use std::time::Duration;

use consul_dev::ConsulDev;
use futures_util::StreamExt;
use tonic_discovery::consul::{Client, Discovery};

use support::eventually;

const T: Duration = Duration::from_secs(10);
/// Long enough that no blocking query returns by itself during a test.
const WAIT: Duration = Duration::from_secs(60);

fn watches(client: &Client, prefix: &str, n: usize) -> Vec<Discovery> {
    (0..n)
        .map(|k| {
            client
                .discovery(format!("{prefix}{k}"))
                .health(tonic_discovery::consul::HealthFilter::Any)
                .wait(WAIT)
                .build()
        })
        .collect()
}

/// Waits until every watch has its first answer.
async fn synced(all: &[Discovery]) {
    eventually(T, "every watch synced", || async {
        all.iter().all(|d| d.state().is_synced())
    })
    .await;
}

/// Established TCP connections from this process's clients to `port` on loopback
/// (`/proc/self/net/tcp*`: the remote address is the fourth field's port).
fn connections_to(port: u16) -> usize {
    let want = format!(":{port:04X}");
    ["/proc/self/net/tcp", "/proc/self/net/tcp6"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .flat_map(|s| s.lines().skip(1).map(str::to_owned).collect::<Vec<_>>())
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[2].ends_with(&want) && f[3] == "01"
        })
        .count()
}

async fn register(server: &ConsulDev, service: &str, port: u16) {
    // With `tls-ring`, reqwest is built without a default crypto provider.
    #[cfg(feature = "tls-ring")]
    let _ = rustls::crypto::ring::default_provider().install_default();
    let body =
        format!(r#"{{"ID":"{service}-1","Name":"{service}","Address":"127.0.0.1","Port":{port}}}"#);
    let resp = reqwest::Client::new()
        .put(format!("{}/v1/agent/service/register", server.url()))
        .body(body)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
}

#[tokio::test]
async fn capped_watches_queue_their_blocking_reads_and_still_follow_changes() {
    support::trace_init();
    let server = ConsulDev::start().await.unwrap();
    let capped = Client::builder(server.url())
        .max_concurrent_watches(2)
        .build()
        .unwrap();
    let mut held = watches(&capped, "capped", 6);
    synced(&held).await;
    eventually(T, "two blocking queries parked", || async {
        server.blocked_queries() == 2
    })
    .await;
    // An uncapped client's watches, started later, all reach the agent; by then
    // the capped ones would have too, had they not queued.
    let free = Client::builder(server.url()).build().unwrap();
    let others = watches(&free, "free", 6);
    synced(&others).await;
    eventually(
        T,
        "the uncapped client's six blocking queries parked",
        || async { server.blocked_queries() == 8 },
    )
    .await;
    // Queued watches still see changes: the parked queries' answers free their
    // permits for the queued ones, whose index is behind by then.
    for k in 0..held.len() {
        register(&server, &format!("capped{k}"), 7000 + k as u16).await;
    }
    for d in &mut held {
        let change = tokio::time::timeout(T, d.next()).await.expect("a change");
        assert!(change.is_some());
    }
}

#[cfg(feature = "tls-ring")]
mod tls {
    use std::sync::Arc;

    use rustls::ServerConfig;
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};

    use super::*;

    const CA: &str = include_str!("fixtures/tls/ca.pem");
    const SERVER_CERT: &str = include_str!("fixtures/tls/server.pem");
    const SERVER_KEY: &str = include_str!("fixtures/tls/server.key");
    const NAME: &str = "server.dc1.consul";

    async fn https_server() -> ConsulDev {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certs = vec![CertificateDer::from_pem_slice(SERVER_CERT.as_bytes()).unwrap()];
        let key = PrivateKeyDer::from_pem_slice(SERVER_KEY.as_bytes()).unwrap();
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        ConsulDev::builder()
            .tls(Arc::new(config))
            .start()
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_hundred_watches_share_at_most_two_connections_over_https() {
        support::trace_init();
        let server = https_server().await;
        let client = Client::builder(server.url())
            .ca_cert_pem(CA)
            .tls_server_name(NAME)
            .build()
            .unwrap();
        let all = watches(&client, "svc", 100);
        synced(&all).await;
        eventually(T, "a hundred blocking queries parked", || async {
            server.blocked_queries() == 100
        })
        .await;
        let n = connections_to(server.addr().port());
        assert!((1..=2).contains(&n), "{n} connections for 100 watches");
    }
}
