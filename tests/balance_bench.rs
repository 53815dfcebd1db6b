//! A quick measurement of the balanced channel against a plain tonic `Channel`.
//! Ignored by default; run it in release mode:
//!
//! ```text
//! cargo test --release --all-features --test balance_bench -- --ignored --nocapture
//! ```
//!
//! Servers are in-process `TestEchoServer`s (one thread and runtime each) on
//! loopback, so client and servers share the machine's cores.
//!
//! Measured 2026-11-26 on the 2-core build machine while other builds ran (load
//! average about 3.5, so treat differences under ~30% as noise), two rounds:
//!
//! | config | c=1 p50 µs | c=64 req/s |
//! |---|---|---|
//! | plain tonic `Channel` -> 1 | 75 / 84 | 30.8k / 38.5k |
//! | `BalancedChannel` -> 1 | 85 / 121 | 38.3k / 57.2k |
//! | `BalancedChannel` -> 3 | 102 / 99 | 47.1k / 54.7k |
//!
//! Killing one of three servers under 16 closed-loop callers: 7 failed calls in
//! total (those in flight at the kill), the endpoint out of the ready set 0.6 ms
//! after `kill()` returned, no failure afterwards.

mod balance_util;
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use balance_util::{all_ready, discovery};
use support::eventually;
use tokio::time::Instant;
use tonic::transport::Channel;
use tonic_discovery::balance::BalancedChannel;
use tonic_discovery::testkit::TestEchoServer;
use tonic_discovery::testkit::pb::EchoRequest;
use tonic_discovery::testkit::pb::echo_client::EchoClient;
use tower::Service;

type Req = http::Request<tonic::body::Body>;

async fn echo<C>(client: &mut EchoClient<C>) -> bool
where
    C: tonic::client::GrpcService<tonic::body::Body>,
    C::Error: Into<tonic_discovery::BoxError>,
    C::ResponseBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    <C::ResponseBody as http_body::Body>::Error: Into<tonic_discovery::BoxError> + Send,
{
    let req = EchoRequest {
        message: vec![7; 64],
    };
    client.echo(req).await.is_ok()
}

async fn sequential<C>(channel: C, run: Duration) -> (Duration, Duration)
where
    C: Service<Req, Response = http::Response<tonic::body::Body>> + Clone + Send + 'static,
    C::Error: Into<tonic_discovery::BoxError>,
    C::Future: Send,
{
    let mut client = EchoClient::new(channel);
    let mut lat = Vec::new();
    let end = Instant::now() + run;
    while Instant::now() < end {
        let t = Instant::now();
        assert!(echo(&mut client).await);
        lat.push(t.elapsed());
    }
    lat.sort();
    (lat[lat.len() / 2], lat[lat.len() * 99 / 100])
}

async fn concurrent<C>(channel: C, c: usize, run: Duration) -> (f64, u64)
where
    C: Service<Req, Response = http::Response<tonic::body::Body>> + Clone + Send + 'static,
    C::Error: Into<tonic_discovery::BoxError>,
    C::Future: Send,
{
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, err) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut tasks = Vec::new();
    for _ in 0..c {
        let mut client = EchoClient::new(channel.clone());
        let (stop, ok, err) = (stop.clone(), ok.clone(), err.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let n = if echo(&mut client).await { &ok } else { &err };
                n.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    tokio::time::sleep(run).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("task");
    }
    let rate = ok.load(Ordering::Relaxed) as f64 / run.as_secs_f64();
    (rate, err.load(Ordering::Relaxed))
}

async fn balanced(servers: &[TestEchoServer]) -> (BalancedChannel, balance_util::Feeder) {
    let (feed, disc) = discovery();
    let channel = BalancedChannel::builder("echo").build(disc);
    servers.iter().for_each(|s| feed.insert(s));
    let n = servers.len();
    eventually(Duration::from_secs(5), "ready", || async {
        all_ready(&channel, n)
    })
    .await;
    (channel, feed)
}

async fn report<C>(name: &str, channel: C)
where
    C: Service<Req, Response = http::Response<tonic::body::Body>> + Clone + Send + 'static,
    C::Error: Into<tonic_discovery::BoxError>,
    C::Future: Send,
{
    concurrent(channel.clone(), 8, Duration::from_millis(500)).await; // warm-up
    let (p50, p99) = sequential(channel.clone(), Duration::from_secs(3)).await;
    let (rate, errors) = concurrent(channel, 64, Duration::from_secs(3)).await;
    println!(
        "{name:<28} c=1 p50 {:>4} µs  p99 {:>4} µs | c=64 {rate:>7.0} req/s, {errors} errors",
        p50.as_micros(),
        p99.as_micros()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; run in release with --ignored --nocapture"]
async fn overhead_against_a_plain_channel() {
    support::trace_init();
    let s: Vec<_> = futures_util::future::join_all(["s0", "s1", "s2"].map(TestEchoServer::start))
        .await
        .into_iter()
        .map(|s| s.expect("server"))
        .collect();
    for round in 0..2 {
        println!("round {round}");
        let plain = Channel::from_shared(format!("http://{}", s[0].addr()))
            .expect("uri")
            .connect()
            .await
            .expect("connect");
        report("plain Channel -> 1", plain).await;
        let (one, _f1) = balanced(&s[..1]).await;
        report("BalancedChannel -> 1", one).await;
        let (three, _f3) = balanced(&s).await;
        report("BalancedChannel -> 3", three).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; run in release with --ignored --nocapture"]
async fn errors_after_a_kill() {
    let mut s: Vec<_> =
        futures_util::future::join_all(["k0", "k1", "k2"].map(TestEchoServer::start))
            .await
            .into_iter()
            .map(|s| s.expect("server"))
            .collect();
    let (channel, _feed) = balanced(&s).await;
    let load = tokio::spawn(concurrent(channel.clone(), 16, Duration::from_secs(4)));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let killed_at = Instant::now();
    s.remove(0).kill().await;
    eventually(Duration::from_secs(1), "k0 not ready", || async {
        !all_ready(&channel, 3)
    })
    .await;
    let out_after = killed_at.elapsed();
    let (rate, errors) = load.await.expect("load");
    println!(
        "kill under c=16: {rate:.0} req/s ok, {errors} errors in total, k0 out of the ready set {} µs after kill() returned",
        out_after.as_micros()
    );
}
