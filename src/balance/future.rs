//! The response future of [`BalancedChannel`](super::BalancedChannel).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::sync::oneshot;
use tokio::time::Sleep;
use tonic::body::Body;
use tower::retry::budget::Budget;
use tracing::debug;

use rand::Rng;

use super::dispatch::{Answer, CallError, Replay};
use super::hedge::Hedge;
use super::retry::{Throttle, pushback};
use super::service_config::{Method, RetryPolicy};
use super::shared::{Shared, name, requeue, worker_gone};
use super::worker::CallFuture;
use crate::{BoxError, InstanceKey};

pin_project! {
    /// The response of one request through a
    /// [`BalancedChannel`](super::BalancedChannel): waits for the worker to hand the
    /// request to an instance, then for the instance's answer, all within the
    /// request timeout if one is set. A request the instance did not process goes
    /// back to the worker for another instance, within the retry budget; one that
    /// failed goes again as its method's [`RetryPolicy`] says.
    pub struct ResponseFuture {
        #[pin]
        state: State,
        #[pin]
        deadline: Option<Sleep>,
        timeout: Option<Duration>,
        shared: Option<Arc<Shared>>,
        resends: u32,
        retry: Option<Retry>,
        // The instances that refused or failed the call, avoided by its next
        // attempts (allocated at the first resend or retry only).
        tried: Vec<InstanceKey>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State {
        Queued { #[pin] rx: oneshot::Receiver<Result<CallFuture, BoxError>> },
        Called { fut: CallFuture },
        Backoff { sleep: Pin<Box<Sleep>>, next: Option<Box<Again>> },
        Hedged { hedge: Box<Hedge> },
        Failed { error: Option<BoxError> },
    }
}

/// A request to send again after a delay (boxed: retries are rare, and the future
/// of every call stays small).
struct Again {
    delay: Duration,
    request: http::Request<Body>,
    /// The instance that failed it, to avoid.
    endpoint: InstanceKey,
}

/// Where a call stands against its method's retry policy.
#[derive(Debug)]
struct Retry {
    policy: RetryPolicy,
    /// The method config, for the metrics' label.
    method: Arc<Method>,
    /// Attempts sent so far (resends of requests never processed aside).
    attempts: u32,
    /// Which backoff the next retry waits (0: the initial one).
    backoff: u32,
    /// The call's span (a child of the caller's): its retries' events, how many
    /// attempts went and which one `answered`.
    span: tracing::Span,
}

impl Retry {
    fn new(method: Option<Arc<Method>>) -> Option<Self> {
        let method = method?;
        let policy = method.retry?;
        let span = tracing::debug_span!(
            "retried_call",
            method = &*method.label,
            attempts = 1u32,
            answered = tracing::field::Empty,
        );
        Some(Retry {
            policy,
            method,
            attempts: 1,
            backoff: 0,
            span,
        })
    }

    /// The call ended with its last attempt's answer (a response or a failure).
    fn answered(&self) {
        if self.attempts > 1 {
            self.span.record("answered", self.attempts);
            debug!(parent: &self.span, attempt = self.attempts, "answered");
        }
    }
}

// === impl ResponseFuture ===

impl ResponseFuture {
    pub(crate) fn new(
        rx: oneshot::Receiver<Result<CallFuture, BoxError>>,
        shared: Arc<Shared>,
        timeout: Option<Duration>,
        retry: Option<Arc<Method>>,
    ) -> Self {
        shared.budget.deposit();
        ResponseFuture {
            state: State::Queued { rx },
            deadline: timeout.map(tokio::time::sleep),
            timeout,
            shared: Some(shared),
            resends: 0,
            retry: Retry::new(retry),
            tried: Vec::new(),
        }
    }

    /// A call a caller sent itself, without the worker.
    pub(crate) fn called(
        fut: CallFuture,
        shared: Arc<Shared>,
        timeout: Option<Duration>,
        retry: Option<Arc<Method>>,
    ) -> Self {
        shared.budget.deposit();
        ResponseFuture {
            state: State::Called { fut },
            deadline: timeout.map(tokio::time::sleep),
            timeout,
            shared: Some(shared),
            resends: 0,
            retry: Retry::new(retry),
            tried: Vec::new(),
        }
    }

    /// A call hedged by its method's policy (see [`Hedge`]).
    pub(crate) fn hedged(hedge: Hedge, shared: Arc<Shared>, timeout: Option<Duration>) -> Self {
        shared.budget.deposit();
        ResponseFuture {
            state: State::Hedged {
                hedge: Box::new(hedge),
            },
            deadline: timeout.map(tokio::time::sleep),
            timeout,
            shared: Some(shared),
            resends: 0,
            retry: None,
            tried: Vec::new(),
        }
    }

    pub(crate) fn failed(error: BoxError) -> Self {
        ResponseFuture {
            state: State::Failed { error: Some(error) },
            deadline: None,
            timeout: None,
            shared: None,
            resends: 0,
            retry: None,
            tried: Vec::new(),
        }
    }
}

impl Future for ResponseFuture {
    type Output = Result<http::Response<Body>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Some(deadline) = this.deadline.as_mut().as_pin_mut()
            && deadline.poll(cx).is_ready()
        {
            match this.state.as_mut().project() {
                StateProj::Called { fut } => fut.expire(),
                StateProj::Hedged { hedge } => hedge.expire(),
                _ => {}
            }
            return Poll::Ready(Err(timed_out(this.shared.as_deref(), *this.timeout)));
        }
        loop {
            match this.state.as_mut().project() {
                StateProj::Queued { rx } => match ready!(rx.poll(cx)) {
                    Ok(Ok(fut)) => this.state.set(State::Called { fut }),
                    Ok(Err(error)) => return Poll::Ready(Err(error)),
                    Err(_) => return Poll::Ready(Err(worker_gone(this.shared.as_deref()))),
                },
                StateProj::Called { fut } => match ready!(Pin::new(fut).poll(cx)) {
                    Ok(answer) => {
                        let remains = remaining(this.deadline.as_ref().get_ref().as_ref());
                        match retry_or_answer(answer, this.shared.as_deref(), this.retry, remains) {
                            Ok(response) => {
                                this.retry.as_ref().map(Retry::answered);
                                return Poll::Ready(Ok(response));
                            }
                            Err(again) => this.state.set(State::Backoff {
                                sleep: Box::pin(tokio::time::sleep(again.delay)),
                                next: Some(again),
                            }),
                        }
                    }
                    Err(CallError::Uncommitted {
                        error,
                        endpoint,
                        replay,
                    }) => {
                        let remains = remaining(this.deadline.as_ref().get_ref().as_ref());
                        let shared = this.shared.as_deref();
                        match retry_uncommitted(
                            error, endpoint, replay, shared, this.retry, remains,
                        ) {
                            Ok(again) => this.state.set(State::Backoff {
                                sleep: Box::pin(tokio::time::sleep(again.delay)),
                                next: Some(again),
                            }),
                            Err(error) => {
                                this.retry.as_ref().map(Retry::answered);
                                return Poll::Ready(Err(error));
                            }
                        }
                    }
                    Err(error) => match resend(
                        error,
                        this.shared.as_deref(),
                        this.resends,
                        this.tried,
                        remaining(this.deadline.as_ref().get_ref().as_ref()),
                    ) {
                        Ok(rx) => this.state.set(State::Queued { rx }),
                        Err(error) => return Poll::Ready(Err(error)),
                    },
                },
                StateProj::Backoff { sleep, next } => {
                    ready!(sleep.as_mut().poll(cx));
                    let Some(again) = next.take() else {
                        return Poll::Ready(Err("polled after completion".into()));
                    };
                    let Again {
                        request, endpoint, ..
                    } = *again;
                    let remains = remaining(this.deadline.as_ref().get_ref().as_ref());
                    this.tried.push(endpoint);
                    match requeue(request, this.tried, this.shared.as_deref(), remains) {
                        Ok(rx) => this.state.set(State::Queued { rx }),
                        Err(error) => return Poll::Ready(Err(error)),
                    }
                }
                StateProj::Hedged { hedge } => {
                    let Some(shared) = this.shared.as_deref() else {
                        return Poll::Ready(Err(worker_gone(None)));
                    };
                    let remains = remaining(this.deadline.as_ref().get_ref().as_ref());
                    return hedge.poll(cx, shared, remains);
                }
                StateProj::Failed { error } => {
                    let error = error
                        .take()
                        .unwrap_or_else(|| "polled after completion".into());
                    return Poll::Ready(Err(error));
                }
            }
        }
    }
}

/// The time left before the call's deadline, if it has one.
fn remaining(deadline: Option<&Sleep>) -> Option<Duration> {
    deadline.map(|d| {
        d.deadline()
            .saturating_duration_since(tokio::time::Instant::now())
    })
}

/// Sends a request the instance did not process back to the worker, for another
/// instance, when the per-call limit and the budget allow. Its `grpc-timeout`, if
/// it has one, becomes the time that `remains`, so the next server's deadline is not
/// later than the caller's.
fn resend(
    error: CallError,
    shared: Option<&Shared>,
    resends: &mut u32,
    tried: &mut Vec<InstanceKey>,
    remains: Option<Duration>,
) -> Result<oneshot::Receiver<Result<CallFuture, BoxError>>, BoxError> {
    let CallError::NotProcessed {
        request,
        endpoint,
        error,
    } = error
    else {
        return Err(error.into_error());
    };
    let Some(shared) = shared else {
        return Err(error);
    };
    if *resends >= shared.max_resends {
        debug!(instance = %endpoint, %error, "not processed; resend limit reached");
        return Err(error);
    }
    if !shared.budget.withdraw() {
        debug!(instance = %endpoint, %error, "not processed; retry budget exhausted");
        return Err(error);
    }
    *resends += 1;
    debug!(instance = %endpoint, %error, attempt = *resends, "not processed; resending to another instance");
    let request = (*request)
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    tried.push(endpoint);
    requeue(request, tried, Some(shared), remains)
}

/// The caller's response, or the request to send again after a delay: a call that
/// failed before its response began (Trailers-Only) with a status its method's
/// policy retries, while attempts, the throttle, the server's pushback and the
/// deadline allow, and its body was kept.
fn retry_or_answer(
    answer: Answer,
    shared: Option<&Shared>,
    retry: &mut Option<Retry>,
    remains: Option<Duration>,
) -> Result<http::Response<Body>, Box<Again>> {
    let Answer { response, failed } = answer;
    let Some(shared) = shared else {
        return Ok(response);
    };
    // Every call the channel's throttle sees succeed gives a token back (gRFC A6
    // counts the calls of every method): here, a response that began, or an OK.
    let Some(failed) = failed else {
        shared.policies.throttle(Throttle::success);
        return Ok(response);
    };
    let Some(retry) = retry.as_mut() else {
        return Ok(response);
    };
    if !retry.policy.retries(failed.code) {
        return Ok(response);
    }
    let replay = failed.replay.map(Box::new);
    match again(
        retry,
        shared,
        failed.code,
        failed.endpoint,
        replay,
        response.headers(),
        remains,
    ) {
        Some(again) => Err(again),
        None => Ok(response),
    }
}

/// A call that failed before any response (connection lost, stream reset), sent
/// again as its method's policy says when it retries `UNAVAILABLE` (gRPC's code for
/// a transport failure), or its error.
fn retry_uncommitted(
    error: BoxError,
    endpoint: InstanceKey,
    replay: Box<Replay>,
    shared: Option<&Shared>,
    retry: &mut Option<Retry>,
    remains: Option<Duration>,
) -> Result<Box<Again>, BoxError> {
    let (Some(shared), Some(retry)) = (shared, retry.as_mut()) else {
        return Err(error);
    };
    if !retry.policy.retries(tonic::Code::Unavailable) {
        return Err(error);
    }
    let headers = http::HeaderMap::new();
    let code = tonic::Code::Unavailable;
    match again(
        retry,
        shared,
        code,
        endpoint,
        Some(replay),
        &headers,
        remains,
    ) {
        Some(again) => Ok(again),
        None => Err(error),
    }
}

/// The next attempt of a call that failed uncommitted with a retryable `code` at
/// `endpoint` (the server's `headers` may push back), if the policy, the throttle,
/// the deadline and the kept request allow one; the decision is logged and counted.
fn again(
    retry: &mut Retry,
    shared: &Shared,
    code: tonic::Code,
    endpoint: InstanceKey,
    replay: Option<Box<Replay>>,
    headers: &http::HeaderMap,
    remains: Option<Duration>,
) -> Option<Box<Again>> {
    let method = retry.method.clone();
    let decided = decide(retry, shared, headers, remains).and_then(|delay| {
        let request = replay.and_then(|r| r.into_request());
        Ok((delay, request.ok_or("not_kept")?))
    });
    match decided {
        Ok((delay, mut request)) => {
            let previous = http::HeaderValue::from(retry.attempts);
            request
                .headers_mut()
                .insert("grpc-previous-rpc-attempts", previous);
            retry.attempts += 1;
            retry.span.record("attempts", retry.attempts);
            debug!(parent: &retry.span, instance = %endpoint, ?code, ?delay, attempt = retry.attempts, "retrying");
            shared.metrics.retry(&method.label, "retried");
            shared.metrics.attempt(&method.label, &method.attempts);
            Some(Box::new(Again {
                delay,
                request,
                endpoint,
            }))
        }
        Err(why) => {
            debug!(parent: &retry.span, instance = %endpoint, ?code, attempts = retry.attempts, why, "not retried");
            shared.metrics.retry(&method.label, why);
            None
        }
    }
}

/// The delay before the next attempt of a call that failed with a retryable status,
/// or why there is none (the metrics' `outcome`). The throttle counts the failure
/// first, whatever follows.
fn decide(
    retry: &mut Retry,
    shared: &Shared,
    headers: &http::HeaderMap,
    remains: Option<Duration>,
) -> Result<Duration, &'static str> {
    if shared.policies.throttle(Throttle::failure) == Some(false) {
        return Err("throttled");
    }
    if retry.attempts >= retry.policy.max_attempts {
        return Err("attempts_exhausted");
    }
    let delay = match pushback(headers) {
        None => {
            let bound = retry.policy.backoff_bound(retry.backoff);
            retry.backoff = retry.backoff.saturating_add(1);
            bound.mul_f64(rand::rng().random::<f64>())
        }
        Some(Some(delay)) => {
            retry.backoff = 0;
            delay
        }
        Some(None) => return Err("pushback"),
    };
    if remains.is_some_and(|remains| remains <= delay) {
        return Err("deadline");
    }
    Ok(delay)
}

fn timed_out(shared: Option<&Shared>, timeout: Option<Duration>) -> BoxError {
    let timeout = timeout.unwrap_or_default();
    let msg = format!("request to `{}` timed out after {timeout:?}", name(shared));
    Box::new(tonic::Status::deadline_exceeded(msg))
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
