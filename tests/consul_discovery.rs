//! `consul::Discovery` against real HTTP servers on loopback: `consul_mock`, a
//! minimal blocking-query stand-in written for these tests (exact control over
//! indexes and restarts), and `ConsulDev`, the crate's in-process registry (`dev`).

mod consul_mock;
#[path = "consul_discovery/dev.rs"]
mod dev;
mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use tonic_discovery::consul::{Client, Discovery};
use tower::discover::Change;

use consul_mock::{MockConsul, entry};
use support::eventually;

const T: Duration = Duration::from_secs(5);
/// Long enough that a missed wake-up shows as a test timeout, not a slow pass.
const WAIT: Duration = Duration::from_secs(60);

fn client(server: &MockConsul) -> Client {
    Client::builder(server.url())
        .token("s3cr3t-token")
        .build()
        .unwrap()
}

fn discovery(client: &Client, service: &str) -> Discovery {
    client
        .discovery(service)
        .wait(WAIT)
        .backoff(tonic_discovery::Backoff::new(
            Duration::from_millis(20),
            Duration::from_millis(200),
        ))
        .build()
}

/// Reads changes until `n` arrived; `+id@port` / `-id`, sorted.
async fn changes(d: &mut Discovery, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..n {
        let change = tokio::time::timeout(T, d.next())
            .await
            .expect("a change in time")
            .expect("discovery never ends")
            .expect("discovery never yields an error");
        out.push(match change {
            Change::Insert(k, i) => format!("+{}@{}", k.id(), i.port()),
            Change::Remove(k) => format!("-{}", k.id()),
        });
    }
    out.sort();
    out
}

fn ids(d: &Discovery) -> BTreeSet<String> {
    d.state()
        .instances()
        .iter()
        .map(|i| i.id().to_owned())
        .collect()
}

fn no_change_ready(d: &mut Discovery) -> bool {
    d.next().now_or_never().is_none()
}

#[tokio::test]
async fn only_passing_instances_appear_and_checks_move_them() {
    support::trace_init();
    let server = MockConsul::start().await;
    server.register("echo", "a", 7001, &[]);
    server.register("echo", "b", 7002, &[]);
    server.set_passing("b", false);
    server.register("other", "x", 7009, &[]);
    let mut d = discovery(&client(&server), "echo");
    assert_eq!(changes(&mut d, 1).await, ["+a@7001"]);

    server.set_passing("b", true);
    assert_eq!(changes(&mut d, 1).await, ["+b@7002"]);
    server.set_passing("a", false);
    assert_eq!(changes(&mut d, 1).await, ["-a"]);
    server.register("echo", "b", 7003, &[]);
    assert_eq!(
        changes(&mut d, 1).await,
        ["+b@7003"],
        "a new port re-inserts"
    );
    assert_eq!(d.state().instances()[0].key().node(), "node1");
}

#[tokio::test]
async fn every_tag_must_match() {
    support::trace_init();
    let server = MockConsul::start().await;
    server.register("echo", "a", 7001, &["v1", "blue"]);
    server.register("echo", "b", 7002, &["v1"]);
    server.register("echo", "c", 7003, &["blue"]);
    let client = client(&server);
    let mut d = client
        .discovery("echo")
        .tag("v1")
        .tag("BLUE")
        .wait(WAIT)
        .build();
    assert_eq!(changes(&mut d, 1).await, ["+a@7001"]);
    server.register("echo", "c", 7003, &["blue", "v1"]);
    assert_eq!(changes(&mut d, 1).await, ["+c@7003"]);
    assert_eq!(ids(&d), BTreeSet::from(["a".into(), "c".into()]));
}

#[tokio::test]
async fn index_going_backwards_resyncs() {
    // What we want to test: after a snapshot restore the index drops (here 50 -> 3).
    // A client that kept waiting on index 50 would miss everything until `wait`
    // (60 s) ran out; ours resets and sees the restored set and later changes.
    support::trace_init();
    let server = MockConsul::start().await;
    for i in 0..50 {
        server.register("echo", "a", 7000 + i, &[]);
    }
    let mut d = discovery(&client(&server), "echo");
    assert_eq!(changes(&mut d, 1).await, ["+a@7049"]);
    let blocking = format!("index={}", server.index());
    eventually(T, "the watch blocks on the high index", || async {
        server.requests().iter().any(|r| r.contains(&blocking))
    })
    .await;

    server.restore(3, vec![entry("echo", "r", 7100)]);
    assert_eq!(changes(&mut d, 2).await, ["+r@7100", "-a"]);
    server.register("echo", "s", 7101, &[]); // index 4: only seen after a reset
    assert_eq!(changes(&mut d, 1).await, ["+s@7101"]);
}

#[tokio::test]
async fn outage_keeps_the_last_set_and_a_restarted_registry_resyncs() {
    support::trace_init();
    let mut server = MockConsul::start().await;
    server.register("echo", "a", 7001, &[]);
    server.register("echo", "b", 7002, &[]);
    let mut d = discovery(&client(&server), "echo");
    let observer = d.observer();
    assert_eq!(changes(&mut d, 2).await, ["+a@7001", "+b@7002"]);

    server.stop();
    eventually(T, "the watch notices the outage", || async {
        d.state().consecutive_failures() >= 2
    })
    .await;
    assert!(no_change_ready(&mut d), "an outage yields nothing");
    assert_eq!(ids(&d).len(), 2, "keeps the last known set");
    assert!(d.state().last_error().is_some());
    let seen = observer.state();
    assert!(
        seen.consecutive_failures() >= 2 && seen.instances().len() == 2,
        "{seen:?}"
    );

    // The registry comes back with different contents and a lower index.
    server.restore(2, vec![entry("echo", "b", 7002), entry("echo", "c", 7003)]);
    server.restart().await;
    assert_eq!(changes(&mut d, 2).await, ["+c@7003", "-a"]);
    eventually(T, "the error clears", || async {
        d.state().last_error().is_none()
    })
    .await;
    server.deregister("b");
    assert_eq!(changes(&mut d, 1).await, ["-b"]);
}

#[tokio::test]
async fn empty_service_drains_without_an_error() {
    support::trace_init();
    let server = MockConsul::start().await;
    server.register("echo", "a", 7001, &[]);
    let mut d = discovery(&client(&server), "echo");
    assert_eq!(changes(&mut d, 1).await, ["+a@7001"]);
    server.deregister("a");
    assert_eq!(changes(&mut d, 1).await, ["-a"]);
    eventually(T, "the empty set is the state", || async {
        d.state().index() == server.index()
    })
    .await;
    assert!(d.state().is_synced() && d.state().instances().is_empty());
    assert!(no_change_ready(&mut d));
}

#[tokio::test]
async fn discoveries_with_equal_options_share_one_watch() {
    support::trace_init();
    let server = MockConsul::start().await;
    server.register("echo", "a", 7001, &[]);
    let client = client(&server);
    let mut first = discovery(&client, "echo");
    let mut second = discovery(&client, "echo");
    assert_eq!(changes(&mut first, 1).await, ["+a@7001"]);
    assert_eq!(changes(&mut second, 1).await, ["+a@7001"]);
    server.register("echo", "b", 7002, &[]);
    assert_eq!(changes(&mut first, 1).await, ["+b@7002"]);
    assert_eq!(changes(&mut second, 1).await, ["+b@7002"]);
    let fresh_reads = server
        .requests()
        .iter()
        .filter(|r| !r.contains("index="))
        .count();
    assert_eq!(
        fresh_reads,
        1,
        "one watch, one initial read: {:?}",
        server.requests()
    );
}

#[tokio::test]
async fn the_token_travels_only_in_the_header() {
    support::trace_init();
    let server = MockConsul::start().await;
    server.register("echo", "a", 7001, &[]);
    let client = client(&server);
    let mut d = discovery(&client, "echo");
    changes(&mut d, 1).await;
    let requests = server.requests();
    for head in &requests {
        let (request_line, headers) = head.split_once("\r\n").unwrap();
        assert!(!request_line.contains("s3cr3t"), "{request_line}");
        assert!(
            headers
                .to_lowercase()
                .contains("x-consul-token: s3cr3t-token"),
            "{head}"
        );
    }
    assert!(
        requests[0].starts_with("GET /v1/health/service/echo?passing=true "),
        "{}",
        requests[0]
    );
    assert!(!format!("{client:?} {d:?}").contains("s3cr3t"));
}
