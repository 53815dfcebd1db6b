//! Peak-EWMA load with a fair cold start.
//!
//! The algorithm of `tower::load::PeakEwma` (after Finagle's): an endpoint's cost is
//! its peak-sensitive moving average of response latency times its requests in
//! flight plus one. A latency above the estimate replaces it at once; a lower one
//! pulls it down with the configured time constant, and the estimate decays towards
//! zero while nothing is measured. A request is measured up to its response headers.
//!
//! Three differences. An endpoint's first estimate is given by the worker (taken from
//! its peers, see [`cold_start_rtt`]), where tower always starts from the default RTT
//! and a newcomer among fast endpoints would lose every comparison until its
//! estimate decayed. That first estimate is a guess, and the first measurement
//! replaces it: pulled down with a 10 s time constant, a 30 ms default would stay
//! the estimate of every endpoint for the first seconds, and comparisons would turn
//! on differences of microseconds in the guess's decay rather than on the instances
//! (an endpoint whose failures hold its estimate, as they must, would lose them
//! all). And reading the cost writes nothing: the decay since the last
//! measurement is computed on read, so the estimate does not depend on how often the
//! balancer looks, and the worker reads it with atomics, no lock. A response takes
//! one uncontended lock, to serialise writers.

use std::sync::atomic::{AtomicU64, Ordering, fence};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// The latency estimate, published through a sequence lock so that reads never block.
#[derive(Debug)]
pub(crate) struct RttEstimate {
    decay_ns: f64,
    epoch: Instant,
    /// Serialises writers, and says whether the estimate was measured yet (or is still
    /// the initial guess); readers only retry while `seq` is odd or changed.
    write: Mutex<bool>,
    seq: AtomicU64,
    /// `f64` bits of the estimate at `at_ns`, in nanoseconds.
    rtt_ns: AtomicU64,
    /// When the estimate was last measured, in nanoseconds since `epoch`.
    at_ns: AtomicU64,
    /// `f64` bits of the natural log of the typical latency in nanoseconds (see
    /// [`typical`](Self::typical)); one value, so it needs no sequence lock.
    typical_ln: AtomicU64,
}

/// How far one measured latency moves the typical latency's logarithm (see
/// [`RttEstimate::typical`]): a lone answer must be 57 times the typical one
/// (`e^(ln 1.5 / 0.1)`) to move it by 1.5×, while an instance that turned 40 times
/// slower is 1.45× slower after one answer and 2× after two.
const TYPICAL_ALPHA: f64 = 0.1;

/// Optimistic reads before a reader falls back to taking the writers' lock.
const READ_ATTEMPTS: usize = 4;

// === impl RttEstimate ===

impl RttEstimate {
    pub(crate) fn new(initial: Duration, decay: Duration) -> Self {
        RttEstimate {
            decay_ns: nanos(decay).max(1.0),
            epoch: Instant::now(),
            write: Mutex::new(false),
            seq: AtomicU64::new(0),
            rtt_ns: AtomicU64::new(nanos(initial).to_bits()),
            at_ns: AtomicU64::new(0),
            typical_ln: AtomicU64::new(ln_nanos(nanos(initial)).to_bits()),
        }
    }

    /// The typical latency, in nanoseconds: a moving average of the measured
    /// latencies' logarithms (a geometric mean that follows the last ten or so
    /// answers), where the estimate follows the worst recent one. A single late
    /// answer, which Peak-EWMA remembers for seconds, barely moves it; a lasting
    /// slowdown moves it within a few answers. Weighted draws compare it (see
    /// [`EndpointStats::prefer_second`]), so that one peak does not take an
    /// instance's share away. It is not decayed: an estimate unmeasured for long
    /// [expires](Self::expired) as a whole.
    ///
    /// [`EndpointStats::prefer_second`]: super::stats::EndpointStats::prefer_second
    pub(crate) fn typical(&self) -> f64 {
        f64::from_bits(self.typical_ln.load(Ordering::Relaxed)).exp()
    }

    /// The estimate at `now`: the last one decayed towards zero since it was set.
    pub(crate) fn get(&self, now: Instant) -> f64 {
        let (rtt, at) = self.read();
        rtt * self.decay_factor(at, now)
    }

    /// Folds in one measured latency; the first replaces the initial guess, and so
    /// does one that comes after the estimate expired (see [`expired`](Self::expired)).
    pub(crate) fn observe(&self, sample: Duration) {
        let sample = nanos(sample);
        self.store_with(true, |prior, decay, fresh| {
            let ln = ln_nanos(sample);
            let typical = if fresh {
                let prior = f64::from_bits(self.typical_ln.load(Ordering::Relaxed));
                prior + TYPICAL_ALPHA * (ln - prior)
            } else {
                ln
            };
            self.typical_ln.store(typical.to_bits(), Ordering::Relaxed);
            if fresh {
                peak_ewma(prior, decay, sample)
            } else {
                sample
            }
        });
    }

    /// Whether the estimate went unmeasured for a tenth of the decay (1 s by
    /// default): it then describes the instance as it was, not as it is, as gRFC A58
    /// expires a weight that stopped being reported. An endpoint that lost every
    /// comparison since a spike would otherwise wait for its estimate to decay (some
    /// 20 s for ten times its peers' with the default 10 s decay), taking no calls.
    pub(crate) fn expired(&self, now: Instant) -> bool {
        let (_, at) = self.read();
        self.since_epoch(now).saturating_sub(at) as f64 > self.decay_ns / 10.0
    }

    /// Replaces the estimate with `sample`, as measured now.
    pub(crate) fn reset(&self, sample: Duration) {
        self.store_with(true, |_, _, _| {
            let sample = nanos(sample);
            self.typical_ln
                .store(ln_nanos(sample).to_bits(), Ordering::Relaxed);
            sample
        });
    }

    /// Folds in a latency that may raise the estimate but never lower it (a failed
    /// call's: failing fast is no sign of speed, nor a measurement that replaces the
    /// initial guess). The typical latency stays as it was: failures weigh through
    /// the failure score.
    pub(crate) fn observe_no_lower(&self, sample: Duration) {
        let sample = nanos(sample);
        self.store_with(false, |prior, decay, _| {
            peak_ewma(prior, decay, sample.max(prior * decay))
        });
    }

    /// `value`, set at `at_ns`, faded to `now` with the estimate's time constant.
    pub(crate) fn fade(&self, value: f64, at_ns: u64, now: Instant) -> f64 {
        value * self.decay_factor(at_ns, now)
    }

    /// Sets the estimate to `next(prior, decay factor since it was set, whether it was
    /// measured before and has not expired since)`; `measured` says whether this is a
    /// measurement.
    fn store_with(&self, measured: bool, next: impl FnOnce(f64, f64, bool) -> f64) {
        let mut was_measured = self.write.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let (prior, at) = self.load_relaxed();
        let expired = self.since_epoch(now).saturating_sub(at) as f64 > self.decay_ns / 10.0;
        let next = next(prior, self.decay_factor(at, now), *was_measured && !expired);
        *was_measured |= measured;
        let s = self.seq.load(Ordering::Relaxed);
        self.seq.store(s.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        self.rtt_ns.store(next.to_bits(), Ordering::Relaxed);
        self.at_ns.store(self.since_epoch(now), Ordering::Relaxed);
        self.seq.store(s.wrapping_add(2), Ordering::Release);
    }

    /// A consistent `(estimate, measured at)` pair.
    fn read(&self) -> (f64, u64) {
        for _ in 0..READ_ATTEMPTS {
            let before = self.seq.load(Ordering::Acquire);
            if before.is_multiple_of(2) {
                let pair = self.load_relaxed();
                fence(Ordering::Acquire);
                if self.seq.load(Ordering::Relaxed) == before {
                    return pair;
                }
            }
            std::hint::spin_loop();
        }
        // A writer was preempted mid-update: wait for it rather than spin.
        let _guard = self.write.lock().unwrap_or_else(PoisonError::into_inner);
        self.load_relaxed()
    }

    fn load_relaxed(&self) -> (f64, u64) {
        let rtt = f64::from_bits(self.rtt_ns.load(Ordering::Relaxed));
        (rtt, self.at_ns.load(Ordering::Relaxed))
    }

    fn decay_factor(&self, at_ns: u64, now: Instant) -> f64 {
        let elapsed = self.since_epoch(now).saturating_sub(at_ns) as f64;
        (-elapsed / self.decay_ns).exp()
    }

    /// Nanoseconds from the estimate's epoch to `now`.
    pub(crate) fn since_epoch(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }
}

/// The first estimate of a newly inserted endpoint: the median of its peers' current
/// estimates (in nanoseconds), or `default_rtt` when it has none. Starting from the
/// peers' level lets a newcomer compete at once; starting from a fixed default well
/// above them would starve it until its estimate decayed.
pub(crate) fn cold_start_rtt(mut peers: Vec<f64>, default_rtt: Duration) -> Duration {
    peers.retain(|rtt| rtt.is_finite() && *rtt >= 0.0);
    if peers.is_empty() {
        return default_rtt;
    }
    let len = peers.len();
    // The middle element in place, the smaller ones before it: no full sort.
    let (below, &mut upper, _) = peers.select_nth_unstable_by(len / 2, f64::total_cmp);
    let median = if len.is_multiple_of(2) {
        let lower = below.iter().copied().fold(f64::MIN, f64::max);
        (lower + upper) / 2.0
    } else {
        upper
    };
    Duration::from_nanos(median as u64)
}

/// The peers a newcomer's first estimate is taken from: at most this many, evenly
/// spread over the ready set, so that an insert costs the same at 10 or 10,000
/// endpoints (a fleet-wide replacement would otherwise sort every peer per insert).
/// The estimate is a guess that the newcomer's first answer replaces.
pub(crate) const COLD_START_SAMPLE: usize = 31;

/// Which of `len` ready endpoints [`cold_start_rtt`] reads: all of them up to
/// [`COLD_START_SAMPLE`], else that many evenly spaced indices.
pub(crate) fn cold_start_sample(len: usize) -> impl Iterator<Item = usize> {
    let k = len.min(COLD_START_SAMPLE);
    (0..k).map(move |i| i * len / k)
}

/// Peak-EWMA's step: a sample above the decayed estimate is the estimate at once (the
/// worst recent latency); a lower one pulls it down by the decay.
fn peak_ewma(prior: f64, decay: f64, sample: f64) -> f64 {
    if sample > prior * decay {
        sample
    } else {
        prior * decay + sample * (1.0 - decay)
    }
}

/// The logarithm of a latency in nanoseconds, taken from at least 1 ns.
fn ln_nanos(ns: f64) -> f64 {
    ns.max(1.0).ln()
}

/// Nanoseconds as `f64` (lossy only beyond ~285 years).
fn nanos(d: Duration) -> f64 {
    d.as_nanos() as f64
}

#[cfg(test)]
#[path = "load_tests.rs"]
mod tests;
