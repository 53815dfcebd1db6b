//! Keep-alive against servers that police PINGs as gRPC servers do: long silent calls
//! and sparse streams succeed with the defaults, a frozen server is still found out
//! within interval + timeout, and a server configured stricter than the defaults
//! closes the connection with `GOAWAY(ENHANCE_YOUR_CALM)`.
//!
//! The servers run on the test's runtime with the clock paused, so ten minutes of
//! silence take no time.

mod balance_util;
mod support;

use std::time::Duration;

use balance_util::{call, discovery};
use tokio::time::Instant;
use tonic::Code;
use tonic_discovery::balance::BalancedChannel;
use tonic_discovery_testkit::pb::EchoStreamRequest;
use tonic_discovery_testkit::pb::echo_client::EchoClient;
use tonic_discovery_testkit::{PingPolicy, PolicingServer};

const MINUTE: Duration = Duration::from_secs(60);

async fn policing(id: &str) -> (PolicingServer, BalancedChannel, balance_util::Feeder) {
    let server = PolicingServer::start(id, PingPolicy::default())
        .await
        .expect("server starts");
    let (feed, disc) = discovery();
    feed.insert_at(id, server.addr());
    let channel = BalancedChannel::builder("echo")
        .timeout(Duration::from_secs(3600))
        .build(disc)
        .expect("valid settings");
    // One quick call: the connection is up and the server has answered.
    assert_eq!(call(&channel).await.expect("first call"), id);
    (server, channel, feed)
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_unary_call_silent_for_ten_minutes_succeeds_with_the_defaults() {
    support::trace_init();
    let (server, channel, _feed) = policing("quiet-1").await;
    server.reply_after(10 * MINUTE);
    let start = Instant::now();
    assert_eq!(call(&channel).await.expect("answered"), "quiet-1");
    assert!(start.elapsed() >= 10 * MINUTE);
    // The connection was checked while the call waited, within the policy.
    assert!(server.pings() >= 2, "pings: {}", server.pings());
    assert_eq!(server.too_many_pings(), 0);
    assert_eq!(server.accepted_connections(), 1);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_stream_with_a_message_every_four_minutes_lasts_twenty_minutes() {
    support::trace_init();
    let (server, channel, _feed) = policing("sparse-1").await;
    let mut stream = EchoClient::new(channel)
        .echo_stream(EchoStreamRequest {
            message: b"tick".to_vec(),
            count: 5,
            interval_ms: 4 * 60 * 1000,
        })
        .await
        .expect("stream opens")
        .into_inner();
    let mut received = 0;
    while let Some(reply) = stream.message().await.expect("no stream error") {
        assert_eq!(reply.instance_id, "sparse-1");
        received += 1;
    }
    assert_eq!(received, 5);
    // One PING in each silence once the connection is 5.5 minutes old.
    assert!(server.pings() >= 4, "pings: {}", server.pings());
    assert_eq!(server.too_many_pings(), 0);
    assert_eq!(server.accepted_connections(), 1);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_frozen_server_fails_its_calls_within_interval_and_timeout() {
    support::trace_init();
    let (server, channel, _feed) = policing("frozen-1").await;
    // Long enough for a PING to be due since the first call's answer.
    tokio::time::sleep(MINUTE).await;
    server.freeze();
    let start = Instant::now();
    let status = call(&channel).await.expect_err("nothing answers");
    let waited = start.elapsed();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    // Default interval 10 s + timeout 5 s after the call was sent.
    assert!(waited <= Duration::from_secs(15), "failed after {waited:?}");
    assert!(waited >= Duration::from_secs(10), "failed after {waited:?}");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn new_calls_on_a_silent_connection_are_checked_and_the_policy_holds() {
    support::trace_init();
    let (server, channel, _feed) = policing("busy-1").await;
    server.reply_after(12 * MINUTE);
    // Ten long calls opened a minute apart on the one connection: each is checked
    // while the strike budget lasts, and the server never closes the connection.
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let channel = channel.clone();
        calls.spawn(async move { call(&channel).await });
        tokio::time::sleep(MINUTE).await;
    }
    while let Some(answer) = calls.join_next().await {
        assert_eq!(answer.expect("task").expect("answered"), "busy-1");
    }
    assert_eq!(server.too_many_pings(), 0);
    assert_eq!(server.accepted_connections(), 1);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_stricter_server_closes_the_connection_and_the_channel_calms_down() {
    support::trace_init();
    let server = PolicingServer::start("strict-1", PingPolicy::default())
        .await
        .expect("server starts");
    let (feed, disc) = discovery();
    feed.insert_at("strict-1", server.addr());
    // The channel is told the servers permit a PING every second: this one does not.
    let channel = BalancedChannel::builder("echo")
        .timeout(Duration::from_secs(3600))
        .keep_alive_permit_time(Duration::from_secs(1))
        .build(disc)
        .expect("valid settings");
    assert_eq!(call(&channel).await.expect("first call"), "strict-1");
    server.reply_after(10 * MINUTE);
    let status = call(&channel).await.expect_err("the server goes away");
    // The call was processed (the GOAWAY names it), so it is not sent again.
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(server.too_many_pings(), 1);
    // The next connection PINGs half as often: the same call lasts twice as long
    // before the server's patience runs out again.
    let start = Instant::now();
    let _ = call(&channel).await.expect_err("still too many");
    assert_eq!(server.too_many_pings(), 2);
    assert!(
        start.elapsed() >= Duration::from_secs(60),
        "{:?}",
        start.elapsed()
    );
}
