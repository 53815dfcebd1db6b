//! The task that owns discovery, the endpoints and the request queue.
//!
//! Adapted from `tower::buffer`'s worker, with two differences: it polls discovery
//! and endpoint readiness on every wake-up, not only when a request is waiting (so a
//! removed instance's connection closes while idle and an inserted one connects at
//! once), and it fails a waiting request after the fail-fast timeout instead of
//! holding it forever.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_core::Stream;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tonic::body::Body;
use tower::discover::Change;
use tracing::{debug, info, warn};

use super::accrual::FailureAccrual;
use super::config::{EndpointConfig, LoadMetric};
use super::dispatch::EndpointFuture;
use super::endpoint::{Endpoint, MIN_HEALTHY};
use super::endpoint_set::EndpointSet;
use super::failfast::FailFast;
use super::info::EndpointState;
use super::load::{cold_start_rtt, cold_start_sample};
use super::metrics::{ChannelMetrics, Telemetry, state_index};
use super::stats::{EndpointStats, Mode};
use super::subset::Subset;
use super::table::{Candidate, Miss, Pair, Probe, Registry, Waiting};
use crate::{BoxError, Instance, InstanceKey};

/// Discovery changes applied per wake-up of the worker at most.
const CHANGE_BATCH: usize = 256;

/// How often the endpoints-by-state gauges are published at most.
const GAUGE_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

/// What the worker hands back for one request: the endpoint's response future.
pub(crate) type CallFuture = EndpointFuture;

/// One queued request and where to send its response future.
pub(crate) struct Message {
    pub(crate) request: http::Request<Body>,
    pub(crate) tx: oneshot::Sender<Result<CallFuture, BoxError>>,
    /// The endpoints that did not process this request before or failed it, to
    /// avoid on a resend or retry (empty for a first attempt: no allocation).
    pub(crate) avoid: Vec<InstanceKey>,
    /// Counts the call as waiting for the worker until the message is dropped.
    pub(crate) _waiting: Waiting,
}

/// How many times the uniform draw draws again a candidate the call avoids.
const AVOID_REDRAWS: usize = 8;

pub(crate) struct Worker<D> {
    name: Arc<str>,
    discovery: Option<D>,
    requests: mpsc::Receiver<Message>,
    resends: mpsc::UnboundedReceiver<Message>,
    current: Option<Message>,
    /// The endpoints' connection state machines, ready or not. Everything else
    /// about an endpoint (its stats, weight, tier, service state) is in `registry`,
    /// the one set of endpoints, inserted and removed with it.
    endpoints: EndpointSet,
    closed_rx: mpsc::UnboundedReceiver<InstanceKey>,
    closed_tx: mpsc::UnboundedSender<InstanceKey>,
    trips_rx: mpsc::UnboundedReceiver<InstanceKey>,
    trips_tx: mpsc::UnboundedSender<InstanceKey>,
    failfast: FailFast,
    registry: Registry,
    config: Arc<EndpointConfig>,
    accrual: Arc<FailureAccrual>,
    load: LoadMetric,
    rng: StdRng,
    /// Draws follow a traffic policy (weights or zones): see [`Registry::draw`].
    policy: bool,
    /// Subsetting: the ring of every discovered instance, and their descriptions
    /// (only the subset is connected).
    subset: Option<Subset>,
    discovered: HashMap<InstanceKey, Instance>,
    /// Members that left the subset failing, with their failure state: they count
    /// as failing until their time is up (see [`Self::reconcile`]).
    absent: HashMap<InstanceKey, Absent>,
    /// Wakes the worker when the first of the `absent` may return.
    absent_timer: Option<Pin<Box<tokio::time::Sleep>>>,
    metrics: Arc<ChannelMetrics>,
    /// When the endpoints-by-state gauges are due again (see [`Self::poll_gauges`]).
    gauges: Option<Pin<Box<tokio::time::Sleep>>>,
    gauges_at: tokio::time::Instant,
    /// Connects endpoints over in-memory transports instead of TCP.
    #[cfg(test)]
    mock_connect: Option<MockConnect>,
}

#[cfg(test)]
pub(crate) type MockConnect =
    Arc<dyn Fn(&Arc<EndpointStats>) -> super::endpoint::ConnectFuture + Send + Sync>;

/// A member that left the subset while failing.
struct Absent {
    /// Its stats, ejection and failure score included, for when it returns.
    stats: Arc<EndpointStats>,
    /// How many times in a row it left failing (its backoff's failure count).
    failures: u32,
    /// Until when it counts as failing.
    until: Instant,
}

/// Whether an endpoint is failing, for subsetting: backing off after a failed
/// connect or a short-lived connection, or retrying after one (connecting, or
/// connected for less than [`MIN_HEALTHY`], the time a connection must last for the
/// endpoint's own backoff to forgive it), ejected, or not serving. One making its
/// first connect is not: excluding it would connect a refill for every newcomer.
/// Without the retry's connected moment counted as failing, a home member whose
/// server accepts and closes connections took its place back from its refill at
/// every attempt, and gave it up again a moment later.
fn is_failing(stats: &EndpointStats, now: Instant) -> bool {
    match stats.state() {
        EndpointState::Backoff | EndpointState::Ejected | EndpointState::NotServing => true,
        EndpointState::Connecting => stats.retrying(),
        _ => stats.retrying() && stats.connected_for(now).is_none_or(|up| up < MIN_HEALTHY),
    }
}

pub(crate) struct WorkerParts {
    pub(crate) name: Arc<str>,
    pub(crate) requests: mpsc::Receiver<Message>,
    pub(crate) resends: mpsc::UnboundedReceiver<Message>,
    pub(crate) failfast: FailFast,
    pub(crate) registry: Registry,
    pub(crate) config: Arc<EndpointConfig>,
    pub(crate) accrual: Arc<FailureAccrual>,
    pub(crate) load: LoadMetric,
    pub(crate) metrics: Arc<ChannelMetrics>,
    pub(crate) subset: Option<Subset>,
}

// === impl Worker ===

impl<D, E> Worker<D>
where
    D: Stream<Item = Result<Change<InstanceKey, Instance>, E>> + Unpin,
    E: Into<BoxError>,
{
    pub(crate) fn new(discovery: D, parts: WorkerParts) -> Self {
        let (closed_tx, closed_rx) = mpsc::unbounded_channel();
        let (trips_tx, trips_rx) = mpsc::unbounded_channel();
        Worker {
            name: parts.name,
            discovery: Some(discovery),
            requests: parts.requests,
            resends: parts.resends,
            current: None,
            endpoints: EndpointSet::default(),
            closed_rx,
            closed_tx,
            trips_rx,
            trips_tx,
            failfast: parts.failfast,
            registry: parts.registry,
            config: parts.config,
            accrual: parts.accrual,
            load: parts.load,
            rng: StdRng::from_rng(&mut rand::rng()),
            policy: false,
            subset: parts.subset,
            discovered: HashMap::new(),
            absent: HashMap::new(),
            absent_timer: None,
            metrics: parts.metrics,
            gauges: None,
            gauges_at: tokio::time::Instant::now(),
            #[cfg(test)]
            mock_connect: None,
        }
    }

    /// Runs until every handle of the channel is dropped.
    pub(crate) fn poll_worker(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.poll_discovery(cx);
        self.poll_closed(cx);
        // Endpoints first, so that the capacity guard sees the ready set as it is.
        self.poll_endpoints(cx);
        self.poll_trips(cx);
        if self.reconcile() {
            // Endpoints that joined start connecting when first polled.
            self.poll_endpoints(cx);
        }
        self.poll_absent(cx);
        self.policy = self.registry.policy_active();
        self.poll_gauges(cx);
        loop {
            if self.current.is_none()
                && let Poll::Ready(Some(msg)) = self.resends.poll_recv(cx)
            {
                self.current = Some(msg);
            }
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

    /// Applies the changes discovery has ready, [`CHANGE_BATCH`] at most per wake-up:
    /// with more pending, the worker wakes itself again and serves the calls waiting
    /// in between, so replacing a whole fleet does not hold requests up.
    fn poll_discovery(&mut self, cx: &mut Context<'_>) {
        let mut applied = 0;
        while let Some(discovery) = self.discovery.as_mut() {
            if applied == CHANGE_BATCH {
                cx.waker().wake_by_ref();
                return;
            }
            applied += 1;
            match Pin::new(discovery).poll_next(cx) {
                Poll::Pending => return,
                Poll::Ready(None) => {
                    warn!(
                        service = %self.name,
                        instances = self.endpoints.len(),
                        "discovery ended; keeping the current instances"
                    );
                    self.discovery = None;
                }
                Poll::Ready(Some(Err(error))) => {
                    let error: BoxError = error.into();
                    self.metrics.discovery_error();
                    warn!(service = %self.name, %error, "discovery error ignored");
                }
                Poll::Ready(Some(Ok(Change::Insert(key, instance)))) => {
                    self.metrics.discovery_change();
                    self.insert(key, instance);
                }
                Poll::Ready(Some(Ok(Change::Remove(key)))) => {
                    self.metrics.discovery_change();
                    self.remove(&key);
                }
            }
        }
    }

    /// A discovered instance: connected at once, or, under subsetting, a member of
    /// the ring that [`reconcile`](Self::reconcile) connects when it is in the subset
    /// (and one already connected is updated in place).
    fn insert(&mut self, key: InstanceKey, instance: Instance) {
        if let Some(subset) = &mut self.subset {
            subset.insert(key.clone());
            let connected = self.registry.contains(&key);
            self.discovered.insert(key.clone(), instance.clone());
            if connected {
                self.connect(key, instance);
            }
            return;
        }
        self.connect(key, instance);
    }

    /// An instance gone from discovery.
    fn remove(&mut self, key: &InstanceKey) {
        if let Some(subset) = &mut self.subset {
            subset.remove(key);
            self.discovered.remove(key);
            self.absent.remove(key);
        }
        self.disconnect(key);
    }

    /// Under subsetting, connects the subset and disconnects the rest: the home
    /// subset (the members this client's window covers) and, for each home member
    /// that is failing (backing off after a failed connect or a short-lived
    /// connection, ejected, or not serving), the next member on the ring in its
    /// place. A failing home member stays connected (reconnecting, probing) and wins
    /// its place back when it recovers; the refill then leaves. O(k) per wake-up.
    /// Returns whether any endpoint joined.
    ///
    /// A member that leaves while failing (a refill that failed too) is remembered
    /// ([`Absent`]): it counts as failing for a backoff that grows each time it
    /// leaves failing in a row, and returns with its stats (ejection, failure score).
    /// Without the memory it was wanted again at the next wake-up as a new member,
    /// and a refused refill became a connect loop paced only by connect latency.
    /// It returns on trial, beside the refill that took its place: that refill
    /// leaves only once the returning member is forgiven (in service on a connection
    /// that has lasted [`MIN_HEALTHY`]), so a member that keeps failing does not take
    /// a healthy one in and out of the subset with it.
    fn reconcile(&mut self) -> bool {
        let Some(subset) = &self.subset else {
            return false;
        };
        let now = Instant::now();
        let failing_now = |key: &InstanceKey| {
            self.registry
                .stats(key)
                .is_some_and(|stats| is_failing(&stats, now))
        };
        let failing = |key: &InstanceKey| {
            failing_now(key) || self.absent.get(key).is_some_and(|a| a.until > now)
        };
        // Back from its time out, not yet forgiven: on trial.
        let returning = |key: &InstanceKey| self.absent.get(key).is_some_and(|a| a.until <= now);
        let mut wanted: Vec<InstanceKey> = subset.select(|_| false).cloned().collect();
        // The members that carry the traffic as if those on trial were still out, so
        // that the refill in a returning member's place stays until that member has
        // proved itself; then those on trial, connected beside them.
        for key in subset.select(|k| failing(k) || returning(k)) {
            if !wanted.contains(key) {
                wanted.push(key.clone());
            }
        }
        for key in subset.select(failing) {
            if returning(key) && !wanted.contains(key) {
                wanted.push(key.clone());
            }
        }
        let extra: Vec<(InstanceKey, bool)> = self
            .registry
            .keys()
            .into_iter()
            .filter(|k| !wanted.contains(k))
            .map(|k| {
                let failed = failing_now(&k);
                (k, failed)
            })
            .collect();
        // A member serving again is forgiven its past failures, once its connection
        // has proved healthy (as long as the endpoint's own reconnect backoff asks):
        // a server that accepts connections and closes them is connected for a
        // moment each time, and forgiving it then made every return its first.
        let recovered: Vec<InstanceKey> = wanted
            .iter()
            .filter(|k| self.absent.contains_key(*k))
            .filter(|k| {
                self.registry.stats(k).is_some_and(|stats| {
                    stats.state() == EndpointState::Ready
                        && stats.mode() == Mode::In
                        && stats.connected_for(now).is_some_and(|up| up >= MIN_HEALTHY)
                })
            })
            .cloned()
            .collect();
        for key in recovered {
            self.absent.remove(&key);
        }
        for (key, failed) in extra {
            debug!(service = %self.name, instance = %key, failed, "leaves the subset");
            if failed {
                self.remember(&key, now);
            }
            self.disconnect(&key);
        }
        let mut joined = false;
        for key in wanted {
            if !self.registry.contains(&key)
                && let Some(instance) = self.discovered.get(&key).cloned()
            {
                debug!(service = %self.name, instance = %key, "joins the subset");
                self.connect(key, instance);
                joined = true;
            }
        }
        joined
    }

    /// Remembers a member leaving the subset failing: out for the reconnect
    /// backoff's next delay (or its ejection, if longer).
    fn remember(&mut self, key: &InstanceKey, now: Instant) {
        let Some(stats) = self.registry.stats(key) else {
            return;
        };
        let failures = self
            .absent
            .get(key)
            .map_or(1, |a| a.failures.saturating_add(1));
        let delay = self.config.reconnect_backoff.delay(failures);
        let until = (now + delay).max(stats.ejected_until().unwrap_or(now));
        debug!(service = %self.name, instance = %key, failures, ?delay, "failing member out of the subset");
        self.absent.insert(
            key.clone(),
            Absent {
                stats,
                failures,
                until,
            },
        );
    }

    /// Wakes the worker when the first remembered member's time is up, so that it
    /// may return to the subset while no other wake-up comes. O(remembered).
    ///
    /// Also when the first member still proving itself (retrying after failures, or
    /// back on trial, on a connection younger than [`MIN_HEALTHY`]) has proved
    /// itself, so that its refill leaves without waiting for another wake-up. Under
    /// subsetting only: O(connected members).
    fn poll_absent(&mut self, cx: &mut Context<'_>) {
        if self.subset.is_none() {
            return;
        }
        let now = Instant::now();
        let absent = &self.absent;
        let mut proving = None::<Instant>;
        self.registry.for_each(|stats| {
            if !stats.retrying() && !absent.contains_key(&stats.key) {
                return;
            }
            if let Some(up) = stats.connected_for(now)
                && up < MIN_HEALTHY
            {
                let at = now + (MIN_HEALTHY - up);
                proving = Some(proving.map_or(at, |p| p.min(at)));
            }
        });
        let next = absent
            .values()
            .map(|a| a.until)
            .filter(|&u| u > now)
            .chain(proving)
            .min();
        let Some(next) = next else {
            self.absent_timer = None;
            return;
        };
        let timer = self
            .absent_timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(next)));
        if timer.deadline() != next {
            timer.as_mut().reset(next);
        }
        if timer.as_mut().poll(cx).is_ready() {
            cx.waker().wake_by_ref();
        }
    }

    fn connect(&mut self, key: InstanceKey, instance: Instance) {
        let addr = instance.authority();
        let policy = self.registry.policy();
        let (weight, tier) = (policy.weight(&instance), policy.tier(&instance));
        if let Some(stats) = self.registry.stats(&key)
            && stats.address == addr
        {
            // Only tags, metadata, weight or locality changed: keep the connection
            // and the load estimate.
            debug!(service = %self.name, instance = %key, %addr, weight, tier, "instance updated in place");
            if self.registry.placement(&key) != Some((weight, tier)) {
                self.registry.insert(key, stats, weight, tier);
            }
            return;
        }
        // A member back in the subset keeps what it had when it left failing.
        let remembered = self
            .absent
            .get(&key)
            .filter(|a| a.stats.address == addr)
            .map(|a| a.stats.clone());
        let stats = match remembered {
            Some(stats) => stats,
            None => EndpointStats::new(
                key.clone(),
                addr.clone(),
                self.initial_rtt(),
                self.load.decay(),
                self.accrual.clone(),
                self.trips_tx.clone(),
                Telemetry {
                    channel: self.metrics.clone(),
                    endpoint: self.metrics.endpoint(&addr),
                },
            ),
        };
        let mut endpoint = match Endpoint::new(
            &instance,
            self.config.clone(),
            stats.clone(),
            self.closed_tx.clone(),
        ) {
            Ok(endpoint) => endpoint,
            Err(error) => {
                warn!(service = %self.name, instance = %key, %addr, %error, "instance skipped: bad address");
                // An instance that moved to an address we cannot dial must not keep
                // its old endpoint under the same key.
                self.remove(&key);
                return;
            }
        };
        #[cfg(test)]
        if let Some(mock) = self.mock_connect.clone() {
            let stats = stats.clone();
            endpoint.mock_connect = Some(Arc::new(move || mock(&stats)));
        }
        endpoint.publish_to(self.registry.clone());
        info!(service = %self.name, instance = %key, %addr, weight, tier, "instance inserted");
        self.registry.insert(key.clone(), stats, weight, tier);
        self.endpoints.push(key, endpoint);
    }

    /// A newcomer's first estimate: the median of a bounded sample of its ready peers
    /// (see [`cold_start_rtt`] and [`cold_start_sample`]).
    fn initial_rtt(&self) -> std::time::Duration {
        let now = tokio::time::Instant::now();
        let peers = cold_start_sample(self.endpoints.ready_len())
            .filter_map(|i| self.endpoints.get_ready_index(i))
            .map(|(_, s)| s.stats().rtt.get(now))
            .collect();
        let rtt = cold_start_rtt(peers, self.load.default_rtt());
        debug!(service = %self.name, ?rtt, "initial latency estimate");
        rtt
    }

    fn disconnect(&mut self, key: &InstanceKey) {
        if self.endpoints.evict(key) {
            info!(service = %self.name, instance = %key, "instance removed");
        } else {
            debug!(service = %self.name, instance = %key, "remove for an unknown instance");
        }
        self.registry.remove(key);
    }

    /// Handles the endpoints whose failure detectors tripped: ejects each one the
    /// capacity guard allows. Endpoints whose health changed come this way too: the
    /// re-check publishes their service state at once.
    fn poll_trips(&mut self, cx: &mut Context<'_>) {
        while let Poll::Ready(Some(key)) = self.trips_rx.poll_recv(cx) {
            let Some(stats) = self.registry.stats(&key) else {
                continue;
            };
            self.endpoints.check_ready(cx, &key);
            if !stats.take_trip() {
                continue;
            }
            if self.may_eject(&key) {
                stats.eject();
                self.endpoints.check_ready(cx, &key);
            } else {
                stats.refused();
                debug!(
                    service = %self.name,
                    instance = %key,
                    max = self.accrual.max_ejected(self.registry.len()),
                    "endpoint failing but not ejected: too few endpoints would be left"
                );
            }
        }
    }

    /// The capacity guard: at most the configured fraction of the endpoints out at
    /// once, and never the last ready one. An endpoint due a probe counts as out
    /// until its probe succeeds: it takes one call, not its share.
    fn may_eject(&self, key: &InstanceKey) -> bool {
        let (mut all, mut out, mut in_service) = (0, 0, 0);
        self.registry.for_each(|stats| {
            all += 1;
            if stats.key == *key {
                return;
            }
            if stats.mode() != Mode::In {
                out += 1;
            } else if stats.in_service() {
                // In service whatever their load: busy endpoints count, connecting
                // ones and those due a probe not.
                in_service += 1;
            }
        });
        out < self.accrual.max_ejected(all) && in_service > 0
    }

    /// Whether any endpoint could take a call but for its load.
    fn any_in_service(&self) -> bool {
        let mut any = false;
        self.registry.for_each(|stats| any |= stats.in_service());
        any
    }

    /// Panic mode: no endpoint is in service (connected, not ejected, serving), but
    /// some connected ones are held out by failure accrual. A failing instance is
    /// better than none, so every ejection is lifted. Endpoints that are merely busy
    /// (at their stream or concurrency limit) count as in service and prevent it.
    fn lift_ejections(&mut self, cx: &mut Context<'_>) -> bool {
        let mut lifted = 0;
        self.registry.for_each(|stats| {
            if stats.mode() != Mode::In {
                stats.lift();
                lifted += 1;
            }
        });
        if lifted > 0 {
            warn!(service = %self.name, lifted, "no endpoint ready; lifting every ejection");
            self.poll_endpoints(cx);
        }
        lifted > 0
    }

    /// Publishes the endpoints by state (feature `metrics` only): at most every
    /// [`GAUGE_INTERVAL`], on the first wake-up after it, and by timer when no
    /// wake-up comes, so the gauges settle on the last state. O(n) per publication.
    fn poll_gauges(&mut self, cx: &mut Context<'_>) {
        if !cfg!(feature = "metrics") {
            return;
        }
        let now = tokio::time::Instant::now();
        if now >= self.gauges_at {
            let mut by_state = [0usize; 6];
            self.registry
                .for_each(|stats| by_state[state_index(stats.state())] += 1);
            self.metrics.set_endpoints(by_state);
            if self.registry.policy().zoned() {
                self.metrics.set_tier_shares(self.registry.shares());
            }
            self.gauges_at = now + GAUGE_INTERVAL;
            self.gauges = None;
            return;
        }
        let at = self.gauges_at;
        let timer = self
            .gauges
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
        if timer.as_mut().poll(cx).is_ready() {
            self.gauges = None;
            cx.waker().wake_by_ref();
        }
    }

    /// Re-checks endpoints whose connection closed, so they leave the ready set now.
    fn poll_closed(&mut self, cx: &mut Context<'_>) {
        while let Poll::Ready(Some(key)) = self.closed_rx.poll_recv(cx) {
            self.endpoints.check_ready(cx, &key);
        }
    }

    /// Drives connecting endpoints; leaves fail-fast when one is ready.
    fn poll_endpoints(&mut self, cx: &mut Context<'_>) {
        self.endpoints.poll_woken(cx);
        if self.endpoints.ready_len() > 0 && self.failfast.leave() {
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
        let mut picked = self.pick_probe(cx, &msg.avoid);
        if picked.is_none() {
            picked = self.pick(cx, &msg.avoid);
        }
        if picked.is_none() && !self.any_in_service() && self.lift_ejections(cx) {
            picked = self.pick(cx, &msg.avoid);
        }
        if let Some(index) = picked {
            self.failfast.disarm();
            let fut = self.endpoints.call_ready_index(index, msg.request);
            let _ = msg.tx.send(Ok(fut));
            return Poll::Ready(());
        }
        if self.any_in_service() {
            // Busy, not gone (at their stream or concurrency limits): the call waits
            // for a stream to free up, which wakes the worker; fail-fast is for when
            // nothing could take it.
            self.failfast.disarm();
            self.current = Some(msg);
            return Poll::Pending;
        }
        let was_active = self.failfast.is_active();
        if self.failfast.poll_expired(cx) {
            if !was_active {
                warn!(
                    service = %self.name,
                    instances = self.endpoints.len(),
                    timeout = ?self.failfast.timeout(),
                    "no ready instance; entering fail-fast"
                );
            }
            self.metrics.unavailable();
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

    /// The first probe due that can go now (see [`Registry::next_probe`]): an
    /// endpoint whose ejection ran out gets the next call, whatever the fleet size.
    /// One due but busy (at its stream limit) or the endpoint the call avoids stays
    /// queued; one no longer due, gone, or out of service leaves the queue (its
    /// endpoint queues it again when it is back in service).
    fn pick_probe(&mut self, cx: &mut Context<'_>, avoid: &[InstanceKey]) -> Option<usize> {
        if !self.registry.probes_due() {
            return None;
        }
        if self.endpoints.ready_len() < self.endpoints.len() {
            self.poll_endpoints(cx);
        }
        let (endpoints, registry) = (&mut self.endpoints, &self.registry);
        let stats = registry.next_probe(|s| {
            let current = registry.is_current(s);
            if !current || s.mode() != Mode::ProbeAllowed {
                return Probe::Drop;
            }
            if avoid.contains(&s.key) {
                return Probe::Keep;
            }
            let ready = endpoints
                .ready_index(&s.key)
                .is_some_and(|i| endpoints.check_ready_index(cx, i));
            if ready && s.try_reserve_stream() {
                Probe::Take
            } else if s.in_service() {
                Probe::Keep
            } else {
                Probe::Drop
            }
        })?;
        let index = self.endpoints.ready_index(&stats.key);
        if index.is_none() {
            // Not reachable: it was ready a moment ago, and nothing polled it since.
            stats.stream_ended();
        }
        index
    }

    /// Whether the ready endpoint at `index` takes the call: ready when re-checked,
    /// and a stream slot reserved for the call (see
    /// [`EndpointStats::try_reserve_stream`]). One whose last slot a caller took in
    /// the meantime goes back to pending until a stream frees up.
    fn claim(&mut self, cx: &mut Context<'_>, index: usize) -> bool {
        if !self.endpoints.check_ready_index(cx, index) {
            return false;
        }
        let reserved = self
            .endpoints
            .get_ready_index(index)
            .is_some_and(|(_, endpoint)| endpoint.stats().try_reserve_stream());
        if !reserved {
            // Full now: the re-check moves it to pending, woken when a stream ends.
            self.endpoints.check_ready_index(cx, index);
        }
        reserved
    }

    /// Power of two choices over the ready endpoints, re-checking the chosen one.
    fn pick(&mut self, cx: &mut Context<'_>, avoid: &[InstanceKey]) -> Option<usize> {
        // An endpoint just called is out of the ready set until polled, although it
        // is ready again at once (HTTP/2 takes another stream). Without this poll, a
        // burst of queued requests would be spread over whatever is left in the
        // ready set: with three endpoints, every third request of a burst went to the
        // last one standing, slow or not.
        if self.endpoints.ready_len() < self.endpoints.len() {
            self.poll_endpoints(cx);
        }
        for round in 0..2 {
            // Under a traffic policy, the first round draws by the policy only; the
            // uniform draw may decide in the second, once endpoints were polled, so a
            // share just gone stale never leaves a call waiting while one is ready
            // (nor sends one out of the client's zone while its zone has one ready).
            let uniform_ok = !self.policy || round == 1;
            while let Some(index) = self.sample(avoid, uniform_ok) {
                if self.claim(cx, index) {
                    return Some(index);
                }
            }
            // Endpoints just called are queued for a poll that finds them ready
            // again (those a re-check found not ready wait for their own wakers).
            self.poll_endpoints(cx);
        }
        None
    }

    /// Power of two choices; a resend avoids the endpoint that refused it when it can.
    fn sample(&mut self, avoid: &[InstanceKey], uniform_ok: bool) -> Option<usize> {
        if self.policy {
            match self.sample_policy(avoid) {
                Ok(Some(index)) => return Some(index),
                // The zone the shares keep every call in has an endpoint in service
                // that is busy this moment: the call waits for it (the worker is
                // woken when a stream frees up) instead of leaving the zone. A retry
                // or hedge (one with instances to avoid) may leave it instead.
                Err(Miss::Busy) if self.registry.policy().zoned() && avoid.is_empty() => {
                    return None;
                }
                Ok(None) | Err(_) => {}
            }
        }
        if uniform_ok {
            self.sample_uniform(avoid)
        } else {
            None
        }
    }

    /// Power of two choices drawn by the traffic policy (tiers and weights) among
    /// the ready endpoints other than `avoid`, decided as every pick is (see
    /// [`Pair::choose`]). A miss when the draw finds none: [`Miss::Busy`] when the
    /// drawn tier has an endpoint in service, not avoided, that is not ready this
    /// moment; otherwise the uniform draw may decide, so a stale share never leaves
    /// a call waiting while some endpoint is ready.
    fn sample_policy(&mut self, avoid: &[InstanceKey]) -> Result<Option<usize>, Miss> {
        let endpoints = &self.endpoints;
        let pair = self.registry.draw(&mut self.rng, true, |s| {
            if avoid.contains(&s.key) {
                Candidate::Skip
            } else if endpoints.ready_index(&s.key).is_some() {
                Candidate::Take
            } else if s.stream_limit_known() {
                Candidate::Busy
            } else {
                // Its server has not said how many streams it takes (no SETTINGS
                // yet): not a busy endpoint to wait for.
                Candidate::Skip
            }
        })?;
        Ok(self.ready_index(&pair.choose(avoid)))
    }

    /// Power of two choices drawn uniformly from the ready set, decided as every
    /// pick is (see [`Pair::choose`]), every load counting once. A single ready
    /// endpoint takes the call, even the one to avoid.
    fn sample_uniform(&mut self, avoid: &[InstanceKey]) -> Option<usize> {
        let len = self.endpoints.ready_len();
        match len {
            0 => None,
            1 => Some(0),
            _ => {
                // Candidates the call avoids are drawn again, a few times at most, so
                // that a retry finds an instance it has not tried when one is ready.
                let endpoints = &self.endpoints;
                let avoided = |i: usize| {
                    endpoints
                        .get_ready_index(i)
                        .is_some_and(|(key, _)| avoid.contains(key))
                };
                let mut a = self.rng.random_range(0..len);
                for _ in 0..AVOID_REDRAWS {
                    if !avoided(a) {
                        break;
                    }
                    a = self.rng.random_range(0..len);
                }
                if avoided(a) {
                    // Most of the ready set is avoided: the first one that is not,
                    // from where the draw stopped (O(n), on a retry only).
                    if let Some(i) = (1..len).map(|d| (a + d) % len).find(|&i| !avoided(i)) {
                        a = i;
                    }
                }
                let mut b = 0;
                for _ in 0..=AVOID_REDRAWS {
                    b = self.rng.random_range(0..len - 1);
                    if b >= a {
                        b += 1;
                    }
                    if !avoided(b) {
                        break;
                    }
                }
                let candidate = |i| {
                    self.endpoints
                        .get_ready_index(i)
                        .map(|(_, endpoint)| (endpoint.stats().clone(), 1.0))
                };
                let pair = Pair {
                    a: candidate(a)?,
                    b: candidate(b),
                };
                self.ready_index(&pair.choose(avoid))
            }
        }
    }

    /// The index in the ready set of the endpoint `stats` belongs to.
    fn ready_index(&self, stats: &EndpointStats) -> Option<usize> {
        self.endpoints.ready_index(&stats.key)
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

#[cfg(test)]
#[path = "worker_tests.rs"]
mod tests;
