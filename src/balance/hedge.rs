//! Hedged calls (gRFC A6 `hedgingPolicy`): attempts of one call in flight on several
//! instances at once, the first answer winning.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::{Instant, Sleep};
use tonic::body::Body;
use tracing::debug;

use super::dispatch::{Answer, CallError, Replay};
use super::latency::LatencyWindow;
use super::retry::{Throttle, pushback};
use super::service_config::{HedgeDelay, HedgingPolicy, Method};
use super::shared::{Shared, requeue, worker_gone};
use super::worker::CallFuture;
use crate::{BoxError, InstanceKey};

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
    /// The call's span (a child of the caller's): its attempts' events, how many
    /// were `sent` and which one `answered`.
    span: tracing::Span,
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
    ) -> Self {
        let now = Instant::now();
        let delay = delay(&policy, &method);
        let span = tracing::debug_span!(
            "hedged_call",
            method = &*method.label,
            sent = 1u32,
            answered = tracing::field::Empty,
        );
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
            span,
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
                        record(&self.method, attempt.started.elapsed(), shared);
                        match &answer.failed {
                            Some(failed) if self.policy.codes.contains(failed.code) => {
                                hedge_now |=
                                    self.non_fatal(&answer, shared, attempt.number, remains);
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
            // A timer set in this pass (a server's pushback) has not been polled:
            // poll it now, or nothing would wake the call when it fires.
            if let Some(timer) = &mut self.next
                && timer.as_mut().poll(cx).is_ready()
            {
                continue;
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

    /// An attempt failed with a non-fatal code: whether the next goes at once. A
    /// server's pushback delays the next; one past the call's deadline ends the
    /// hedging, so the call answers with the failures it has (as a retry would).
    fn non_fatal(
        &mut self,
        answer: &Answer,
        shared: &Shared,
        number: u32,
        remains: Option<Duration>,
    ) -> bool {
        if shared.policies.throttle(Throttle::failure) == Some(false) {
            self.stop(shared, "throttled");
            return false;
        }
        match pushback(answer.response.headers()) {
            None => true,
            Some(Some(delay)) if remains.is_some_and(|remains| remains <= delay) => {
                self.stop(shared, "deadline");
                false
            }
            Some(Some(delay)) => {
                debug!(parent: &self.span, attempt = number, ?delay, "hedge pushed back");
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
        if answer.failed.is_none() {
            shared.policies.throttle(Throttle::success);
        }
        // The attempts about to be cancelled took at least this long: recorded as
        // such, or the window would see only the fast answers and its percentile
        // would sink.
        for attempt in &self.attempts {
            record(&self.method, attempt.started.elapsed(), shared);
        }
        self.span.record("answered", number);
        debug!(parent: &self.span, attempt = number, sent = self.sent, "answered");
        if number > 1 {
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
            debug!(parent: &self.span, sent = self.sent, why, "no more hedges");
            shared.metrics.hedge(&self.method.label, why);
        }
        self.stopped = true;
        self.next = None;
    }

    /// Whether another attempt may go: attempts left, not stopped, and the
    /// channel's throttle (if any) above half its bucket (gRFC A6: no hedges are
    /// sent while retries are throttled; a hedge the throttle holds back stops the
    /// call's hedging, counted as `throttled`).
    fn may_send(&mut self, shared: &Shared) -> bool {
        if self.stopped || self.sent >= self.policy.max_attempts {
            return false;
        }
        if shared.policies.throttle(Throttle::allows) == Some(false) {
            self.stop(shared, "throttled");
            return false;
        }
        true
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
        let previous = http::HeaderValue::from(self.sent);
        request
            .headers_mut()
            .insert("grpc-previous-rpc-attempts", previous);
        let Ok(rx) = requeue(request, &self.tried, Some(shared), remains) else {
            self.stop(shared, "worker_gone");
            return;
        };
        self.sent += 1;
        self.span.record("sent", self.sent);
        debug!(parent: &self.span, attempt = self.sent, "hedge sent");
        shared.metrics.hedge(&self.method.label, "sent");
        shared
            .metrics
            .attempt(&self.method.label, &self.method.attempts);
        self.attempts.push(Attempt {
            state: AttemptState::Queued(rx),
            number: self.sent,
            started: Instant::now(),
        });
        self.schedule(self.delay);
    }
}

/// The delay between hedges for a call of `method` now: fixed, or the adaptive
/// delay the method's latency window last computed (its cap until then).
fn delay(policy: &HedgingPolicy, method: &Method) -> Duration {
    match policy.delay {
        HedgeDelay::Fixed(delay) => delay,
        HedgeDelay::Percentile { cap, .. } => method
            .latency
            .as_ref()
            .and_then(LatencyWindow::delay)
            .unwrap_or(cap),
    }
}

/// Records an attempt's latency in the method's window, if it has one; every
/// [`RECOMPUTE_EVERY`] calls the delay is computed again and published.
fn record(method: &Method, latency: Duration, shared: &Shared) {
    let (Some(window), Some(policy)) = (&method.latency, method.hedge) else {
        return;
    };
    let HedgeDelay::Percentile {
        percentile,
        floor,
        cap,
    } = policy.delay
    else {
        return;
    };
    if window.record(latency) % RECOMPUTE_EVERY == 0 {
        let delay = window.recompute(percentile, floor, cap);
        shared.metrics.hedge_delay(&method.label, delay);
    }
}
