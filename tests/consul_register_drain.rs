//! Draining under load, end to end: three Echo servers register through
//! `consul::Registration` with `ConsulDev`, a `BalancedChannel` over `consul::Discovery`
//! sends 200 requests/s, one instance drains (check critical, grace, deregister) and
//! shuts down gracefully. No request may fail.

#[path = "support/paced.rs"]
mod paced;
mod support;

use std::time::Duration;

use consul_dev::ConsulDev;
use paced::{assert_none_failed, assert_none_reached_after, sent_to, start_load};
use tokio::time::Instant;
use tonic_discovery::balance::{BalancedChannel, EndpointState};
use tonic_discovery::consul::{Client, Registration, RegistrationHandle};
use tonic_discovery_testkit::TestEchoServer;

const WAIT: Duration = Duration::from_secs(10);
const GRACE: Duration = Duration::from_secs(1);

async fn register(client: &Client, server: &TestEchoServer) -> RegistrationHandle {
    let id = server.service().id().to_owned();
    let reg = Registration::new("echo", server.addr())
        .id(id)
        .ttl(Duration::from_secs(3));
    client.register(reg).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_instance_loses_no_request_under_load() {
    support::trace_init();
    #[cfg(feature = "tls-ring")]
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dev = ConsulDev::start().await.unwrap();
    let client = Client::builder(dev.url()).build().unwrap();
    let mut servers = Vec::new();
    let mut handles = Vec::new();
    for id in ["a", "b", "c"] {
        let server = TestEchoServer::start(id).await.unwrap();
        handles.push(register(&client, &server).await);
        servers.push(server);
    }
    let channel = BalancedChannel::builder("echo")
        .build(client.discovery("echo").build())
        .expect("valid balancer settings");
    support::eventually(WAIT, "three ready instances", || async {
        let eps = channel.endpoints();
        eps.iter()
            .filter(|e| e.state() == EndpointState::Ready)
            .count()
            == 3
    })
    .await;

    let load = start_load(channel.clone());
    support::eventually(WAIT, "every instance serving", || async {
        ["a", "b", "c"].iter().all(|id| load.served_by(id) >= 20)
    })
    .await;

    // Drain b: critical, grace, deregister; then stop it the way a server does after
    // `serve_with_shutdown`'s future resolves (finish in-flight requests).
    let drain_start = Instant::now();
    let drain = tokio::spawn(handles.remove(1).drain(GRACE));
    support::eventually(WAIT, "b out of the channel", || async {
        channel.endpoints().iter().all(|e| e.key().id() != "b")
    })
    .await;
    // Recorded after the removal: every request sent from here on must miss b.
    let removed_at = Instant::now();
    drain.await.unwrap().unwrap();
    let b = servers.remove(1);
    b.shutdown().await;
    let after = load.served_by("a") + load.served_by("c");
    support::eventually(WAIT, "traffic going on without b", || async {
        load.served_by("a") + load.served_by("c") >= after + 200
    })
    .await;

    let log = load.finish().await;
    assert_none_failed(&log);
    assert_none_reached_after(&log, "b", removed_at);
    let last_to_b = log.iter().filter_map(|a| sent_to("b", a)).max().unwrap();
    let last = match last_to_b.checked_duration_since(drain_start) {
        Some(d) => format!("{d:?} after drain start"),
        None => format!("{:?} before drain start", drain_start - last_to_b),
    };
    eprintln!(
        "{} requests, 0 failed; drain start -> b out of the channel: {:?}; \
         last request sent to b: {last} (grace {GRACE:?})",
        log.len(),
        removed_at - drain_start,
    );
    drop(handles);
}
