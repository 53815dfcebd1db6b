//! Interop with a gRPC C-core server (Python `grpcio`), which polices PINGs with
//! `Chttp2PingAbusePolicy`: long silent calls succeed within its policy, and a channel
//! told the server permits more than it does is closed with
//! `GOAWAY(ENHANCE_YOUR_CALM, "too_many_pings")`.
//!
//! Needs `python3` with `grpcio` (`pip install grpcio`; `scripts/test.sh` installs it).
//! The server's minimum PING interval is scaled down to 2 s (from 5 minutes) so the
//! calls take seconds, and the channel's keep-alive with it.

mod balance_util;
mod support;

use std::process::Stdio;
use std::time::Duration;

use balance_util::{call, discovery};
use tokio::io::AsyncBufReadExt;
use tokio::process::{Child, Command};
use tonic::Code;
use tonic_discovery::balance::BalancedChannel;

/// The server's `grpc.http2.min_ping_interval_without_data_ms`.
const MIN_PING: Duration = Duration::from_secs(2);

/// Starts the C-core Echo server answering after `delay`; returns it and its port.
async fn grpcio_server(delay: Duration) -> (Child, u16) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/grpcio_echo.py");
    let mut child = Command::new("python3")
        .arg(script)
        .arg(delay.as_secs_f64().to_string())
        .arg(MIN_PING.as_millis().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 runs (install it: apt-get install python3)");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut line = String::new();
    let read = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::io::BufReader::new(stdout).read_line(&mut line),
    )
    .await;
    let port = match read {
        Ok(Ok(n)) if n > 0 => line.trim().parse().expect("the server prints its port"),
        _ => panic!(
            "the grpcio Echo server did not start: install grpcio (pip install grpcio) \
             and check `python3 {script} 1 2000`"
        ),
    };
    (child, port)
}

fn channel_to(port: u16, permit: Duration) -> (BalancedChannel, balance_util::Feeder) {
    let (feed, disc) = discovery();
    feed.insert_at("grpcio-1", ([127, 0, 0, 1], port).into());
    let channel = BalancedChannel::builder("echo")
        .http2_keep_alive_interval(Duration::from_millis(200))
        .keep_alive_timeout(Duration::from_secs(1))
        .keep_alive_permit_time(permit)
        .timeout(Duration::from_secs(60))
        .build(disc)
        .expect("valid settings");
    (channel, feed)
}

#[tokio::test]
async fn a_long_silent_call_succeeds_against_c_core() {
    support::trace_init();
    let (_server, port) = grpcio_server(Duration::from_secs(7)).await;
    let (channel, _feed) = channel_to(port, MIN_PING);
    // 7 s of silence: about 35 keep-alive intervals, 3 PINGs within the policy.
    call(&channel).await.expect("answered after 7 s");
}

#[tokio::test]
async fn c_core_closes_a_channel_that_pings_more_than_it_permits() {
    support::trace_init();
    let (_server, port) = grpcio_server(Duration::from_secs(7)).await;
    // Told the server permits a PING every 100 ms: a PING every 200 ms of silence.
    let (channel, _feed) = channel_to(port, Duration::from_millis(100));
    let status = call(&channel).await.expect_err("too many pings");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    // C-core fails the call with "Too many pings" before its GOAWAY.
    let text = format!("{status:?}").to_lowercase();
    assert!(
        text.contains("too many pings") || text.contains("too_many_pings"),
        "{status:?}"
    );
}
