//! One instance's HTTP/2 connection, with readiness that tells the truth.
//!
//! `poll_ready` is `Ready` only while the connection is up, the endpoint is not
//! ejected by failure accrual (or its one probe may go), and a stream fits under the
//! server's `MAX_CONCURRENT_STREAMS`. It is `Pending` otherwise and never returns an
//! error: failures turn into reconnects with backoff, and the endpoint stays in the
//! worker's [`EndpointSet`](super::endpoint_set::EndpointSet) until discovery removes
//! it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::uri::{Authority, Scheme};
use hyper::client::conn::http2::SendRequest;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::PollSemaphore;
use tonic::body::Body;
use tracing::{Instrument, debug, info, warn};

use super::config::EndpointConfig;
use super::connect::connect;
use super::direct::Direct;
use super::dispatch::{Answer, CallError, EndpointFuture};
use super::info::EndpointState;
use super::keepalive::KeepAliveConfig;
use super::send::send_on;
use super::stats::{EndpointStats, Mode};
use super::table::Registry;
use crate::backoff::BackoffState;
use crate::{BoxError, Instance, InstanceKey};

/// A connection that closes sooner than this after opening counts as a failed
/// connect, so a server that accepts and drops connections is retried with backoff.
pub(crate) const MIN_HEALTHY: Duration = Duration::from_secs(1);

pub(crate) type ConnectFuture =
    Pin<Box<dyn Future<Output = Result<SendRequest<Body>, BoxError>> + Send>>;

pub(crate) struct Endpoint {
    key: InstanceKey,
    target: Arc<str>,
    host: Arc<str>,
    scheme: Scheme,
    authority: Authority,
    config: Arc<EndpointConfig>,
    stats: Arc<EndpointStats>,
    closed_tx: mpsc::UnboundedSender<InstanceKey>,
    backoff: BackoffState,
    limit: Option<PollSemaphore>,
    permit: Option<OwnedSemaphorePermit>,
    state: State,
    /// The keep-alive of the next connection; calmer each time a server says PINGs
    /// come too often.
    keep_alive: Option<KeepAliveConfig>,
    /// Runs while the endpoint is ejected.
    ejection: Option<Pin<Box<Sleep>>>,
    /// Where the endpoint's service state goes (see [`Self::publish_in_service`]).
    registry: Option<Registry>,
    published_in_service: bool,
    #[cfg(test)]
    pub(super) mock_connect: Option<Arc<dyn Fn() -> ConnectFuture + Send + Sync>>,
}

enum State {
    Idle,
    Connecting(ConnectFuture),
    Connected {
        send: SendRequest<Body>,
        since: Instant,
        /// The health watch of this connection, if configured; aborted with it.
        _health: Option<AbortOnDrop>,
    },
    Backoff(Pin<Box<Sleep>>),
}

// === impl Endpoint ===

impl Endpoint {
    /// An endpoint for `instance`; it starts connecting when first polled.
    pub(crate) fn new(
        instance: &Instance,
        config: Arc<EndpointConfig>,
        stats: Arc<EndpointStats>,
        closed_tx: mpsc::UnboundedSender<InstanceKey>,
    ) -> Result<Self, BoxError> {
        if instance.port() == 0 {
            // Consul lists services registered without a port with port 0.
            return Err("port 0 cannot be dialled".into());
        }
        let target = instance.authority();
        let authority: Authority = target.parse()?;
        let limit = config
            .concurrency_limit
            .map(|n| PollSemaphore::new(Arc::new(Semaphore::new(n.max(1)))));
        Ok(Endpoint {
            key: instance.key().clone(),
            stats,
            keep_alive: config.keep_alive(),
            ejection: None,
            registry: None,
            published_in_service: false,
            target: target.into(),
            host: instance.host().into(),
            scheme: config.scheme(),
            authority,
            backoff: BackoffState::new(config.reconnect_backoff),
            config,
            closed_tx,
            limit,
            permit: None,
            state: State::Idle,
            #[cfg(test)]
            mock_connect: None,
        })
    }

    pub(crate) fn stats(&self) -> &Arc<EndpointStats> {
        &self.stats
    }

    fn set_state(&mut self, state: State) {
        let public = match &state {
            State::Idle | State::Connecting(_) => EndpointState::Connecting,
            State::Connected { .. } => EndpointState::Ready,
            State::Backoff(_) => EndpointState::Backoff,
        };
        // Callers may send on the connection themselves, unless a concurrency limit
        // needs the worker to hand out its permits.
        let direct = match &state {
            State::Connected { send, .. } if self.limit.is_none() => Some(Direct {
                send: send.clone(),
                scheme: self.scheme.clone(),
                authority: self.authority.clone(),
                replay: self.config.replay.clone(),
            }),
            _ => None,
        };
        let since = match &state {
            State::Connected { since, .. } => Some(*since),
            _ => None,
        };
        self.stats.set_direct(direct);
        self.stats.set_connected(since);
        self.stats.set_conn(public);
        self.state = state;
    }

    fn back_off(&mut self) {
        self.stats.set_retrying(true);
        let delay = self.backoff.next_delay();
        warn!(
            instance = %self.key,
            addr = %self.target,
            failures = self.backoff.failures(),
            ?delay,
            "endpoint backing off before reconnecting"
        );
        self.set_state(State::Backoff(Box::pin(tokio::time::sleep(delay))));
    }

    fn start_connect(&mut self) {
        debug!(instance = %self.key, addr = %self.target, "connecting");
        #[cfg(test)]
        if let Some(mock) = &self.mock_connect {
            let fut = mock();
            self.set_state(State::Connecting(fut));
            return;
        }
        if self
            .stats
            .too_many_pings
            .swap(false, std::sync::atomic::Ordering::Relaxed)
            && let Some(keep_alive) = self.keep_alive
        {
            // As grpc-go's client does after `GOAWAY(ENHANCE_YOUR_CALM)`; the time the
            // server is taken to permit between PINGs doubles too.
            let calmer = keep_alive.calmer();
            warn!(
                instance = %self.key,
                addr = %self.target,
                interval = ?calmer.interval,
                permit_time = ?calmer.permit_time,
                "the server closed the connection for too many PINGs (GOAWAY ENHANCE_YOUR_CALM); doubling the keep-alive interval and permitted time"
            );
            self.keep_alive = Some(calmer);
        }
        let fut = connect(
            self.target.clone(),
            self.host.clone(),
            self.config.clone(),
            self.keep_alive,
            self.stats.clone(),
            self.closed_tx.clone(),
        );
        // The connect (socket, TCP handshake, TLS, HTTP/2 preface) runs on a task of
        // its own: its system calls stay off the worker, which a fleet of new
        // instances would otherwise hold for tens of microseconds each, and many
        // connects proceed on every runtime thread at once. Dropping the endpoint
        // (removal) aborts it.
        // Boxed first: the future is large (TLS and HTTP/2 handshakes), and a spawn
        // would copy it into the task cell by value.
        let task = tokio::spawn(Box::pin(fut.in_current_span()));
        let abort = AbortOnDrop(task.abort_handle());
        let joined = async move {
            let _abort = abort;
            match task.await {
                Ok(result) => result,
                Err(error) => Err(BoxError::from(format!("connect task ended: {error}"))),
            }
        };
        self.set_state(State::Connecting(Box::pin(joined)));
    }

    /// Drives the connection state machine until the connection is up or a timer or
    /// connect is pending.
    fn poll_connection(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            match &mut self.state {
                State::Idle => self.start_connect(),
                State::Backoff(sleep) => {
                    ready!(sleep.as_mut().poll(cx));
                    self.start_connect();
                }
                State::Connecting(fut) => match ready!(fut.as_mut().poll(cx)) {
                    Ok(send) => {
                        info!(instance = %self.key, addr = %self.target, "endpoint connected");
                        // The failure count is reset only once the connection has
                        // proved healthy (see below), so a server that accepts and
                        // drops connections is retried with growing delays.
                        let since = Instant::now();
                        let health = self.watch_health(&send);
                        self.set_state(State::Connected {
                            send,
                            since,
                            _health: health,
                        });
                    }
                    Err(error) => {
                        warn!(instance = %self.key, addr = %self.target, %error, "connect failed");
                        self.back_off();
                    }
                },
                State::Connected { send, since, .. } => {
                    let lost = self.stats.current_lost();
                    if !lost && send.poll_ready(cx).is_ready_and_ok() {
                        return Poll::Ready(());
                    }
                    let short_lived = since.elapsed() < MIN_HEALTHY;
                    // A call that saw the connection lost takes it out of use (see
                    // `EndpointStats::connection_lost`); its streams still in flight
                    // end on their own.
                    info!(instance = %self.key, addr = %self.target, lost, "connection closed");
                    self.permit = None;
                    // A new connection starts serving until its own watch says otherwise.
                    self.stats.set_serving(true);
                    if short_lived {
                        self.back_off();
                    } else {
                        self.backoff.reset();
                        self.stats.set_retrying(false);
                        self.set_state(State::Idle);
                    }
                }
            }
        }
    }

    fn poll_all(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        ready!(self.poll_connection(cx));
        ready!(self.poll_serving(cx));
        ready!(self.poll_accrual(cx));
        ready!(self.poll_streams(cx));
        self.poll_permit(cx)
    }

    /// Tells the registry whether the endpoint is in service (connected, not ejected,
    /// serving) when that changed since it last did, so that draws leave out the
    /// endpoints that cannot take a call (see [`Registry::set_in_service`]). Every
    /// change of these passes through `poll_ready` in the worker: connection changes
    /// and the endpoint's wakers (ejection timer, health) poll it, and the worker
    /// re-checks an endpoint it ejects or picks.
    ///
    /// An endpoint due a probe (its ejection ran out) and able to take it joins the
    /// registry's queue of probes due, here too: the worker sends it the next call.
    fn publish_in_service(&mut self) {
        let now = self.stats.in_service();
        let Some(registry) = &self.registry else {
            return;
        };
        if now != self.published_in_service {
            self.published_in_service = now;
            registry.set_in_service(&self.key, &self.stats, now);
        }
        if now && self.stats.mode() == Mode::ProbeAllowed {
            registry.queue_probe(&self.stats);
        }
    }

    /// Publishes the endpoint's service state to `registry` from now on.
    pub(crate) fn publish_to(&mut self, registry: Registry) {
        self.registry = Some(registry);
    }

    fn poll_permit(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if let (Some(limit), None) = (&mut self.limit, &self.permit) {
            // The semaphore is never closed, so `None` cannot happen.
            self.permit = ready!(limit.poll_acquire(cx));
        }
        Poll::Ready(())
    }
}

trait PollExt {
    fn is_ready_and_ok(&self) -> bool;
}

impl<E> PollExt for Poll<Result<(), E>> {
    fn is_ready_and_ok(&self) -> bool {
        matches!(self, Poll::Ready(Ok(())))
    }
}

impl Endpoint {
    /// Ready unless failure accrual holds the endpoint out: ejected until its timer
    /// fires, then open to exactly one probe call until its outcome is known.
    fn poll_accrual(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            match self.stats.mode() {
                Mode::In => {
                    self.ejection = None;
                    return Poll::Ready(());
                }
                Mode::ProbeAllowed => return Poll::Ready(()),
                Mode::Probing => {
                    self.stats.waker.register(cx.waker());
                    if self.stats.mode() == Mode::Probing {
                        return Poll::Pending;
                    }
                }
                Mode::Ejected => {
                    self.stats.waker.register(cx.waker());
                    let Some(until) = self.stats.health().until else {
                        // Being changed by the worker; it wakes us.
                        return Poll::Pending;
                    };
                    let sleep = self
                        .ejection
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(until)));
                    if sleep.deadline() != until {
                        sleep.as_mut().reset(until);
                    }
                    ready!(sleep.as_mut().poll(cx));
                    self.ejection = None;
                    self.stats.allow_probe();
                }
            }
        }
    }

    /// Starts the connection's health watch, when one is configured.
    #[cfg(feature = "health")]
    fn watch_health(&self, send: &SendRequest<Body>) -> Option<AbortOnDrop> {
        let service = self.config.health_check.clone()?;
        let watch = super::health::watch(
            send.clone(),
            self.scheme.clone(),
            self.authority.clone(),
            service,
            self.stats.clone(),
            self.config.reconnect_backoff,
        );
        Some(AbortOnDrop(
            tokio::spawn(watch.in_current_span()).abort_handle(),
        ))
    }

    #[cfg(not(feature = "health"))]
    fn watch_health(&self, _send: &SendRequest<Body>) -> Option<AbortOnDrop> {
        None
    }

    /// Ready while the server's health service (if watched) says it serves.
    fn poll_serving(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.stats.is_serving() {
            return Poll::Ready(());
        }
        self.stats.waker.register(cx.waker());
        if self.stats.is_serving() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Ready while another stream fits under the server's stream limit.
    fn poll_streams(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.stats.has_stream_capacity() {
            return Poll::Ready(());
        }
        self.stats.waker.register(cx.waker());
        if self.stats.has_stream_capacity() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl tower::Service<http::Request<Body>> for Endpoint {
    type Response = Answer;
    type Error = CallError;
    type Future = EndpointFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), CallError>> {
        let ready = self.poll_all(cx);
        self.publish_in_service();
        ready.map(Ok)
    }

    /// Sends on the stream slot the worker reserved when it picked the endpoint.
    fn call(&mut self, req: http::Request<Body>) -> EndpointFuture {
        let permit = self.permit.take();
        let State::Connected { send, .. } = &mut self.state else {
            self.stats.stream_ended();
            let msg = format!("endpoint {} called while not connected", self.target);
            return EndpointFuture::failed(msg.into());
        };
        let probe = self.stats.take_probe();
        let origin = (&self.scheme, &self.authority);
        send_on(
            send,
            origin,
            self.config.replay.as_ref(),
            &self.stats,
            req,
            probe,
            permit,
        )
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        // The connection closes once its last sender is gone: the copy callers send
        // through must go with the endpoint.
        self.stats.set_direct(None);
    }
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("key", &self.key)
            .field("addr", &self.target)
            .field("state", &self.stats.state())
            .finish()
    }
}

/// Aborts a spawned task when dropped.
#[derive(Debug)]
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
#[path = "endpoint_tests.rs"]
mod tests;
