//! The balanced channel over real Echo servers: spreading, removal, insertion while
//! idle, and Peak-EWMA steering away from a slow instance.

mod balance_util;
mod support;

use std::collections::HashMap;
use std::time::Duration;

use balance_util::{Feeder, all_ready, call, discovery, state};
use support::eventually;
use tonic_discovery::balance::{BalancedChannel, EndpointState};
use tonic_discovery_testkit::TestEchoServer;

const WAIT: Duration = Duration::from_secs(5);

async fn servers(ids: &[&str]) -> Vec<TestEchoServer> {
    let mut out = Vec::new();
    for id in ids {
        out.push(TestEchoServer::start(*id).await.expect("echo server"));
    }
    out
}

#[tokio::test]
async fn spreads_requests_over_all_instances() {
    support::trace_init();
    let s = servers(&["a", "b", "c"]).await;
    let (feed, disc) = discovery();
    let channel = BalancedChannel::builder("echo")
        .build(disc)
        .expect("valid balancer settings");
    s.iter().for_each(|s| feed.insert(s));
    eventually(WAIT, "three ready endpoints", || async {
        all_ready(&channel, 3)
    })
    .await;

    // Eight callers at once: with one caller at a time Peak-EWMA shares swing
    // widely (a latency hiccup keeps an instance's peak high for a while), while
    // concurrent requests in flight spread the load. Uniform would give 200 each;
    // at least half of that is asked.
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let channel = channel.clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for _ in 0..75 {
                    ids.push(call(&channel).await.expect("call"));
                }
                ids
            })
        })
        .collect();
    let mut counts: HashMap<String, u32> = HashMap::new();
    for t in tasks {
        for id in t.await.expect("join") {
            *counts.entry(id).or_default() += 1;
        }
    }
    for id in ["a", "b", "c"] {
        let n = counts.get(id).copied().unwrap_or(0);
        assert!(n >= 100, "instance {id} got {n} of 600: {counts:?}");
    }
}

#[tokio::test]
async fn insert_while_idle_connects_before_the_first_request() {
    support::trace_init();
    let s = servers(&["a"]).await;
    let (feed, disc) = discovery();
    let channel = BalancedChannel::builder("echo")
        .build(disc)
        .expect("valid balancer settings");
    feed.insert(&s[0]);
    eventually(WAIT, "endpoint connected with no request sent", || async {
        state(&channel, "a") == Some(EndpointState::Ready) && s[0].open_connections() == 1
    })
    .await;
    assert_eq!(s[0].service().served(), 0);
    assert_eq!(call(&channel).await.expect("call"), "a");
    assert_eq!(
        s[0].accepted_connections(),
        1,
        "the first request reused the connection"
    );
}

#[tokio::test]
async fn remove_while_idle_closes_the_connection_and_stops_requests() {
    support::trace_init();
    let s = servers(&["a", "b"]).await;
    let (feed, disc) = discovery();
    let channel = BalancedChannel::builder("echo")
        .build(disc)
        .expect("valid balancer settings");
    s.iter().for_each(|s| feed.insert(s));
    eventually(WAIT, "two ready endpoints", || async {
        all_ready(&channel, 2)
    })
    .await;
    for _ in 0..50 {
        call(&channel).await.expect("call");
    }
    assert!(
        s[1].service().served() > 0,
        "b served nothing before removal"
    );

    feed.remove("b");
    // No request flows from here until the connection is gone.
    eventually(
        WAIT,
        "connection to removed b closed while idle",
        || async { s[1].open_connections() == 0 },
    )
    .await;
    assert!(state(&channel, "b").is_none(), "b still listed");
    let served_b = s[1].service().served();
    for _ in 0..50 {
        assert_eq!(call(&channel).await.expect("call"), "a");
    }
    assert_eq!(s[1].service().served(), served_b);
}

#[tokio::test]
async fn remove_lets_in_flight_requests_finish() {
    support::trace_init();
    let s = servers(&["a"]).await;
    let hold = s[0].service().hold();
    let (feed, disc) = discovery();
    let channel = BalancedChannel::builder("echo")
        .build(disc)
        .expect("valid balancer settings");
    feed.insert(&s[0]);
    eventually(WAIT, "a ready", || async { all_ready(&channel, 1) }).await;
    let in_flight = tokio::spawn({
        let channel = channel.clone();
        async move { call(&channel).await }
    });
    eventually(WAIT, "request reached a", || async {
        s[0].service().received() == 1
    })
    .await;
    feed.remove("a");
    eventually(WAIT, "a removed", || async {
        state(&channel, "a").is_none()
    })
    .await;
    assert!(!in_flight.is_finished(), "answered while held");
    drop(hold);
    assert_eq!(in_flight.await.expect("join").expect("in-flight call"), "a");
    eventually(WAIT, "connection closed after the call", || async {
        s[0].open_connections() == 0
    })
    .await;
}

/// Servers `fast1`, `fast2` and `slow` (answering `delay` late) behind a channel,
/// once all three are ready. The feeder is returned so the discovery stays open.
async fn fast_fast_slow(delay: Duration) -> (Vec<TestEchoServer>, Feeder, BalancedChannel) {
    let s = servers(&["fast1", "fast2", "slow"]).await;
    s[2].service().set_delay(delay);
    let (feed, disc) = discovery();
    let channel = BalancedChannel::builder("echo")
        .build(disc)
        .expect("valid balancer settings");
    s.iter().for_each(|s| feed.insert(s));
    eventually(WAIT, "three ready endpoints", || async {
        all_ready(&channel, 3)
    })
    .await;
    (s, feed, channel)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_instance_gets_a_small_share() {
    support::trace_init();
    let (_s, _feed, channel) = fast_fast_slow(Duration::from_millis(10)).await;

    let mut tasks = Vec::new();
    for _ in 0..16 {
        let channel = channel.clone();
        tasks.push(tokio::spawn(async move {
            let mut slow = 0u32;
            for _ in 0..100 {
                if call(&channel).await.expect("call") == "slow" {
                    slow += 1;
                }
            }
            slow
        }));
    }
    let mut slow = 0;
    for t in tasks {
        slow += t.await.expect("join");
    }
    // Uniform random (tonic's balancer) gives a third, about 533 of 1600. Under
    // Peak-EWMA the slow instance is picked only while the fast ones have about ten
    // times its requests in flight, which at 16 callers is rare.
    assert!(slow < 320, "slow instance got {slow} of 1600 requests");
}

/// A burst of requests queued at once goes by cost too: an endpoint just called is
/// ready again at once, so the slow instance must not take what the fast ones could
/// (the worker used to spread a burst over whatever was left in its ready set: every
/// third request of it went to the slow instance).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_does_not_spill_onto_the_slow_instance() {
    support::trace_init();
    // Far slower than a fast instance loaded by a whole burst (in a debug build
    // too), so that by cost it should never be the cheaper one.
    let (_s, _feed, channel) = fast_fast_slow(Duration::from_millis(250)).await;
    // Every instance answers a few times, so each has a measured latency.
    eventually(WAIT, "the slow instance measured", || async {
        call(&channel).await.expect("call") == "slow"
    })
    .await;

    let (mut slow, mut total) = (0, 0);
    for _ in 0..25 {
        let burst: Vec<_> = (0..12)
            .map(|_| {
                let channel = channel.clone();
                tokio::spawn(async move { call(&channel).await.expect("call") })
            })
            .collect();
        for t in burst {
            total += 1;
            slow += usize::from(t.await.expect("join") == "slow");
        }
    }
    // Uniform would give a third (100 of 300), and the spill about as much.
    assert!(
        slow * 20 < total,
        "slow instance got {slow} of {total} burst requests"
    );
}

/// What we want to test: an instance at its concurrency limit gets no more requests;
/// they wait for it, past the fail-fast timeout (it is busy, not gone: fail-fast is
/// for when no instance is in service), and it takes them once its request in flight
/// is answered.
#[tokio::test]
async fn concurrency_limit_holds_requests_back() {
    support::trace_init();
    let s = servers(&["a"]).await;
    let hold = s[0].service().hold();
    let (feed, disc) = discovery();
    let failfast = Duration::from_millis(300);
    let channel = BalancedChannel::builder("echo")
        .concurrency_limit(1)
        .failfast_timeout(failfast)
        .build(disc)
        .expect("valid balancer settings");
    feed.insert(&s[0]);
    eventually(WAIT, "a ready", || async { all_ready(&channel, 1) }).await;
    let first = tokio::spawn({
        let channel = channel.clone();
        async move { call(&channel).await }
    });
    eventually(WAIT, "first request at a", || async {
        s[0].service().received() == 1
    })
    .await;
    // Without the limit the second request would reach a and stay held there.
    let mut second = tokio::spawn({
        let channel = channel.clone();
        async move { call(&channel).await }
    });
    let waited = tokio::time::timeout(failfast * 2, &mut second).await;
    assert!(
        waited.is_err(),
        "the second request did not wait: {waited:?}"
    );
    assert_eq!(s[0].service().received(), 1, "second request reached a");
    assert!(!first.is_finished(), "answered while held");

    drop(hold);
    assert_eq!(first.await.expect("join").expect("first call"), "a");
    let second = tokio::time::timeout(WAIT, second).await.expect("served");
    assert_eq!(second.expect("join").expect("second call"), "a");
    assert_eq!(s[0].service().served(), 2);
}

/// Polls the inner future only while `run` is set.
struct Pausable<F> {
    inner: std::pin::Pin<Box<F>>,
    run: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl<F: std::future::Future> std::future::Future for Pausable<F> {
    type Output = F::Output;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        if !self.run.load(std::sync::atomic::Ordering::SeqCst) {
            return std::task::Poll::Pending;
        }
        self.inner.as_mut().poll(cx)
    }
}

#[tokio::test]
async fn calls_to_a_ready_endpoint_do_not_wait_for_the_worker() {
    support::trace_init();
    let s = servers(&["a", "b"]).await;
    let (feed, disc) = discovery();
    let (channel, worker) = BalancedChannel::builder("echo")
        .build_with_worker(disc)
        .expect("valid balancer settings");
    let run = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    tokio::spawn(Pausable {
        inner: Box::pin(worker),
        run: run.clone(),
    });
    s.iter().for_each(|s| feed.insert(s));
    eventually(WAIT, "two ready endpoints", || async {
        all_ready(&channel, 2)
    })
    .await;
    // Each endpoint's first call goes through the worker (it measures the newcomer).
    let mut seen = std::collections::HashSet::new();
    for _ in 0..200 {
        seen.insert(call(&channel).await.expect("call"));
        if seen.len() == 2 {
            break;
        }
    }
    assert_eq!(seen.len(), 2, "{seen:?}");

    // With the worker stalled, calls still reach the ready instances from the
    // callers' own tasks.
    run.store(false, std::sync::atomic::Ordering::SeqCst);
    for _ in 0..50 {
        let answer = tokio::time::timeout(WAIT, call(&channel)).await;
        let id = answer
            .expect("a call waited for the stalled worker")
            .expect("call");
        assert!(id == "a" || id == "b", "{id}");
    }
    run.store(true, std::sync::atomic::Ordering::SeqCst);
}
