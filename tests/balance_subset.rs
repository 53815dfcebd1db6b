//! Subsetting end to end: a channel connects only to its subset of the discovered
//! instances (real Echo servers on loopback), clients at even coordinates cover every
//! instance, and the subset refills when a member dies or is removed.

mod balance_util;
mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use balance_util::{Feeder, all_ready, call, discovery};
use support::eventually;
use tonic_discovery::balance::{BalancedChannel, Coordinate, EndpointState, Subset};
use tonic_discovery_testkit::TestEchoServer;

const WAIT: Duration = Duration::from_secs(10);

async fn servers(n: usize) -> Vec<TestEchoServer> {
    let mut out = Vec::new();
    for i in 0..n {
        out.push(TestEchoServer::start(format!("s{i}")).await.expect("echo"));
    }
    out
}

fn client(index: u32, count: u32, k: usize) -> (Feeder, BalancedChannel) {
    let (feeder, disc) = discovery();
    let channel = BalancedChannel::builder("echo")
        .subset(Subset::new(
            Coordinate::new(index, count).expect("coordinate"),
            k,
        ))
        .build(disc)
        .expect("channel");
    (feeder, channel)
}

fn connected(channel: &BalancedChannel) -> BTreeSet<String> {
    channel
        .endpoints()
        .iter()
        .map(|e| e.key().id().to_owned())
        .collect()
}

/// The instances `calls` calls reach.
async fn reached(channel: &BalancedChannel, calls: usize) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for _ in 0..calls {
        seen.insert(call(channel).await.expect("call"));
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_connect_to_their_subset_only_and_together_cover_every_instance() {
    support::trace_init();
    let servers = servers(6).await;
    let mut covered = BTreeSet::new();
    let mut clients = Vec::new();
    for index in 0..3 {
        let (feeder, channel) = client(index, 3, 2);
        for server in &servers {
            feeder.insert(server);
        }
        eventually(WAIT, "two endpoints connected", || async {
            all_ready(&channel, 2)
        })
        .await;
        let subset = connected(&channel);
        assert_eq!(subset.len(), 2, "only the subset is connected: {subset:?}");
        assert_eq!(
            reached(&channel, 40).await,
            subset,
            "calls go to the subset only"
        );
        covered.extend(subset.iter().cloned());
        clients.push((feeder, channel, subset));
    }
    assert_eq!(
        covered.len(),
        6,
        "three clients of two cover six instances: {covered:?}"
    );

    // The same coordinate gives the same subset, whatever the order of discovery.
    let (feeder, again) = client(1, 3, 2);
    for server in servers.iter().rev() {
        feeder.insert(server);
    }
    eventually(WAIT, "two endpoints connected", || async {
        all_ready(&again, 2)
    })
    .await;
    assert_eq!(connected(&again), clients[1].2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_subset_refills_when_a_member_dies_or_leaves_and_gives_back_on_return() {
    support::trace_init();
    let mut servers = servers(6).await;
    let (feeder, channel) = client(0, 3, 2);
    for server in &servers {
        feeder.insert(server);
    }
    eventually(WAIT, "two endpoints connected", || async {
        all_ready(&channel, 2)
    })
    .await;
    let home = connected(&channel);

    // A member dies (its connection refused from now on): it keeps reconnecting and
    // the next instance on the ring carries its traffic.
    let dead_id = home.iter().next().expect("a member").clone();
    let at = servers
        .iter()
        .position(|s| s.service().id() == dead_id)
        .expect("its server");
    let dead = servers.remove(at);
    let addr = dead.addr();
    dead.kill().await;
    eventually(WAIT, "a refill connected and ready", || async {
        let eps = channel.endpoints();
        let ready: Vec<_> = eps
            .iter()
            .filter(|e| e.state() == EndpointState::Ready)
            .collect();
        ready.len() == 2 && ready.iter().all(|e| e.key().id() != dead_id)
    })
    .await;
    let with_refill = connected(&channel);
    assert!(
        with_refill.contains(&dead_id),
        "the failing member stays, reconnecting"
    );
    assert_eq!(with_refill.len(), 3, "{with_refill:?}");
    let reached_now = reached(&channel, 40).await;
    assert!(
        !reached_now.contains(&dead_id) && reached_now.len() == 2,
        "{reached_now:?}"
    );

    // It comes back: the refill leaves.
    let back = TestEchoServer::start_on(addr, dead_id.clone())
        .await
        .expect("back");
    eventually(WAIT, "the home subset again", || async {
        connected(&channel) == home && all_ready(&channel, 2)
    })
    .await;

    // A member leaves discovery: the next one takes its place for good.
    feeder.remove(&dead_id);
    eventually(WAIT, "a replacement connected", || async {
        let now = connected(&channel);
        now.len() == 2 && !now.contains(&dead_id) && all_ready(&channel, 2)
    })
    .await;
    drop(back);
}
