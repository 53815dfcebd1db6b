//! Health-following of a Nacos registration, against a real Nacos-compatible server
//! (rnacos): the instance leaves while it does not serve and comes back once it does.
#![cfg(feature = "nacos")]

#[path = "support/nacos.rs"]
mod nacos_support;
mod support;

use std::time::Duration;

use nacos_support::{Seen, client, server_serving};
use support::{eventually, trace_init};
use tokio::sync::watch;
use tonic_discovery::nacos::Registration;
use tonic_discovery_testkit::NacosServer;

const WAIT: Duration = Duration::from_secs(30);

async fn serving(server: &NacosServer, service: &str) -> Vec<String> {
    server_serving(server, service, &[])
        .await
        .unwrap_or_default()
}

/// What we want to test: not serving takes the instance out of the server and of a
/// discovery; serving again brings it back; the final deregistration still works.
#[tokio::test]
async fn the_instance_follows_the_health_source() {
    trace_init();
    let server = NacosServer::start().await.unwrap();
    let nacos = client(&server).await;
    let seen = Seen::follow(nacos.discovery("echo").build());
    let addr = "127.0.0.1:49001";
    let (tx, rx) = watch::channel(true);
    let registration = Registration::new("echo", addr.parse().unwrap()).health(rx);
    let handle = nacos.register(registration).await.unwrap();
    eventually(WAIT, "the instance discovered", || async {
        seen.authorities() == [addr]
    })
    .await;

    tx.send_replace(false);
    eventually(WAIT, "the instance gone", || async {
        seen.authorities().is_empty() && serving(&server, "echo").await.is_empty()
    })
    .await;

    tx.send_replace(true);
    eventually(WAIT, "the instance back", || async {
        seen.authorities() == [addr] && serving(&server, "echo").await == [addr]
    })
    .await;
    seen.assert_clean();
    handle.deregister().await.unwrap();
    assert!(serving(&server, "echo").await.is_empty());
    assert_eq!(nacos.pending_deregistrations(), 0);
}

#[tokio::test]
async fn an_instance_not_serving_at_registration_registers_once_it_serves() {
    trace_init();
    let server = NacosServer::start().await.unwrap();
    let nacos = client(&server).await;
    let addr = "127.0.0.1:49002";
    let (tx, rx) = watch::channel(false);
    let registration = Registration::new("echo", addr.parse().unwrap()).health(rx);
    let handle = nacos.register(registration).await.unwrap();
    assert!(serving(&server, "echo").await.is_empty(), "registered");

    tx.send_replace(true);
    eventually(WAIT, "the instance registered", || async {
        serving(&server, "echo").await == [addr]
    })
    .await;
    handle.deregister().await.unwrap();
    assert!(serving(&server, "echo").await.is_empty());
}

/// What we want to test: a drain of an instance that is already out (not serving)
/// is no error, and leaves nothing to retry.
#[tokio::test]
async fn draining_a_withdrawn_instance_is_no_error() {
    trace_init();
    let server = NacosServer::start().await.unwrap();
    let nacos = client(&server).await;
    let (tx, rx) = watch::channel(true);
    let registration = Registration::new("echo", "127.0.0.1:49003".parse().unwrap());
    let handle = nacos.register(registration.health(rx)).await.unwrap();
    tx.send_replace(false);
    eventually(WAIT, "the instance gone", || async {
        serving(&server, "echo").await.is_empty()
    })
    .await;
    handle.drain(Duration::from_millis(10)).await.unwrap();
    assert_eq!(nacos.pending_deregistrations(), 0);
}
