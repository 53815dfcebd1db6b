//! Hedged calls (gRFC A6 `hedgingPolicy`): attempts of one call in flight on several
//! instances at once, the first answer winning; and the latency window an adaptive
//! hedging delay reads.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::{Instant, Sleep};
use tonic::body::Body;
use tracing::debug;

use super::dispatch::{Answer, CallError, Replay};
use super::future::{Shared, grpc_timeout, worker_gone};
use super::retry::pushback;
use super::service_config::{HedgeDelay, HedgingPolicy, Method};
use super::table::Waiting;
use super::worker::{CallFuture, Message};
use crate::{BoxError, InstanceKey};

/// Latency buckets: bucket `i` holds latencies from `BASE_US × GROWTH^i`.
const BUCKETS: usize = 64;
const BASE_US: f64 = 50.0;
const GROWTH: f64 = 1.25;
/// Counts halve this often, so the window follows the last seconds of calls.
const HALF_LIFE: Duration = Duration::from_secs(5);
/// Below this many calls measured, the adaptive delay is its cap.
const MIN_SAMPLES: u64 = 20;
/// The adaptive delay is recomputed every this many calls measured.
const RECOMPUTE_EVERY: u32 = 32;
/// A hedge due while the first attempt's body is still being sent waits this long
/// and looks again, this many times at most (then the call is not hedged: a stream).
const BODY_WAIT: Duration = Duration::from_millis(1);
const BODY_WAITS: u32 = 100;

/// One call's attempts while it is hedged.
pub(crate) struct Hedge {
    policy: HedgingPolicy,
    method: Arc<Method>,
    /// The request as the first attempt sent it, for the hedges.
    replay: Replay,
    attempts: Vec<Attempt>,
    /// The instances the call went to, avoided by the next hedges.
    tried: Vec<InstanceKey>,
    /// Attempts sent so far.
    sent: u32,
    delay: Duration,
    /// The next hedge's timer, while one is due.
    next: Option<Pin<Box<Sleep>>>,
    /// No more hedges: throttled, or the server pushed back.
    stopped: bool,
    /// How many times a hedge waited for the request's body to be sent whole.
    body_waits: u32,
    /// What the last attempt that ended without winning gave, for when none wins.
    last: Option<Result<http::Response<Body>, BoxError>>,
}

/// One attempt: waiting for the worker to dispatch it, or sent.
struct Attempt {
    state: AttemptState,
    /// 1 for the first attempt.
    number: u32,
    started: Instant,
}

// Kept in the hedge's list of attempts, on the heap already; most are `Called`.
#[allow(clippy::large_enum_variant)]
enum AttemptState {
    Queued(oneshot::Receiver<Result<CallFuture, BoxError>>),
    Called(CallFuture),
}

/// What came of polling an attempt (a value passed up once, not kept).
#[allow(clippy::large_enum_variant)]
enum Polled {
    Pending,
    Dispatched,
    Answered(Answer),
    Failed(BoxError),
}

impl Hedge {
    /// A call whose first attempt is `first` (dispatched by the caller, or queued at
    /// the worker), hedged by `method`'s policy from `replay`.
    pub(crate) fn new(
        first: Result<CallFuture, oneshot::Receiver<Result<CallFuture, BoxError>>>,
        replay: Replay,
        method: Arc<Method>,
        policy: HedgingPolicy,
        shared: &Shared,
    ) -> Self {
        let now = Instant::now();
        let delay = delay(&policy, &method, shared);
        let state = match first {
            Ok(fut) => AttemptState::Called(fut),
            Err(rx) => AttemptState::Queued(rx),
        };
        let mut hedge = Hedge {
            policy,
            method,
            replay,
            attempts: vec![Attempt {
                state,
                number: 1,
                started: now,
            }],
            tried: Vec::new(),
            sent: 1,
            delay,
            next: None,
            stopped: false,
            body_waits: 0,
            last: None,
        };
        hedge.schedule(delay);
        hedge
    }

    /// The call's deadline passed: every attempt in flight ends.
    pub(crate) fn expire(&mut self) {
        for attempt in &mut self.attempts {
            if let AttemptState::Called(fut) = &mut attempt.state {
                fut.expire();
            }
        }
    }

    pub(crate) fn poll(
        &mut self,
        cx: &mut Context<'_>,
        shared: &Shared,
        remains: Option<Duration>,
    ) -> Poll<Result<http::Response<Body>, BoxError>> {
        loop {
            let mut hedge_now = false;
            if let Some(timer) = &mut self.next
                && timer.as_mut().poll(cx).is_ready()
            {
                self.next = None;
                hedge_now = true;
            }
            let mut i = 0;
            while i < self.attempts.len() {
                match self.poll_attempt(i, cx) {
                    Polled::Pending => i += 1,
                    Polled::Dispatched => {}
                    Polled::Answered(answer) => {
                        let attempt = self.attempts.swap_remove(i);
                        if let Some(latency) = &self.method.latency {
                            latency.record(attempt.started.elapsed(), &self.method, shared);
                        }
                        match &answer.failed {
                            Some(failed) if self.policy.codes.contains(failed.code) => {
                                hedge_now |= self.non_fatal(&answer, shared, attempt.number);
                                self.last = Some(Ok(answer.response));
                            }
                            _ => return Poll::Ready(Ok(self.won(answer, attempt.number, shared))),
                        }
                    }
                    Polled::Failed(error) => {
                        // No status: the connection or stream failed, which gRPC
                        // reports as UNAVAILABLE; fatal unless that code is not.
                        self.attempts.swap_remove(i);
                        if !self.policy.codes.contains(tonic::Code::Unavailable) {
                            self.won_nothing();
                            return Poll::Ready(Err(error));
                        }
                        self.last = Some(Err(error));
                        hedge_now = true;
                    }
                }
            }
            if hedge_now && self.may_send(shared) {
                self.send(shared, remains);
                continue;
            }
            if self.attempts.is_empty() && self.next.is_none() {
                if self.may_send(shared) {
                    self.send(shared, remains);
                    continue;
                }
                let last = self.last.take();
                return Poll::Ready(last.unwrap_or_else(|| Err(worker_gone(Some(shared)))));
            }
            return Poll::Pending;
        }
    }

    fn poll_attempt(&mut self, i: usize, cx: &mut Context<'_>) -> Polled {
        let Hedge {
            attempts, tried, ..
        } = self;
        let attempt = &mut attempts[i];
        match &mut attempt.state {
            AttemptState::Queued(rx) => match Pin::new(rx).poll(cx) {
                Poll::Pending => Polled::Pending,
                Poll::Ready(Ok(Ok(fut))) => {
                    if let Some(key) = fut.key() {
                        tried.push(key.clone());
                    }
                    attempt.state = AttemptState::Called(fut);
                    Polled::Dispatched
                }
                Poll::Ready(Ok(Err(error))) => Polled::Failed(error),
                Poll::Ready(Err(_)) => Polled::Failed("the balancing worker has ended".into()),
            },
            AttemptState::Called(fut) => {
                if attempt.number == 1
                    && tried.is_empty()
                    && let Some(key) = fut.key()
                {
                    // The first attempt, sent by the caller itself.
                    tried.push(key.clone());
                }
                match Pin::new(fut).poll(cx) {
                    Poll::Pending => Polled::Pending,
                    Poll::Ready(Ok(answer)) => Polled::Answered(answer),
                    Poll::Ready(Err(CallError::NotProcessed { error, .. })) => {
                        Polled::Failed(error)
                    }
                    Poll::Ready(Err(error)) => Polled::Failed(error.into_error()),
                }
            }
        }
    }

    /// An attempt failed with a non-fatal code: whether the next goes at once.
    fn non_fatal(&mut self, answer: &Answer, shared: &Shared, number: u32) -> bool {
        if let Some(throttle) = &shared.throttle
            && !throttle.failure()
        {
            self.stop(shared, "throttled");
            return false;
        }
        match pushback(answer.response.headers()) {
            None => true,
            Some(Some(delay)) => {
                debug!(
                    method = &*self.method.label,
                    attempt = number,
                    ?delay,
                    "hedge pushed back"
                );
                self.schedule(delay);
                false
            }
            Some(None) => {
                self.stop(shared, "pushback");
                false
            }
        }
    }

    fn won(&mut self, answer: Answer, number: u32, shared: &Shared) -> http::Response<Body> {
        if let Some(throttle) = &shared.throttle
            && answer.failed.is_none()
        {
            throttle.success();
        }
        // The attempts about to be cancelled took at least this long: recorded as
        // such, or the window would see only the fast answers and its percentile
        // would sink.
        if let Some(latency) = &self.method.latency {
            for attempt in &self.attempts {
                latency.record(attempt.started.elapsed(), &self.method, shared);
            }
        }
        if number > 1 {
            debug!(
                method = &*self.method.label,
                attempt = number,
                "a hedge answered first"
            );
            shared.metrics.hedge(&self.method.label, "won");
        }
        // The others are dropped: their streams are reset (CANCEL).
        self.attempts.clear();
        self.next = None;
        answer.response
    }

    /// Every attempt in flight ends: the call is decided without them.
    fn won_nothing(&mut self) {
        self.attempts.clear();
        self.next = None;
    }

    fn stop(&mut self, shared: &Shared, why: &'static str) {
        if !self.stopped && self.sent < self.policy.max_attempts {
            debug!(
                method = &*self.method.label,
                sent = self.sent,
                why,
                "no more hedges"
            );
            shared.metrics.hedge(&self.method.label, why);
        }
        self.stopped = true;
        self.next = None;
    }

    /// Whether another attempt may go: attempts left, not stopped, and the
    /// channel's throttle (if any) above half its bucket (gRFC A6: no hedges are
    /// sent while retries are throttled).
    fn may_send(&self, shared: &Shared) -> bool {
        !self.stopped
            && self.sent < self.policy.max_attempts
            && shared.throttle.as_ref().is_none_or(|t| t.allows())
    }

    /// Sets the next hedge's timer, or clears it when every attempt was sent (a
    /// timer left from an earlier hedge would keep a call whose attempts all
    /// failed waiting for it).
    fn schedule(&mut self, delay: Duration) {
        self.next =
            (self.sent < self.policy.max_attempts).then(|| Box::pin(tokio::time::sleep(delay)));
    }

    /// Sends the next attempt to the worker, for an instance the call has not tried.
    fn send(&mut self, shared: &Shared, remains: Option<Duration>) {
        let Some(mut request) = self.replay.request_again() else {
            if self.replay.lost() || self.body_waits >= BODY_WAITS {
                // Too large to keep, or a stream still sending.
                self.stop(shared, "not_kept");
            } else {
                // The first attempt's body is on its way: look again shortly.
                self.body_waits += 1;
                self.next = Some(Box::pin(tokio::time::sleep(BODY_WAIT)));
            }
            return;
        };
        let headers = request.headers_mut();
        headers.insert(
            "grpc-previous-rpc-attempts",
            http::HeaderValue::from(self.sent),
        );
        if let Some(remains) = remains
            && headers.contains_key("grpc-timeout")
            && let Ok(value) = http::HeaderValue::try_from(grpc_timeout(remains))
        {
            headers.insert("grpc-timeout", value);
        }
        let (tx, rx) = oneshot::channel();
        let msg = Message {
            request,
            tx,
            avoid: self.tried.clone(),
            _waiting: Waiting::new(&shared.registry),
        };
        if shared.resend.send(msg).is_err() {
            self.stop(shared, "worker_gone");
            return;
        }
        self.sent += 1;
        debug!(
            method = &*self.method.label,
            attempt = self.sent,
            "hedge sent"
        );
        shared.metrics.hedge(&self.method.label, "sent");
        self.attempts.push(Attempt {
            state: AttemptState::Queued(rx),
            number: self.sent,
            started: Instant::now(),
        });
        self.schedule(self.delay);
    }
}

/// The delay between hedges for a call of `method` now.
fn delay(policy: &HedgingPolicy, method: &Method, shared: &Shared) -> Duration {
    match policy.delay {
        HedgeDelay::Fixed(delay) => delay,
        HedgeDelay::Percentile { cap, .. } => method
            .latency
            .as_ref()
            .map_or(cap, |latency| latency.delay(policy, method, shared)),
    }
}

/// A method's recent latency: counts in log-spaced buckets (25% apart, 50 µs to
/// about 80 s), halved every [`HALF_LIFE`], and the hedging delay read from them,
/// recomputed every [`RECOMPUTE_EVERY`] calls. Lock-free: atomics only.
#[derive(Debug)]
pub(crate) struct LatencyWindow {
    buckets: [AtomicU32; BUCKETS],
    epoch: Instant,
    /// When counts last halved, in ms since `epoch`.
    halved_at: AtomicU64,
    recorded: AtomicU32,
    /// The delay in use, µs (0: not computed yet).
    delay_us: AtomicU64,
}

impl Default for LatencyWindow {
    fn default() -> Self {
        LatencyWindow {
            buckets: std::array::from_fn(|_| AtomicU32::new(0)),
            epoch: Instant::now(),
            halved_at: AtomicU64::new(0),
            recorded: AtomicU32::new(0),
            delay_us: AtomicU64::new(0),
        }
    }
}

impl LatencyWindow {
    pub(crate) fn record(&self, latency: Duration, method: &Method, shared: &Shared) {
        self.decay();
        let us = latency.as_secs_f64() * 1e6;
        let i = if us <= BASE_US {
            0
        } else {
            ((us / BASE_US).ln() / GROWTH.ln()) as usize
        };
        self.buckets[i.min(BUCKETS - 1)].fetch_add(1, Ordering::Relaxed);
        if self
            .recorded
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(RECOMPUTE_EVERY)
            && let Some(policy) = method.hedge
        {
            let delay = self.compute(&policy);
            self.delay_us
                .store(delay.as_micros() as u64, Ordering::Relaxed);
            shared.metrics.hedge_delay(&method.label, delay);
        }
    }

    /// The delay in use: the last computed, else the cap.
    fn delay(&self, policy: &HedgingPolicy, _method: &Method, _shared: &Shared) -> Duration {
        match self.delay_us.load(Ordering::Relaxed) {
            0 => self.compute(policy),
            us => Duration::from_micros(us),
        }
    }

    fn compute(&self, policy: &HedgingPolicy) -> Duration {
        let HedgeDelay::Percentile {
            percentile,
            floor,
            cap,
        } = policy.delay
        else {
            return Duration::ZERO;
        };
        match self.quantile(percentile / 100.0) {
            Some(q) => q.clamp(floor, cap),
            None => cap,
        }
    }

    /// The `q` quantile (the upper bound of its bucket), if enough calls were
    /// measured.
    pub(crate) fn quantile(&self, q: f64) -> Option<Duration> {
        let counts: [u64; BUCKETS] =
            std::array::from_fn(|i| u64::from(self.buckets[i].load(Ordering::Relaxed)));
        let total: u64 = counts.iter().sum();
        if total < MIN_SAMPLES {
            return None;
        }
        let target = (q * total as f64).ceil() as u64;
        let mut seen = 0;
        for (i, n) in counts.iter().enumerate() {
            seen += n;
            if seen >= target.max(1) {
                let upper = BASE_US * GROWTH.powi(i as i32 + 1);
                return Some(Duration::from_secs_f64(upper / 1e6));
            }
        }
        None
    }

    /// Halves every count once per [`HALF_LIFE`] gone by (the first recorder to see
    /// it due does it, for every half-life since the last time).
    fn decay(&self) {
        let now = self.epoch.elapsed().as_millis() as u64;
        let last = self.halved_at.load(Ordering::Relaxed);
        let lives = now.saturating_sub(last) / HALF_LIFE.as_millis() as u64;
        if lives == 0 {
            return;
        }
        if self
            .halved_at
            .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        let shift = lives.min(31) as u32;
        for bucket in &self.buckets {
            let _ = bucket.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| Some(n >> shift));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_window_reads_percentiles_and_forgets_old_calls() {
        let window = LatencyWindow::default();
        let add = |ms: u64, n: usize| {
            for _ in 0..n {
                window.decay();
                let us = ms as f64 * 1000.0;
                let i = ((us / BASE_US).ln() / GROWTH.ln()) as usize;
                window.buckets[i.min(BUCKETS - 1)].fetch_add(1, Ordering::Relaxed);
            }
        };
        assert_eq!(window.quantile(0.95), None, "too few calls");
        add(1, 95);
        add(20, 5);
        let p50 = window.quantile(0.5).expect("enough calls");
        let p95 = window.quantile(0.95).expect("enough calls");
        let p99 = window.quantile(0.99).expect("enough calls");
        assert!(
            p50 >= Duration::from_millis(1) && p50 < Duration::from_micros(1300),
            "{p50:?}"
        );
        assert!(
            p95 < Duration::from_micros(1300),
            "95 of 100 at 1 ms: {p95:?}"
        );
        assert!(
            p99 >= Duration::from_millis(20) && p99 < Duration::from_millis(26),
            "{p99:?}"
        );
        // Old calls fade: after many half-lives only the new ones count.
        for _ in 0..8 {
            tokio::time::advance(HALF_LIFE).await;
            add(5, 40);
        }
        let p99 = window.quantile(0.99).expect("enough calls");
        assert!(
            p99 >= Duration::from_millis(5) && p99 < Duration::from_micros(6300),
            "{p99:?}"
        );
    }
}
