//! The endpoint's connection state machine, with a mock connector and paused time.

use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tower::Service;

use super::{ConnectFuture, Endpoint};
use crate::balance::config::EndpointConfig;
use crate::balance::info::EndpointState;
use crate::balance::stats::EndpointStats;
use crate::{Backoff, Instance, InstanceKey};

const MS: Duration = Duration::from_millis(1);

/// An endpoint whose every connect attempt fails at once; returns the attempt times.
fn failing_endpoint(backoff: Backoff) -> (Endpoint, Arc<Mutex<Vec<Instant>>>) {
    let config = EndpointConfig {
        reconnect_backoff: backoff,
        ..EndpointConfig::default()
    };
    let instance = Instance::new(InstanceKey::new("n", "a"), "127.0.0.1", 1);
    let (tx, _rx) = mpsc::unbounded_channel();
    let stats = EndpointStats::detached(&instance);
    let mut ep = Endpoint::new(&instance, Arc::new(config), stats, tx).expect("endpoint");
    let attempts = Arc::new(Mutex::new(Vec::new()));
    let log = attempts.clone();
    ep.mock_connect = Some(Arc::new(move || -> ConnectFuture {
        log.lock().unwrap().push(Instant::now());
        Box::pin(async { Err("connection refused".into()) })
    }));
    (ep, attempts)
}

fn poll(ep: &mut Endpoint) -> Poll<Result<(), crate::balance::dispatch::CallError>> {
    ep.poll_ready(&mut Context::from_waker(Waker::noop()))
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn failed_connects_back_off_within_bounds_and_never_error() {
    let backoff = Backoff::new(100 * MS, 1000 * MS).jitter(0.5);
    let (mut ep, attempts) = failing_endpoint(backoff);
    for _ in 0..6_000 {
        assert!(
            poll(&mut ep).is_pending(),
            "a failing endpoint must stay pending"
        );
        tokio::time::advance(MS).await;
    }
    assert_eq!(ep.stats.state(), EndpointState::Backoff);

    let times = attempts.lock().unwrap().clone();
    assert!(times.len() >= 7, "only {} attempts in 6 s", times.len());
    for (n, pair) in times.windows(2).enumerate() {
        let waited = pair[1] - pair[0];
        let base = backoff.base_delay(n as u32 + 1);
        // Polled once per millisecond, so an attempt may start up to 1 ms late.
        assert!(
            waited >= base / 2 && waited <= base + MS,
            "wait {waited:?} after failure {} outside [{:?}, {base:?}]",
            n + 1,
            base / 2
        );
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_first_connect_starts_at_the_first_poll() {
    let (mut ep, attempts) = failing_endpoint(Backoff::default());
    assert!(
        attempts.lock().unwrap().is_empty(),
        "connected before being polled"
    );
    assert!(poll(&mut ep).is_pending());
    assert_eq!(attempts.lock().unwrap().len(), 1);
    assert_eq!(ep.stats.state(), EndpointState::Backoff);
}
