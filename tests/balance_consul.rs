//! End to end: `ConsulDev` (the in-process registry) → `consul::Discovery` →
//! `BalancedChannel` → real Echo servers. Instances register through the agent API
//! with TTL checks; health is flipped through the registry's handle.

mod support;

use std::time::Duration;

use consul_dev::ConsulDev;
use serde_json::json;
use support::eventually;
use tokio::time::Instant;
use tonic::Code;
use tonic_discovery::balance::{BalancedChannel, EndpointState};
use tonic_discovery::consul::Client;
use tonic_discovery_testkit::TestEchoServer;
use tonic_discovery_testkit::pb::EchoRequest;
use tonic_discovery_testkit::pb::echo_client::EchoClient;

const WAIT: Duration = Duration::from_secs(5);

async fn register(dev: &ConsulDev, server: &TestEchoServer) {
    // With `tls-ring`, reqwest is built without a default crypto provider.
    #[cfg(feature = "tls-ring")]
    let _ = rustls::crypto::ring::default_provider().install_default();
    let id = server.service().id();
    let body = json!({
        "Name": "echo", "ID": id, "Address": "127.0.0.1", "Port": server.addr().port(),
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

fn channel(dev: &ConsulDev, service: &str) -> BalancedChannel {
    let client = Client::builder(dev.url()).build().expect("consul client");
    let discovery = client.discovery(service).build();
    BalancedChannel::builder(service)
        .failfast_timeout(Duration::from_millis(300))
        .build(discovery)
        .expect("valid balancer settings")
}

async fn call(channel: &BalancedChannel) -> Result<String, tonic::Status> {
    let reply = EchoClient::new(channel.clone())
        .echo(EchoRequest::default())
        .await?;
    Ok(reply.into_inner().instance_id)
}

fn ready_ids(channel: &BalancedChannel) -> Vec<String> {
    let eps = channel.endpoints();
    eps.iter()
        .filter(|e| e.state() == EndpointState::Ready)
        .map(|e| e.key().id().to_owned())
        .collect()
}

async fn echo_servers(ids: &[&str]) -> Vec<TestEchoServer> {
    let mut out = Vec::new();
    for id in ids {
        out.push(TestEchoServer::start(*id).await.expect("echo"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_check_status_and_routes_around_a_killed_server() {
    support::trace_init();
    let dev = ConsulDev::start().await.expect("registry");
    let mut s = echo_servers(&["a", "b", "c"]).await;
    for server in &s {
        register(&dev, server).await;
    }
    let channel = channel(&dev, "echo");
    eventually(WAIT, "three ready instances", || async {
        ready_ids(&channel).len() == 3
    })
    .await;

    // A failing check removes b; the connection to b closes with no traffic.
    let failed_at = Instant::now();
    assert!(dev.set_check_status("ttl-b", "critical", "down"));
    eventually(WAIT, "b removed", || async {
        channel.endpoints().iter().all(|e| e.key().id() != "b")
    })
    .await;
    let removed_after = failed_at.elapsed();
    eventually(WAIT, "b's connection closed", || async {
        s[1].open_connections() == 0
    })
    .await;
    let served_b = s[1].service().served();
    for _ in 0..60 {
        assert_ne!(call(&channel).await.expect("call"), "b");
    }
    assert_eq!(s[1].service().served(), served_b);

    // Passing again adds it back.
    assert!(dev.set_check_status("ttl-b", "passing", ""));
    eventually(WAIT, "b back", || async { ready_ids(&channel).len() == 3 }).await;

    // c dies without deregistering: its closed connection takes it out of the ready
    // set, long before its 60 s TTL could.
    s.remove(2).kill().await;
    let killed = Instant::now();
    eventually(WAIT, "c out of the ready set", || async {
        !ready_ids(&channel).contains(&"c".to_owned())
    })
    .await;
    let c_out_after = killed.elapsed();
    for _ in 0..60 {
        let id = call(&channel).await.expect("no error once c is out");
        assert_ne!(id, "c");
    }
    eprintln!(
        "check critical -> instance removed from the channel: {removed_after:?}; \
         kill -> out of the ready set: {c_out_after:?}"
    );
}

#[tokio::test]
async fn an_unknown_service_fails_fast_with_unavailable() {
    support::trace_init();
    let dev = ConsulDev::start().await.expect("registry");
    let channel = channel(&dev, "nothing");
    let status = call(&channel).await.expect_err("no instance");
    assert_eq!(status.code(), Code::Unavailable);
    assert!(
        status.message().contains("`nothing`"),
        "{}",
        status.message()
    );
}
