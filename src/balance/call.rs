//! One call on one endpoint: what became of it (the gRPC status, read where gRPC puts
//! it), and when it stops counting towards the endpoint's load and streams.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use http_body::{Body as HttpBody, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;
use tonic::Code;

use super::accrual::{CodeSet, Verdict};
use super::stats::EndpointStats;
use crate::BoxError;

/// What became of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The instance answered with this gRPC status.
    Status(Code),
    /// The instance reset the stream (`RST_STREAM` with an error): a transport
    /// failure of this instance.
    Transport,
    /// The connection ended under the call (closed, reset, keep-alive timeout,
    /// GOAWAY): the connection's own state takes the endpoint out of the ready set,
    /// so the call counts for neither side.
    ConnectionLost,
    /// The caller dropped the call.
    Cancelled,
    /// The channel's deadline passed.
    DeadlineExpired,
    /// The request never reached the instance; it is sent elsewhere.
    NotSent,
    /// The instance refused the stream (`REFUSED_STREAM`: it did not process it,
    /// typically shedding load) and the request could not be sent elsewhere: the
    /// endpoint is avoided for a while, but this is no failure of the instance.
    Shed,
}

impl Outcome {
    fn verdict(self, codes: CodeSet) -> Option<Verdict> {
        let failed = match self {
            Outcome::Status(code) => codes.contains(code),
            Outcome::Transport => true,
            Outcome::DeadlineExpired if codes.contains(Code::DeadlineExceeded) => true,
            Outcome::DeadlineExpired
            | Outcome::Cancelled
            | Outcome::NotSent
            | Outcome::Shed
            | Outcome::ConnectionLost => return None,
        };
        Some(if failed {
            Verdict::Failure
        } else {
            Verdict::Success
        })
    }
}

/// Tracks one call from dispatch to the end of its response; dropped unfinished, it
/// counts as cancelled.
#[derive(Debug)]
pub(crate) struct Call {
    stats: Arc<EndpointStats>,
    codes: CodeSet,
    sent_at: Instant,
    /// The connection it is sent on (see [`EndpointStats::connection`]).
    connection: u64,
    /// Time to the response headers, once they came.
    latency: Option<Duration>,
    probe: bool,
    done: bool,
    /// The endpoint's concurrency-limit permit, if one is set: held to the end of
    /// the response, body included, so streaming calls count.
    permit: Option<OwnedSemaphorePermit>,
}

// === impl Call ===

impl Call {
    /// A call on a stream slot taken without the limit (tests of a call alone).
    #[cfg(test)]
    pub(crate) fn start(stats: Arc<EndpointStats>, probe: bool) -> Self {
        stats.force_reserve_stream();
        Call::start_reserved(stats, probe)
    }

    /// A call on the stream slot its sender reserved
    /// ([`EndpointStats::try_reserve_stream`]); the call's end gives it back.
    pub(crate) fn start_reserved(stats: Arc<EndpointStats>, probe: bool) -> Self {
        stats.call_started();
        stats.telemetry.started();
        Call {
            codes: stats.codes(),
            connection: stats.connection(),
            stats,
            sent_at: Instant::now(),
            latency: None,
            probe,
            done: false,
            permit: None,
        }
    }

    /// Holds the endpoint's concurrency-limit permit until the call ends.
    pub(crate) fn holding(mut self, permit: Option<OwnedSemaphorePermit>) -> Self {
        self.permit = permit;
        self
    }

    pub(crate) fn key(&self) -> &crate::InstanceKey {
        &self.stats.key
    }

    /// A response without a status in its headers arrived (a stream is starting): for
    /// a probe that is the verdict, as the stream may last for hours.
    pub(crate) fn answered(&mut self) {
        if std::mem::replace(&mut self.probe, false) {
            let latency = self.latency.unwrap_or_else(|| self.sent_at.elapsed());
            self.stats.probe_done(Verdict::Success, latency);
        }
    }

    /// The response headers arrived: the call stops counting towards the load.
    pub(crate) fn headers(&mut self) {
        if self.latency.is_none() && !self.done {
            let now = Instant::now();
            self.latency = Some(now.saturating_duration_since(self.sent_at));
            self.stats.headers_received(now, true);
        }
    }

    pub(crate) fn finish(&mut self, outcome: Outcome) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        self.permit = None;
        let latency = match self.latency {
            Some(latency) => latency,
            None => {
                // No answer: the time waited is still a lower bound on the latency,
                // but the instance was not heard from.
                self.stats.headers_received(Instant::now(), false);
                self.sent_at.elapsed()
            }
        };
        if outcome == Outcome::ConnectionLost {
            self.stats.connection_lost(self.connection);
        }
        self.stats.stream_ended();
        let code = match outcome {
            Outcome::Status(code) => Some(code),
            Outcome::Transport | Outcome::ConnectionLost | Outcome::NotSent => None,
            Outcome::Shed => Some(Code::Unavailable),
            Outcome::Cancelled => Some(Code::Cancelled),
            Outcome::DeadlineExpired => Some(Code::DeadlineExceeded),
        };
        let counted = outcome != Outcome::NotSent;
        self.stats
            .telemetry
            .finished(code, self.sent_at.elapsed(), counted);
        match outcome.verdict(self.codes) {
            Some(verdict) => self.stats.record(verdict, latency, self.probe),
            None => {
                if outcome == Outcome::Shed {
                    self.stats.shed();
                }
                if outcome != Outcome::NotSent {
                    if self.latency.is_some() {
                        self.stats.rtt.observe(latency);
                    } else {
                        // Waited without an answer: a lower bound, never a sign of speed.
                        self.stats.rtt.observe_no_lower(latency);
                    }
                }
                if self.probe {
                    if outcome == Outcome::NotSent {
                        self.stats.probe_abandoned();
                    } else {
                        // A probe that did not conclude (cancelled, out of time, its
                        // connection lost) has not shown the instance serves.
                        self.stats.probe_done(Verdict::Failure, latency);
                    }
                }
            }
        }
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        self.finish(Outcome::Cancelled);
    }
}

/// The gRPC status a response's headers carry: a trailers-only answer's
/// `grpc-status`, or the code gRPC maps a non-200 HTTP status to. `None` when the
/// status comes in the trailers.
pub(crate) fn status_in_headers(status: StatusCode, headers: &HeaderMap) -> Option<Code> {
    if let Some(code) = grpc_status(headers) {
        return Some(code);
    }
    if status == StatusCode::OK {
        return None;
    }
    // gRPC's HTTP-to-status mapping (doc/http-grpc-status-mapping.md).
    Some(match status.as_u16() {
        400 => Code::Internal,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::Unimplemented,
        429 | 502 | 503 | 504 => Code::Unavailable,
        _ => Code::Unknown,
    })
}

/// What an error of a call says about the instance: a stream it reset is its
/// failure; a connection that ended is the connection's business; an error of the
/// caller's own making (its request body failed, or the client reset the stream)
/// is the caller's.
pub(crate) fn error_outcome(error: &(dyn std::error::Error + 'static)) -> Outcome {
    if let Some(hyper) = error.downcast_ref::<hyper::Error>()
        && hyper.is_user()
    {
        return Outcome::Cancelled;
    }
    match super::call::find_h2(error) {
        Some(h2) if h2.is_reset() && h2.is_remote() => match h2.reason() {
            Some(h2::Reason::CANCEL) => Outcome::Status(Code::Cancelled),
            _ => Outcome::Transport,
        },
        Some(h2) if h2.is_reset() => Outcome::Cancelled,
        _ => Outcome::ConnectionLost,
    }
}

/// The `h2::Error` in an error's source chain.
pub(crate) fn find_h2<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a h2::Error> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(h2) = e.downcast_ref::<h2::Error>() {
            return Some(h2);
        }
        next = e.source();
    }
    None
}

/// The error a caller sees for a call that failed with `error` (its outcome
/// `outcome`): a lost connection (closed, reset, keep-alive timeout, GOAWAY) is
/// `UNAVAILABLE`, as gRPC's status for a transport failure (tonic would read a bare
/// I/O error as `UNKNOWN`); other errors go up as they are.
pub(crate) fn caller_error(error: BoxError, outcome: Outcome) -> BoxError {
    if outcome != Outcome::ConnectionLost {
        return error;
    }
    Box::new(tonic::Status::unavailable(format!(
        "the connection to the instance was lost: {error}"
    )))
}

/// `grpc-status` of a header block; an unparsable value is `UNKNOWN`, as gRPC reads it.
fn grpc_status(headers: &HeaderMap) -> Option<Code> {
    let value = headers.get("grpc-status")?;
    let code = value
        .to_str()
        .ok()
        .and_then(|s| s.parse::<i32>().ok())
        .map_or(Code::Unknown, Code::from_i32);
    Some(code)
}

pin_project! {
    /// A response body that reports the call's outcome at the end of the stream:
    /// the trailers' status, a broken stream, or (dropped early) a cancellation.
    pub(crate) struct TrackedBody<B> {
        #[pin]
        inner: B,
        call: Call,
    }
}

impl<B> TrackedBody<B> {
    pub(crate) fn new(inner: B, call: Call) -> Self {
        TrackedBody { inner, call }
    }
}

impl<B> HttpBody for TrackedBody<B>
where
    B: HttpBody<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        Poll::Ready(match frame {
            Some(Ok(frame)) => {
                if let Some(trailers) = frame.trailers_ref() {
                    let code = grpc_status(trailers).unwrap_or(Code::Unknown);
                    this.call.finish(Outcome::Status(code));
                }
                Some(Ok(frame))
            }
            Some(Err(error)) => {
                let outcome = error_outcome(&error);
                this.call.finish(outcome);
                Some(Err(caller_error(Box::new(error), outcome)))
            }
            // The stream ended without trailers: no status, which gRPC reads as an error.
            None => {
                this.call.finish(Outcome::Status(Code::Unknown));
                None
            }
        })
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
#[path = "call_tests.rs"]
mod tests;
