//! `BalancedChannel`: the handle callers clone and send requests through.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio_util::sync::PollSender;
use tonic::body::Body;

use super::dispatch::Replay;
use super::future::ResponseFuture;
use super::hedge::Hedge;
use super::info::EndpointInfo;
use super::service_config::{HedgingPolicy, Method};
use super::shared::{Shared, call_timeout};
use super::table::Waiting;
use super::worker::{CallFuture, Message};
use crate::BoxError;

/// A gRPC channel that balances requests over the discovered instances of one service.
///
/// Clone it freely: every clone shares the same worker task and endpoints. Hand it
/// to any tonic-generated client (`EchoClient::new(channel)`).
///
/// ```no_run
/// use std::time::Duration;
/// use tonic_discovery::{balance::BalancedChannel, consul};
/// # use tonic_discovery_testkit::pb::{EchoRequest, echo_client::EchoClient};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let consul = consul::Client::from_env()?;
/// let channel = BalancedChannel::builder("echo")
///     .timeout(Duration::from_secs(2))
///     .build(consul.discovery("echo").build())?;
/// // Clones share the worker and the connections: one per generated client is fine.
/// let mut client = EchoClient::new(channel.clone());
/// let reply = client.echo(EchoRequest::default()).await?;
/// # Ok(())
/// # }
/// ```
///
/// A call that finds a ready endpoint among the two it draws is sent from the
/// caller's own task, by the same power-of-two-choices rule the worker applies; only
/// calls that must wait for an endpoint, resends, the calls that come while others
/// wait for the worker (so that those are served first, in order) and those that
/// come while an ejected endpoint's probe is due (the worker sends each probe with
/// the next call) go through the worker.
///
/// `poll_ready` waits for a slot in the bounded queue (see
/// [`BalancedChannelBuilder::buffer_size`](super::BalancedChannelBuilder::buffer_size)); it does not wait for an instance and
/// never fails. A
/// request that finds no instance in service waits at most the fail-fast timeout and
/// then fails with `Unavailable` (one that finds them all busy waits for a stream); the error is a boxed [`tonic::Status`], so generated
/// clients report its code. When the worker has ended, calls fail with `Unavailable`
/// saying so.
///
/// # Drop
///
/// The worker ends when the last clone is dropped; it closes every connection once
/// the requests in flight on it are done.
pub struct BalancedChannel {
    tx: PollSender<Message>,
    reserved: bool,
    shared: Arc<Shared>,
}

// === impl BalancedChannel ===

impl BalancedChannel {
    pub(crate) fn new(tx: PollSender<Message>, shared: Arc<Shared>) -> Self {
        BalancedChannel {
            tx,
            reserved: false,
            shared,
        }
    }

    /// The service name the channel was built for.
    pub fn service(&self) -> &str {
        &self.shared.name
    }

    /// The current endpoints with their connection state, sorted by key.
    ///
    /// Reads a table the worker updates on discovery changes; cheap enough for a
    /// health page, not meant for every request.
    pub fn endpoints(&self) -> Vec<EndpointInfo> {
        self.shared.registry.snapshot()
    }

    fn closed(&self) -> BoxError {
        let msg = format!("the balancing worker of `{}` has ended", self.shared.name);
        Box::new(tonic::Status::unavailable(msg))
    }
}

impl Clone for BalancedChannel {
    fn clone(&self) -> Self {
        BalancedChannel::new(self.tx.clone(), self.shared.clone())
    }
}

impl tower::Service<http::Request<Body>> for BalancedChannel {
    type Response = http::Response<Body>;
    type Error = BoxError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        if self.reserved {
            return Poll::Ready(Ok(()));
        }
        match self.tx.poll_reserve(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(())) => {
                self.reserved = true;
                Poll::Ready(Ok(()))
            }
            // Report the ended worker from `call`, as a `Status` the generated
            // clients pass through (they turn `poll_ready` errors into `Unknown`).
            Poll::Ready(Err(_)) => Poll::Ready(Ok(())),
        }
    }

    fn call(&mut self, request: http::Request<Body>) -> ResponseFuture {
        if self.tx.is_closed() {
            self.reserved = false;
            return ResponseFuture::failed(self.closed());
        }
        if !std::mem::replace(&mut self.reserved, false) {
            let msg = "BalancedChannel called before poll_ready returned Ready";
            return ResponseFuture::failed(msg.into());
        }
        let method = self.shared.policies.method(request.uri().path());
        let channel_timeout = match (self.shared.timeout, method.as_ref().and_then(|m| m.timeout)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let timeout = call_timeout(channel_timeout, request.headers());
        if let Some(method) = &method {
            self.shared.metrics.attempt(&method.label, &method.attempts);
        }
        if let Some(method) = &method
            && let Some(policy) = method.hedge
        {
            return self.hedged(request, method.clone(), policy, timeout);
        }
        // Kept by the call only when it may be retried.
        let retry = method.filter(|m| m.retry.is_some());
        match self.dispatch(request) {
            Some(Ok(fut)) => ResponseFuture::called(fut, self.shared.clone(), timeout, retry),
            Some(Err(rx)) => ResponseFuture::new(rx, self.shared.clone(), timeout, retry),
            None => ResponseFuture::failed(self.closed()),
        }
    }
}

/// Where a call's first attempt went: sent by the caller, or queued at the worker.
type Dispatched = Result<CallFuture, oneshot::Receiver<Result<CallFuture, BoxError>>>;

impl BalancedChannel {
    /// Sends `request` from this task when an endpoint takes it now (the fast path);
    /// otherwise (the call must wait, or a probe is due, which the worker places)
    /// queues it at the worker. `None` when the worker has ended.
    fn dispatch(&mut self, request: http::Request<Body>) -> Option<Dispatched> {
        if let Some(reserved) = self.shared.registry.pick_direct() {
            self.tx.abort_send();
            return Some(Ok(reserved.send(request)));
        }
        let (tx, rx) = oneshot::channel();
        let msg = Message {
            request,
            tx,
            avoid: Vec::new(),
            _waiting: Waiting::new(&self.shared.registry),
        };
        self.tx.send_item(msg).ok()?;
        Some(Err(rx))
    }

    /// A call its method hedges: the request is kept as it is sent, for the hedges,
    /// and the first attempt goes out as any call does.
    fn hedged(
        &mut self,
        request: http::Request<Body>,
        method: Arc<Method>,
        policy: HedgingPolicy,
        timeout: Option<Duration>,
    ) -> ResponseFuture {
        let (request, replay) = Replay::record(request, &self.shared.buffer);
        let Some(first) = self.dispatch(request) else {
            return ResponseFuture::failed(self.closed());
        };
        let hedge = Hedge::new(first, replay, method, policy);
        ResponseFuture::hedged(hedge, self.shared.clone(), timeout)
    }
}

impl fmt::Debug for BalancedChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BalancedChannel")
            .field("service", &self.shared.name)
            .finish_non_exhaustive()
    }
}

const _: () = {
    const fn assert_send_sync_clone<T: Send + Sync + Clone>() {}
    assert_send_sync_clone::<BalancedChannel>();
};

// === impl BalancedChannel (attempt stats) ===

impl BalancedChannel {
    /// What the channel's retry and hedging policies (see
    /// [`BalancedChannelBuilder::service_config`](super::BalancedChannelBuilder::service_config))
    /// did since it was built: retries and hedges sent, hedges that won, and what
    /// retry throttling stopped. Shared by every clone.
    ///
    /// Reads a few counters that only a policy's decisions move, so a channel
    /// without a policy pays nothing for them. The attempts sent are the calls made
    /// plus [`retries`](super::AttemptStats::retries) plus
    /// [`hedges`](super::AttemptStats::hedges).
    pub fn attempt_stats(&self) -> super::AttemptStats {
        self.shared.metrics.attempts.snapshot()
    }
}
