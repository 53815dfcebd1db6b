//! Registration against a real Nacos-compatible server (rnacos): connections are reused,
//! and a deregistration that fails is retried so the SDK cannot bring the instance back.
#![cfg(feature = "nacos")]

#[path = "support/nacos.rs"]
mod nacos_support;
#[path = "support/same_rules.rs"]
mod same_rules;
mod support;

use std::time::Duration;

use nacos_support::{client, server_serving};
use support::{eventually, trace_init};
use tonic_discovery::nacos::Registration;
use tonic_discovery_testkit::NacosServer;

const WAIT: Duration = Duration::from_secs(30);

/// Established TCP connections to `port` on loopback (from `ss`, iproute2).
fn connections_to(port: u16) -> usize {
    let out = std::process::Command::new("ss")
        .args(["-tnH", "state", "established"])
        .output()
        .expect("ss (iproute2) runs");
    let suffix = format!(":{port}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .nth(3)
                .is_some_and(|peer| peer.ends_with(&suffix))
        })
        .count()
}

#[tokio::test]
async fn a_deregistered_instance_leaves_its_connection_to_the_next_registration() {
    trace_init();
    let server = NacosServer::start().await.unwrap();
    let grpc = server.http_port() + 1000;
    let nacos = client(&server).await;
    let base = connections_to(grpc);
    for port in 47001..47006 {
        let addr = format!("127.0.0.1:{port}");
        let handle = nacos
            .register(Registration::new("echo", addr.parse().unwrap()))
            .await
            .unwrap();
        assert_eq!(server_serving(&server, "echo", &[]).await.unwrap(), [addr]);
        handle.deregister().await.unwrap();
        assert_eq!(
            server_serving(&server, "echo", &[]).await.unwrap(),
            Vec::<String>::new()
        );
    }
    // The SDK cannot close a connection: without reuse, five registrations leave five.
    assert_eq!(
        connections_to(grpc),
        base + 1,
        "one registration connection in all"
    );
}

#[test]
fn answers_bad_names_and_addresses_as_every_registry() {
    same_rules::assert_same_answers(
        Registration::new,
        Registration::advertise,
        Registration::validate,
    );
}

/// What we want to test: a wildcard bind is registered at the interface that routes
/// towards the server (here loopback), as every registry does, not refused.
#[tokio::test]
async fn a_wildcard_bind_is_registered_at_the_route_towards_the_server() {
    trace_init();
    let server = NacosServer::start().await.unwrap();
    let nacos = client(&server).await;
    let reg = Registration::new("echo", "0.0.0.0:47101".parse().unwrap());
    let _handle = nacos.register(reg).await.unwrap();
    let serving = server_serving(&server, "echo", &[]).await.unwrap();
    assert_eq!(serving, ["127.0.0.1:47101"]);
}

#[tokio::test]
async fn a_failed_deregistration_is_retried_until_the_server_takes_it() {
    trace_init();
    let mut server = NacosServer::start().await.unwrap();
    let nacos = client(&server).await;
    let gone = nacos
        .register(Registration::new(
            "echo",
            "127.0.0.1:48001".parse().unwrap(),
        ))
        .await
        .unwrap();
    let stays = nacos
        .register(Registration::new(
            "echo-other",
            "127.0.0.1:48002".parse().unwrap(),
        ))
        .await
        .unwrap();

    server.kill().await;
    let e = gone.deregister().await.unwrap_err();
    assert!(e.is_transport() || e.is_timeout(), "{e}");
    assert_eq!(
        nacos.pending_deregistrations(),
        1,
        "retried in the background"
    );
    server.restart().await.unwrap();

    // The SDK registers both again after reconnecting; the retried deregistration must
    // take the first one out for good.
    eventually(WAIT, "the kept registration back", || async {
        server_serving(&server, "echo-other", &[])
            .await
            .is_some_and(|s| s.len() == 1)
    })
    .await;
    // The retried deregistration went through, and with it the SDK's redo of the
    // registration: from then on the instance must be absent.
    eventually(WAIT, "the retried deregistration done", || async {
        nacos.pending_deregistrations() == 0
    })
    .await;
    assert_eq!(
        server_serving(&server, "echo", &[]).await.unwrap(),
        Vec::<String>::new(),
        "the deregistered instance is back"
    );
    drop(stays);
}
