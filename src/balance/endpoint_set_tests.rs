//! The worker's endpoint set, over in-memory HTTP/2 connections and a paused clock.

use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::sync::mpsc;

use super::*;
use crate::balance::config::EndpointConfig;
use crate::balance::endpoint::ConnectFuture;
use crate::balance::stats::EndpointStats;
use crate::{Backoff, Instance};

const MS: Duration = Duration::from_millis(1);

/// How a test endpoint's connects go.
#[derive(Clone, Copy)]
enum Connects {
    /// Refused at once.
    Refused,
    /// To an in-process HTTP/2 server that takes streams and answers none.
    Served,
}

/// An endpoint at `addr`, reconnecting after `backoff`; counts its connects in
/// `attempts`.
fn endpoint(
    addr: &str,
    backoff: Duration,
    connects: Connects,
    attempts: &Arc<AtomicUsize>,
) -> Endpoint {
    let config = EndpointConfig {
        reconnect_backoff: Backoff::new(backoff, backoff),
        ..EndpointConfig::default()
    };
    let instance = Instance::new(InstanceKey::new("n", addr), "127.0.0.1", 1);
    let (closed, _) = mpsc::unbounded_channel();
    let stats = EndpointStats::detached(&instance);
    let mut endpoint =
        Endpoint::new(&instance, Arc::new(config), stats.clone(), closed).expect("endpoint");
    let attempts = attempts.clone();
    endpoint.mock_connect = Some(Arc::new(move || -> ConnectFuture {
        attempts.fetch_add(1, Ordering::Relaxed);
        let stats = stats.clone();
        match connects {
            Connects::Refused => Box::pin(async { Err("connection refused".into()) }),
            Connects::Served => Box::pin(async move {
                let (client, server) = tokio::io::duplex(16 * 1024);
                tokio::spawn(async move {
                    let Ok(mut conn) = h2::server::handshake::<_>(server).await else {
                        return;
                    };
                    let mut held = Vec::new();
                    while let Some(Ok(stream)) = conn.accept().await {
                        held.push(stream);
                    }
                });
                let (send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
                    .timer(TokioTimer::new())
                    .handshake(TokioIo::new(client))
                    .await?;
                tokio::spawn(conn);
                stats.set_max_streams(100);
                Ok(send)
            }),
        }
    }));
    endpoint
}

fn key(addr: &str) -> InstanceKey {
    InstanceKey::new("n", addr)
}

/// A waker that counts its wakes.
#[derive(Default)]
struct Counting(AtomicUsize);

impl Wake for Counting {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// Polls `set` until `done` holds, letting the connections' tasks run in between
/// (1,000 rounds of 1 ms of paused time at most).
async fn poll_until(set: &mut EndpointSet, what: &str, mut done: impl FnMut(&EndpointSet) -> bool) {
    let waker = Waker::noop();
    for _ in 0..1000 {
        set.poll_woken(&mut Context::from_waker(waker));
        if done(set) {
            return;
        }
        tokio::time::sleep(MS).await;
    }
    panic!("{what}: not within 1,000 rounds");
}

/// Every ready endpoint's recorded position is where it is.
fn assert_positions(set: &EndpointSet) {
    for i in 0..set.ready_len() {
        let (key, _) = set.get_ready_index(i).expect("a ready endpoint");
        assert_eq!(set.ready_index(key), Some(i), "position of {key}");
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_wake_up_polls_only_the_endpoints_that_asked_and_wakes_the_worker() {
    let mut set = EndpointSet::default();
    let (fast, slow) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    set.push(
        key("fast"),
        endpoint("fast", 100 * MS, Connects::Refused, &fast),
    );
    set.push(
        key("slow"),
        endpoint("slow", 1000 * MS, Connects::Refused, &slow),
    );
    let worker = Arc::new(Counting::default());
    let waker = Waker::from(worker.clone());
    let mut cx = Context::from_waker(&waker);
    // Pushed endpoints are polled at the next poll: each makes its first connect.
    set.poll_woken(&mut cx);
    assert_eq!(
        (fast.load(Ordering::Relaxed), slow.load(Ordering::Relaxed)),
        (1, 1)
    );
    assert_eq!(set.ready_len(), 0);
    // Nothing woke them: the next poll polls none of them.
    assert!(set.woken.queue.lock().unwrap().is_empty());
    set.poll_woken(&mut cx);
    assert_eq!(worker.0.load(Ordering::Relaxed), 0);
    // The fast one's backoff ends: its waker queues it and wakes the worker.
    tokio::time::sleep(100 * MS).await;
    assert_eq!(worker.0.load(Ordering::Relaxed), 1);
    assert_eq!(set.woken.queue.lock().unwrap().len(), 1);
    set.poll_woken(&mut cx);
    assert_eq!(
        (fast.load(Ordering::Relaxed), slow.load(Ordering::Relaxed)),
        (2, 1)
    );
    tokio::time::sleep(900 * MS).await;
    set.poll_woken(&mut cx);
    assert_eq!(slow.load(Ordering::Relaxed), 2);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn ready_positions_follow_readiness_calls_and_evictions() {
    let mut set = EndpointSet::default();
    let attempts = Arc::new(AtomicUsize::new(0));
    let addrs = ["a", "b", "c", "d", "e"];
    for addr in addrs {
        set.push(
            key(addr),
            endpoint(addr, 100 * MS, Connects::Served, &attempts),
        );
    }
    poll_until(&mut set, "all five ready", |set| set.ready_len() == 5).await;
    assert_eq!(set.len(), 5);
    assert_positions(&set);

    // An ejected endpoint leaves the ready set when re-checked; the last one takes
    // its position.
    let index = set.ready_index(&key("b")).expect("b ready");
    let (_, b) = set.get_ready_index(index).expect("b");
    b.stats().eject();
    let mut cx = Context::from_waker(Waker::noop());
    assert!(!set.check_ready_index(&mut cx, index));
    assert_eq!(set.ready_index(&key("b")), None);
    assert_eq!(set.ready_len(), 4);
    assert_positions(&set);

    // A called endpoint leaves the ready set until the next poll, which finds it
    // ready again (its connection takes more streams).
    let index = set.ready_index(&key("d")).expect("d ready");
    let (_, d) = set.get_ready_index(index).expect("d");
    assert!(d.stats().try_reserve_stream());
    let request = http::Request::builder()
        .uri("/echo.v1.Echo/Say")
        .body(Body::empty())
        .expect("a request");
    let _call = set.call_ready_index(index, request);
    assert_eq!(set.ready_index(&key("d")), None);
    assert_positions(&set);
    set.poll_woken(&mut cx);
    assert!(set.ready_index(&key("d")).is_some(), "d ready again");
    assert_positions(&set);

    // Evicting ready and pending endpoints; a key pushed again takes a freed slot.
    assert!(set.evict(&key("a")));
    assert!(set.evict(&key("b")));
    assert!(!set.evict(&key("b")));
    assert_eq!((set.len(), set.ready_len()), (3, 3));
    assert_positions(&set);
    let slots = set.slots.len();
    set.push(
        key("a"),
        endpoint("a", 100 * MS, Connects::Served, &attempts),
    );
    assert_eq!(set.slots.len(), slots, "a freed slot is reused");
    poll_until(&mut set, "a ready again", |set| {
        set.ready_index(&key("a")).is_some()
    })
    .await;
    assert_eq!((set.len(), set.ready_len()), (4, 4));
    assert_positions(&set);

    // A call at an index no longer there fails; it does not panic.
    let request = http::Request::new(Body::empty());
    let error = set
        .call_ready_index(99, request)
        .await
        .err()
        .expect("an error");
    assert!(error.to_string().contains("no ready endpoint"), "{error}");
}
