//! The balanced channel when things go wrong: killed servers, reconnects, an empty
//! set, discovery errors and end, a dead worker, a full queue, request deadlines.

mod balance_util;
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use balance_util::{all_ready, call, discovery, state};
use support::eventually;
use tonic::Code;
use tonic_discovery::Backoff;
use tonic_discovery::balance::{BalancedChannel, EndpointState};
use tonic_discovery_testkit::TestEchoServer;

const WAIT: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_server_leaves_the_ready_set_under_load() {
    support::trace_init();
    let a = TestEchoServer::start("a").await.expect("a");
    let b = TestEchoServer::start("b").await.expect("b");
    let (feed, disc) = discovery();
    let channel = BalancedChannel::builder("echo")
        .build(disc)
        .expect("valid balancer settings");
    feed.insert(&a);
    feed.insert(&b);
    eventually(WAIT, "two ready endpoints", || async {
        all_ready(&channel, 2)
    })
    .await;

    // Steady traffic while b dies without deregistering.
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let load = tokio::spawn({
        let (channel, stop, errors) = (channel.clone(), stop.clone(), errors.clone());
        async move {
            while !stop.load(Ordering::Relaxed) {
                if call(&channel).await.is_err() {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    });
    b.kill().await;
    let killed = tokio::time::Instant::now();
    eventually(WAIT, "b out of the ready set", || async {
        state(&channel, "b") != Some(EndpointState::Ready)
    })
    .await;
    eprintln!(
        "b out of the ready set {:?} after the kill",
        killed.elapsed()
    );
    // From now on no request may fail: b is not picked while it is down.
    let errors_at_exit = errors.load(Ordering::Relaxed);
    for _ in 0..200 {
        assert_eq!(call(&channel).await.expect("call after b left"), "a");
    }
    stop.store(true, Ordering::Relaxed);
    load.await.expect("load task");
    assert_eq!(
        errors.load(Ordering::Relaxed),
        errors_at_exit,
        "errors after b left"
    );
    let b_state = state(&channel, "b").expect("b stays listed until discovery removes it");
    assert_ne!(b_state, EndpointState::Ready);
}

#[tokio::test]
async fn killed_server_leaves_the_ready_set_while_idle() {
    support::trace_init();
    let a = TestEchoServer::start("a").await.expect("a");
    let (feed, disc) = discovery();
    let channel = BalancedChannel::builder("echo")
        .build(disc)
        .expect("valid balancer settings");
    feed.insert(&a);
    eventually(WAIT, "a ready", || async { all_ready(&channel, 1) }).await;
    a.kill().await;
    let killed = tokio::time::Instant::now();
    // No request is sent and no keep-alive is configured: the closed connection
    // alone must take a out.
    eventually(WAIT, "a out of the ready set", || async {
        state(&channel, "a") != Some(EndpointState::Ready)
    })
    .await;
    eprintln!(
        "a out of the ready set {:?} after the kill",
        killed.elapsed()
    );
}

#[tokio::test]
async fn endpoint_comes_back_after_its_server_restarts() {
    support::trace_init();
    let a = TestEchoServer::start("a").await.expect("a");
    let addr = a.addr();
    let (feed, disc) = discovery();
    let backoff = Backoff::new(Duration::from_millis(10), Duration::from_millis(50));
    let channel = BalancedChannel::builder("echo")
        .reconnect_backoff(backoff)
        .build(disc)
        .expect("valid balancer settings");
    feed.insert_at("a", addr);
    eventually(WAIT, "a ready", || async { all_ready(&channel, 1) }).await;
    a.kill().await;
    eventually(WAIT, "a backing off", || async {
        state(&channel, "a") == Some(EndpointState::Backoff)
    })
    .await;

    let again = TestEchoServer::start_on(addr, "a")
        .await
        .expect("restart on the same port");
    eventually(WAIT, "a ready again", || async { all_ready(&channel, 1) }).await;
    assert_eq!(call(&channel).await.expect("call"), "a");
    assert_eq!(again.service().served(), 1);
}

/// A port that accepts connections and closes them at once, before any HTTP/2 frame
/// (a process crashing as it starts, a proxy with nothing behind it): the client's
/// handshake (its preface written) succeeds, then the connection ends before the
/// server's SETTINGS. The
/// endpoint must notice, back off and reconnect, not sit connected with no stream to
/// offer.
#[tokio::test]
async fn a_connection_closed_before_the_servers_settings_is_retried() {
    use tokio::io::AsyncReadExt;
    support::trace_init();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accepted = Arc::new(AtomicU64::new(0));
    let acceptor = tokio::spawn({
        let accepted = accepted.clone();
        async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                accepted.fetch_add(1, Ordering::Relaxed);
                // Closed once the client's preface is in: its handshake is done.
                let mut preface = [0u8; 24];
                let _ = tcp.read_exact(&mut preface).await;
                drop(tcp);
            }
        }
    });
    let (feed, disc) = discovery();
    let backoff = Backoff::new(Duration::from_millis(10), Duration::from_millis(50));
    let channel = BalancedChannel::builder("echo")
        .reconnect_backoff(backoff)
        .build(disc)
        .expect("valid balancer settings");
    feed.insert_at("a", addr);
    eventually(
        WAIT,
        "three connects to a port that closes them",
        || async { accepted.load(Ordering::Relaxed) >= 3 },
    )
    .await;
    assert_ne!(state(&channel, "a"), Some(EndpointState::Ready));
    acceptor.abort();
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn empty_set_fails_with_unavailable_after_the_failfast_timeout() {
    support::trace_init();
    let (_feed, disc) = discovery();
    let channel = BalancedChannel::builder("echo")
        .failfast_timeout(Duration::from_secs(3))
        .build(disc)
        .expect("valid balancer settings");
    let start = tokio::time::Instant::now();
    let status = call(&channel).await.expect_err("no instance");
    assert_eq!(status.code(), Code::Unavailable);
    assert!(status.message().contains("`echo`"), "{}", status.message());
    assert!(
        start.elapsed() >= Duration::from_secs(3),
        "failed before the timeout"
    );
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "waited past the timeout"
    );

    // In fail-fast, the next request fails at once.
    let start = tokio::time::Instant::now();
    let status = call(&channel).await.expect_err("still no instance");
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn request_timeout_covers_time_spent_waiting_for_an_instance() {
    support::trace_init();
    let (_feed, disc) = discovery();
    let channel = BalancedChannel::builder("echo")
        .failfast_timeout(Duration::from_secs(60))
        .timeout(Duration::from_secs(1))
        .build(disc)
        .expect("valid balancer settings");
    let start = tokio::time::Instant::now();
    let status = call(&channel).await.expect_err("deadline");
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert_eq!(start.elapsed(), Duration::from_secs(1));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_shorter_grpc_timeout_on_the_request_wins() {
    use tonic_discovery_testkit::pb::{EchoRequest, echo_client::EchoClient};
    support::trace_init();
    let (_feed, disc) = discovery();
    let channel = BalancedChannel::builder("echo")
        .failfast_timeout(Duration::from_secs(60))
        .timeout(Duration::from_secs(10))
        .build(disc)
        .expect("valid balancer settings");
    let mut request = tonic::Request::new(EchoRequest::default());
    request.set_timeout(Duration::from_millis(250));
    let start = tokio::time::Instant::now();
    let status = EchoClient::new(channel)
        .echo(request)
        .await
        .expect_err("deadline");
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert_eq!(start.elapsed(), Duration::from_millis(250));
}

#[tokio::test]
async fn fails_fast_then_recovers_when_an_instance_appears() {
    support::trace_init();
    let (feed, disc) = discovery();
    let channel = BalancedChannel::builder("echo")
        .failfast_timeout(Duration::from_millis(50))
        .build(disc)
        .expect("valid balancer settings");
    let status = call(&channel).await.expect_err("empty");
    assert_eq!(status.code(), Code::Unavailable);
    let a = TestEchoServer::start("a").await.expect("a");
    feed.insert(&a);
    eventually(WAIT, "a ready", || async { all_ready(&channel, 1) }).await;
    assert_eq!(call(&channel).await.expect("call after recovery"), "a");
}

#[tokio::test]
async fn discovery_errors_and_end_do_not_break_the_channel() {
    support::trace_init();
    let a = TestEchoServer::start("a").await.expect("a");
    let (feed, disc) = discovery();
    let channel = BalancedChannel::builder("echo")
        .build(disc)
        .expect("valid balancer settings");
    feed.error("registry unreachable");
    feed.insert(&a);
    feed.error("registry unreachable again");
    eventually(WAIT, "a ready", || async { all_ready(&channel, 1) }).await;
    assert_eq!(call(&channel).await.expect("call after errors"), "a");
    drop(feed);
    for _ in 0..10 {
        assert_eq!(
            call(&channel).await.expect("call after discovery ended"),
            "a"
        );
    }
    assert!(
        all_ready(&channel, 1),
        "the set is kept after discovery ends"
    );
}

#[tokio::test]
async fn calls_fail_clearly_when_the_worker_is_gone() {
    support::trace_init();
    let (_feed, disc) = discovery();
    let (channel, worker) = BalancedChannel::builder("echo")
        .build_with_worker(disc)
        .expect("valid balancer settings");
    drop(worker);
    let status = call(&channel).await.expect_err("no worker");
    assert_eq!(status.code(), Code::Unavailable);
    assert!(
        status.message().contains("has ended"),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn the_queue_is_bounded() {
    use tower::Service;
    let (_feed, disc) = discovery();
    // The worker is never run, so nothing leaves the queue.
    let (channel, _worker) = BalancedChannel::builder("echo")
        .buffer_size(2)
        .build_with_worker(disc)
        .expect("valid balancer settings");
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut c = channel.clone();
        std::future::poll_fn(|cx| c.poll_ready(cx))
            .await
            .expect("slot");
        held.push(c.call(http::Request::new(tonic::body::Body::empty())));
    }
    let mut third = channel.clone();
    let mut ready = tokio_test::task::spawn(std::future::poll_fn(|cx| third.poll_ready(cx)));
    tokio_test::assert_pending!(ready.poll());
    drop(held);
}
