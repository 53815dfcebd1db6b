//! Peak-EWMA cold start over real Echo servers: an instance inserted after the
//! others have warmed up competes at once, yet a slow newcomer still gets little.

mod balance_util;
mod support;

use std::collections::HashMap;
use std::time::Duration;

use balance_util::{all_ready, call, discovery};
use support::eventually;
use tonic_discovery::balance::{BalancedChannel, LoadMetric};
use tonic_discovery::testkit::TestEchoServer;

const WAIT: Duration = Duration::from_secs(5);

async fn servers(ids: &[&str]) -> Vec<TestEchoServer> {
    let mut out = Vec::new();
    for id in ids {
        out.push(TestEchoServer::start(*id).await.expect("echo server"));
    }
    out
}

/// `n` requests from `callers` concurrent callers; returns how many each instance served.
async fn spread(channel: &BalancedChannel, callers: usize, n: usize) -> HashMap<String, usize> {
    let tasks: Vec<_> = (0..callers)
        .map(|_| {
            let channel = channel.clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for _ in 0..n / callers {
                    ids.push(call(&channel).await.expect("call"));
                }
                ids
            })
        })
        .collect();
    let mut counts = HashMap::new();
    for t in tasks {
        for id in t.await.expect("join") {
            *counts.entry(id).or_default() += 1;
        }
    }
    counts
}

/// Three instances warm up, one request at a time, answering in a millisecond or
/// less; then `last` joins. The default RTT is tower's (1 s), far above
/// theirs, so a newcomer started from it would lose every comparison. The 200 ms
/// decay lets the estimates follow the latencies within the test.
async fn warm_then_insert(last: &TestEchoServer, warm: &[TestEchoServer]) -> BalancedChannel {
    let (feed, disc) = discovery();
    let load = LoadMetric::peak_ewma(Duration::from_secs(1), Duration::from_millis(200));
    let channel = BalancedChannel::builder("echo").load(load).build(disc);
    warm.iter().for_each(|s| feed.insert(s));
    eventually(WAIT, "three ready endpoints", || async {
        all_ready(&channel, 3)
    })
    .await;
    spread(&channel, 1, 400).await;
    feed.insert(last);
    eventually(WAIT, "four ready endpoints", || async {
        all_ready(&channel, 4)
    })
    .await;
    // The feeder may go: the worker keeps the instances when discovery ends.
    channel
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_inserted_after_warm_up_gets_a_fair_share_at_once() {
    support::trace_init();
    let s = servers(&["a", "b", "c", "d"]).await;
    let channel = warm_then_insert(&s[3], &s[..3]).await;

    let counts = spread(&channel, 1, 800).await;
    // A fair share is 200 of 800. Started from the default RTT, d would get
    // nothing until its estimate decayed to its peers' level (8 time constants,
    // longer than this test), and did get 0 in every run. Seeded from its peers it
    // got 114 to 259 in eight runs. The bound is below half a fair share because,
    // one caller at a time, Peak-EWMA shares swing widely even among the warm
    // instances (1 to 406 of 800 seen): a hiccup's peak holds for a while.
    let d = counts.get("d").copied().unwrap_or(0);
    assert!(d >= 80, "d got {d} of 800: {counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_instance_inserted_after_warm_up_still_gets_a_small_share() {
    support::trace_init();
    let s = servers(&["a", "b", "c", "slow"]).await;
    s[3].service().set_delay(Duration::from_millis(10));
    let channel = warm_then_insert(&s[3], &s[..3]).await;

    let counts = spread(&channel, 16, 1600).await;
    // Starting from its peers' estimate, the slow instance is tried at once; its
    // first answer sets its estimate, and from then on it is picked only while the
    // fast ones have about ten times its requests in flight. Uniform: 400 of 1600.
    let slow = counts.get("slow").copied().unwrap_or(0);
    assert!(slow >= 1, "the slow newcomer was never tried: {counts:?}");
    assert!(slow < 320, "slow got {slow} of 1600: {counts:?}");
}
