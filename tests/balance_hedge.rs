//! Hedged calls (gRFC A6 `hedgingPolicy`) on real servers over loopback: the first
//! answer wins and the other attempts are cancelled, a non-fatal failure sends the
//! next attempt at once, a fatal one ends the call, and hedges say their attempt.

mod balance_util;
mod support;

use std::time::Duration;

use balance_util::{Scripted, all_ready, call, discovery, scripted_channel};
use support::eventually;
use tonic::Code;
use tonic_discovery::balance::{
    BalancedChannel, FailureAccrual, HedgingPolicy, MethodConfig, MethodName, ServiceConfig,
};
use tonic_discovery::{Instance, InstanceKey};
use tonic_discovery_testkit::TestEchoServer;

const WAIT: Duration = Duration::from_secs(5);

fn hedging(policy: HedgingPolicy) -> ServiceConfig {
    ServiceConfig::new()
        .method(MethodConfig::new([MethodName::method("echo.v1.Echo", "Echo")]).hedge(policy))
}

/// Two instances, `stuck` and `fine`, behind a channel hedging with `policy`.
async fn two(policy: HedgingPolicy) -> (TestEchoServer, TestEchoServer, BalancedChannel) {
    let stuck = TestEchoServer::start("stuck").await.expect("stuck");
    let fine = TestEchoServer::start("fine").await.expect("fine");
    let (feed, disc) = discovery();
    // A deadline, so that a hedge that never comes fails the test instead of
    // hanging it.
    let channel = BalancedChannel::builder("echo")
        .failure_accrual(FailureAccrual::disabled())
        .timeout(WAIT)
        .service_config(hedging(policy))
        .build(disc)
        .expect("channel");
    feed.insert(&stuck);
    feed.insert(&fine);
    eventually(WAIT, "both ready", || async { all_ready(&channel, 2) }).await;
    (stuck, fine, channel)
}

fn open_streams(channel: &BalancedChannel, id: &str) -> usize {
    channel
        .endpoints()
        .iter()
        .find(|e| e.key().id() == id)
        .map_or(0, |e| e.open_streams())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_stuck_on_one_instance_is_answered_by_its_hedge_and_the_stuck_attempt_cancelled() {
    support::trace_init();
    let policy = HedgingPolicy::new(2, Duration::from_millis(20), []);
    let (stuck, fine, channel) = two(policy).await;
    let hold = stuck.service().hold();
    // Every instance never called is tried first, so the first calls reach both.
    for _ in 0..20 {
        assert_eq!(call(&channel).await.expect("answered"), "fine");
    }
    assert!(
        stuck.service().received() > 0,
        "some first attempts went to stuck"
    );
    assert_eq!(fine.service().served(), 20, "each call answered once");
    // The attempts left on stuck were reset when their hedges won.
    eventually(WAIT, "no stream left open on stuck", || async {
        open_streams(&channel, "stuck") == 0
    })
    .await;
    drop(hold);

    // Without hedging, a call that lands on stuck waits: the control.
    let (feed, disc) = discovery();
    let plain = BalancedChannel::builder("echo")
        .failure_accrual(FailureAccrual::disabled())
        .timeout(Duration::from_millis(300))
        .build(disc)
        .expect("channel");
    feed.insert(&stuck);
    feed.insert(&fine);
    eventually(WAIT, "both ready", || async { all_ready(&plain, 2) }).await;
    let _hold = stuck.service().hold();
    let mut timed_out = 0;
    for _ in 0..4 {
        if let Err(status) = call(&plain).await {
            assert_eq!(status.code(), Code::DeadlineExceeded);
            timed_out += 1;
        }
    }
    assert!(timed_out > 0, "without a hedge, calls on stuck time out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_fatal_failure_sends_the_next_attempt_at_once_and_a_fatal_one_ends_the_call() {
    support::trace_init();
    // A long delay: only a failure sends the next attempt early.
    let policy = HedgingPolicy::new(2, Duration::from_secs(30), [Code::Unavailable]);
    let (failing, fine, channel) = two(policy).await;
    failing.service().fail_with(Some(Code::Unavailable));
    for _ in 0..20 {
        assert_eq!(call(&channel).await.expect("answered"), "fine");
    }
    assert!(failing.service().failed() > 0, "some first attempts failed");
    assert_eq!(fine.service().served(), 20, "each call answered once");

    // Fresh instances: the failures above weigh on `failing`'s cost for a while.
    let policy = HedgingPolicy::new(2, Duration::from_secs(30), [Code::Unavailable]);
    let (failing, _fine, channel) = two(policy).await;
    failing.service().fail_with(Some(Code::InvalidArgument));
    let mut fatal = 0;
    for _ in 0..40 {
        match call(&channel).await {
            Ok(id) => assert_eq!(id, "fine"),
            Err(status) => {
                assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
                fatal += 1;
            }
        }
    }
    assert!(fatal > 0, "a fatal failure is the call's answer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_every_attempt_fails_the_last_failure_is_the_answer() {
    support::trace_init();
    let policy = HedgingPolicy::new(3, Duration::from_millis(5), [Code::Unavailable]);
    let (a, b, channel) = two(policy).await;
    a.service().fail_with(Some(Code::Unavailable));
    b.service().fail_with(Some(Code::Unavailable));
    let status = call(&channel).await.expect_err("every attempt fails");
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(
        a.service().received() + b.service().received(),
        3,
        "three attempts, no more"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hedges_go_out_with_no_delay_and_without_resends() {
    support::trace_init();
    // A zero delay (gRFC A6's default) sends the hedge as soon as the first
    // attempt's request is sent whole; resends off, the channel keeps no copy of
    // its own, and a non-fatal failure still does not win. Each part on a fresh
    // channel, so that the odd instance gets a first attempt (never-called first).
    let policy = HedgingPolicy::new(2, Duration::ZERO, [Code::Unavailable]);
    for stuck in [true, false] {
        let odd = TestEchoServer::start("odd").await.expect("odd");
        let fine = TestEchoServer::start("fine").await.expect("fine");
        let _hold = stuck.then(|| odd.service().hold());
        if !stuck {
            odd.service().fail_with(Some(Code::Unavailable));
        }
        let (feed, disc) = discovery();
        let channel = BalancedChannel::builder("echo")
            .failure_accrual(FailureAccrual::disabled())
            .max_resends(0)
            .timeout(WAIT)
            .service_config(hedging(policy))
            .build(disc)
            .expect("channel");
        feed.insert(&odd);
        feed.insert(&fine);
        eventually(WAIT, "both ready", || async { all_ready(&channel, 2) }).await;
        // Until the odd instance has had a first attempt that reached it (a stuck
        // one can be cancelled by its hedge's answer before its server dispatched
        // it, so one attempt may not be seen there), then ten more; every call is
        // answered by the fine one.
        let mut calls = 0;
        while odd.service().received() == 0 || calls < 10 {
            assert!(
                calls < 200,
                "odd saw no first attempt in {calls} calls (stuck: {stuck})"
            );
            assert_eq!(
                call(&channel).await.expect("answered"),
                "fine",
                "stuck: {stuck}"
            );
            calls += 1;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hedges_say_which_attempt_they_are() {
    support::trace_init();
    let servers = [
        Scripted::default(),
        Scripted::default(),
        Scripted::default(),
    ];
    let (feed, disc) = discovery();
    let policy = HedgingPolicy::new(3, Duration::from_secs(30), [Code::Unavailable]);
    let channel = BalancedChannel::builder("echo")
        .failure_accrual(FailureAccrual::disabled())
        .timeout(WAIT)
        .service_config(hedging(policy))
        .build(disc)
        .expect("channel");
    for (i, server) in servers.iter().enumerate() {
        // Each fails its first call: the call's three attempts all fail.
        server.then_fail(Code::Unavailable, None);
        let addr = server.serve().await;
        let key = InstanceKey::new("node", format!("s{i}"));
        feed.insert_instance(Instance::new(key, addr.ip().to_string(), addr.port()));
    }
    eventually(WAIT, "three ready", || async { all_ready(&channel, 3) }).await;
    let status = call(&channel).await.expect_err("every attempt failed");
    assert_eq!(status.code(), Code::Unavailable);
    let mut previous: Vec<Option<String>> =
        servers.iter().flat_map(Scripted::take_previous).collect();
    previous.sort();
    assert_eq!(
        previous,
        [None, Some("1".into()), Some("2".into())],
        "one attempt per instance, numbered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_servers_pushback_delays_or_stops_the_hedges() {
    support::trace_init();
    // Hedges would wait 30 s: only a non-fatal failure sends one sooner.
    let policy = HedgingPolicy::new(3, Duration::from_secs(30), [Code::Unavailable]);
    let (server, channel) = scripted_channel(
        BalancedChannel::builder("echo")
            .failure_accrual(FailureAccrual::disabled())
            .timeout(Duration::from_secs(2))
            .service_config(hedging(policy)),
    )
    .await;

    // A pushback of 20 ms: the next attempt goes after it, and answers.
    server.then_fail(Code::Unavailable, Some("20"));
    assert!(
        call(&channel).await.is_ok(),
        "the pushed-back hedge answers"
    );
    assert_eq!(server.take_previous().len(), 2);

    // A negative pushback: no more hedges; the failure is the answer.
    server.then_fail(Code::Unavailable, Some("-1"));
    let status = call(&channel).await.expect_err("hedging stopped");
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(server.take_previous().len(), 1);

    // A pushback past the call's deadline: no more hedges either, and the call
    // answers with its failure now rather than its deadline later.
    server.then_fail(Code::Unavailable, Some("60000"));
    let status = call(&channel).await.expect_err("hedging stopped");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(server.take_previous().len(), 1);
}
