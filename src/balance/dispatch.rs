//! Sending one request on an endpoint's connection, and getting it back when the
//! server never processed it, so that it can go to another endpoint (gRFC A6's
//! transparent retry).
//!
//! Two ways a request comes back:
//! - hyper hands back a request it never wrote (`try_send_request`): the connection
//!   was found closed, or went away while the request was queued on it;
//! - the server refused the stream (`REFUSED_STREAM`), or its GOAWAY named a last
//!   stream below ours: the request was written but, by the HTTP/2 spec (RFC 9113
//!   §8.7), not processed. Its body was consumed, so it is rebuilt from a copy kept
//!   while it was sent, when the whole body fit in the channel's [`ReplayBuffer`].

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker, ready};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::TrySendError;
use tonic::Code;
use tonic::body::Body;

use super::buffer::ReplayBuffer;
use super::call::{
    Call, Outcome, TrackedBody, caller_error, error_outcome, find_h2, status_in_headers,
};
use crate::{BoxError, InstanceKey};

type SendFuture = Pin<
    Box<
        dyn Future<Output = Result<http::Response<Incoming>, TrySendError<http::Request<Body>>>>
            + Send,
    >,
>;

/// Why a call on an endpoint did not produce a response.
pub(crate) enum CallError {
    /// The server never processed the request; it may go to another endpoint. (The
    /// lock only makes the error `Sync`, as a `BoxError` must be; it is never contended.)
    NotProcessed {
        request: Box<Mutex<http::Request<Body>>>,
        endpoint: InstanceKey,
        error: BoxError,
    },
    /// The call failed before any response (the connection was lost, the stream
    /// reset): the server may have processed it, but the call is not committed, so
    /// a retry policy that retries `UNAVAILABLE` may send it again from `replay`.
    Uncommitted {
        error: BoxError,
        endpoint: InstanceKey,
        replay: Box<Replay>,
    },
    /// The call failed; the server may have processed it.
    Failed(BoxError),
}

impl CallError {
    pub(crate) fn into_error(self) -> BoxError {
        match self {
            CallError::NotProcessed { error, .. }
            | CallError::Uncommitted { error, .. }
            | CallError::Failed(error) => error,
        }
    }
}

impl fmt::Debug for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::NotProcessed {
                endpoint, error, ..
            } => f
                .debug_struct("NotProcessed")
                .field("endpoint", endpoint)
                .field("error", error)
                .finish(),
            CallError::Uncommitted {
                endpoint, error, ..
            } => f
                .debug_struct("Uncommitted")
                .field("endpoint", endpoint)
                .field("error", error)
                .finish(),
            CallError::Failed(error) => f.debug_tuple("Failed").field(error).finish(),
        }
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::NotProcessed { error, .. }
            | CallError::Uncommitted { error, .. }
            | CallError::Failed(error) => error.fmt(f),
        }
    }
}

impl StdError for CallError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            CallError::NotProcessed { error, .. }
            | CallError::Uncommitted { error, .. }
            | CallError::Failed(error) => error.source(),
        }
    }
}

/// One request in flight on one endpoint, up to its response headers.
pub(crate) struct EndpointFuture {
    inner: Result<SendFuture, Option<BoxError>>,
    call: Option<Call>,
    replay: Option<Replay>,
}

// === impl EndpointFuture ===

impl EndpointFuture {
    /// `replay` is `None` when resends are off.
    pub(crate) fn new(inner: SendFuture, call: Call, replay: Option<Replay>) -> Self {
        EndpointFuture {
            inner: Ok(inner),
            call: Some(call),
            replay,
        }
    }

    pub(crate) fn failed(error: BoxError) -> Self {
        EndpointFuture {
            inner: Err(Some(error)),
            call: None,
            replay: None,
        }
    }

    /// The instance the call went to (`None` once it ended).
    pub(crate) fn key(&self) -> Option<&InstanceKey> {
        self.call.as_ref().map(Call::key)
    }

    /// The channel's deadline passed while the call was in flight.
    pub(crate) fn expire(&mut self) {
        if let Some(mut call) = self.call.take() {
            call.finish(Outcome::DeadlineExpired);
        }
    }
}

impl Future for EndpointFuture {
    type Output = Result<Answer, CallError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let inner = match &mut this.inner {
            Ok(inner) => inner,
            Err(error) => {
                let error = error
                    .take()
                    .unwrap_or_else(|| "polled after completion".into());
                return Poll::Ready(Err(CallError::Failed(error)));
            }
        };
        let result = ready!(inner.as_mut().poll(cx));
        this.inner = Err(None);
        let Some(mut call) = this.call.take() else {
            // The deadline passed (`expire`); the caller has moved on.
            let error = "the call's deadline passed".into();
            return Poll::Ready(Err(CallError::Failed(error)));
        };
        let replay = this.replay.take();
        Poll::Ready(match result {
            Ok(response) => {
                call.headers();
                Ok(track(response, call, replay))
            }
            Err(error) => Err(not_processed_or_failed(error, call, replay)),
        })
    }
}

/// A response, and for a call that failed before its response began, what a retry
/// needs.
pub(crate) struct Answer {
    pub(crate) response: http::Response<Body>,
    pub(crate) failed: Option<FailedFast>,
}

/// A call the server failed with a status and no response (Trailers-Only): not
/// committed, so a retry policy may send it again.
pub(crate) struct FailedFast {
    pub(crate) code: Code,
    pub(crate) endpoint: InstanceKey,
    /// The request as sent, when the channel keeps one (resends or retries on).
    pub(crate) replay: Option<Replay>,
}

/// The caller's response: a status in the headers ends the call now, otherwise the
/// body reports it at the end of the stream.
fn track(response: http::Response<Incoming>, mut call: Call, replay: Option<Replay>) -> Answer {
    match status_in_headers(response.status(), response.headers()) {
        Some(code) => {
            let endpoint = call.key().clone();
            call.finish(Outcome::Status(code));
            let failed = (code != Code::Ok).then_some(FailedFast {
                code,
                endpoint,
                replay,
            });
            Answer {
                response: response.map(Body::new),
                failed,
            }
        }
        None => {
            call.answered();
            Answer {
                response: response.map(|body| Body::new(TrackedBody::new(body, call))),
                failed: None,
            }
        }
    }
}

fn not_processed_or_failed(
    error: TrySendError<http::Request<Body>>,
    mut call: Call,
    replay: Option<Replay>,
) -> CallError {
    let endpoint = call.key().clone();
    let (error, unsent) = error.split();
    let (request, replay) = match unsent {
        Some(request) => (Some(request), None),
        None if never_processed(&error) => (replay.and_then(Replay::into_request), None),
        None => (None, replay),
    };
    match request {
        Some(request) => {
            call.finish(Outcome::NotSent);
            CallError::NotProcessed {
                request: Box::new(Mutex::new(request)),
                endpoint,
                error,
            }
        }
        None => {
            let outcome = if refused_stream(&error) {
                Outcome::Shed
            } else {
                error_outcome(error.as_ref())
            };
            call.finish(outcome);
            let error = caller_error(error, outcome);
            match replay {
                // No response yet: not committed, as a retry policy sees it.
                Some(replay) if matches!(outcome, Outcome::Transport | Outcome::ConnectionLost) => {
                    CallError::Uncommitted {
                        error,
                        endpoint,
                        replay: Box::new(replay),
                    }
                }
                _ => CallError::Failed(error),
            }
        }
    }
}

/// Whether the server said it did not process the stream: `REFUSED_STREAM`, or a
/// GOAWAY whose last stream id is below this stream's (h2 fails exactly those
/// streams with the GOAWAY's error when the frame arrives).
pub(crate) fn never_processed(error: &BoxError) -> bool {
    let Some(h2) = find_h2(error.as_ref()) else {
        return false;
    };
    if !h2.is_remote() {
        return false;
    }
    (h2.is_reset() && h2.reason() == Some(h2::Reason::REFUSED_STREAM)) || h2.is_go_away()
}

/// Whether the server reset the stream with `REFUSED_STREAM`.
fn refused_stream(error: &BoxError) -> bool {
    find_h2(error.as_ref()).is_some_and(|h2| {
        h2.is_remote() && h2.is_reset() && h2.reason() == Some(h2::Reason::REFUSED_STREAM)
    })
}

trait Split {
    fn split(self) -> (BoxError, Option<http::Request<Body>>);
}

impl Split for TrySendError<http::Request<Body>> {
    fn split(mut self) -> (BoxError, Option<http::Request<Body>>) {
        let request = self.take_message();
        (Box::new(self.into_error()), request)
    }
}

/// What is needed to send a request again: its head and a copy of its body.
///
/// The head is kept without its extensions: they are for the layers above the
/// channel, which have seen the request already (hyper reads none that gRPC uses),
/// and copying them would cost an allocation per extension on every call.
#[derive(Debug)]
pub(crate) struct Replay {
    method: http::Method,
    uri: http::Uri,
    version: http::Version,
    headers: HeaderMap,
    recording: Arc<Mutex<Recording>>,
}

struct Recording {
    /// The body's first data frame (a unary call's only one), then the others.
    first: Option<Bytes>,
    frames: Vec<Bytes>,
    trailers: Option<HeaderMap>,
    /// The bytes kept, counted in the channel's buffer.
    bytes: usize,
    complete: bool,
    overflowed: bool,
    buffer: Arc<ReplayBuffer>,
    /// What the caller had not sent yet when the attempt's body was dropped (a
    /// streaming request cut off by a failure): a retry sends the kept frames, then
    /// goes on with it (gRFC A6: streams are retried until committed).
    rest: Option<Body>,
    /// A retry of a stream cut off, waiting for more frames or for the rest.
    waiting: Option<Waker>,
}

impl Recording {
    fn wake(&mut self) {
        if let Some(waker) = self.waiting.take() {
            waker.wake();
        }
    }
}

impl Drop for Recording {
    fn drop(&mut self) {
        self.buffer.give_back(self.bytes);
    }
}

// === impl Replay ===

impl Replay {
    /// Splits `request` into the request to send (whose body is copied as it is sent)
    /// and what is needed to send it again.
    pub(crate) fn record(
        request: http::Request<Body>,
        buffer: &Arc<ReplayBuffer>,
    ) -> (http::Request<Body>, Replay) {
        let (head, body) = request.into_parts();
        let recording = Arc::new(Mutex::new(Recording {
            first: None,
            frames: Vec::new(),
            trailers: None,
            bytes: 0,
            complete: body.is_end_stream(),
            overflowed: false,
            buffer: buffer.clone(),
            rest: None,
            waiting: None,
        }));
        let body = RecordingBody {
            inner: Some(body),
            recording: recording.clone(),
        };
        let replay = Replay {
            method: head.method.clone(),
            uri: head.uri.clone(),
            version: head.version,
            headers: head.headers.clone(),
            recording,
        };
        (http::Request::from_parts(head, Body::new(body)), replay)
    }

    /// A copy of the request, if its whole body was sent and kept (the kept frames
    /// are shared, not copied), for a hedge while the first is in flight.
    pub(crate) fn request_again(&self) -> Option<http::Request<Body>> {
        let rec = self
            .recording
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !rec.complete || rec.overflowed {
            return None;
        }
        let frames = rec.first.iter().chain(&rec.frames).cloned();
        let body = Replayed {
            frames: frames.collect(),
            trailers: rec.trailers.clone(),
        };
        let mut request = http::Request::new(Body::new(body));
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.uri.clone();
        *request.version_mut() = self.version;
        *request.headers_mut() = self.headers.clone();
        Some(request)
    }

    /// Whether the body was too large to keep (or failed): it never will be.
    pub(crate) fn lost(&self) -> bool {
        self.recording
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .overflowed
    }

    /// The request again: its whole body kept, or (a stream the caller was still
    /// sending) what was sent and kept, followed by the rest of the caller's body
    /// once the failed attempt lets go of it (gRFC A6: a stream is retried until it
    /// is committed). `None` when the body was too large to keep.
    pub(crate) fn into_request(self) -> Option<http::Request<Body>> {
        let mut rec = self
            .recording
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if rec.overflowed {
            return None;
        }
        let body = if rec.complete {
            let frames = rec.first.take().into_iter().chain(rec.frames.drain(..));
            Body::new(Replayed {
                frames: frames.collect(),
                trailers: rec.trailers.take(),
            })
        } else {
            drop(rec);
            Body::new(Continued {
                recording: self.recording.clone(),
                sent: 0,
                rest: None,
                ended: false,
            })
        };
        let mut request = http::Request::new(body);
        *request.method_mut() = self.method;
        *request.uri_mut() = self.uri;
        *request.version_mut() = self.version;
        *request.headers_mut() = self.headers;
        Some(request)
    }
}

/// A request body that keeps a copy of what it yields, within the channel's
/// [`ReplayBuffer`]; dropped before its end (the attempt failed while the caller was
/// still streaming), it hands what is left of the caller's body to the recording.
struct RecordingBody {
    /// `None` only once dropped.
    inner: Option<Body>,
    recording: Arc<Mutex<Recording>>,
}

impl Drop for RecordingBody {
    fn drop(&mut self) {
        let Some(inner) = self.inner.take() else {
            return;
        };
        let mut rec = self
            .recording
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !rec.complete && !rec.overflowed {
            rec.rest = Some(inner);
        }
        rec.wake();
    }
}

impl HttpBody for RecordingBody {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let frame = ready!(Pin::new(&mut *inner).poll_frame(cx));
        let ended = inner.is_end_stream();
        let mut rec = this
            .recording
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match &frame {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    rec.keep(data);
                } else if let Some(trailers) = frame.trailers_ref() {
                    rec.trailers = Some(trailers.clone());
                    rec.complete = true;
                }
                // hyper stops polling a body that says it has ended.
                if ended {
                    rec.complete = true;
                }
            }
            Some(Err(_)) => rec.overflowed = true,
            None => rec.complete = true,
        }
        rec.wake();
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(HttpBody::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), HttpBody::size_hint)
    }
}

impl fmt::Debug for Recording {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recording")
            .field("bytes", &self.bytes)
            .field("complete", &self.complete)
            .field("overflowed", &self.overflowed)
            .field("rest", &self.rest.is_some())
            .finish_non_exhaustive()
    }
}

impl Recording {
    fn keep(&mut self, data: &Bytes) {
        if self.overflowed {
            return;
        }
        if !self.buffer.take(self.bytes, data.len()) {
            self.overflowed = true;
            self.first = None;
            self.frames = Vec::new();
            self.buffer.give_back(std::mem::take(&mut self.bytes));
            return;
        }
        self.bytes += data.len();
        if self.first.is_none() {
            self.first = Some(data.clone());
        } else {
            self.frames.push(data.clone());
        }
    }
}

/// A body kept whole, sent again.
struct Replayed {
    frames: std::collections::VecDeque<Bytes>,
    trailers: Option<HeaderMap>,
}

impl HttpBody for Replayed {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Some(data) = self.frames.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty() && self.trailers.is_none()
    }
}

/// A stream the caller was still sending when its attempt failed, sent again: the
/// frames the failed attempt kept (more may come while hyper still polls it), then
/// the rest of the caller's body, once the failed attempt let go of it.
struct Continued {
    recording: Arc<Mutex<Recording>>,
    /// Kept frames sent so far.
    sent: usize,
    rest: Option<Body>,
    ended: bool,
}

impl HttpBody for Continued {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if let Some(rest) = this.rest.as_mut() {
            return Pin::new(rest).poll_frame(cx);
        }
        if this.ended {
            return Poll::Ready(None);
        }
        let mut rec = this
            .recording
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let next = match this.sent {
            0 => rec.first.clone(),
            n => rec.frames.get(n - 1).cloned(),
        };
        if let Some(data) = next {
            this.sent += 1;
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        if rec.overflowed {
            this.ended = true;
            let msg = "the request stream grew past the retry buffer while it was resent";
            return Poll::Ready(Some(Err(tonic::Status::cancelled(msg))));
        }
        if rec.complete {
            this.ended = true;
            return Poll::Ready(rec.trailers.clone().map(|t| Ok(Frame::trailers(t))));
        }
        if let Some(rest) = rec.rest.take() {
            drop(rec);
            return Pin::new(this.rest.insert(rest)).poll_frame(cx);
        }
        rec.waiting = Some(cx.waker().clone());
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.rest.as_ref().is_some_and(HttpBody::is_end_stream)
    }
}
