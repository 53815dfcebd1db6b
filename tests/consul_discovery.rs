//! `consul::Discovery` against `ConsulDev`, the crate's in-process Consul-compatible
//! registry on loopback: services registered through its agent API, health moved
//! by check status, and its test controls for what a real cluster does rarely
//! (snapshot restores, an agent that dies and comes back). `dev` has the tests of
//! its other faults.

#[path = "consul_discovery/dev.rs"]
mod dev;
#[path = "consul_discovery/harness.rs"]
mod harness;
mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use http::Method;
use tonic_discovery::consul::{Client, Discovery};
use tower::discover::Change;

use harness::{Dev, NODE};
use support::eventually;

const T: Duration = Duration::from_secs(5);
/// Long enough that a missed wake-up shows as a test timeout, not a slow pass.
const WAIT: Duration = Duration::from_secs(60);

const TOKEN: &str = "s3cr3t-token";

/// A client with a token (the registry runs without ACLs and ignores it).
fn client(dev: &Dev) -> Client {
    dev.client(Some(TOKEN))
}

fn discovery(client: &Client, service: &str) -> Discovery {
    discovery_backing_off(client, service, Duration::from_millis(20))
}

/// A discovery whose failure backoff starts at `min` (up to ten times it).
fn discovery_backing_off(client: &Client, service: &str, min: Duration) -> Discovery {
    client
        .discovery(service)
        .wait(WAIT)
        .backoff(tonic_discovery::Backoff::new(min, 10 * min))
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
    let dev = Dev::start().await;
    dev.register("a", 7001, &[]).await;
    dev.register("b", 7002, &[]).await;
    dev.check("b", "critical");
    dev.register_in("other", "x", 7009, &[]).await;
    let mut d = discovery(&client(&dev), "echo");
    assert_eq!(changes(&mut d, 1).await, ["+a@7001"]);

    dev.check("b", "passing");
    assert_eq!(changes(&mut d, 1).await, ["+b@7002"]);
    dev.check("a", "critical");
    assert_eq!(changes(&mut d, 1).await, ["-a"]);
    dev.register("b", 7003, &[]).await;
    assert_eq!(
        changes(&mut d, 1).await,
        ["+b@7003"],
        "a new port re-inserts"
    );
    assert_eq!(d.state().instances()[0].key().node(), NODE);
}

#[tokio::test]
async fn every_tag_must_match() {
    support::trace_init();
    let dev = Dev::start().await;
    dev.register("a", 7001, &["v1", "blue"]).await;
    dev.register("b", 7002, &["v1"]).await;
    dev.register("c", 7003, &["blue"]).await;
    let client = client(&dev);
    let mut d = client
        .discovery("echo")
        .tag("v1")
        .tag("BLUE")
        .wait(WAIT)
        .build();
    assert_eq!(changes(&mut d, 1).await, ["+a@7001"]);
    dev.register("c", 7003, &["blue", "v1"]).await;
    assert_eq!(changes(&mut d, 1).await, ["+c@7003"]);
    assert_eq!(ids(&d), BTreeSet::from(["a".into(), "c".into()]));
}

#[tokio::test]
async fn index_going_backwards_resyncs() {
    // What we want to test: after a snapshot restore the index drops (here from
    // above 50 to below 10). A client that kept waiting on the high index would
    // miss everything until `wait` (60 s) ran out; ours resets and sees the
    // restored set and later changes.
    support::trace_init();
    let dev = Dev::start().await;
    dev.register("r", 7100, &[]).await;
    let older = dev.dev.snapshot();
    dev.deregister("r").await;
    for i in 0..50 {
        dev.register("a", 7000 + i, &[]).await;
    }
    let mut d = discovery(&client(&dev), "echo");
    assert_eq!(changes(&mut d, 1).await, ["+a@7049"]);
    dev.parked().await;
    let high = dev.dev.index();

    dev.dev.restore(&older);
    assert_eq!(changes(&mut d, 2).await, ["+r@7100", "-a"]);
    dev.register("s", 7101, &[]).await; // only seen after a reset
    assert!(dev.dev.index() < high, "{} < {high}", dev.dev.index());
    assert_eq!(changes(&mut d, 1).await, ["+s@7101"]);
}

#[tokio::test]
async fn outage_keeps_the_last_set_and_a_restarted_registry_resyncs() {
    support::trace_init();
    let mut dev = Dev::start().await;
    dev.register("b", 7002, &[]).await;
    dev.register("c", 7003, &[]).await;
    let older = dev.dev.snapshot();
    dev.deregister("c").await;
    dev.register("a", 7001, &[]).await;
    let mut d = discovery(&client(&dev), "echo");
    let observer = d.observer();
    assert_eq!(changes(&mut d, 2).await, ["+a@7001", "+b@7002"]);

    dev.dev.stop().await;
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
    assert!(older.index() < dev.dev.index());
    dev.dev.restore(&older);
    dev.dev.restart().await.unwrap();
    assert_eq!(changes(&mut d, 2).await, ["+c@7003", "-a"]);
    eventually(T, "the error clears", || async {
        d.state().last_error().is_none()
    })
    .await;
    dev.deregister("b").await;
    assert_eq!(changes(&mut d, 1).await, ["-b"]);
}

#[tokio::test]
async fn empty_service_drains_without_an_error() {
    support::trace_init();
    let dev = Dev::start().await;
    dev.register("a", 7001, &[]).await;
    let mut d = discovery(&client(&dev), "echo");
    assert_eq!(changes(&mut d, 1).await, ["+a@7001"]);
    dev.deregister("a").await;
    assert_eq!(changes(&mut d, 1).await, ["-a"]);
    dev.parked().await; // the empty set's answer is in
    assert!(d.state().is_synced() && d.state().instances().is_empty());
    assert!(no_change_ready(&mut d));
}

#[tokio::test]
async fn discoveries_with_equal_options_share_one_watch() {
    support::trace_init();
    let dev = Dev::start().await;
    dev.register("a", 7001, &[]).await;
    let client = client(&dev);
    let before = dev.dev.requests().len();
    let mut first = discovery(&client, "echo");
    let mut second = discovery(&client, "echo");
    assert_eq!(changes(&mut first, 1).await, ["+a@7001"]);
    assert_eq!(changes(&mut second, 1).await, ["+a@7001"]);
    dev.register("b", 7002, &[]).await;
    assert_eq!(changes(&mut first, 1).await, ["+b@7002"]);
    assert_eq!(changes(&mut second, 1).await, ["+b@7002"]);
    assert_eq!(fresh_reads(&dev, before), 1, "one watch, one initial read");
}

/// Reads without an index (a watch's first) since request `before`; the test's own
/// registrations are not reads.
fn fresh_reads(dev: &Dev, before: usize) -> usize {
    dev.dev.requests()[before..]
        .iter()
        .filter(|r| r.path() != "/v1/agent/service/register")
        .filter(|r| !r.uri().query().unwrap_or("").contains("index="))
        .count()
}

#[tokio::test]
async fn discoveries_followed_differently_get_watches_of_their_own() {
    support::trace_init();
    let dev = Dev::start().await;
    dev.register("a", 7001, &[]).await;
    let client = client(&dev);
    let before = dev.dev.requests().len();
    let mut first = discovery(&client, "echo");
    // The same query, another backoff: no longer silently the first one's.
    let mut second = discovery_backing_off(&client, "echo", Duration::from_millis(50));
    assert_eq!(changes(&mut first, 1).await, ["+a@7001"]);
    assert_eq!(changes(&mut second, 1).await, ["+a@7001"]);
    assert_eq!(
        fresh_reads(&dev, before),
        2,
        "two watches, one initial read each"
    );
}

#[tokio::test]
async fn the_token_travels_only_in_the_header() {
    support::trace_init();
    let dev = Dev::start().await;
    dev.register("a", 7001, &[]).await;
    let before = dev.dev.requests().len();
    let client = client(&dev);
    let mut d = discovery(&client, "echo");
    changes(&mut d, 1).await;
    let requests = dev.dev.requests().split_off(before);
    for r in &requests {
        assert!(!r.uri().to_string().contains("s3cr3t"), "{r:?}");
        assert_eq!(r.header("x-consul-token"), Some(TOKEN), "{r:?}");
    }
    assert_eq!(requests[0].method(), Method::GET, "{:?}", requests[0]);
    assert_eq!(
        requests[0].uri(),
        "/v1/health/service/echo?passing=true",
        "{:?}",
        requests[0]
    );
    assert!(!format!("{client:?} {d:?}").contains("s3cr3t"));
}
