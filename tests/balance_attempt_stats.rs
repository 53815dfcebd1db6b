//! `BalancedChannel::attempt_stats` on real servers over loopback: it counts the
//! retries and hedges the policies sent, the hedges that won and what throttling
//! stopped, and nothing for a channel without a policy.

mod balance_util;
mod support;

use std::time::Duration;

use balance_util::{Scripted, all_ready, call, discovery};
use support::eventually;
use tonic::Code;
use tonic_discovery::balance::{
    AttemptStats, BalancedChannel, BalancedChannelBuilder, FailureAccrual, HedgingPolicy,
    MethodConfig, MethodName, RetryPolicy, RetryThrottling, ServiceConfig,
};
use tonic_discovery::{Instance, InstanceKey};
use tonic_discovery_testkit::TestEchoServer;

const WAIT: Duration = Duration::from_secs(5);

fn echo(config: MethodConfig) -> ServiceConfig {
    ServiceConfig::new().method(config)
}

/// Retries of UNAVAILABLE, quickly.
fn retrying(attempts: u32) -> MethodConfig {
    let policy = RetryPolicy::new(attempts, [Code::Unavailable]).backoff(
        Duration::from_millis(1),
        Duration::from_millis(5),
        2.0,
    );
    MethodConfig::new([MethodName::service("echo.v1.Echo")]).retry(policy)
}

/// Hedges sent only when an attempt fails with UNAVAILABLE (the delay is never
/// reached), so that what is sent does not depend on timing.
fn hedging(attempts: u32) -> MethodConfig {
    let policy = HedgingPolicy::new(attempts, Duration::from_secs(30), [Code::Unavailable]);
    MethodConfig::new([MethodName::service("echo.v1.Echo")]).hedge(policy)
}

/// A channel that never ejects, so a failing instance keeps getting calls, with a
/// deadline so that a test that goes wrong fails instead of hanging.
fn builder(config: ServiceConfig) -> BalancedChannelBuilder {
    BalancedChannel::builder("echo")
        .failure_accrual(FailureAccrual::disabled())
        .timeout(WAIT)
        .service_config(config)
}

/// `servers` behind a channel with `config`, all ready.
async fn over(servers: &[&TestEchoServer], config: ServiceConfig) -> BalancedChannel {
    let (feed, disc) = discovery();
    let channel = builder(config).build(disc).expect("channel");
    for server in servers {
        feed.insert(server);
    }
    eventually(WAIT, "every instance ready", || async {
        all_ready(&channel, servers.len())
    })
    .await;
    channel
}

/// (retries, retries throttled, hedges, hedges won, hedges throttled)
fn counts(stats: AttemptStats) -> (u64, u64, u64, u64, u64) {
    (
        stats.retries(),
        stats.retries_throttled(),
        stats.hedges(),
        stats.hedges_won(),
        stats.hedges_throttled(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_the_retries_sent_and_those_throttling_stopped() {
    support::trace_init();
    let server = Scripted::default();
    let addr = server.serve().await;
    let config = echo(retrying(3)).retry_throttling(RetryThrottling::new(10, 1.0));
    let (feed, disc) = discovery();
    let channel = builder(config).build(disc).expect("channel");
    let key = InstanceKey::new("node", "scripted");
    feed.insert_instance(Instance::new(key, addr.ip().to_string(), addr.port()));
    eventually(WAIT, "the scripted instance ready", || async {
        all_ready(&channel, 1)
    })
    .await;
    assert_eq!(channel.attempt_stats(), AttemptStats::default());

    // Two failures, then the answer: two retries (10 tokens → 8).
    server.then_fail(Code::Unavailable, None);
    server.then_fail(Code::Unavailable, None);
    call(&channel).await.expect("the third attempt answers");
    // Not a retryable code: no retry, nothing counted (8 tokens, the success gave 1
    // back: 9).
    server.then_fail(Code::InvalidArgument, None);
    call(&channel).await.expect_err("not retryable");
    assert_eq!(counts(channel.attempt_stats()), (2, 0, 0, 0, 0));

    // Four failures take the bucket to half (9 → 5): a call of three attempts (two
    // retries; its last failure is not retried, attempts exhausted), then the next
    // call's failure is throttled.
    for _ in 0..4 {
        server.then_fail(Code::Unavailable, None);
    }
    call(&channel).await.expect_err("attempts exhausted");
    call(&channel).await.expect_err("throttled");
    assert_eq!(server.take_previous().len(), 3 + 1 + 3 + 1, "attempts sent");
    assert_eq!(counts(channel.attempt_stats()), (2 + 2, 1, 0, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_the_hedges_sent_those_that_won_and_those_throttling_stopped() {
    support::trace_init();
    let failing = TestEchoServer::start("failing").await.expect("failing");
    let fine = TestEchoServer::start("fine").await.expect("fine");
    failing.service().fail_with(Some(Code::Unavailable));
    let channel = over(&[&failing, &fine], echo(hedging(2))).await;
    // Every instance never called is tried first, so some first attempts fail on
    // `failing`; each such call sends one hedge, to `fine`, which answers it.
    for _ in 0..20 {
        assert_eq!(call(&channel).await.expect("answered"), "fine");
    }
    let stats = channel.attempt_stats();
    let failed = failing.service().failed();
    assert!(failed > 0, "some first attempts went to failing");
    assert_eq!(counts(stats), (0, 0, failed, failed, 0), "{stats:?}");

    // Both failing, 4 tokens: the first failure leaves 3 (a hedge goes), the
    // second 2 (throttled), and the next call's first failure 1 (throttled).
    let a = TestEchoServer::start("a").await.expect("a");
    let b = TestEchoServer::start("b").await.expect("b");
    a.service().fail_with(Some(Code::Unavailable));
    b.service().fail_with(Some(Code::Unavailable));
    let config = echo(hedging(3)).retry_throttling(RetryThrottling::new(4, 1.0));
    let channel = over(&[&a, &b], config).await;
    call(&channel).await.expect_err("both attempts fail");
    call(&channel).await.expect_err("the only attempt fails");
    assert_eq!(a.service().received() + b.service().received(), 3);
    assert_eq!(counts(channel.attempt_stats()), (0, 0, 1, 0, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_attempt_the_servers_received_is_a_call_or_a_retry() {
    support::trace_init();
    // What we want to test: the fail-rate knob of the test kit, and that the stats
    // account for every attempt: received = calls + retries, and a failure the
    // servers sent was either retried or is the call's answer.
    let a = TestEchoServer::start("a").await.expect("a");
    let b = TestEchoServer::start("b").await.expect("b");
    a.service().set_fail_rate(0.3);
    b.service().set_fail_rate(0.3);
    let channel = over(&[&a, &b], echo(retrying(3))).await;
    const CALLS: u64 = 300;
    let mut failed_calls = 0;
    for _ in 0..CALLS {
        if let Err(status) = call(&channel).await {
            assert_eq!(status.code(), Code::Unavailable, "{status:?}");
            failed_calls += 1;
        }
    }
    let retries = channel.attempt_stats().retries();
    let received = a.service().received() + b.service().received();
    let failed = a.service().failed() + b.service().failed();
    assert_eq!(received, CALLS + retries, "attempts = calls + retries");
    assert_eq!(failed, retries + failed_calls);
    assert!(
        (received * 15 / 100..=received * 45 / 100).contains(&failed),
        "about 30% of {received} attempts failed: {failed}"
    );
    // 0.3³ of the calls fail three times: 2.7%.
    assert!(failed_calls < CALLS / 10, "{failed_calls} calls failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hedge_due_while_throttled_is_counted_as_throttled() {
    support::trace_init();
    let a = TestEchoServer::start("a").await.expect("a");
    let b = TestEchoServer::start("b").await.expect("b");
    a.service().fail_with(Some(Code::Unavailable));
    b.service().fail_with(Some(Code::Unavailable));
    let policy = HedgingPolicy::new(3, Duration::from_millis(10), [Code::Unavailable]);
    let method = MethodConfig::new([MethodName::service("echo.v1.Echo")]).hedge(policy);
    let config = echo(method).retry_throttling(RetryThrottling::new(4, 0.1));
    let channel = over(&[&a, &b], config).await;
    // 4 tokens: the first failure leaves 3 (a hedge goes), the second 2 (throttled).
    call(&channel).await.expect_err("both attempts fail");
    assert_eq!(counts(channel.attempt_stats()), (0, 0, 1, 0, 1));

    // The next call hangs on its first attempt; its hedge falls due after 10 ms,
    // while the throttle still holds: counted, and not sent.
    a.service().fail_with(None);
    b.service().fail_with(None);
    let holds = (a.service().hold(), b.service().hold());
    let pending = tokio::spawn({
        let channel = channel.clone();
        async move { call(&channel).await }
    });
    eventually(WAIT, "the timer's hedge counted as throttled", || async {
        channel.attempt_stats().hedges_throttled() == 2
    })
    .await;
    drop(holds);
    pending
        .await
        .expect("caller")
        .expect("answered by the first attempt");
    assert_eq!(a.service().received() + b.service().received(), 3);
    assert_eq!(counts(channel.attempt_stats()), (0, 0, 1, 0, 2));
}
