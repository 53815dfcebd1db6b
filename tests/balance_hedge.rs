//! Hedged calls (gRFC A6 `hedgingPolicy`) on real servers over loopback: the first
//! answer wins and the other attempts are cancelled, a non-fatal failure sends the
//! next attempt at once, a fatal one ends the call, and hedges say their attempt.

mod balance_util;
mod support;

use std::time::Duration;

use balance_util::{all_ready, call, discovery};
use support::eventually;
use tonic::Code;
use tonic_discovery::balance::{
    BalancedChannel, FailureAccrual, HedgingPolicy, MethodConfig, MethodName, ServiceConfig,
};
use tonic_discovery::testkit::TestEchoServer;

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
