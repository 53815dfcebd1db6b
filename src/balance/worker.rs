//! The task that owns discovery, the endpoints and the request queue.
//!
//! Adapted from `tower::buffer`'s worker, with two differences: it polls discovery
//! and endpoint readiness on every wake-up, not only when a request is waiting (so a
//! removed instance's connection closes while idle and an inserted one connects at
//! once), and it fails a waiting request after the fail-fast timeout instead of
//! holding it forever.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_core::Stream;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::{mpsc, oneshot};
use tonic::body::Body;
use tower::discover::Change;
use tower::load::CompleteOnResponse;
use tower::load::completion::TrackCompletionFuture;
use tower::ready_cache::ReadyCache;
use tracing::{debug, info, warn};

use super::config::{EndpointConfig, LoadMetric};
use super::endpoint::{Endpoint, EndpointFuture};
use super::failfast::FailFast;
use super::info::Registry;
use super::load::{Handle, PeakEwma, cold_start_rtt};
use crate::{BoxError, Instance, InstanceKey};

type Balanced = PeakEwma<Endpoint>;

/// What the worker hands back for one request: the endpoint's response future.
pub(crate) type CallFuture = TrackCompletionFuture<EndpointFuture, CompleteOnResponse, Handle>;

/// One queued request and where to send its response future.
pub(crate) struct Message {
    pub(crate) request: http::Request<Body>,
    pub(crate) tx: oneshot::Sender<Result<CallFuture, BoxError>>,
}

pub(crate) struct Worker<D> {
    name: Arc<str>,
    discovery: Option<D>,
    requests: mpsc::Receiver<Message>,
    current: Option<Message>,
    cache: ReadyCache<InstanceKey, Balanced, http::Request<Body>>,
    closed_rx: mpsc::UnboundedReceiver<InstanceKey>,
    closed_tx: mpsc::UnboundedSender<InstanceKey>,
    failfast: FailFast,
    registry: Registry,
    config: Arc<EndpointConfig>,
    load: LoadMetric,
    rng: StdRng,
}

pub(crate) struct WorkerParts {
    pub(crate) name: Arc<str>,
    pub(crate) requests: mpsc::Receiver<Message>,
    pub(crate) failfast: FailFast,
    pub(crate) registry: Registry,
    pub(crate) config: Arc<EndpointConfig>,
    pub(crate) load: LoadMetric,
}

// === impl Worker ===

impl<D, E> Worker<D>
where
    D: Stream<Item = Result<Change<InstanceKey, Instance>, E>> + Unpin,
    E: Into<BoxError>,
{
    pub(crate) fn new(discovery: D, parts: WorkerParts) -> Self {
        let (closed_tx, closed_rx) = mpsc::unbounded_channel();
        Worker {
            name: parts.name,
            discovery: Some(discovery),
            requests: parts.requests,
            current: None,
            cache: ReadyCache::default(),
            closed_rx,
            closed_tx,
            failfast: parts.failfast,
            registry: parts.registry,
            config: parts.config,
            load: parts.load,
            rng: StdRng::from_rng(&mut rand::rng()),
        }
    }

    /// Runs until every handle of the channel is dropped.
    pub(crate) fn poll_worker(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.poll_discovery(cx);
        self.poll_closed(cx);
        self.poll_endpoints(cx);
        loop {
            if self.current.is_none() {
                match self.requests.poll_recv(cx) {
                    Poll::Ready(Some(msg)) => self.current = Some(msg),
                    Poll::Ready(None) => {
                        debug!(service = %self.name, "all channel handles dropped; worker ends");
                        return Poll::Ready(());
                    }
                    Poll::Pending => {
                        self.failfast.disarm();
                        return Poll::Pending;
                    }
                }
            }
            if self.poll_dispatch(cx).is_pending() {
                return Poll::Pending;
            }
        }
    }

    /// Applies every change discovery has ready.
    fn poll_discovery(&mut self, cx: &mut Context<'_>) {
        while let Some(discovery) = self.discovery.as_mut() {
            match Pin::new(discovery).poll_next(cx) {
                Poll::Pending => return,
                Poll::Ready(None) => {
                    warn!(
                        service = %self.name,
                        instances = self.cache.len(),
                        "discovery ended; keeping the current instances"
                    );
                    self.discovery = None;
                }
                Poll::Ready(Some(Err(error))) => {
                    let error: BoxError = error.into();
                    warn!(service = %self.name, %error, "discovery error ignored");
                }
                Poll::Ready(Some(Ok(Change::Insert(key, instance)))) => self.insert(key, instance),
                Poll::Ready(Some(Ok(Change::Remove(key)))) => self.remove(&key),
            }
        }
    }

    fn insert(&mut self, key: InstanceKey, instance: Instance) {
        let addr = instance.authority();
        let endpoint = match Endpoint::new(&instance, self.config.clone(), self.closed_tx.clone()) {
            Ok(endpoint) => endpoint,
            Err(error) => {
                warn!(service = %self.name, instance = %key, %addr, %error, "instance skipped: bad address");
                // An instance that moved to an address we cannot dial must not keep
                // its old endpoint under the same key.
                self.remove(&key);
                return;
            }
        };
        info!(service = %self.name, instance = %key, %addr, "instance inserted");
        self.registry.insert(key.clone(), endpoint.shared());
        let svc = PeakEwma::new(endpoint, self.initial_rtt(), self.load.decay());
        self.cache.push(key, svc);
    }

    /// A newcomer's first estimate: its ready peers' median (see [`cold_start_rtt`]).
    fn initial_rtt(&self) -> std::time::Duration {
        let peers = self.cache.iter_ready().map(|(_, s)| s.rtt_ns()).collect();
        let rtt = cold_start_rtt(peers, self.load.default_rtt());
        debug!(service = %self.name, ?rtt, "initial latency estimate");
        rtt
    }

    fn remove(&mut self, key: &InstanceKey) {
        if self.cache.evict(key) {
            info!(service = %self.name, instance = %key, "instance removed");
        } else {
            debug!(service = %self.name, instance = %key, "remove for an unknown instance");
        }
        self.registry.remove(key);
    }

    /// Re-checks endpoints whose connection closed, so they leave the ready set now.
    fn poll_closed(&mut self, cx: &mut Context<'_>) {
        while let Poll::Ready(Some(key)) = self.closed_rx.poll_recv(cx) {
            if let Err(error) = self.cache.check_ready(cx, &key) {
                warn!(service = %self.name, %error, "endpoint failed");
            }
        }
    }

    /// Drives connecting endpoints; leaves fail-fast when one is ready.
    fn poll_endpoints(&mut self, cx: &mut Context<'_>) {
        while let Poll::Ready(Err(error)) = self.cache.poll_pending(cx) {
            // Endpoints never fail; this is defensive.
            warn!(service = %self.name, %error, "endpoint failed");
        }
        if self.cache.ready_len() > 0 && self.failfast.leave() {
            info!(service = %self.name, "an instance is ready; leaving fail-fast");
        }
    }

    /// Sends the current request to an endpoint, or fails it when fail-fast is on.
    fn poll_dispatch(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(msg) = self.current.take() else {
            return Poll::Ready(());
        };
        if msg.tx.is_closed() {
            return Poll::Ready(());
        }
        if let Some(index) = self.pick(cx) {
            self.failfast.disarm();
            let fut = self.cache.call_ready_index(index, msg.request);
            let _ = msg.tx.send(Ok(fut));
            return Poll::Ready(());
        }
        let was_active = self.failfast.is_active();
        if self.failfast.poll_expired(cx) {
            if !was_active {
                warn!(
                    service = %self.name,
                    instances = self.cache.len(),
                    timeout = ?self.failfast.timeout(),
                    "no ready instance; entering fail-fast"
                );
            }
            let _ = msg.tx.send(Err(self.unavailable()));
            return Poll::Ready(());
        }
        self.current = Some(msg);
        Poll::Pending
    }

    fn unavailable(&self) -> BoxError {
        let msg = format!(
            "no ready instance of `{}` within {:?}",
            self.name,
            self.failfast.timeout()
        );
        Box::new(tonic::Status::unavailable(msg))
    }

    /// Power of two choices over the ready endpoints, re-checking the chosen one.
    fn pick(&mut self, cx: &mut Context<'_>) -> Option<usize> {
        // An endpoint just called sits in the pending set until polled, although it
        // is ready again at once (HTTP/2 takes another stream). Without this poll, a
        // burst of queued requests would be spread over whatever is left in the
        // ready set: with three endpoints, every third request of a burst went to the
        // last one standing, slow or not.
        if self.cache.ready_len() < self.cache.len() {
            self.poll_endpoints(cx);
        }
        for _ in 0..2 {
            while let Some(index) = self.sample() {
                match self.cache.check_ready_index(cx, index) {
                    Ok(true) => return Some(index),
                    Ok(false) => {}
                    Err(error) => warn!(service = %self.name, %error, "endpoint failed"),
                }
            }
            // Endpoints that went back to pending (just called, or not ready after
            // all) need a poll to register interest or become ready again.
            self.poll_endpoints(cx);
        }
        None
    }

    fn sample(&mut self) -> Option<usize> {
        let len = self.cache.ready_len();
        match len {
            0 => None,
            1 => Some(0),
            _ => {
                let a = self.rng.random_range(0..len);
                let mut b = self.rng.random_range(0..len - 1);
                if b >= a {
                    b += 1;
                }
                let load = |i| self.cache.get_ready_index(i).map(|(_, s)| s.cost());
                Some(if load(a) <= load(b) { a } else { b })
            }
        }
    }
}

/// The worker as a future.
pub(crate) fn run<D, E>(mut worker: Worker<D>) -> impl Future<Output = ()> + Send + 'static
where
    D: Stream<Item = Result<Change<InstanceKey, Instance>, E>> + Send + Unpin + 'static,
    E: Into<BoxError> + 'static,
{
    std::future::poll_fn(move |cx| worker.poll_worker(cx))
}
