//! Target URIs end to end: `Target::parse` → `Target::discovery` → `BalancedChannel`
//! → real Echo servers, from a `consul://` target against `ConsulDev` and from a
//! `static:` target.

mod support;

use std::time::Duration;

use consul_dev::ConsulDev;
use serde_json::json;
use support::{calls_reach, eventually};
use tonic_discovery::Target;
use tonic_discovery::balance::{BalancedChannel, EndpointState};
use tonic_discovery_testkit::TestEchoServer;

const WAIT: Duration = Duration::from_secs(5);

/// Registers `server` as an instance of `echo` carrying `tags`, with a passing check.
async fn register(dev: &ConsulDev, server: &TestEchoServer, tags: &[&str]) {
    let id = server.service().id();
    let body = json!({
        "Name": "echo", "ID": id, "Address": "127.0.0.1", "Port": server.addr().port(),
        "Tags": tags,
        "Check": {"CheckID": format!("ttl-{id}"), "TTL": "60s", "Status": "passing"}
    });
    let resp = reqwest::Client::new()
        .put(format!("{}/v1/agent/service/register", dev.url()))
        .body(body.to_string())
        .send()
        .await
        .expect("register");
    assert_eq!(resp.status(), 200);
}

async fn channel_to(target: &Target) -> BalancedChannel {
    let discovery = target.discovery().await.expect("discovery");
    BalancedChannel::builder(target.name())
        .build(discovery)
        .expect("valid balancer settings")
}

fn ready_ids(channel: &BalancedChannel) -> Vec<String> {
    let mut ids: Vec<String> = channel
        .endpoints()
        .iter()
        .filter(|e| e.state() == EndpointState::Ready)
        .map(|e| e.key().id().to_owned())
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consul_target_balances_over_the_tagged_instances() {
    support::trace_init();
    // With `tls-ring`, reqwest is built without a default crypto provider.
    #[cfg(feature = "tls-ring")]
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dev = ConsulDev::start().await.expect("registry");
    let blue = TestEchoServer::start("blue-1").await.expect("echo");
    let green = TestEchoServer::start("green-1").await.expect("echo");
    register(&dev, &blue, &["blue"]).await;
    register(&dev, &green, &["green"]).await;

    // The authority is the agent; the query picks the tag (percent-encoded on purpose).
    let target: Target = format!("consul://{}/echo?tag=bl%75e", dev.addr())
        .parse()
        .expect("target");
    let channel = channel_to(&target).await;
    calls_reach(WAIT, &channel, &["blue-1"]).await;
    // Both instances come in the same answer, so green would be among the endpoints
    // by now had the tag been ignored.
    let ids: Vec<String> = channel
        .endpoints()
        .iter()
        .map(|e| e.key().id().to_owned())
        .collect();
    assert_eq!(ids, ["blue-1"], "green lacks the tag");

    // Without the tag, both.
    let all = channel_to(
        &format!("consul://{}/echo", dev.addr())
            .parse()
            .expect("target"),
    )
    .await;
    calls_reach(WAIT, &all, &["blue-1", "green-1"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consul_target_without_a_service_takes_one() {
    support::trace_init();
    #[cfg(feature = "tls-ring")]
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dev = ConsulDev::start().await.expect("registry");
    let server = TestEchoServer::start("echo-1").await.expect("echo");
    register(&dev, &server, &[]).await;

    let target = Target::parse(&format!("consul://{}", dev.addr())).expect("target");
    let err = target.discovery().await.expect_err("no service");
    assert!(err.is_config(), "{err}");
    let channel = channel_to(&target.with_service("echo")).await;
    calls_reach(WAIT, &channel, &["echo-1"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_target_balances_over_its_list() {
    support::trace_init();
    let a = TestEchoServer::start("a").await.expect("echo");
    let b = TestEchoServer::start("b").await.expect("echo");
    let target = Target::parse(&format!("static:///{},{}", a.addr(), b.addr())).expect("target");
    assert_eq!(target.service(), None);
    let channel = channel_to(&target).await;
    calls_reach(WAIT, &channel, &["a", "b"]).await;
    eventually(WAIT, "both endpoints ready", || async {
        ready_ids(&channel).len() == 2
    })
    .await;
}
