//! Traffic through a `BalancedChannel` over Nacos discovery, against rnacos: a drain
//! under 200 requests/s loses nothing, a disabled instance gets no requests.
#![cfg(feature = "nacos")]

#[path = "support/nacos.rs"]
mod nacos_support;
#[path = "support/paced.rs"]
mod paced;
mod support;

use std::time::Duration;

use nacos_support::{client, http_register};
use paced::{assert_none_failed, assert_none_reached_after, sent_to, start_load};
use support::{eventually, trace_init};
use tokio::time::Instant;
use tonic_discovery::balance::{BalancedChannel, EndpointState};
use tonic_discovery::nacos::Registration;
use tonic_discovery_testkit::{NacosServer, TestEchoServer};

const WAIT: Duration = Duration::from_secs(15);
const GRACE: Duration = Duration::from_secs(1);

async fn ready(channel: &BalancedChannel, n: usize) {
    eventually(WAIT, &format!("{n} ready instances"), || async {
        let eps = channel.endpoints();
        eps.len() == n && eps.iter().all(|e| e.state() == EndpointState::Ready)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_instance_loses_no_request_at_200_per_second() {
    trace_init();
    let server = NacosServer::start().await.unwrap();
    let nacos = client(&server).await;
    let mut servers = Vec::new();
    let mut handles = Vec::new();
    for id in ["a", "b", "c"] {
        let echo = TestEchoServer::start(id).await.unwrap();
        let reg = Registration::new("echo", echo.addr()).meta("id", id);
        handles.push(nacos.register(reg).await.unwrap());
        servers.push(echo);
    }
    let channel = BalancedChannel::builder("echo")
        .build(nacos.discovery("echo").build())
        .expect("valid balancer settings");
    ready(&channel, 3).await;
    let b_addr = servers[1].addr().to_string();

    let load = start_load(channel.clone());
    eventually(WAIT, "every instance serving", || async {
        ["a", "b", "c"].iter().all(|id| load.served_by(id) >= 20)
    })
    .await;

    // Drain b: deregister, grace, close the connection; then stop the server the way
    // one does after `serve_with_shutdown`'s future resolves.
    let drain_start = Instant::now();
    let drain = tokio::spawn(handles.remove(1).drain(GRACE));
    eventually(WAIT, "b out of the channel", || async {
        channel.endpoints().iter().all(|e| e.address() != b_addr)
    })
    .await;
    let removed_at = Instant::now();
    drain.await.unwrap().unwrap();
    servers.remove(1).shutdown().await;
    let after = load.served_by("a") + load.served_by("c");
    eventually(WAIT, "traffic going on without b", || async {
        load.served_by("a") + load.served_by("c") >= after + 200
    })
    .await;

    let log = load.finish().await;
    assert_none_failed(&log);
    assert_none_reached_after(&log, "b", removed_at);
    let last_to_b = log.iter().filter_map(|a| sent_to("b", a)).max().unwrap();
    eprintln!(
        "{} requests, 0 failed; deregister -> b out of the channel: {:?}; last request \
         sent to b: {:?} after drain start",
        log.len(),
        removed_at - drain_start,
        last_to_b.saturating_duration_since(drain_start),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_instance_gets_no_requests() {
    trace_init();
    let server = NacosServer::start().await.unwrap();
    let nacos = client(&server).await;
    let a = TestEchoServer::start("a").await.unwrap();
    let b = TestEchoServer::start("b").await.unwrap();
    // Registered over HTTP, as a Java or Go service would.
    for echo in [&a, &b] {
        http_register(
            &server,
            "echo",
            &echo.addr().to_string(),
            &[("ephemeral", "false")],
        )
        .await;
    }
    let channel = BalancedChannel::builder("echo")
        .build(nacos.discovery("echo").build())
        .expect("valid balancer settings");
    ready(&channel, 2).await;
    let load = start_load(channel.clone());
    eventually(WAIT, "both serving", || async {
        load.served_by("a") >= 20 && load.served_by("b") >= 20
    })
    .await;

    let b_port = b.addr().port().to_string();
    let params = [
        ("serviceName", "echo"),
        ("ip", "127.0.0.1"),
        ("port", b_port.as_str()),
        ("ephemeral", "false"),
        ("enabled", "false"),
    ];
    let (status, body) = server
        .open_api("PUT", "/nacos/v1/ns/instance", &params)
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    eventually(WAIT, "b out of the channel", || async {
        channel.endpoints().len() == 1
    })
    .await;
    let removed_at = Instant::now();
    let before = load.served_by("a");
    eventually(WAIT, "200 more requests", || async {
        load.served_by("a") >= before + 200
    })
    .await;
    let log = load.finish().await;
    assert_none_failed(&log);
    assert_none_reached_after(&log, "b", removed_at);
}
