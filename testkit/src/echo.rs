//! The Echo service of `proto/echo.proto`.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::time::Duration;

use futures_core::Stream;
use tokio::sync::mpsc;
use tonic::{Code, Request, Response, Status};

use super::pb::echo_server::Echo;
use super::pb::{EchoRequest, EchoResponse, EchoStreamRequest};

/// The Echo service: answers with the message and its instance id, after an optional
/// delay and while no [`HoldGuard`] is alive, and counts what it served.
///
/// [`fail_with`](Self::fail_with) turns it into a failing instance that still accepts
/// every call. The counters count unary calls only.
#[derive(Debug, Clone)]
pub struct EchoService {
    state: Arc<EchoState>,
}

/// No injected failure (see [`EchoState::fail`]).
const NO_FAILURE: i32 = -1;

#[derive(Debug)]
struct EchoState {
    id: String,
    delay_us: AtomicU64,
    /// A random share of the replies (parts per million) gets `tail_us` more.
    tail_ppm: AtomicU64,
    tail_us: AtomicU64,
    /// How many [`HoldGuard`]s are alive; unary replies wait while it is above 0.
    holds: tokio::sync::watch::Sender<usize>,
    /// The injected failure's `Code` as `i32`, or [`NO_FAILURE`].
    fail: AtomicI32,
    /// A random share of the unary calls (parts per million) fails with `UNAVAILABLE`.
    fail_ppm: AtomicU64,
    received: AtomicU64,
    served: AtomicU64,
    failed: AtomicU64,
}

/// Keeps every unary request to an [`EchoService`] in flight until dropped, so that a
/// test can decide when they are answered. Returned by [`EchoService::hold`].
#[derive(Debug)]
#[must_use = "requests are held only while the guard lives"]
pub struct HoldGuard {
    state: Arc<EchoState>,
}

// === impl EchoService ===

impl EchoService {
    /// A service that answers as instance `id`.
    pub fn new(id: impl Into<String>) -> Self {
        EchoService {
            state: Arc::new(EchoState {
                id: id.into(),
                delay_us: AtomicU64::new(0),
                tail_ppm: AtomicU64::new(0),
                tail_us: AtomicU64::new(0),
                holds: tokio::sync::watch::Sender::new(0),
                fail: AtomicI32::new(NO_FAILURE),
                fail_ppm: AtomicU64::new(0),
                received: AtomicU64::new(0),
                served: AtomicU64::new(0),
                failed: AtomicU64::new(0),
            }),
        }
    }

    /// The instance id it answers with.
    pub fn id(&self) -> &str {
        &self.state.id
    }

    /// Adds `delay` before every reply (0 for none).
    pub fn set_delay(&self, delay: Duration) {
        let us = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
        self.state.delay_us.store(us, Ordering::Relaxed);
    }

    /// Adds `delay` to a random `share` (0 to 1) of the unary replies, each call
    /// drawn on its own: a tail no instance shows on average (a GC pause, a cold
    /// cache). A share of 0 turns it off.
    pub fn set_tail(&self, share: f64, delay: Duration) {
        let ppm = (share.clamp(0.0, 1.0) * 1e6) as u64;
        let us = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
        self.state.tail_us.store(us, Ordering::Relaxed);
        self.state.tail_ppm.store(ppm, Ordering::Relaxed);
    }

    /// Fails a random `share` (0 to 1) of the unary calls with `UNAVAILABLE`, each
    /// call drawn on its own: an instance that drops some calls (overloaded, a
    /// flaky dependency) yet answers most. Failed as [`fail_with`](Self::fail_with)
    /// fails them (at once, counted in [`failed`](Self::failed)), which takes
    /// precedence. A share of 0 (the default) turns it off.
    pub fn set_fail_rate(&self, share: f64) {
        let ppm = (share.clamp(0.0, 1.0) * 1e6) as u64;
        self.state.fail_ppm.store(ppm, Ordering::Relaxed);
    }

    /// Holds every unary request, received now or later, until the returned guard
    /// (and every other guard) is dropped. Count arrivals with
    /// [`received`](Self::received).
    pub fn hold(&self) -> HoldGuard {
        self.state.holds.send_modify(|n| *n += 1);
        HoldGuard {
            state: self.state.clone(),
        }
    }

    /// While `Some(code)`, fails every call with `Status::new(code, "injected failure")`;
    /// `None` (the default) answers normally again.
    ///
    /// A unary call is failed at once, without delay or hold, as a trailers-only
    /// response (HTTP 200, `grpc-status` in the only HEADERS frame), and counted in
    /// [`failed`](Self::failed), not [`served`](Self::served). A stream started while
    /// failing sends its `count` messages as usual, then ends with the status in the
    /// trailers, so the client sees a 200 response that fails at its end.
    /// `Some(Code::Ok)` sends `grpc-status: 0` without a message, which clients report
    /// as an error of their own (tonic: `Internal`, "Missing response message").
    pub fn fail_with(&self, code: Option<Code>) {
        let code = code.map_or(NO_FAILURE, i32::from);
        self.state.fail.store(code, Ordering::Relaxed);
    }

    /// How many unary requests it has received, answered or not yet.
    pub fn received(&self) -> u64 {
        self.state.received.load(Ordering::Relaxed)
    }

    /// How many unary requests it has answered with a reply.
    pub fn served(&self) -> u64 {
        self.state.served.load(Ordering::Relaxed)
    }

    /// How many unary requests it has answered with the failure of
    /// [`fail_with`](Self::fail_with).
    pub fn failed(&self) -> u64 {
        self.state.failed.load(Ordering::Relaxed)
    }

    /// The status [`fail_with`](Self::fail_with) asks for, if any.
    fn failure(&self) -> Option<Status> {
        match self.state.fail.load(Ordering::Relaxed) {
            NO_FAILURE => None,
            code => Some(Status::new(Code::from_i32(code), "injected failure")),
        }
    }

    /// The status of a unary call: [`failure`](Self::failure), or `UNAVAILABLE`
    /// for the share [`set_fail_rate`](Self::set_fail_rate) asks for.
    fn unary_failure(&self) -> Option<Status> {
        let ppm = self.state.fail_ppm.load(Ordering::Relaxed);
        self.failure().or_else(|| {
            (ppm > 0 && rand::random_range(0..1_000_000) < ppm)
                .then(|| Status::unavailable("injected failure"))
        })
    }

    async fn pause(&self) {
        let mut us = self.state.delay_us.load(Ordering::Relaxed);
        let ppm = self.state.tail_ppm.load(Ordering::Relaxed);
        if ppm > 0 && rand::random_range(0..1_000_000) < ppm {
            us = us.saturating_add(self.state.tail_us.load(Ordering::Relaxed));
        }
        if us > 0 {
            tokio::time::sleep(Duration::from_micros(us)).await;
        }
        let mut holds = self.state.holds.subscribe();
        // The sender lives in `self.state`, so the wait cannot fail.
        let _ = holds.wait_for(|n| *n == 0).await;
    }
}

// === impl HoldGuard ===

impl Drop for HoldGuard {
    fn drop(&mut self) {
        self.state.holds.send_modify(|n| *n -= 1);
    }
}

type EchoStream = Pin<Box<dyn Stream<Item = Result<EchoResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Echo for EchoService {
    async fn echo(&self, request: Request<EchoRequest>) -> Result<Response<EchoResponse>, Status> {
        self.state.received.fetch_add(1, Ordering::Relaxed);
        if let Some(status) = self.unary_failure() {
            self.state.failed.fetch_add(1, Ordering::Relaxed);
            return Err(status);
        }
        self.pause().await;
        self.state.served.fetch_add(1, Ordering::Relaxed);
        Ok(Response::new(EchoResponse {
            message: request.into_inner().message,
            instance_id: self.state.id.clone(),
        }))
    }

    type EchoStreamStream = EchoStream;

    async fn echo_stream(
        &self,
        request: Request<EchoStreamRequest>,
    ) -> Result<Response<Self::EchoStreamStream>, Status> {
        let req = request.into_inner();
        let (tx, rx) = mpsc::channel(4);
        let id = self.state.id.clone();
        let failure = self.failure();
        tokio::spawn(async move {
            for _ in 0..req.count {
                let reply = EchoResponse {
                    message: req.message.clone(),
                    instance_id: id.clone(),
                };
                if tx.send(Ok(reply)).await.is_err() {
                    return;
                }
                if req.interval_ms > 0 {
                    tokio::time::sleep(Duration::from_millis(req.interval_ms.into())).await;
                }
            }
            if let Some(status) = failure {
                // The last item: tonic ends the response with it in the trailers.
                let _ = tx.send(Err(status)).await;
            }
        });
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        Ok(Response::new(Box::pin(stream)))
    }

    /// Fails as [`echo`](Self::echo) does, once the first message arrived; otherwise
    /// answers with the messages joined when the stream ends.
    async fn echo_collect(
        &self,
        request: Request<tonic::Streaming<EchoRequest>>,
    ) -> Result<Response<EchoResponse>, Status> {
        self.state.received.fetch_add(1, Ordering::Relaxed);
        let mut stream = request.into_inner();
        let mut message = Vec::new();
        if let Some(first) = stream.message().await? {
            message.extend_from_slice(&first.message);
        }
        if let Some(status) = self.unary_failure() {
            self.state.failed.fetch_add(1, Ordering::Relaxed);
            return Err(status);
        }
        while let Some(next) = stream.message().await? {
            message.extend_from_slice(&next.message);
        }
        self.pause().await;
        self.state.served.fetch_add(1, Ordering::Relaxed);
        Ok(Response::new(EchoResponse {
            message,
            instance_id: self.state.id.clone(),
        }))
    }
}
