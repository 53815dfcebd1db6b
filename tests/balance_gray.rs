//! Gray failures against real servers on loopback: instances that are registered and
//! connected but fail every call, freeze, refuse streams or GOAWAY; the balancer must
//! learn it from the traffic.

mod balance_util;
mod support;

use std::collections::HashMap;
use std::time::Duration;

use balance_util::{Feeder, call, discovery, state};
use support::eventually;
use tonic::Code;
use tonic_discovery::Backoff;
use tonic_discovery::balance::{
    BalancedChannel, BalancedChannelBuilder, EndpointState, FailureAccrual, RetryBudget,
};
use tonic_discovery_testkit::pb::EchoRequest;
use tonic_discovery_testkit::pb::echo_client::EchoClient;
use tonic_discovery_testkit::{H2FaultServer, TestEchoServer};

const WAIT: Duration = Duration::from_secs(10);

async fn servers(ids: &[&str]) -> Vec<TestEchoServer> {
    let mut out = Vec::new();
    for id in ids {
        out.push(TestEchoServer::start(*id).await.expect("echo server"));
    }
    out
}

/// Ejections long enough that no probe happens during a test.
fn no_probe() -> FailureAccrual {
    FailureAccrual::default().ejection_backoff(Backoff::new(
        Duration::from_secs(60),
        Duration::from_secs(120),
    ))
}

async fn channel_over(
    builder: BalancedChannelBuilder,
    servers: &[TestEchoServer],
) -> (Feeder, BalancedChannel) {
    let (feed, disc) = discovery();
    let channel = builder.build(disc).expect("valid settings");
    for s in servers {
        feed.insert(s);
    }
    eventually(WAIT, "every endpoint ready", || async {
        let eps = channel.endpoints();
        eps.len() == servers.len() && eps.iter().all(|e| e.state() == EndpointState::Ready)
    })
    .await;
    (feed, channel)
}

/// `n` calls one after the other; counts answers by instance and failures by code.
async fn calls(channel: &BalancedChannel, n: usize) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for _ in 0..n {
        let key = match call(channel).await {
            Ok(id) => id,
            Err(status) => format!("{:?}", status.code()),
        };
        *out.entry(key).or_default() += 1;
    }
    out
}

/// `tasks` callers making `per_task` calls each, at once; merged counts.
async fn load(channel: &BalancedChannel, tasks: usize, per_task: usize) -> HashMap<String, usize> {
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..tasks {
        let channel = channel.clone();
        set.spawn(async move { calls(&channel, per_task).await });
    }
    let mut total = HashMap::new();
    while let Some(done) = set.join_next().await {
        for (k, n) in done.expect("join") {
            *total.entry(k).or_insert(0) += n;
        }
    }
    total
}

/// Slows the healthy instances so that, under concurrent load, the balancer keeps
/// sending some calls to a failing one: the failure penalty alone would starve it,
/// and failure accrual could not judge it.
fn slow(servers: &[TestEchoServer]) {
    for s in servers {
        s.service().set_delay(Duration::from_millis(20));
    }
}

fn count(of: &HashMap<String, usize>, key: &str) -> usize {
    of.get(key).copied().unwrap_or(0)
}

fn ejected(channel: &BalancedChannel) -> Vec<String> {
    channel
        .endpoints()
        .into_iter()
        .filter(|e| e.state() == EndpointState::Ejected)
        .map(|e| e.key().id().to_owned())
        .collect()
}

#[tokio::test]
async fn a_black_hole_is_ejected_even_one_call_at_a_time() {
    support::trace_init();
    let s = servers(&["a", "b", "c"]).await;
    let builder = BalancedChannel::builder("echo").failure_accrual(no_probe());
    let (_feed, channel) = channel_over(builder, &s).await;
    // Warm estimates, as for an instance that served before it failed.
    let warm = calls(&channel, 100).await;
    assert!(count(&warm, "a") > 0, "{warm:?}");
    s[0].service().fail_with(Some(Code::Unavailable));
    // One call at a time, at low load Peak-EWMA can leave `a` unpicked for a while (a
    // peer that measured faster wins every comparison until the estimates decay), so
    // first wait for its first failure.
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut before = 0;
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "`a` never got a call"
        );
        before += 1;
        if let Err(status) = call(&channel).await {
            assert_eq!(status.code(), Code::Unavailable);
            break;
        }
    }
    // From its first failure, `a` fails fast, which must not make it look cheap, and
    // its first failures must not starve it of the calls that get it ejected either (a
    // penalty at once would leave it in service, failing a call every few seconds).
    let answers = calls(&channel, 300).await;
    assert_eq!(ejected(&channel), ["a"], "{answers:?} after {before} calls");
    assert_eq!(count(&answers, "Unavailable"), 4, "{answers:?}");
    assert_eq!(count(&answers, "b") + count(&answers, "c"), 296);
}

#[tokio::test]
async fn every_instance_is_tried_by_the_first_calls() {
    support::trace_init();
    let s = servers(&["a", "b", "c"]).await;
    let (_feed, channel) = channel_over(BalancedChannel::builder("echo"), &s).await;
    // One call at a time: the first answer replaces its instance's guessed estimate,
    // so the others must get a call of their own rather than lose every comparison
    // to a measured peer until their guess decays (a minute, from 30 ms).
    let answers = calls(&channel, 30).await;
    for id in ["a", "b", "c"] {
        assert!(count(&answers, id) > 0, "{answers:?}");
    }
}

#[tokio::test]
async fn a_black_hole_under_load_is_ejected() {
    support::trace_init();
    let s = servers(&["a", "b", "c"]).await;
    let builder = BalancedChannel::builder("echo").failure_accrual(no_probe());
    let (_feed, channel) = channel_over(builder, &s).await;
    slow(&s[1..]);
    s[0].service().fail_with(Some(Code::Unavailable));
    let before = load(&channel, 16, 20).await;
    assert_eq!(ejected(&channel), ["a"], "{before:?}");
    let info = channel
        .endpoints()
        .into_iter()
        .find(|e| e.key().id() == "a");
    assert!(info.and_then(|e| e.ejected_until()).is_some());
    // Five in a row eject it; the calls that were in flight on it then are all it costs.
    assert!(count(&before, "Unavailable") <= 16 + 5, "{before:?}");

    let after = load(&channel, 16, 20).await;
    assert_eq!(count(&after, "Unavailable"), 0, "{after:?}");
    assert_eq!(count(&after, "b") + count(&after, "c"), 320);
}

#[tokio::test]
async fn the_guard_never_ejects_more_than_the_fraction_allows() {
    support::trace_init();
    let s = servers(&["a", "b", "c"]).await;
    let builder = BalancedChannel::builder("echo").failure_accrual(no_probe());
    let (_feed, channel) = channel_over(builder, &s).await;
    s[0].service().fail_with(Some(Code::Unavailable));
    s[1].service().fail_with(Some(Code::Unavailable));
    slow(&s[2..]);

    let answers = load(&channel, 8, 40).await;
    // Both failing ones reach the detector's five failures in a row (their first
    // failures are not penalised), so the guard is asked twice: one of three may go
    // (half, rounded down); the other stays and loses the comparisons it can, and the
    // healthy one serves.
    assert!(count(&answers, "Unavailable") >= 10, "{answers:?}");
    assert_eq!(ejected(&channel).len(), 1, "{:?}", channel.endpoints());
    assert!(count(&answers, "c") >= 160, "{answers:?}");
    // Once judged, the one kept in service loses every comparison with the healthy
    // one, however the call is placed (and the ejected one takes no call at all).
    let after = load(&channel, 8, 40).await;
    assert_eq!(count(&after, "c"), 320, "{after:?}");
}

#[tokio::test]
async fn the_last_ready_endpoint_is_never_ejected() {
    support::trace_init();
    let s = servers(&["a", "b"]).await;
    let accrual = no_probe().max_ejected_fraction(1.0);
    let builder = BalancedChannel::builder("echo")
        .failure_accrual(accrual)
        .failfast_timeout(Duration::from_millis(500));
    let (_feed, channel) = channel_over(builder, &s).await;
    for server in &s {
        server.service().fail_with(Some(Code::Unavailable));
    }
    let answers = calls(&channel, 100).await;
    // Every call reaches an instance and gets its answer; none fails for want of a
    // ready endpoint (that would also be `Unavailable`, but after the fail-fast wait).
    assert_eq!(count(&answers, "Unavailable"), 100);
    assert_eq!(ejected(&channel).len(), 1);
    let received: u64 = s.iter().map(|x| x.service().received()).sum();
    assert!(received >= 100, "{received}");
}

#[tokio::test]
async fn a_recovered_instance_returns_after_one_probe() {
    support::trace_init();
    let s = servers(&["a", "b"]).await;
    let accrual = FailureAccrual::default().ejection_backoff(Backoff::new(
        Duration::from_millis(200),
        Duration::from_secs(1),
    ));
    let builder = BalancedChannel::builder("echo").failure_accrual(accrual);
    let (_feed, channel) = channel_over(builder, &s).await;
    slow(&s[1..]);
    s[0].service().fail_with(Some(Code::Unavailable));
    eventually(WAIT, "a ejected", || async {
        load(&channel, 8, 5).await;
        ejected(&channel) == ["a"]
    })
    .await;
    s[0].service().fail_with(None);
    let served_before = s[0].service().served();
    eventually(WAIT, "a back in service", || async {
        let _ = call(&channel).await;
        state(&channel, "a") == Some(EndpointState::Ready)
    })
    .await;
    assert!(
        s[0].service().served() > served_before,
        "the probe was served"
    );
    // Back in service, it takes its share again.
    eventually(WAIT, "a serving again", || async {
        call(&channel).await.is_ok_and(|id| id == "a")
    })
    .await;
}

#[tokio::test]
async fn a_failure_in_the_trailers_counts() {
    support::trace_init();
    let s = servers(&["a", "b"]).await;
    let builder = BalancedChannel::builder("echo").failure_accrual(no_probe());
    let (_feed, channel) = channel_over(builder, &s).await;
    s[0].service().fail_with(Some(Code::Unavailable));
    // `b`'s streams stay open 50 ms, `a`'s end at once with the failure in the
    // trailers: under concurrent streams `a` keeps getting some.
    let stream = |channel: BalancedChannel, interval_ms| async move {
        let mut client = EchoClient::new(channel);
        let request = tonic_discovery_testkit::pb::EchoStreamRequest {
            message: b"x".to_vec(),
            count: 2,
            interval_ms,
        };
        let mut failed_in_trailers = false;
        if let Ok(reply) = client.echo_stream(request).await {
            let mut stream = reply.into_inner();
            loop {
                match stream.message().await {
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(status) => {
                        failed_in_trailers = status.code() == Code::Unavailable;
                        break;
                    }
                }
            }
        }
        failed_in_trailers
    };
    let trailer_failures = std::sync::atomic::AtomicUsize::new(0);
    eventually(WAIT, "a ejected on stream failures", || async {
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..8 {
            set.spawn(stream(channel.clone(), 50));
        }
        while let Some(done) = set.join_next().await {
            let failed = usize::from(done.expect("join"));
            trailer_failures.fetch_add(failed, std::sync::atomic::Ordering::Relaxed);
        }
        ejected(&channel) == ["a"]
    })
    .await;
    let trailer_failures = trailer_failures.into_inner();
    assert!(trailer_failures >= 5, "{trailer_failures}");
}

#[tokio::test]
async fn expired_deadlines_count_only_when_asked() {
    support::trace_init();
    for (codes, want) in [
        (vec![Code::Unavailable], EndpointState::Ready),
        (
            vec![Code::Unavailable, Code::DeadlineExceeded],
            EndpointState::Ejected,
        ),
    ] {
        let s = servers(&["a", "b"]).await;
        // One counted failure ejects, so a single expired call on `a` decides.
        let accrual = no_probe()
            .consecutive_failures(1)
            .without_failure_rate()
            .failure_codes(codes.clone());
        let builder = BalancedChannel::builder("echo")
            .failure_accrual(accrual)
            .timeout(Duration::from_millis(50));
        let (_feed, channel) = channel_over(builder, &s).await;
        let _hold = s[0].service().hold();
        s[1].service().set_delay(Duration::from_millis(30));
        // Held calls on `a` time out (the channel's 50 ms deadline); `b` answers in
        // 30 ms, so under load `a` keeps getting calls.
        for _ in 0..20 {
            load(&channel, 8, 2).await;
            if state(&channel, "a") == Some(want) && want == EndpointState::Ejected {
                break;
            }
        }
        assert!(s[0].service().received() >= 1, "no call reached a");
        assert_eq!(state(&channel, "a"), Some(want), "failure codes {codes:?}");
    }
}

#[tokio::test]
async fn an_endpoint_at_the_servers_stream_limit_is_not_ready() {
    support::trace_init();
    let server = TestEchoServer::builder("a")
        .max_concurrent_streams(1)
        .start()
        .await
        .expect("server");
    let builder = BalancedChannel::builder("echo").failfast_timeout(Duration::from_millis(300));
    let (_feed, channel) = channel_over(builder, std::slice::from_ref(&server)).await;
    let hold = server.service().hold();
    let first = tokio::spawn({
        let channel = channel.clone();
        async move { call(&channel).await }
    });
    eventually(WAIT, "the first call at the server", || async {
        server.service().received() == 1
    })
    .await;
    // The server allows one stream: the second call must not queue on the connection
    // behind the first, but wait for the endpoint's stream, past the fail-fast
    // timeout (the endpoint is busy, not gone).
    let mut second = tokio::spawn({
        let channel = channel.clone();
        async move { call(&channel).await }
    });
    let waited = tokio::time::timeout(Duration::from_millis(600), &mut second).await;
    assert!(waited.is_err(), "the second call did not wait: {waited:?}");
    assert_eq!(server.service().received(), 1, "queued on the connection");
    let open = channel.endpoints()[0].open_streams();
    assert_eq!(open, 1);
    drop(hold);
    assert_eq!(first.await.expect("join").expect("first call"), "a");
    let second = tokio::time::timeout(WAIT, second).await.expect("served");
    assert_eq!(second.expect("join").expect("second call"), "a");
    assert_eq!(call(&channel).await.expect("capacity again"), "a");
}

#[tokio::test]
async fn refused_streams_are_resent_to_another_instance() {
    support::trace_init();
    let refusing = H2FaultServer::start("r").expect("h2 server");
    let healthy = TestEchoServer::start("h").await.expect("server");
    let (feed, disc) = discovery();
    let channel = BalancedChannel::builder("echo")
        .build(disc)
        .expect("settings");
    feed.insert_at("r", refusing.addr());
    feed.insert(&healthy);
    eventually(WAIT, "both ready", || async {
        balance_util::all_ready(&channel, 2)
    })
    .await;
    refusing.refuse_next(8);
    let answers = calls(&channel, 200).await;
    assert_eq!(
        count(&answers, "r") + count(&answers, "h"),
        200,
        "{answers:?}"
    );
    assert!(refusing.refused() > 0, "the test did not refuse any call");
}

#[tokio::test]
async fn without_resends_a_refused_call_fails() {
    support::trace_init();
    let refusing = H2FaultServer::start("r").expect("h2 server");
    let (feed, disc) = discovery();
    let channel = BalancedChannel::builder("echo")
        .max_resends(0)
        .build(disc)
        .expect("settings");
    feed.insert_at("r", refusing.addr());
    eventually(WAIT, "ready", || async {
        balance_util::all_ready(&channel, 1)
    })
    .await;
    refusing.refuse_next(1);
    // No copy of the request is kept, so the refusal reaches the caller.
    let status = call(&channel).await.expect_err("refused");
    assert_eq!(refusing.refused(), 1);
    assert_ne!(status.code(), Code::Ok);
    assert_eq!(call(&channel).await.expect("next call"), "r");
}

#[tokio::test]
async fn streams_above_a_goaways_last_stream_id_are_resent() {
    support::trace_init();
    let server = H2FaultServer::start("g").expect("h2 server");
    let healthy = TestEchoServer::start("h").await.expect("server");
    server.goaway_after(Some(3));
    let (feed, disc) = discovery();
    let channel = BalancedChannel::builder("echo")
        .build(disc)
        .expect("settings");
    feed.insert_at("g", server.addr());
    feed.insert(&healthy);
    eventually(WAIT, "both ready", || async {
        balance_util::all_ready(&channel, 2)
    })
    .await;
    // Concurrent calls so that streams are open above the GOAWAY's last stream id.
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let channel = channel.clone();
        tasks.spawn(async move { calls(&channel, 25).await });
    }
    let mut failed = 0;
    while let Some(done) = tasks.join_next().await {
        let answers = done.expect("join");
        failed += answers
            .iter()
            .filter(|(k, _)| *k != "g" && *k != "h")
            .map(|(_, n)| n)
            .sum::<usize>();
    }
    assert_eq!(failed, 0);
    assert!(server.goaways() > 0, "no GOAWAY was sent");
}

#[tokio::test]
async fn max_connection_age_costs_no_call() {
    support::trace_init();
    let mut s = Vec::new();
    for id in ["a", "b", "c"] {
        let server = TestEchoServer::builder(id)
            .max_connection_age(Duration::from_millis(200))
            .start()
            .await
            .expect("server");
        s.push(server);
    }
    let (_feed, channel) = channel_over(BalancedChannel::builder("echo"), &s).await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let channel = channel.clone();
        tasks.spawn(async move { calls(&channel, 250).await });
    }
    let mut total = HashMap::new();
    while let Some(done) = tasks.join_next().await {
        for (k, n) in done.expect("join") {
            *total.entry(k).or_insert(0) += n;
        }
    }
    let served: usize = ["a", "b", "c"].iter().map(|id| count(&total, id)).sum();
    assert_eq!(served, 2_000, "{total:?}");
    let reconnects: u64 = s.iter().map(TestEchoServer::accepted_connections).sum();
    assert!(reconnects > 3, "the servers never closed a connection");
}

#[tokio::test]
async fn a_frozen_instance_is_declared_dead_by_keep_alive() {
    support::trace_init();
    let s = servers(&["a", "b", "c"]).await;
    let builder = BalancedChannel::builder("echo")
        .http2_keep_alive_interval(Duration::from_millis(300))
        .keep_alive_timeout(Duration::from_millis(300));
    let (_feed, channel) = channel_over(builder, &s).await;
    s[0].freeze();
    // Calls spread until `a` is seen to hold them; the ones on `a` must end by
    // keep-alive, not hang.
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..6 {
        let channel = channel.clone();
        tasks.spawn(async move { call(&channel).await });
    }
    // Every call ends (none hangs on the frozen connection); those that were on it
    // end by keep-alive with `Unavailable`.
    while let Some(done) = tasks.join_next().await {
        match done.expect("join") {
            Ok(id) => assert_ne!(id, "a"),
            Err(status) => assert_eq!(status.code(), Code::Unavailable, "{status:?}"),
        }
    }
    eventually(WAIT, "a out of the ready set", || async {
        state(&channel, "a") != Some(EndpointState::Ready)
    })
    .await;
    let answers = calls(&channel, 50).await;
    assert_eq!(
        count(&answers, "b") + count(&answers, "c"),
        50,
        "{answers:?}"
    );
    s[0].thaw();
}

#[tokio::test]
async fn a_metadata_change_keeps_the_connection() {
    support::trace_init();
    let s = servers(&["a"]).await;
    let (feed, channel) = channel_over(BalancedChannel::builder("echo"), &s).await;
    assert_eq!(call(&channel).await.expect("call"), "a");
    // The same instance again, with a tag, metadata and a weight: no new connection.
    let addr = s[0].addr();
    let changed =
        tonic_discovery::Instance::new(balance_util::key("a"), addr.ip().to_string(), addr.port())
            .with_tags(vec!["v2".into()])
            .with_meta([("zone".to_owned(), "b".to_owned())].into())
            .with_weight(3);
    feed.insert_instance(changed);
    assert_eq!(call(&channel).await.expect("call"), "a");
    assert_eq!(s[0].accepted_connections(), 1);
    assert_eq!(state(&channel, "a"), Some(EndpointState::Ready));
    // A new address is a new endpoint.
    let other = TestEchoServer::start("a2").await.expect("server");
    feed.insert_at("a", other.addr());
    eventually(WAIT, "the moved instance answers", || async {
        call(&channel).await.is_ok_and(|id| id == "a2")
    })
    .await;
}

#[tokio::test]
async fn the_callers_own_errors_never_count_against_the_instance() {
    support::trace_init();
    let s = servers(&["a", "b"]).await;
    let accrual = no_probe().consecutive_failures(1);
    let builder = BalancedChannel::builder("echo").failure_accrual(accrual);
    let (_feed, channel) = channel_over(builder, &s).await;
    // The client refuses to encode its own message: its request body fails.
    for _ in 0..20 {
        let mut client = EchoClient::new(channel.clone()).max_encoding_message_size(8);
        let err = client
            .echo(EchoRequest {
                message: vec![0; 64],
            })
            .await
            .expect_err("too large to send");
        assert_ne!(err.code(), Code::Ok);
    }
    assert!(ejected(&channel).is_empty(), "{:?}", channel.endpoints());
    assert_eq!(calls(&channel, 10).await.values().sum::<usize>(), 10);
}

#[tokio::test]
async fn bad_settings_fail_at_build_naming_the_setting() {
    let (_feed, disc) = discovery();
    let err = BalancedChannel::builder("echo")
        .failure_accrual(FailureAccrual::default().max_ejected_fraction(1.5))
        .build(disc)
        .expect_err("fraction above 1");
    assert!(err.is_config(), "{err}");
    assert!(err.to_string().contains("max_ejected_fraction"), "{err}");

    let (_feed, disc) = discovery();
    let err = BalancedChannel::builder("echo")
        .retry_budget(RetryBudget::new(0.2, 10, Duration::from_secs(600)))
        .build(disc)
        .expect_err("ttl above 60 s");
    assert!(err.is_config() && err.to_string().contains("ttl"), "{err}");

    let (_feed, disc) = discovery();
    let err = BalancedChannel::builder("echo")
        .failure_accrual(FailureAccrual::default().consecutive_failures(0))
        .build(disc)
        .expect_err("zero threshold");
    assert!(err.to_string().contains("consecutive_failures"), "{err}");
}

#[tokio::test]
async fn a_request_with_a_body_above_the_replay_limit_still_goes_through() {
    support::trace_init();
    let s = servers(&["a"]).await;
    let (_feed, channel) = channel_over(BalancedChannel::builder("echo"), &s).await;
    let mut client = EchoClient::new(channel.clone());
    let big = vec![7u8; 200 * 1024];
    let reply = client
        .echo(EchoRequest {
            message: big.clone(),
        })
        .await
        .expect("call");
    assert_eq!(reply.into_inner().message, big);
}
