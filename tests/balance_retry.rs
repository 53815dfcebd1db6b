//! Retry policies (gRFC A6) on real servers over loopback: what is retried, where,
//! how often, and what stops a retry (committed responses, other codes, the
//! server's pushback, the attempts, the throttle, the deadline).

mod balance_util;
mod support;

use std::time::Duration;

use balance_util::{Scripted, all_ready, call, discovery, scripted_channel};
use support::eventually;
use tonic::Code;
use tonic_discovery::balance::{
    BalancedChannel, BalancedChannelBuilder, FailureAccrual, MethodConfig, MethodName, RetryPolicy,
    RetryThrottling, ServiceConfig,
};
use tonic_discovery::{Instance, InstanceKey};
use tonic_discovery_testkit::TestEchoServer;
use tonic_discovery_testkit::pb::echo_client::EchoClient;
use tonic_discovery_testkit::pb::{EchoRequest, EchoStreamRequest};

const WAIT: Duration = Duration::from_secs(5);

/// Retries of UNAVAILABLE, quickly.
fn unavailable(attempts: u32) -> RetryPolicy {
    RetryPolicy::new(attempts, [Code::Unavailable]).backoff(
        Duration::from_millis(1),
        Duration::from_millis(5),
        2.0,
    )
}

fn retrying(policy: RetryPolicy) -> ServiceConfig {
    ServiceConfig::new()
        .method(MethodConfig::new([MethodName::service("echo.v1.Echo")]).retry(policy))
}

/// A channel that never ejects, so a failing instance keeps getting calls.
fn builder() -> BalancedChannelBuilder {
    BalancedChannel::builder("echo").failure_accrual(FailureAccrual::disabled())
}

/// Runs `calls` calls from `concurrency` tasks: the answering ids and the failures.
async fn spread(
    channel: &BalancedChannel,
    calls: usize,
    concurrency: usize,
) -> (Vec<String>, Vec<Code>) {
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let channel = channel.clone();
            tokio::spawn(async move {
                let mut out = (Vec::new(), Vec::new());
                for _ in 0..calls / concurrency {
                    match call(&channel).await {
                        Ok(id) => out.0.push(id),
                        Err(status) => out.1.push(status.code()),
                    }
                }
                out
            })
        })
        .collect();
    let mut all = (Vec::new(), Vec::new());
    for task in tasks {
        let (ids, codes) = task.await.expect("caller task");
        all.0.extend(ids);
        all.1.extend(codes);
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retryable_status_is_answered_by_another_instance() {
    support::trace_init();
    let bad = TestEchoServer::start("bad").await.expect("bad");
    let good = TestEchoServer::start("good").await.expect("good");
    bad.service().fail_with(Some(Code::Unavailable));
    let (feed, disc) = discovery();
    let channel = builder()
        .service_config(retrying(unavailable(3)))
        .build(disc)
        .expect("channel");
    let (control_feed, control_disc) = discovery();
    let control = builder().build(control_disc).expect("control channel");
    for f in [&feed, &control_feed] {
        f.insert(&bad);
        f.insert(&good);
    }
    eventually(WAIT, "both ready on both channels", || async {
        all_ready(&channel, 2) && all_ready(&control, 2)
    })
    .await;

    let (ids, failed) = spread(&control, 200, 8).await;
    assert!(
        !failed.is_empty(),
        "without a policy the bad instance's calls fail: {} answered",
        ids.len()
    );
    assert!(failed.iter().all(|c| *c == Code::Unavailable), "{failed:?}");

    let (bad_before, good_before) = (bad.service().received(), good.service().served());
    let (ids, failed) = spread(&channel, 400, 8).await;
    assert_eq!(failed, [], "every call answered");
    assert!(ids.iter().all(|id| id == "good"), "only good answers");
    let attempts_on_bad = bad.service().received() - bad_before;
    assert!(attempts_on_bad > 0, "the bad instance was tried");
    assert_eq!(
        good.service().served() - good_before,
        400,
        "each call served once"
    );
}

/// One scripted instance behind a channel with `config`.
async fn scripted(config: ServiceConfig, timeout: Option<Duration>) -> (Scripted, BalancedChannel) {
    let mut builder = builder().service_config(config);
    if let Some(timeout) = timeout {
        builder = builder.timeout(timeout);
    }
    scripted_channel(builder).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_carry_their_attempt_number_and_stop_at_max_attempts() {
    support::trace_init();
    let (server, channel) = scripted(retrying(unavailable(3)), None).await;

    server.then_fail(Code::Unavailable, None);
    server.then_fail(Code::Unavailable, Some("0"));
    assert_eq!(
        call(&channel).await.expect("the third attempt answers"),
        "scripted"
    );
    assert_eq!(
        server.take_previous(),
        [None, Some("1".into()), Some("2".into())],
        "the only instance is retried when there is no other"
    );

    for _ in 0..4 {
        server.then_fail(Code::Unavailable, None);
    }
    let status = call(&channel)
        .await
        .expect_err("three attempts, all failed");
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(server.take_previous().len(), 3, "max attempts: 3");
    server.script.lock().expect("script").clear();

    server.then_fail(Code::InvalidArgument, None);
    let status = call(&channel).await.expect_err("not a retryable code");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(server.take_previous(), [None], "tried once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_servers_pushback_and_the_deadline_stop_retries() {
    support::trace_init();
    let (server, channel) = scripted(retrying(unavailable(5)), Some(Duration::from_secs(2))).await;

    server.then_fail(Code::Unavailable, Some("-1"));
    let status = call(&channel)
        .await
        .expect_err("a negative pushback stops retrying");
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(server.take_previous(), [None]);

    server.then_fail(Code::Unavailable, Some("soon"));
    let status = call(&channel)
        .await
        .expect_err("a malformed pushback stops retrying");
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(server.take_previous(), [None]);

    // A valid pushback is the delay of the next retry.
    server.then_fail(Code::Unavailable, Some("1"));
    assert_eq!(call(&channel).await.expect("retried"), "scripted");
    assert_eq!(server.take_previous(), [None, Some("1".into())]);

    // A pushback beyond the deadline: the caller gets the failure now, not a
    // deadline later.
    server.then_fail(Code::Unavailable, Some("60000"));
    let status = call(&channel)
        .await
        .expect_err("the retry would come after the deadline");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(server.take_previous(), [None]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_stops_retries_when_the_bucket_is_half_empty() {
    support::trace_init();
    // 4 tokens: the first failure leaves 3 (retry), the second 2 (no more retries
    // while at or below half).
    let config = retrying(unavailable(5)).retry_throttling(RetryThrottling::new(4, 1.0));
    let (server, channel) = scripted(config, None).await;
    for _ in 0..20 {
        server.then_fail(Code::Unavailable, None);
    }
    call(&channel)
        .await
        .expect_err("throttled after two attempts");
    assert_eq!(server.take_previous().len(), 2, "one retry, then throttled");
    call(&channel).await.expect_err("throttled");
    assert_eq!(server.take_previous().len(), 1, "no retry at 1 token");
    server.script.lock().expect("script").clear();
    // Each success gives a token back: 1 → 4 in three calls, then a failure may
    // be retried again (4 → 3).
    for _ in 0..3 {
        call(&channel).await.expect("answered");
    }
    server.take_previous();
    server.then_fail(Code::Unavailable, None);
    server.then_fail(Code::Unavailable, None);
    call(&channel).await.expect_err("one retry allowed again");
    assert_eq!(server.take_previous().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_methods_timeout_is_its_calls_deadline() {
    support::trace_init();
    let server = TestEchoServer::start("slow").await.expect("server");
    let (feed, disc) = discovery();
    let config = ServiceConfig::new().method(
        MethodConfig::new([MethodName::method("echo.v1.Echo", "Echo")])
            .timeout(Duration::from_millis(200)),
    );
    let channel = builder()
        .service_config(config)
        .build(disc)
        .expect("channel");
    feed.insert(&server);
    eventually(WAIT, "ready", || async { all_ready(&channel, 1) }).await;
    let hold = server.service().hold();
    let status = call(&channel)
        .await
        .expect_err("held past the method's timeout");
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    drop(hold);
    assert_eq!(call(&channel).await.expect("answered"), "slow");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_whose_response_began_is_committed_and_not_retried() {
    support::trace_init();
    let bad = TestEchoServer::start("bad").await.expect("bad");
    let good = TestEchoServer::start("good").await.expect("good");
    bad.service().fail_with(Some(Code::Unavailable));
    let (feed, disc) = discovery();
    let channel = builder()
        .service_config(retrying(unavailable(5)))
        .build(disc)
        .expect("channel");
    feed.insert(&bad);
    feed.insert(&good);
    eventually(WAIT, "both ready", || async { all_ready(&channel, 2) }).await;
    let mut from_bad = 0;
    for _ in 0..40 {
        let mut client = EchoClient::new(channel.clone());
        let request = EchoStreamRequest {
            message: b"s".to_vec(),
            count: 1,
            interval_ms: 0,
        };
        let mut stream = client
            .echo_stream(request)
            .await
            .expect("response headers")
            .into_inner();
        let first = stream
            .message()
            .await
            .expect("the first message")
            .expect("one message");
        let end = stream.message().await;
        if first.instance_id == "bad" {
            from_bad += 1;
            let status = end.expect_err("bad ends its stream with UNAVAILABLE");
            assert_eq!(
                status.code(),
                Code::Unavailable,
                "the failure reaches the caller"
            );
        } else {
            assert!(matches!(end, Ok(None)), "good ends cleanly: {end:?}");
        }
    }
    assert!(from_bad > 0, "some streams went to bad");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_attempt_goes_to_an_instance_the_call_has_not_tried() {
    support::trace_init();
    let servers = [
        Scripted::default(),
        Scripted::default(),
        Scripted::default(),
    ];
    let (feed, disc) = discovery();
    let channel = builder()
        .service_config(retrying(unavailable(3)))
        .build(disc)
        .expect("channel");
    for (i, server) in servers.iter().enumerate() {
        for _ in 0..100 {
            server.then_fail(Code::Unavailable, None);
        }
        let addr = server.serve().await;
        let key = InstanceKey::new("node", format!("s{i}"));
        feed.insert_instance(Instance::new(key, addr.ip().to_string(), addr.port()));
    }
    eventually(WAIT, "three ready", || async { all_ready(&channel, 3) }).await;
    for call in 0..20u8 {
        let mut client = EchoClient::new(channel.clone());
        let status = client
            .echo(EchoRequest {
                message: vec![call],
            })
            .await
            .expect_err("every instance fails");
        assert_eq!(status.code(), Code::Unavailable);
        let tried: Vec<usize> = servers
            .iter()
            .enumerate()
            .flat_map(|(i, s)| {
                let n = s
                    .messages
                    .lock()
                    .expect("messages")
                    .iter()
                    .filter(|m| **m == [call])
                    .count();
                std::iter::repeat_n(i, n)
            })
            .collect();
        assert_eq!(
            tried,
            [0, 1, 2],
            "call {call}: three attempts, one per instance"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_whose_connection_is_lost_before_any_response_is_retried() {
    support::trace_init();
    let a = TestEchoServer::start("a").await.expect("a");
    let b = TestEchoServer::start("b").await.expect("b");
    let (feed, disc) = discovery();
    let channel = builder()
        .timeout(WAIT)
        .service_config(retrying(unavailable(2)))
        .build(disc)
        .expect("channel");
    feed.insert(&a);
    feed.insert(&b);
    eventually(WAIT, "both ready", || async { all_ready(&channel, 2) }).await;
    let (hold_a, hold_b) = (a.service().hold(), b.service().hold());
    let pending = tokio::spawn({
        let channel = channel.clone();
        async move { call(&channel).await }
    });
    eventually(WAIT, "the call reached a server", || async {
        a.service().received() + b.service().received() == 1
    })
    .await;
    // The server that has the call dies before answering; the other answers.
    let (victim, other, other_hold) = if a.service().received() == 1 {
        (a, b, hold_b)
    } else {
        (b, a, hold_a)
    };
    drop(other_hold);
    victim.kill().await;
    let answer = pending.await.expect("caller task");
    assert_eq!(
        answer.expect("retried on the other instance"),
        other.service().id()
    );
}

/// One call carrying `len` bytes that the server fails once with UNAVAILABLE:
/// whether it was answered (it was, if it was retried).
async fn answered_after_one_failure(
    channel: &BalancedChannel,
    server: &Scripted,
    len: usize,
) -> bool {
    server.then_fail(Code::Unavailable, None);
    let request = EchoRequest {
        message: vec![7; len],
    };
    EchoClient::new(channel.clone()).echo(request).await.is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_past_the_buffer_limits_is_sent_once() {
    support::trace_init();
    // Per call: 1 KiB.
    let (server, channel) = scripted_channel(
        builder()
            .service_config(retrying(unavailable(3)))
            .retry_buffer(1024, 1 << 20),
    )
    .await;
    assert!(
        answered_after_one_failure(&channel, &server, 500).await,
        "kept: retried"
    );
    assert!(
        !answered_after_one_failure(&channel, &server, 2000).await,
        "past the call's limit: committed"
    );

    // Per channel: 1,500 bytes over all calls; each call's bytes come back when it
    // ends, so calls one after another are all kept.
    let (server, channel) = scripted_channel(
        builder()
            .service_config(retrying(unavailable(3)))
            .retry_buffer(1 << 20, 1500),
    )
    .await;
    for _ in 0..5 {
        assert!(
            answered_after_one_failure(&channel, &server, 1000).await,
            "the channel's total given back"
        );
    }
    assert!(
        !answered_after_one_failure(&channel, &server, 2000).await,
        "past the channel's total: committed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_stream_cut_off_by_a_failure_is_retried_with_what_was_sent_and_the_rest() {
    support::trace_init();
    let (server, channel) = scripted(retrying(unavailable(3)), Some(Duration::from_secs(5))).await;
    // The first attempt fails once its first message arrived, while the caller still
    // has messages to send.
    server.then_fail(Code::Unavailable, None);
    let (tx, rx) = tokio::sync::mpsc::channel::<EchoRequest>(4);
    let messages =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
    let call = tokio::spawn({
        let channel = channel.clone();
        async move { EchoClient::new(channel).echo_collect(messages).await }
    });
    let message = |m: &[u8]| EchoRequest {
        message: m.to_vec(),
    };
    tx.send(message(b"a")).await.expect("the call reads");
    eventually(WAIT, "the first attempt failed", || async {
        server.previous.lock().expect("previous").len() == 2
    })
    .await;
    // The retry is under way: the rest of the stream follows what was sent.
    tx.send(message(b"b")).await.expect("the retry reads");
    tx.send(message(b"c")).await.expect("the retry reads");
    drop(tx);
    let reply = call.await.expect("caller").expect("answered by the retry");
    assert_eq!(reply.into_inner().message, b"abc");
    assert_eq!(server.take_previous(), [None, Some("1".to_owned())]);
    let messages = server.messages.lock().expect("messages").clone();
    assert_eq!(
        messages,
        [b"a".to_vec(), b"abc".to_vec()],
        "the retry carried a, then b and c"
    );
}
