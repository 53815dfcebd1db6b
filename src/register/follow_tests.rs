//! The health follower under tokio's paused clock, against a scripted registrar.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::POLL;
use crate::error::{Error, Result};
use crate::register::{HealthSource, Registrar, RegistrationHandle};

const MS: Duration = Duration::from_millis(1);

/// What the registrar was asked, and when (paused time).
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<(&'static str, Instant)>>>);

impl Log {
    fn push(&self, call: &'static str) {
        self.0.lock().unwrap().push((call, Instant::now()));
    }

    fn calls(&self) -> Vec<&'static str> {
        self.0.lock().unwrap().iter().map(|(c, _)| *c).collect()
    }

    fn count(&self, call: &str) -> usize {
        self.calls().iter().filter(|c| **c == call).count()
    }

    fn times(&self, call: &str) -> Vec<Instant> {
        let log = self.0.lock().unwrap();
        log.iter()
            .filter(|(c, _)| *c == call)
            .map(|(_, t)| *t)
            .collect()
    }
}

/// A registrar whose first `failing` withdrawals fail.
struct Mock {
    log: Log,
    failing: AtomicU32,
}

impl Registrar for Mock {
    type KeepAlive = ();

    async fn keep_alive(self: Arc<Self>, (): (), stop: CancellationToken) {
        self.log.push("keep_alive");
        stop.cancelled().await;
        self.log.push("keep_alive_end");
    }

    async fn withdraw(&self) -> Result<()> {
        self.log.push("withdraw");
        let left = self.failing.load(Ordering::Relaxed);
        if left == 0 {
            return Ok(());
        }
        self.failing.store(left - 1, Ordering::Relaxed);
        Err(Error::unavailable("scripted failure"))
    }

    async fn restore(&self) -> Result<()> {
        self.log.push("restore");
        Ok(())
    }

    async fn deregister(&self) -> Result<()> {
        self.log.push("deregister");
        Ok(())
    }
}

fn follow(health: HealthSource, published: bool, failing: u32) -> (RegistrationHandle<Mock>, Log) {
    let log = Log::default();
    let mock = Mock {
        log: log.clone(),
        failing: AtomicU32::new(failing),
    };
    let span = tracing::Span::none();
    (
        RegistrationHandle::following_health(mock, (), health, published, span),
        log,
    )
}

/// Polls `cond` every millisecond of (paused) time; panics when `limit` passes first.
async fn within(limit: Duration, what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        tokio::time::sleep(MS).await;
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn applies_each_change_in_order() {
    let (tx, rx) = watch::channel(true);
    let (handle, log) = follow(HealthSource::watch(rx), true, 0);
    tx.send_replace(false);
    within(MS * 50, "withdrawn", || log.count("withdraw") == 1).await;
    tx.send_replace(true);
    within(MS * 50, "restored", || log.count("restore") == 1).await;
    tx.send_replace(false);
    within(MS * 50, "withdrawn again", || log.count("withdraw") == 2).await;
    handle.deregister().await.unwrap();
    assert_eq!(
        log.calls(),
        [
            "keep_alive",
            "withdraw",
            "restore",
            "withdraw",
            "keep_alive_end",
            "deregister"
        ]
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn an_unpublished_start_is_restored_when_serving() {
    let (handle, log) = follow(HealthSource::always_passing(), false, 0);
    within(MS * 50, "restored", || log.count("restore") == 1).await;
    tokio::time::advance(POLL * 30).await;
    assert_eq!(log.calls(), ["keep_alive", "restore"]);
    drop(handle);
}

/// What we want to test: a failing withdrawal is retried, further apart each time,
/// until it succeeds, and then no more.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn retries_a_failing_withdrawal_with_backoff() {
    let (tx, rx) = watch::channel(true);
    let (handle, log) = follow(HealthSource::watch(rx), true, 3);
    tx.send_replace(false);
    within(POLL * 5, "four attempts", || log.count("withdraw") == 4).await;
    let times = log.times("withdraw");
    let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps[0] >= MS * 80, "hammered: {gaps:?}");
    assert!(gaps.windows(2).all(|g| g[1] > g[0]), "no backoff: {gaps:?}");
    tokio::time::advance(POLL * 30).await;
    assert_eq!(log.count("withdraw"), 4, "retried after a success");
    handle.deregister().await.unwrap();
}

/// What we want to test: a change of health does not wait out the retry delay of a
/// failed call; the follower does what the health now asks at once.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_change_cuts_the_retry_wait_short() {
    let (tx, rx) = watch::channel(true);
    let (handle, log) = follow(HealthSource::watch(rx), true, u32::MAX);
    tx.send_replace(false);
    // The fourth retry waits at least 640 ms (800 ms less the jitter).
    within(POLL * 5, "four attempts", || log.count("withdraw") == 4).await;
    tx.send_replace(true);
    within(MS * 50, "restored at once", || log.count("restore") == 1).await;
    tx.send_replace(false);
    within(MS * 50, "withdrawn at once", || log.count("withdraw") == 5).await;
    handle.deregister().await.unwrap();
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn polls_a_callback_source() {
    let serving = Arc::new(AtomicBool::new(true));
    let s = serving.clone();
    let health = HealthSource::from_fn(move || s.load(Ordering::Relaxed));
    let (handle, log) = follow(health, true, 0);
    serving.store(false, Ordering::Relaxed);
    within(POLL * 2, "withdrawn", || log.count("withdraw") == 1).await;
    serving.store(true, Ordering::Relaxed);
    within(POLL * 2, "restored", || log.count("restore") == 1).await;
    drop(handle);
}

/// What we want to test: once the handle is gone the follower is too (it held the
/// only receiver), and nothing follows a change any more.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn ends_with_the_handle() {
    let (tx, rx) = watch::channel(true);
    let (handle, log) = follow(HealthSource::watch(rx), true, 0);
    within(MS * 50, "keep-alive started", || {
        log.count("keep_alive") == 1
    })
    .await;
    handle.deregister().await.unwrap();
    assert!(tx.is_closed(), "the follower outlived the handle");
    tx.send_replace(false);
    tokio::time::advance(POLL * 30).await;
    assert_eq!(log.calls(), ["keep_alive", "keep_alive_end", "deregister"]);
}
