//! The response future of [`BalancedChannel`](super::BalancedChannel).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tokio::sync::oneshot;
use tokio::time::Sleep;
use tonic::body::Body;

use super::channel::Shared;
use super::worker::CallFuture;
use crate::BoxError;

pin_project! {
    /// The response of one request through a
    /// [`BalancedChannel`](super::BalancedChannel): waits for the worker to hand the
    /// request to an instance, then for the instance's answer, all within the
    /// request timeout if one is set.
    pub struct ResponseFuture {
        #[pin]
        state: State,
        #[pin]
        deadline: Option<Sleep>,
        shared: Option<Arc<Shared>>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State {
        Queued { #[pin] rx: oneshot::Receiver<Result<CallFuture, BoxError>> },
        Called { #[pin] fut: CallFuture },
        Failed { error: Option<BoxError> },
    }
}

// === impl ResponseFuture ===

impl ResponseFuture {
    pub(crate) fn new(
        rx: oneshot::Receiver<Result<CallFuture, BoxError>>,
        shared: Arc<Shared>,
    ) -> Self {
        ResponseFuture {
            state: State::Queued { rx },
            deadline: shared.timeout.map(tokio::time::sleep),
            shared: Some(shared),
        }
    }

    pub(crate) fn failed(error: BoxError) -> Self {
        ResponseFuture {
            state: State::Failed { error: Some(error) },
            deadline: None,
            shared: None,
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
            return Poll::Ready(Err(timed_out(this.shared.as_deref())));
        }
        loop {
            match this.state.as_mut().project() {
                StateProj::Queued { rx } => match ready!(rx.poll(cx)) {
                    Ok(Ok(fut)) => this.state.set(State::Called { fut }),
                    Ok(Err(error)) => return Poll::Ready(Err(error)),
                    Err(_) => return Poll::Ready(Err(worker_gone(this.shared.as_deref()))),
                },
                StateProj::Called { fut } => return fut.poll(cx),
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

fn name(shared: Option<&Shared>) -> &str {
    shared.map_or("?", |s| &s.name)
}

fn timed_out(shared: Option<&Shared>) -> BoxError {
    let timeout = shared.and_then(|s| s.timeout).unwrap_or_default();
    let msg = format!("request to `{}` timed out after {timeout:?}", name(shared));
    Box::new(tonic::Status::deadline_exceeded(msg))
}

fn worker_gone(shared: Option<&Shared>) -> BoxError {
    let msg = format!("the balancing worker of `{}` has ended", name(shared));
    Box::new(tonic::Status::unavailable(msg))
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
