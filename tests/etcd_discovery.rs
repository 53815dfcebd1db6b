//! Discovery against a real etcd: Go interop, compaction, restarts and partitions.
#![cfg(feature = "etcd")]

#[path = "support/etcd.rs"]
mod etcd_support;
mod support;

use std::time::Duration;

use etcd_support::{Seen, client, compact_now, go_value, matches_etcd, raw};
use support::{eventually, trace_init};
use tonic_discovery::Backoff;
use tonic_discovery::etcd::{KeyLayout, Registration};
use tonic_discovery_testkit::EtcdServer;

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn discovers_go_endpoints_keys_written_by_etcdctl() {
    trace_init();
    let etcd = EtcdServer::start().await.unwrap();
    etcd.etcdctl(&["put", "echo/10.0.0.1:50051", &go_value("10.0.0.1:50051")])
        .await
        .unwrap();
    let seen = Seen::follow(client(&etcd).await.discovery("echo").build());
    eventually(
        WAIT,
        "the key written before the discovery started",
        || async {
            seen.addrs().get("echo/10.0.0.1:50051").map(String::as_str) == Some("10.0.0.1:50051")
        },
    )
    .await;

    // Key and address may differ (the Go resolver reads Addr); other services and
    // undecodable values are not instances.
    etcd.etcdctl(&["put", "echo/e2", r#"{"Addr":"[::1]:7000","Metadata":"m"}"#])
        .await
        .unwrap();
    etcd.etcdctl(&["put", "echo/garbage", "10.0.0.9:1"])
        .await
        .unwrap();
    etcd.etcdctl(&["put", "echo-admin/x", &go_value("10.0.0.3:1")])
        .await
        .unwrap();
    eventually(WAIT, "the second Go endpoint", || async {
        seen.addrs().get("echo/e2").map(String::as_str) == Some("[::1]:7000")
    })
    .await;
    assert_eq!(seen.keys(), ["echo/10.0.0.1:50051", "echo/e2"]);

    etcd.etcdctl(&["del", "echo/10.0.0.1:50051"]).await.unwrap();
    eventually(WAIT, "the deleted key to go", || async {
        seen.keys() == ["echo/e2"]
    })
    .await;
    seen.assert_clean();
}

#[tokio::test]
async fn metadata_filters_select_what_each_discovery_yields() {
    trace_init();
    let etcd = EtcdServer::start().await.unwrap();
    let client = client(&etcd).await;
    let all = Seen::follow(client.discovery("echo").layout(KeyLayout::Kratos).build());
    let canary = Seen::follow(
        client
            .discovery("echo")
            .layout(KeyLayout::Kratos)
            .meta("color", "canary")
            .build(),
    );
    let heavy = Seen::follow(
        client
            .discovery("echo")
            .layout(KeyLayout::Kratos)
            .meta_filter(|m| m.get("weight").and_then(|w| w.parse::<u32>().ok()) >= Some(5))
            .build(),
    );
    let value = |id: &str, port: u16, meta: &str| {
        format!(
            r#"{{"id":"{id}","name":"echo","metadata":{meta},"endpoints":["grpc://127.0.0.1:{port}"]}}"#
        )
    };
    let stable = value("s1", 7001, r#"{"color":"stable","weight":"10"}"#);
    let canary_v = value("c1", 7002, r#"{"color":"canary","weight":"1"}"#);
    etcd.etcdctl(&["put", "/microservices/echo/s1", &stable])
        .await
        .unwrap();
    etcd.etcdctl(&["put", "/microservices/echo/c1", &canary_v])
        .await
        .unwrap();
    eventually(WAIT, "each discovery's instances", || async {
        all.keys().len() == 2
            && canary.keys() == ["/microservices/echo/c1"]
            && heavy.keys() == ["/microservices/echo/s1"]
    })
    .await;
    // The metadata weight is the instance's weight.
    let weights: Vec<u32> = ["127.0.0.1:7002", "127.0.0.1:7001"]
        .iter()
        .map(|a| all.at(a).expect("seen").weight())
        .collect();
    assert_eq!(weights, [1, 10]);
    // An instance that stops matching leaves the filtered discovery only.
    let recolored = value("c1", 7002, r#"{"color":"stable","weight":"1"}"#);
    etcd.etcdctl(&["put", "/microservices/echo/c1", &recolored])
        .await
        .unwrap();
    eventually(
        WAIT,
        "the recolored instance out of the canary discovery",
        || async { canary.keys().is_empty() && all.keys().len() == 2 },
    )
    .await;
}

#[tokio::test]
async fn rust_registration_is_visible_in_the_go_format_and_leaves_on_deregister() {
    trace_init();
    let etcd = EtcdServer::start().await.unwrap();
    let client = client(&etcd).await;
    let seen = Seen::follow(client.discovery("echo").build());
    let reg = Registration::new("echo", "127.0.0.1:50051".parse().unwrap());
    let handle = client.register(reg).await.unwrap();
    let stored = etcd.etcdctl(&["get", "echo/127.0.0.1:50051", "--print-value-only"]);
    assert_eq!(stored.await.unwrap().trim(), go_value("127.0.0.1:50051"));
    eventually(WAIT, "the registered instance", || async {
        seen.keys() == ["echo/127.0.0.1:50051"]
    })
    .await;
    handle.deregister().await.unwrap();
    eventually(WAIT, "the instance to go", || async {
        seen.keys().is_empty()
    })
    .await;
    seen.assert_clean();
}

#[tokio::test]
async fn kratos_layout_is_discovered() {
    trace_init();
    let etcd = EtcdServer::start().await.unwrap();
    let value = r#"{"id":"k1","name":"hello","version":"v1","metadata":null,"endpoints":["http://10.0.0.5:8000","grpc://10.0.0.5:9000"]}"#;
    etcd.etcdctl(&["put", "/microservices/hello/k1", value])
        .await
        .unwrap();
    let discovery = client(&etcd)
        .await
        .discovery("hello")
        .layout(KeyLayout::Kratos);
    let seen = Seen::follow(discovery.build());
    eventually(WAIT, "the kratos instance", || async {
        seen.addrs()
            .get("/microservices/hello/k1")
            .map(String::as_str)
            == Some("10.0.0.5:9000")
    })
    .await;
    seen.assert_clean();
}

/// What we want to test: a watch resumed after etcd restarts replays what happened while
/// it was down; and when that history was compacted meanwhile, a fresh read and a diff
/// still end with exactly the keys in etcd (the deleted key must go).
#[tokio::test]
async fn broken_and_compacted_watches_end_with_the_keys_in_etcd() {
    trace_init();
    for compact in [false, true] {
        let mut etcd = EtcdServer::start().await.unwrap();
        let raw = raw(&etcd).await;
        for key in ["a", "b"] {
            let value = go_value(&format!("10.0.0.1:{}", 1 + u16::from(key == "b")));
            etcd.etcdctl(&["put", &format!("svc/{key}"), &value])
                .await
                .unwrap();
        }
        // Slow rebuilds, so the changes below happen while the watch is down.
        let backoff = Backoff::new(Duration::from_secs(4), Duration::from_secs(4)).jitter(0.0);
        let discovery = client(&etcd)
            .await
            .discovery("svc")
            .backoff(backoff)
            .build();
        let seen = Seen::follow(discovery);
        eventually(WAIT, "a and b", || async {
            seen.keys() == ["svc/a", "svc/b"]
        })
        .await;
        // A compaction under a live, synced watch changes nothing.
        compact_now(&etcd).await;
        etcd.etcdctl(&["put", "svc/live", &go_value("10.0.0.1:5")])
            .await
            .unwrap();
        eventually(WAIT, "the key put after a compaction", || async {
            seen.keys().len() == 3
        })
        .await;

        etcd.kill().await;
        etcd.restart().await.unwrap();
        etcd.etcdctl(&["del", "svc/a"]).await.unwrap();
        etcd.etcdctl(&["put", "svc/b", &go_value("10.0.0.2:2")])
            .await
            .unwrap();
        etcd.etcdctl(&["put", "svc/c", &go_value("10.0.0.1:3")])
            .await
            .unwrap();
        if compact {
            compact_now(&etcd).await;
        }
        eventually(
            Duration::from_secs(30),
            "the discovered set to equal etcd's",
            || async {
                seen.keys() == ["svc/b", "svc/c", "svc/live"]
                    && matches_etcd(&seen, &raw, "svc/").await
            },
        )
        .await;
        assert_eq!(seen.addrs()["svc/b"], "10.0.0.2:2", "compact={compact}");
        seen.assert_clean();
    }
}

/// What we want to test: a frozen etcd (a partition: connections open, no answers) is
/// noticed, the discovered set is kept meanwhile, and both the registration and the
/// discovery recover when etcd answers again.
#[tokio::test]
async fn partition_keeps_the_last_known_set_and_recovers() {
    trace_init();
    let etcd = EtcdServer::start().await.unwrap();
    let client = client(&etcd).await;
    let seen = Seen::follow(client.discovery("svc").build());
    let reg =
        Registration::new("svc", "127.0.0.1:7001".parse().unwrap()).ttl(Duration::from_secs(2));
    let handle = client.register(reg).await.unwrap();
    eventually(WAIT, "the registered instance", || async {
        seen.keys() == ["svc/127.0.0.1:7001"]
    })
    .await;

    etcd.stop().await.unwrap();
    eventually(WAIT, "the registration to notice the partition", || async {
        handle.lease_id().is_none()
    })
    .await;
    // The HTTP/2 keep-alive (5 s + 2 s) breaks the watch, and rebuilding it times out;
    // the set must stay as it was the whole time.
    eventually(
        Duration::from_secs(20),
        "the discovery to notice the partition",
        || async {
            assert_eq!(
                seen.keys(),
                ["svc/127.0.0.1:7001"],
                "set kept during the partition"
            );
            seen.failures() >= 2
        },
    )
    .await;
    assert_eq!(seen.keys(), ["svc/127.0.0.1:7001"]);

    etcd.cont().await.unwrap();
    etcd.etcdctl(&["put", "svc/after", &go_value("10.0.0.1:9")])
        .await
        .unwrap();
    eventually(
        Duration::from_secs(20),
        "recovery of registration and watch",
        || async {
            handle.lease_id().is_some() && seen.keys() == ["svc/127.0.0.1:7001", "svc/after"]
        },
    )
    .await;
    seen.assert_clean();
}

/// Every delete reaches the discovery; prints the delete → `Remove` latency (run with
/// `--nocapture` to see it).
#[tokio::test]
async fn deletes_reach_the_discovery() {
    trace_init();
    let etcd = EtcdServer::start().await.unwrap();
    let mut raw = raw(&etcd).await;
    let seen = Seen::follow(client(&etcd).await.discovery("svc").build());
    let mut latencies = Vec::new();
    for n in 0..20u16 {
        let key = format!("svc/{n}");
        raw.put(key.as_str(), go_value(&format!("10.0.0.1:{}", n + 1)), None)
            .await
            .unwrap();
        eventually(WAIT, "the put", || async { seen.keys().contains(&key) }).await;
        let deleted = tokio::time::Instant::now();
        raw.delete(key.as_str(), None).await.unwrap();
        eventually(WAIT, "the delete", || async { !seen.keys().contains(&key) }).await;
        latencies.push(deleted.elapsed());
    }
    latencies.sort();
    println!(
        "delete -> Remove: median {:?}, max {:?} (includes the delete round trip and 5 ms polling)",
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1]
    );
    seen.assert_clean();
}
