//! Traffic policy end to end: `ConsulDev` → `consul::Discovery` → `BalancedChannel`
//! → real Echo servers on loopback. Weights set the shares of equally fast instances;
//! zone-aware routing keeps traffic in the client's zone, spills over when the zone
//! loses capacity, and brings it back.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use consul_dev::ConsulDev;
use serde_json::{Value, json};
use support::eventually;
use tonic_discovery::Locality;
use tonic_discovery::balance::{BalancedChannel, EndpointState, TrafficPolicy};
use tonic_discovery::consul::{Client, HealthFilter};
use tonic_discovery_testkit::TestEchoServer;
use tonic_discovery_testkit::pb::EchoRequest;
use tonic_discovery_testkit::pb::echo_client::EchoClient;

const WAIT: Duration = Duration::from_secs(10);

async fn register(dev: &ConsulDev, server: &TestEchoServer, extra: Value) {
    #[cfg(feature = "tls-ring")]
    let _ = rustls::crypto::ring::default_provider().install_default();
    let id = server.service().id();
    let mut body = json!({
        "Name": "echo", "ID": id, "Address": "127.0.0.1", "Port": server.addr().port(),
        "Check": {"CheckID": format!("ttl-{id}"), "TTL": "60s", "Status": "passing"}
    });
    for (k, v) in extra.as_object().expect("an object") {
        body[k] = v.clone();
    }
    let resp = reqwest::Client::new()
        .put(format!("{}/v1/agent/service/register", dev.url()))
        .body(body.to_string())
        .send()
        .await
        .expect("register");
    assert_eq!(
        resp.status(),
        200,
        "{}",
        resp.text().await.unwrap_or_default()
    );
}

async fn ready(channel: &BalancedChannel, n: usize) {
    eventually(WAIT, &format!("{n} ready endpoints"), || async {
        channel
            .endpoints()
            .iter()
            .filter(|e| e.state() == EndpointState::Ready)
            .count()
            == n
    })
    .await;
}

/// `calls` calls from `concurrency` tasks; the answers per instance id, and failures.
async fn spread(
    channel: &BalancedChannel,
    calls: usize,
    concurrency: usize,
) -> (BTreeMap<String, usize>, usize) {
    let left = Arc::new(std::sync::atomic::AtomicUsize::new(calls));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (channel, left) = (channel.clone(), left.clone());
        tasks.push(tokio::spawn(async move {
            let mut seen = BTreeMap::<String, usize>::new();
            let mut failed = 0;
            let mut client = EchoClient::new(channel);
            while left
                .fetch_update(
                    std::sync::atomic::Ordering::Relaxed,
                    std::sync::atomic::Ordering::Relaxed,
                    |n| n.checked_sub(1),
                )
                .is_ok()
            {
                match client.echo(EchoRequest::default()).await {
                    Ok(reply) => *seen.entry(reply.into_inner().instance_id).or_default() += 1,
                    Err(_) => failed += 1,
                }
            }
            (seen, failed)
        }));
    }
    let mut seen = BTreeMap::new();
    let mut failed = 0;
    for task in tasks {
        let (s, f) = task.await.expect("caller task");
        for (k, v) in s {
            *seen.entry(k).or_default() += v;
        }
        failed += f;
    }
    (seen, failed)
}

fn share(seen: &BTreeMap<String, usize>, id: &str) -> f64 {
    let total: usize = seen.values().sum();
    *seen.get(id).unwrap_or(&0) as f64 / total.max(1) as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_set_the_shares_of_equally_fast_instances() {
    support::trace_init();
    let dev = ConsulDev::start().await.expect("registry");
    let mut servers = Vec::new();
    for (id, w) in [("w1", 1), ("w2", 2), ("w4", 4)] {
        let server = TestEchoServer::start(id).await.expect("echo");
        register(
            &dev,
            &server,
            json!({"Weights": {"Passing": w, "Warning": 1}}),
        )
        .await;
        servers.push(server);
    }
    let client = Client::builder(dev.url()).build().expect("consul client");
    let channel = BalancedChannel::builder("echo")
        .build(client.discovery("echo").build())
        .expect("channel");
    ready(&channel, 3).await;
    let weights: BTreeMap<_, _> = channel
        .endpoints()
        .iter()
        .map(|e| (e.key().id().to_owned(), e.weight()))
        .collect();
    assert_eq!(
        weights,
        BTreeMap::from([("w1".into(), 1), ("w2".into(), 2), ("w4".into(), 4)])
    );

    let (seen, failed) = spread(&channel, 4_000, 32).await;
    assert_eq!(failed, 0);
    let (s1, s2, s4) = (share(&seen, "w1"), share(&seen, "w2"), share(&seen, "w4"));
    // 1/7, 2/7 and 4/7 of the calls; the benchmark measures how close. Here: the
    // order, and far from the 1/3 each that ignoring weights gives.
    assert!(s1 < s2 && s2 < s4, "{seen:?}");
    assert!(s4 > 0.45 && s1 < 0.25, "{seen:?}");

    // The same instances with weights ignored: about a third each.
    let even = BalancedChannel::builder("echo")
        .traffic_policy(TrafficPolicy::new().weighted(false))
        .build(client.discovery("echo").build())
        .expect("channel");
    ready(&even, 3).await;
    let (seen, failed) = spread(&even, 3_000, 32).await;
    assert_eq!(failed, 0);
    assert!(share(&seen, "w4") < 0.45, "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warning_instances_weigh_their_warning_weight_when_included() {
    support::trace_init();
    let dev = ConsulDev::start().await.expect("registry");
    let ok = TestEchoServer::start("ok").await.expect("echo");
    let warn = TestEchoServer::start("warn").await.expect("echo");
    register(&dev, &ok, json!({"Weights": {"Passing": 3, "Warning": 1}})).await;
    register(
        &dev,
        &warn,
        json!({"Weights": {"Passing": 3, "Warning": 1}}),
    )
    .await;
    assert!(dev.set_check_status("ttl-warn", "warning", "degraded"));

    let client = Client::builder(dev.url()).build().expect("consul client");
    let passing = BalancedChannel::builder("echo")
        .build(client.discovery("echo").build())
        .expect("channel");
    let both = BalancedChannel::builder("echo")
        .build(
            client
                .discovery("echo")
                .health(HealthFilter::PassingOrWarning)
                .build(),
        )
        .expect("channel");
    ready(&both, 2).await;
    let weights: BTreeMap<_, _> = both
        .endpoints()
        .iter()
        .map(|e| (e.key().id().to_owned(), e.weight()))
        .collect();
    assert_eq!(
        weights,
        BTreeMap::from([("ok".into(), 3), ("warn".into(), 1)])
    );
    ready(&passing, 1).await;
    let ids: Vec<_> = passing
        .endpoints()
        .iter()
        .map(|e| e.key().id().to_owned())
        .collect();
    assert_eq!(ids, ["ok"]);

    // Critical drops it from both.
    assert!(dev.set_check_status("ttl-warn", "critical", "down"));
    eventually(WAIT, "the critical instance removed", || async {
        both.endpoints().len() == 1
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zones_keep_traffic_local_spill_over_and_return() {
    support::trace_init();
    let dev = ConsulDev::start().await.expect("registry");
    let mut servers = BTreeMap::new();
    for (id, zone) in [("a1", "a"), ("a2", "a"), ("b1", "b"), ("b2", "b")] {
        let server = TestEchoServer::start(id).await.expect("echo");
        // Zone a says where it runs in its metadata, zone b in Consul's `Locality`.
        let place = if zone == "a" {
            json!({"Meta": {"zone": zone, "region": "r1"}})
        } else {
            json!({"Locality": {"Region": "r1", "Zone": zone}})
        };
        register(&dev, &server, place).await;
        servers.insert(id, server);
    }
    let client = Client::builder(dev.url()).build().expect("consul client");
    let channel = BalancedChannel::builder("echo")
        .traffic_policy(TrafficPolicy::new().locality(Locality::new("r1", "a")))
        .failfast_timeout(Duration::from_secs(1))
        .build(client.discovery("echo").build())
        .expect("channel");
    ready(&channel, 4).await;
    let tiers: BTreeMap<_, _> = channel
        .endpoints()
        .iter()
        .map(|e| (e.key().id().to_owned(), e.tier()))
        .collect();
    assert_eq!(tiers["a1"], 0);
    assert_eq!(tiers["b1"], 1);

    let (seen, failed) = spread(&channel, 2_000, 16).await;
    assert_eq!(failed, 0);
    assert_eq!(
        share(&seen, "b1") + share(&seen, "b2"),
        0.0,
        "steady state stays in zone a: {seen:?}"
    );

    // One of zone a's two instances dies: half its capacity is missing, so 30% of the
    // calls (1 - 0.5 × 1.4) spill over to zone b.
    let a1 = servers.remove("a1").expect("a1");
    let addr = a1.addr();
    a1.kill().await;
    eventually(WAIT, "a1 out of the ready set", || async {
        channel
            .endpoints()
            .iter()
            .any(|e| e.key().id() == "a1" && e.state() != EndpointState::Ready)
    })
    .await;
    let (seen, failed) = spread(&channel, 3_000, 16).await;
    assert_eq!(failed, 0, "{seen:?}");
    let b = share(&seen, "b1") + share(&seen, "b2");
    assert!(
        b > 0.15 && b < 0.45,
        "about 30% spill over to zone b: {seen:?}"
    );
    assert_eq!(share(&seen, "a1"), 0.0);

    // It comes back on the same address: the traffic returns to zone a.
    let back = TestEchoServer::start_on(addr, "a1")
        .await
        .expect("echo again");
    ready(&channel, 4).await;
    let (seen, failed) = spread(&channel, 2_000, 16).await;
    assert_eq!(failed, 0);
    assert_eq!(
        share(&seen, "b1") + share(&seen, "b2"),
        0.0,
        "traffic returned: {seen:?}"
    );
    assert!(share(&seen, "a1") > 0.2, "{seen:?}");
    drop(back);
}
