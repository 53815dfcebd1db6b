//! What one endpoint knows about its own traffic, shared by the endpoint, the calls in
//! flight on it, the worker and [`BalancedChannel::endpoints`].
//!
//! Calls write it from whatever task completes them: the load (Peak-EWMA estimate,
//! calls waiting for headers, when it last heard from the instance), the open streams
//! (for the server's stream limit) and the failure detectors. The hot path touches
//! atomics and two uncontended locks (the estimate's writer lock and the detectors').
//!
//! [`BalancedChannel::endpoints`]: super::BalancedChannel::endpoints

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

use futures_util::task::AtomicWaker;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{info, warn};

use super::accrual::{CodeSet, Detector, FailureAccrual, Verdict};
use super::direct::Direct;
use super::info::EndpointState;
use super::load::RttEstimate;
use super::metrics::Telemetry;
use crate::InstanceKey;

/// How much recent failures weigh in the cost: it is multiplied by
/// `1 + FAILURE_PENALTY × failure score`, the score being a moving average of failures
/// (0 to 1) that fades with the load's decay. An instance that fails every call thus
/// costs up to 11 times its latency estimate, so it loses comparisons against healthy
/// peers unless they are that much busier (linkerd's load biaser has the same aim).
/// The penalty is bounded, so a failing instance still gets calls under load and
/// failure accrual can judge it.
const FAILURE_PENALTY: f64 = 10.0;

/// The penalty of an endpoint that failure accrual judged failing but the capacity
/// guard kept in service: up to 1001 times its cost. The judgement is made, so the
/// bound no longer needs to leave it calls to judge it by; with 11× only, a healthy
/// peer whose estimate one slow answer raised (a millisecond where 100 µs is usual)
/// would lose comparisons to an instance that fails every call in 100 µs.
const REFUSED_PENALTY: f64 = 1000.0;

/// The stream limit before the server's first SETTINGS frame: an endpoint whose
/// server has not spoken yet takes no call (a frozen server's new connection is not
/// ready, and the first burst does not queue above a limit still unknown).
const UNKNOWN_LIMIT: u64 = u64::MAX;

/// The failure score under which an endpoint whose estimate expired counts as stale.
const STALE_FAILURES: f64 = 0.01;

/// How much lower the second endpoint's latency must be for it to take a call from
/// the first, when no call waits on either (see [`EndpointStats::prefer_second`]):
/// estimates closer than 1.5× are noise (one late answer moves a Peak-EWMA estimate
/// by more, and a recent peak is remembered for seconds), and the first drawn keeps
/// the call, so the draw's proportions (uniform, or by weight) hold among instances
/// that answer alike.
/// Without it, at low load, whichever instance happened to answer fastest last took
/// nearly every call (with 1.25, one call at a time, weights 1:2:4 still spread up to
/// 31 points from their shares; with 1.5, 5 at most over three runs). Between equally
/// weighted instances under load the comparison is strict: a tolerance there lets a
/// slow instance drawn first keep calls (measured: with 1.5 under load too, a 10 ms
/// slow server's share rose from 1.0% to 1.1–1.6% and the p99 from 0.35× to 0.9×
/// tonic's balancer's).
const CLEARLY: f64 = 1.5;

/// How much lower the second endpoint's typical latency (see
/// [`RttEstimate::typical`](super::load::RttEstimate::typical)) must be for it to take
/// a call from the first when their weights differ and their loads are alike: the
/// point from which latency overrides a weight. A typical latency follows about ten
/// answers, so 2× takes a lasting slowdown (twice as slow after two answers 40 times
/// late, where a single answer would have to be over 1,024 times late); at 1.5× one
/// answer fifty times late could move an instance past it, and the instance then lost
/// every comparison until its estimate expired (measured while typical latencies
/// decided at rest too: one call at a time, weights 1:2:4 strayed up to 11 points from
/// their shares).
const TYPICALLY: f64 = 2.0;

/// The weight of one call in the failure score.
const FAILURE_ALPHA: f64 = 0.2;

/// Whether the endpoint takes calls, as failure accrual sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Mode {
    /// In service.
    In = 0,
    /// Ejected until the time in [`Health::until`].
    Ejected = 1,
    /// The ejection ended; one probe call may go.
    ProbeAllowed = 2,
    /// The probe call is in flight.
    Probing = 3,
}

pub(crate) struct EndpointStats {
    pub(crate) key: InstanceKey,
    pub(crate) address: String,
    /// The connection state ([`EndpointState`] as a byte), written by the endpoint.
    conn: AtomicU8,
    /// When the current connection came up, in nanoseconds since the estimate's
    /// epoch, plus one; 0 while there is none. It names the connection too (see
    /// [`connection`](Self::connection)).
    connected_at: AtomicU64,
    /// The last connection a call saw lost (its `connected_at`), 0 for none: while it
    /// is the current one, the endpoint takes no call (see
    /// [`connection_lost`](Self::connection_lost)).
    lost: AtomicU64,
    /// The last connect failed, or the last connection closed soon after opening:
    /// a connect in progress is a retry (see [`retrying`](Self::retrying)).
    retrying: AtomicBool,
    mode: AtomicU8,
    pub(crate) rtt: RttEstimate,
    /// Calls sent and not yet answered with headers.
    pending: AtomicUsize,
    /// A call was sent on the endpoint: its estimate is no longer only a guess, or
    /// will not be once the call is answered.
    tried: AtomicBool,
    /// `f64` bits of the failure score at `failure_at` (see [`FAILURE_PENALTY`]).
    failure_score: AtomicU64,
    /// When the failure score was last updated (nanoseconds since the estimate's epoch).
    failure_at: AtomicU64,
    /// When a response last arrived, or a first call went out to an idle endpoint
    /// (nanoseconds since the estimate's epoch).
    last_heard: AtomicU64,
    /// HTTP/2 streams open on the connection, or reserved for a call about to be
    /// sent: from the reservation to the end of the response.
    open_streams: AtomicUsize,
    /// The server's `SETTINGS_MAX_CONCURRENT_STREAMS` on the current connection,
    /// [`UNKNOWN_LIMIT`] until its first SETTINGS frame arrives.
    max_streams: AtomicU64,
    /// The last connection ended with `GOAWAY(ENHANCE_YOUR_CALM)`: too many PINGs.
    pub(crate) too_many_pings: AtomicBool,
    /// The server's health service said `NOT_SERVING` (client-side health checking).
    not_serving: AtomicBool,
    /// In the registry's queue of probes due (see [`Registry::queue_probe`]).
    ///
    /// [`Registry::queue_probe`]: super::table::Registry::queue_probe
    pub(crate) probe_queued: AtomicBool,
    /// The capacity guard refused to eject the endpoint and it has not succeeded since:
    /// its failures are penalised at once and by [`REFUSED_PENALTY`]. Written under the
    /// health lock.
    refused: AtomicBool,
    /// Woken when the endpoint may be ready again (ejection changes, a stream freed).
    pub(crate) waker: AtomicWaker,
    /// The current connection, for callers that send without the worker; written by
    /// the endpoint on each connection change.
    direct: RwLock<Option<Direct>>,
    health: Mutex<Health>,
    config: Arc<FailureAccrual>,
    trips: mpsc::UnboundedSender<InstanceKey>,
    /// Where its calls are counted (no-ops without the `metrics` feature).
    pub(crate) telemetry: Telemetry,
}

/// The failure detectors and the ejection of one endpoint.
#[derive(Debug)]
pub(crate) struct Health {
    detector: Detector,
    epoch: Instant,
    pub(crate) until: Option<Instant>,
    /// Ejections in a row (reset after serving for the backoff's maximum).
    ejections: u32,
    returned_at: Option<Instant>,
    /// A trip was sent to the worker and not yet handled.
    trip_sent: bool,
    /// Failures of the current run not yet in the failure score (see
    /// [`EndpointStats::record`]).
    deferred: u32,
}

// === impl EndpointStats ===

impl EndpointStats {
    pub(crate) fn new(
        key: InstanceKey,
        address: String,
        initial_rtt: Duration,
        decay: Duration,
        config: Arc<FailureAccrual>,
        trips: mpsc::UnboundedSender<InstanceKey>,
        telemetry: Telemetry,
    ) -> Arc<Self> {
        Arc::new(EndpointStats {
            key,
            address,
            conn: AtomicU8::new(EndpointState::Connecting.as_u8()),
            connected_at: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            retrying: AtomicBool::new(false),
            mode: AtomicU8::new(Mode::In as u8),
            rtt: RttEstimate::new(initial_rtt, decay),
            pending: AtomicUsize::new(0),
            tried: AtomicBool::new(false),
            failure_score: AtomicU64::new(0f64.to_bits()),
            failure_at: AtomicU64::new(0),
            last_heard: AtomicU64::new(0),
            open_streams: AtomicUsize::new(0),
            max_streams: AtomicU64::new(UNKNOWN_LIMIT),
            too_many_pings: AtomicBool::new(false),
            not_serving: AtomicBool::new(false),
            probe_queued: AtomicBool::new(false),
            refused: AtomicBool::new(false),
            waker: AtomicWaker::new(),
            direct: RwLock::new(None),
            health: Mutex::new(Health {
                detector: Detector::new(),
                epoch: Instant::now(),
                until: None,
                ejections: 0,
                returned_at: None,
                trip_sent: false,
                deferred: 0,
            }),
            config,
            trips,
            telemetry,
        })
    }

    /// The stats of `instance` alone (tests of an endpoint without a worker): a 30 ms
    /// initial estimate, the default decay and failure accrual, trips going nowhere,
    /// no metrics.
    #[cfg(test)]
    pub(crate) fn detached(instance: &crate::Instance) -> Arc<Self> {
        let (trips, _) = mpsc::unbounded_channel();
        EndpointStats::new(
            instance.key().clone(),
            instance.authority(),
            Duration::from_millis(30),
            Duration::from_secs(10),
            Arc::new(FailureAccrual::default()),
            trips,
            Telemetry::detached(),
        )
    }

    pub(crate) fn set_direct(&self, direct: Option<Direct>) {
        *self.direct.write().unwrap_or_else(PoisonError::into_inner) = direct;
    }

    /// The current connection to send on without the worker, if it is open; callers
    /// check [`direct_ready`](Self::direct_ready) first.
    pub(crate) fn direct(&self) -> Option<Direct> {
        let direct = self.direct.read().unwrap_or_else(PoisonError::into_inner);
        direct.as_ref().filter(|d| d.is_ready()).cloned()
    }

    /// Whether the endpoint takes a call now by every rule the worker applies, as far
    /// as atomics tell (no lock, no clone): connected on a connection no call saw
    /// lost, in service (not ejected, no probe due), serving, under the server's
    /// stream limit.
    pub(crate) fn direct_ready(&self) -> bool {
        self.mode() == Mode::In
            && self.in_service()
            && self.has_stream_capacity()
            && !self.current_lost()
    }

    /// The current connection, for a call to name the one it is sent on (0: none).
    pub(crate) fn connection(&self) -> u64 {
        self.connected_at.load(Ordering::Relaxed)
    }

    /// A call sent on `connection` saw it lost (reset, closed, gone away). The
    /// endpoint stops taking calls on it at once, before hyper's own connection task
    /// has noticed: the streams of a killed server end with their errors first, and
    /// a call waiting for a stream (a busy zone, a stream limit) was woken by them and
    /// sent on the dead connection, where it failed without having been processed.
    /// Called before the call's stream slot is given back (whose release publishes
    /// the mark to whoever takes the slot). A connection that came up since is not
    /// affected. The first mark of a connection wakes the endpoint and has the worker
    /// re-check it, so that it reconnects and leaves the table draws come from,
    /// rather than wait for a draw to land on it.
    pub(crate) fn connection_lost(&self, connection: u64) {
        if connection != 0 && self.lost.swap(connection, Ordering::AcqRel) != connection {
            self.waker.wake();
            // A key without a trip is only re-checked (see `set_serving`).
            let _ = self.trips.send(self.key.clone());
        }
    }

    /// Whether a call saw the current connection lost.
    pub(crate) fn current_lost(&self) -> bool {
        let current = self.connected_at.load(Ordering::Acquire);
        current != 0 && self.lost.load(Ordering::Acquire) == current
    }

    pub(crate) fn set_conn(&self, state: EndpointState) {
        self.conn.store(state.as_u8(), Ordering::Relaxed);
    }

    /// The current connection came up at `since` (`None`: there is none).
    pub(crate) fn set_connected(&self, since: Option<Instant>) {
        let at = since.map_or(0, |t| self.rtt.since_epoch(t).saturating_add(1));
        self.connected_at.store(at, Ordering::Relaxed);
    }

    /// Whether the endpoint is retrying after a failed connect or a connection that
    /// closed soon after opening (its reconnect backoff counts failures), rather than
    /// making its first connect or replacing one that lasted.
    pub(crate) fn retrying(&self) -> bool {
        self.retrying.load(Ordering::Relaxed)
    }

    pub(crate) fn set_retrying(&self, retrying: bool) {
        self.retrying.store(retrying, Ordering::Relaxed);
    }

    /// How long the current connection has been up (`None`: there is none).
    pub(crate) fn connected_for(&self, now: Instant) -> Option<Duration> {
        match self.connected_at.load(Ordering::Relaxed) {
            0 => None,
            at => {
                let up = self.rtt.since_epoch(now).saturating_sub(at - 1);
                Some(Duration::from_nanos(up))
            }
        }
    }

    /// The state [`EndpointInfo`](super::EndpointInfo) shows.
    pub(crate) fn state(&self) -> EndpointState {
        let conn = EndpointState::from_u8(self.conn.load(Ordering::Relaxed));
        match (conn, self.mode()) {
            (EndpointState::Ready, _) if !self.is_serving() => EndpointState::NotServing,
            (EndpointState::Ready, Mode::Ejected) => EndpointState::Ejected,
            (EndpointState::Ready, Mode::ProbeAllowed | Mode::Probing) => EndpointState::Probing,
            (conn, _) => conn,
        }
    }

    /// Whether the server's health service lets the endpoint take calls.
    pub(crate) fn is_serving(&self) -> bool {
        !self.not_serving.load(Ordering::Acquire)
    }

    /// What the server's health service says (or serving, while it says nothing).
    pub(crate) fn set_serving(&self, serving: bool) {
        if self.not_serving.swap(!serving, Ordering::AcqRel) == serving {
            if serving {
                info!(instance = %self.key, addr = %self.address, "health: serving; back in the ready set");
            } else {
                warn!(instance = %self.key, addr = %self.address, "health: not serving; out of the ready set");
            }
            self.waker.wake();
            // The worker re-checks the endpoint, which publishes its state to the
            // table draws come from (a ready endpoint is otherwise polled only when
            // a draw lands on it). A key without a trip is only re-checked.
            let _ = self.trips.send(self.key.clone());
        }
    }

    pub(crate) fn ejected_until(&self) -> Option<Instant> {
        match self.mode() {
            Mode::Ejected => self.health().until,
            _ => None,
        }
    }

    pub(crate) fn mode(&self) -> Mode {
        match self.mode.load(Ordering::Acquire) {
            1 => Mode::Ejected,
            2 => Mode::ProbeAllowed,
            3 => Mode::Probing,
            _ => Mode::In,
        }
    }

    /// Changes the mode; callers hold the health lock, which serialises every
    /// transition (readers of the mode alone need no lock).
    fn set_mode(&self, _held: &Health, mode: Mode) {
        self.mode.store(mode as u8, Ordering::Release);
        self.waker.wake();
    }

    /// The probe slot: `ProbeAllowed` → `Probing`. Returns whether this call is the probe.
    pub(crate) fn take_probe(&self) -> bool {
        if self.mode() != Mode::ProbeAllowed {
            return false;
        }
        let health = self.health();
        if self.mode() != Mode::ProbeAllowed {
            return false;
        }
        self.set_mode(&health, Mode::Probing);
        true
    }

    /// The ejection has run out: one probe may go.
    pub(crate) fn allow_probe(&self) {
        let health = self.health();
        if self.mode() == Mode::Ejected {
            self.set_mode(&health, Mode::ProbeAllowed);
            drop(health);
            info!(instance = %self.key, addr = %self.address, "ejection over; probing with one call");
        }
    }

    pub(crate) fn health(&self) -> MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(PoisonError::into_inner)
    }

    // --- load ---

    /// The cost now (see [`cost_with`](Self::cost_with)).
    #[cfg(test)]
    pub(crate) fn cost_scaled(&self, scale: f64) -> f64 {
        self.cost_with(self.pending.load(Ordering::Relaxed), scale, Instant::now())
    }

    /// The cost the balancer compares: latency estimate × (calls waiting + 1) × the
    /// failure penalty. While calls wait, the time since the instance was last heard
    /// from is a lower bound on its latency, so an instance that stops answering gets
    /// dearer by the moment instead of cheaper as its estimate decays.
    ///
    /// `scale` counts each call waiting that many times: the mean weight over the
    /// endpoint's own under weighted balancing, so load counts per unit of weight
    /// (see [`policy`](super::policy)); 1 otherwise. `now` is read once by a caller
    /// that compares two endpoints.
    /// `pending` is the count of calls waiting, read once by the caller so that a
    /// comparison decides on one snapshot of each endpoint.
    fn cost_with(&self, pending: usize, scale: f64, now: Instant) -> f64 {
        self.latency_at(pending, now) * (pending as f64 * scale + 1.0)
    }

    /// The cost without the load: the latency estimate (bounded below by the silence
    /// while `pending` calls wait) × the failure penalty.
    fn latency_at(&self, pending: usize, now: Instant) -> f64 {
        self.penalised(self.rtt.get(now), pending, now)
    }

    /// As [`latency_at`](Self::latency_at), from the typical latency (see
    /// [`RttEstimate::typical`]) rather than the peak-sensitive estimate.
    fn typical_at(&self, pending: usize, now: Instant) -> f64 {
        self.penalised(self.rtt.typical(), pending, now)
    }

    /// `rtt`, bounded below by the silence while `pending` calls wait, × the failure
    /// penalty.
    fn penalised(&self, mut rtt: f64, pending: usize, now: Instant) -> f64 {
        if pending > 0 {
            let heard = self.last_heard.load(Ordering::Relaxed);
            let silent = self.rtt.since_epoch(now).saturating_sub(heard) as f64;
            rtt = rtt.max(silent);
        }
        let penalty = if self.refused.load(Ordering::Relaxed) {
            REFUSED_PENALTY
        } else {
            FAILURE_PENALTY
        };
        rtt * (1.0 + penalty * self.failure_score(now))
    }

    /// The moving average of failures (0 to 1), faded since it was last updated.
    pub(crate) fn failure_score(&self, now: Instant) -> f64 {
        let score = f64::from_bits(self.failure_score.load(Ordering::Relaxed));
        if score == 0.0 {
            return 0.0;
        }
        let at = self.failure_at.load(Ordering::Relaxed);
        self.rtt.fade(score, at, now)
    }

    /// Folds one outcome into the failure score (under the health lock, which
    /// serialises writers).
    fn score(&self, failed: bool, now: Instant) {
        let prior = self.failure_score(now);
        let next = prior * (1.0 - FAILURE_ALPHA) + if failed { FAILURE_ALPHA } else { 0.0 };
        self.failure_score.store(next.to_bits(), Ordering::Relaxed);
        self.failure_at
            .store(self.rtt.since_epoch(now), Ordering::Relaxed);
    }

    /// The cost at scale 1 (see [`cost_with`](Self::cost_with)).
    #[cfg(test)]
    pub(crate) fn cost(&self) -> f64 {
        self.cost_scaled(1.0)
    }

    /// Whether the endpoint's cost says nothing current: its estimate expired (see
    /// [`RttEstimate::expired`]) and no call is waiting on it, and its calls have not
    /// been failing. Such an endpoint takes the call when drawn, as one never tried
    /// does, and its answer sets a new estimate: at most one call per expiry period
    /// goes to an instance that keeps losing its comparisons.
    pub(crate) fn stale(&self, now: Instant) -> bool {
        self.pending.load(Ordering::Relaxed) == 0
            && !self.refused.load(Ordering::Relaxed)
            && self.failure_score(now) < STALE_FAILURES
            && self.rtt.expired(now)
    }

    /// Whether `b` should take a call rather than `a`, drawn first (scales as in
    /// [`cost_with`](Self::cost_with)). An endpoint whose cost says nothing (never tried,
    /// or [stale](Self::stale)) takes the call, so that its answer measures it.
    /// Otherwise:
    ///
    /// - no call waiting on either: `a` unless `b` costs clearly less (see
    ///   [`CLEARLY`]);
    /// - equally weighted: `a` unless `b` costs less;
    /// - weighted differently, with loads alike (within one call of the lighter of
    ///   the two, per unit of weight): `a` unless `b`'s typical latency (see
    ///   [`RttEstimate::typical`]) × failure penalty is lower by half (see
    ///   [`TYPICALLY`]);
    /// - weighted differently, with loads further apart: whichever costs less.
    ///
    /// Why weights take the alike case under load: calls waiting come one at a time,
    /// and with a couple of calls in flight an idle weight-1 instance would beat a
    /// weight-4 one with a single call waiting (0.58 calls per unit of weight against
    /// none) in a strict comparison, so the lighter instances win calls back from the
    /// heavier ones and the shares drift toward uniform; and the heavier instance,
    /// answering more calls, shows more of the late answers that Peak-EWMA remembers
    /// for seconds, so comparing estimates drifts the same way. In a simulation of
    /// weights 1:2:4 over equally fast instances at 5,000 calls/s, the strict
    /// comparison left the shares 8–10 points off, this rule 0.3–1.0. Measured
    /// (scenario 10, three runs of each in the same hour): at 5,000 calls/s the
    /// runs were 0.6–9.0 points off before, 2.5–3.0 with this rule; one call at a
    /// time (the rest case, unchanged) 0.3–19 and 0.2–0.5, the machine being as
    /// noisy for both; a 10 ms slow weight-4 instance got 2.05% of the calls before
    /// (1.1–1.5% in a quieter hour), 1.81% with it. Equally weighted instances need
    /// no tolerance for their shares, and a strict comparison under load keeps a slow
    /// instance drawn first from keeping calls.
    ///
    /// [`RttEstimate::typical`]: super::load::RttEstimate::typical
    pub(crate) fn prefer_second(a: &Self, sa: f64, b: &Self, sb: f64) -> bool {
        let now = Instant::now();
        let unmeasured = |s: &Self| s.untried() || s.stale(now);
        if unmeasured(a) {
            return false;
        }
        if unmeasured(b) {
            return true;
        }
        let (pa, pb) = (
            a.pending.load(Ordering::Relaxed),
            b.pending.load(Ordering::Relaxed),
        );
        let cost_b = |tie: f64| b.cost_with(pb, sb, now) * tie;
        if pa + pb == 0 {
            return cost_b(CLEARLY) < a.cost_with(pa, sa, now);
        }
        let (la, lb) = (pa as f64 * sa, pb as f64 * sb);
        if sa != sb && (la - lb).abs() < sa.max(sb) {
            b.typical_at(pb, now) * TYPICALLY < a.typical_at(pa, now)
        } else {
            cost_b(1.0) < a.cost_with(pa, sa, now)
        }
    }

    /// Whether no call was ever sent on the endpoint: its cost is a guess (see
    /// [`RttEstimate::observe`]).
    pub(crate) fn untried(&self) -> bool {
        !self.tried.load(Ordering::Relaxed)
    }

    pub(crate) fn call_started(&self) {
        if !self.tried.load(Ordering::Relaxed) {
            self.tried.store(true, Ordering::Relaxed);
        }
        if self.pending.fetch_add(1, Ordering::Relaxed) == 0 {
            self.heard(Instant::now());
        }
    }

    /// A call stops waiting: it got its headers (`heard`), or it ended without.
    pub(crate) fn headers_received(&self, now: Instant, heard: bool) {
        self.pending.fetch_sub(1, Ordering::Relaxed);
        if heard {
            self.heard(now);
        }
    }

    fn heard(&self, now: Instant) {
        self.last_heard
            .store(self.rtt.since_epoch(now), Ordering::Relaxed);
    }

    pub(crate) fn stream_ended(&self) {
        // Release: a caller that takes the freed slot sees what the call wrote before
        // (a lost connection's mark).
        let before = self.open_streams.fetch_sub(1, Ordering::Release) as u64;
        if before >= self.max_streams.load(Ordering::Relaxed) {
            self.waker.wake();
        }
    }

    /// A stream of the balancer's own (the health watch) opened on the connection.
    #[cfg_attr(not(feature = "health"), allow(dead_code))]
    pub(crate) fn stream_started(&self) {
        self.open_streams.fetch_add(1, Ordering::Relaxed);
    }

    /// A new connection: its server's limit is unknown until it speaks.
    pub(crate) fn connection_opening(&self) {
        self.max_streams.store(UNKNOWN_LIMIT, Ordering::Relaxed);
    }

    /// The server announced its limit.
    pub(crate) fn set_max_streams(&self, max: u32) {
        self.max_streams.store(u64::from(max), Ordering::Relaxed);
        self.waker.wake();
    }

    /// Takes a stream slot under the server's stream limit, in one atomic step, so
    /// callers that find the last slot free at the same time cannot all take it (the
    /// excess would queue inside hyper). The slot is the call's from then on: its
    /// end ([`stream_ended`](Self::stream_ended)) gives it back, and so does whoever
    /// reserved it and does not send after all.
    pub(crate) fn try_reserve_stream(&self) -> bool {
        let max = self.max_streams.load(Ordering::Relaxed);
        max != UNKNOWN_LIMIT
            && self
                .open_streams
                .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                    ((n as u64) < max).then_some(n + 1)
                })
                .is_ok()
    }

    /// Takes a stream slot whatever the limit (tests of a call alone).
    #[cfg(test)]
    pub(crate) fn force_reserve_stream(&self) {
        self.open_streams.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether the server has announced its stream limit on the current connection.
    pub(crate) fn stream_limit_known(&self) -> bool {
        self.max_streams.load(Ordering::Relaxed) != UNKNOWN_LIMIT
    }

    /// Whether another stream fits under the server's stream limit (never while the
    /// limit is unknown).
    pub(crate) fn has_stream_capacity(&self) -> bool {
        let max = self.max_streams.load(Ordering::Relaxed);
        max != UNKNOWN_LIMIT && (self.open_streams.load(Ordering::Relaxed) as u64) < max
    }

    pub(crate) fn open_streams(&self) -> usize {
        self.open_streams.load(Ordering::Relaxed)
    }

    // --- failure accrual ---

    pub(crate) fn codes(&self) -> CodeSet {
        self.config.codes
    }

    /// Folds in one call's outcome.
    ///
    /// A failure that starts or extends a run shorter than the consecutive-failures
    /// threshold is held out of the failure score until the run ends (a success, a
    /// trip, a refused ejection): otherwise the penalty of the first failure would
    /// starve the endpoint of the calls the detector needs, and an instance failing
    /// every call would trickle a failure every few seconds instead of being ejected.
    /// Once the guard refused an ejection, the penalty applies at once: it is then the
    /// only thing that steers calls away.
    pub(crate) fn record(&self, verdict: Verdict, latency: Duration, probe: bool) {
        let failed = verdict == Verdict::Failure;
        if failed {
            // A fast failure must not make the instance look fast.
            self.rtt.observe_no_lower(latency);
        } else {
            self.rtt.observe(latency);
        }
        let mut health = self.health();
        let now = Instant::now();
        if !self.config.enabled || probe || self.mode() != Mode::In {
            // Calls sent before an ejection say nothing new to the detectors.
            self.flush_deferred(&mut health, now);
            self.score(failed, now);
            if probe && self.config.enabled {
                drop(health);
                self.probe_done(verdict, latency);
            }
            return;
        }
        let epoch = health.epoch;
        let tripped = health.detector.record(&self.config, verdict, epoch, now);
        let short_run = self
            .config
            .consecutive
            .is_some_and(|n| health.detector.consecutive() < n);
        if failed && !tripped && short_run && !self.refused.load(Ordering::Relaxed) {
            health.deferred += 1;
        } else {
            if !failed {
                self.refused.store(false, Ordering::Relaxed);
            }
            self.flush_deferred(&mut health, now);
            self.score(failed, now);
        }
        if tripped && !health.trip_sent {
            health.trip_sent = true;
            let _ = self.trips.send(self.key.clone());
        }
    }

    /// The instance refused a stream it could not take (load shedding): its cost
    /// rises as for a failure, so calls avoid it while the score fades, but the
    /// detectors do not count it, so shedding does not get it ejected.
    pub(crate) fn shed(&self) {
        let _health = self.health();
        self.score(true, Instant::now());
    }

    /// Folds the failures held out of the score into it.
    fn flush_deferred(&self, health: &mut Health, now: Instant) {
        for _ in 0..std::mem::take(&mut health.deferred) {
            self.score(true, now);
        }
    }

    /// The probe's verdict. Only a probe still in flight decides anything: after a
    /// panic-mode lift, an old probe's answer changes nothing.
    pub(crate) fn probe_done(&self, verdict: Verdict, latency: Duration) {
        let mut health = self.health();
        if self.mode() != Mode::Probing {
            return;
        }
        match verdict {
            Verdict::Success => {
                health.until = None;
                health.returned_at = Some(Instant::now());
                health.detector.reset();
                health.deferred = 0;
                self.refused.store(false, Ordering::Relaxed);
                // Back afresh: the failures it was ejected for are forgiven, and the
                // probe's latency is its estimate.
                self.failure_score.store(0f64.to_bits(), Ordering::Relaxed);
                self.rtt.reset(latency);
                self.set_mode(&health, Mode::In);
                drop(health);
                info!(instance = %self.key, addr = %self.address, "probe succeeded; endpoint back in service");
            }
            Verdict::Failure => {
                if !health.trip_sent {
                    health.trip_sent = true;
                    let _ = self.trips.send(self.key.clone());
                }
            }
        }
    }

    /// The probe never reached the instance (it went elsewhere): another may go.
    pub(crate) fn probe_abandoned(&self) {
        let health = self.health();
        if self.mode() == Mode::Probing {
            self.set_mode(&health, Mode::ProbeAllowed);
        }
    }

    /// The worker takes a trip: clears the flag and says whether it still stands,
    /// that is, whether the endpoint is in service or its probe failed (a trip sent
    /// while an ejection was being made is stale).
    pub(crate) fn take_trip(&self) -> bool {
        let mut health = self.health();
        let sent = std::mem::replace(&mut health.trip_sent, false);
        sent && matches!(self.mode(), Mode::In | Mode::Probing)
    }

    /// The capacity guard refused the ejection: the detectors start over, so the
    /// endpoint trips again only after as many new failures.
    pub(crate) fn refused(&self) {
        let mut health = self.health();
        health.detector.reset();
        self.refused.store(true, Ordering::Relaxed);
        self.flush_deferred(&mut health, Instant::now());
        if self.mode() == Mode::Probing {
            // Back to normal service: its next call is no probe.
            health.until = None;
            self.set_mode(&health, Mode::In);
        }
    }

    /// Ejects the endpoint (the worker checked the capacity guard) and returns for how
    /// long.
    pub(crate) fn eject(&self) -> Duration {
        let mut health = self.health();
        let now = Instant::now();
        let backoff = self.config.backoff;
        if health
            .returned_at
            .take()
            .is_some_and(|at| now.saturating_duration_since(at) >= backoff.max())
        {
            // It served for the backoff's maximum since it last returned: start over.
            health.ejections = 0;
        }
        health.ejections = health.ejections.saturating_add(1);
        let delay = backoff.delay(health.ejections);
        health.until = Some(now + delay);
        health.detector.reset();
        self.flush_deferred(&mut health, now);
        let ejections = health.ejections;
        self.set_mode(&health, Mode::Ejected);
        drop(health);
        warn!(
            instance = %self.key,
            addr = %self.address,
            ejections,
            ?delay,
            "endpoint ejected: its calls fail"
        );
        delay
    }

    /// Lifts an ejection at once (panic mode: nothing else is in service).
    pub(crate) fn lift(&self) {
        let mut health = self.health();
        if self.mode() == Mode::In {
            return;
        }
        health.until = None;
        health.detector.reset();
        self.flush_deferred(&mut health, Instant::now());
        self.set_mode(&health, Mode::In);
    }

    /// Whether the endpoint could take a call now but for its load: connected, in
    /// service (or open to its probe) and serving.
    pub(crate) fn in_service(&self) -> bool {
        EndpointState::from_u8(self.conn.load(Ordering::Relaxed)) == EndpointState::Ready
            && matches!(self.mode(), Mode::In | Mode::ProbeAllowed)
            && self.is_serving()
    }
}

impl std::fmt::Debug for EndpointStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointStats")
            .field("key", &self.key)
            .field("address", &self.address)
            .field("state", &self.state())
            .field("pending", &self.pending.load(Ordering::Relaxed))
            .field("open_streams", &self.open_streams())
            .finish_non_exhaustive()
    }
}
