//! Failure accrual: which outcomes count as failures, the two detectors, and the
//! ejection backoff of one endpoint.
//!
//! The detectors run on every call outcome, on whatever task completes the call, under
//! one uncontended lock per endpoint. A detector that trips only *asks* for an
//! ejection: the worker decides, because only it knows how many endpoints are already
//! out (the capacity guard).

use std::fmt;
use std::time::Duration;

use tokio::time::Instant;
use tonic::Code;

use crate::Backoff;

/// When an endpoint that answers but fails is taken out of the ready set
/// ("failure accrual", Finagle's and linkerd's name; Envoy and gRPC call it outlier
/// detection, gRFC A50).
///
/// Every call's outcome is classified per endpoint: transport errors (the connection
/// broke, the stream was reset) and the gRPC status codes of
/// [`failure_codes`](Self::failure_codes) (by default `UNAVAILABLE` only) are
/// failures; every other answer is a success, and a call its caller dropped or whose
/// deadline passed counts as neither (unless `DEADLINE_EXCEEDED` is a failure code).
/// The status is read where gRPC puts it: the response headers of a trailers-only
/// answer, else the trailers at the end of the body.
///
/// Two detectors ask for an ejection:
/// - **consecutive failures**: `n` failures in a row (default 5);
/// - **failure rate**: at least `threshold` of the calls failed over the last
///   `window`, once at least `min_requests` calls completed in it (default 50% of at
///   least 20 calls over 10 s).
///
/// An ejected endpoint leaves the ready set for a backoff that doubles with each
/// ejection in a row (default 1 s to 60 s, jittered), then takes exactly one probe
/// call (half-open): a success returns it, a failure ejects it again for longer.
///
/// The capacity guard: at most [`max_ejected_fraction`](Self::max_ejected_fraction)
/// of the endpoints (default 0.5, rounded down) are ejected at once, and never one
/// whose ejection would leave no ready endpoint; a detector that trips beyond that is
/// refused (the endpoint's failures still make it lose load comparisons). When no
/// endpoint is ready but some are ejected, every ejection is lifted at once (Envoy's
/// panic mode): a failing instance is better than none.
#[derive(Clone, PartialEq)]
#[must_use]
pub struct FailureAccrual {
    pub(crate) enabled: bool,
    pub(crate) consecutive: Option<u32>,
    pub(crate) rate: Option<FailureRate>,
    pub(crate) backoff: Backoff,
    pub(crate) max_ejected_fraction: f64,
    pub(crate) codes: CodeSet,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct FailureRate {
    pub(crate) threshold: f64,
    pub(crate) min_requests: u32,
    pub(crate) window: Duration,
}

/// A set of gRPC status codes (a bit per code 0..=16).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct CodeSet(u32);

// === impl FailureAccrual ===

impl FailureAccrual {
    /// No accrual: endpoints leave the ready set only when their connection is down.
    pub fn disabled() -> Self {
        FailureAccrual {
            enabled: false,
            ..FailureAccrual::default()
        }
    }

    /// Ejects after `n` consecutive failures. Default: 5 (Envoy's default; linkerd's
    /// is 7). Zero is a configuration error at `build()`.
    pub fn consecutive_failures(mut self, n: u32) -> Self {
        self.consecutive = Some(n);
        self
    }

    /// Turns the consecutive-failures detector off.
    pub fn without_consecutive_failures(mut self) -> Self {
        self.consecutive = None;
        self
    }

    /// Ejects when at least `threshold` (0 < threshold ≤ 1) of the calls completed in
    /// the last `window` failed, once at least `min_requests` (≥ 1) completed in it.
    /// Default: 0.5, 20, 10 s. The window is kept as ten buckets, so old calls leave
    /// it a tenth of the window at a time.
    pub fn failure_rate(mut self, threshold: f64, min_requests: u32, window: Duration) -> Self {
        self.rate = Some(FailureRate {
            threshold,
            min_requests,
            window,
        });
        self
    }

    /// Turns the failure-rate detector off.
    pub fn without_failure_rate(mut self) -> Self {
        self.rate = None;
        self
    }

    /// How long an ejection lasts: the backoff's minimum the first time, doubling
    /// with each ejection in a row (a failed probe) up to its maximum, shortened by
    /// its jitter. Default: 1 s to 60 s, jitter 0.2. The sequence restarts once an
    /// endpoint has served for the maximum without being ejected.
    pub fn ejection_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// At most this fraction (0 ≤ f ≤ 1) of the endpoints are ejected at once,
    /// rounded down. Default: 0.5. Outside `[0, 1]` is a configuration error at
    /// `build()`.
    pub fn max_ejected_fraction(mut self, fraction: f64) -> Self {
        self.max_ejected_fraction = fraction;
        self
    }

    /// The gRPC status codes that count as failures (transport errors always do).
    /// Default: `UNAVAILABLE`. Add `INTERNAL`, `RESOURCE_EXHAUSTED` or
    /// `DEADLINE_EXCEEDED` as your services need; `OK` cannot be one.
    pub fn failure_codes(mut self, codes: impl IntoIterator<Item = Code>) -> Self {
        self.codes = CodeSet::of(codes);
        self
    }

    /// Checks the settings; the message names the one that is wrong.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.consecutive == Some(0) {
            return Err("failure_accrual: consecutive_failures must be at least 1".into());
        }
        if let Some(rate) = &self.rate {
            if !(rate.threshold > 0.0 && rate.threshold <= 1.0) {
                return Err(format!(
                    "failure_accrual: failure_rate threshold {} is outside (0, 1]",
                    rate.threshold
                ));
            }
            if rate.min_requests == 0 {
                return Err("failure_accrual: failure_rate min_requests must be at least 1".into());
            }
            if rate.window < Duration::from_millis(10) {
                return Err(format!(
                    "failure_accrual: failure_rate window {:?} is below 10 ms",
                    rate.window
                ));
            }
        }
        if !(0.0..=1.0).contains(&self.max_ejected_fraction) {
            return Err(format!(
                "failure_accrual: max_ejected_fraction {} is outside [0, 1]",
                self.max_ejected_fraction
            ));
        }
        if self.backoff.min().is_zero() {
            return Err("failure_accrual: ejection_backoff minimum must be above zero".into());
        }
        if self.codes.contains(Code::Ok) {
            return Err("failure_accrual: OK cannot be a failure code".into());
        }
        Ok(())
    }

    /// How many of `total` endpoints may be ejected at once.
    pub(crate) fn max_ejected(&self, total: usize) -> usize {
        (total as f64 * self.max_ejected_fraction).floor() as usize
    }
}

impl Default for FailureAccrual {
    /// 5 consecutive failures or 50% of at least 20 calls over 10 s; ejection 1 s to
    /// 60 s; at most half the endpoints ejected; failures: `UNAVAILABLE` and transport
    /// errors.
    fn default() -> Self {
        FailureAccrual {
            enabled: true,
            consecutive: Some(5),
            rate: Some(FailureRate {
                threshold: 0.5,
                min_requests: 20,
                window: Duration::from_secs(10),
            }),
            backoff: Backoff::new(Duration::from_secs(1), Duration::from_secs(60)),
            max_ejected_fraction: 0.5,
            codes: CodeSet::of([Code::Unavailable]),
        }
    }
}

impl fmt::Debug for FailureAccrual {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FailureAccrual")
            .field("enabled", &self.enabled)
            .field("consecutive_failures", &self.consecutive)
            .field("failure_rate", &self.rate)
            .field("ejection_backoff", &self.backoff)
            .field("max_ejected_fraction", &self.max_ejected_fraction)
            .field("failure_codes", &self.codes)
            .finish()
    }
}

// === impl CodeSet ===

impl CodeSet {
    pub(crate) fn of(codes: impl IntoIterator<Item = Code>) -> Self {
        CodeSet(codes.into_iter().fold(0, |set, c| set | bit(c)))
    }

    pub(crate) fn contains(self, code: Code) -> bool {
        self.0 & bit(code) != 0
    }

    pub(crate) fn is_empty(self) -> bool {
        self.0 == 0
    }
}

fn bit(code: Code) -> u32 {
    1u32.checked_shl(code as i32 as u32).unwrap_or(0)
}

impl fmt::Debug for CodeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let codes = (0..=16).map(Code::from_i32).filter(|c| self.contains(*c));
        f.debug_set().entries(codes).finish()
    }
}

/// What became of one call, as failure accrual sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Success,
    Failure,
}

/// The detectors' state for one endpoint.
#[derive(Debug)]
pub(crate) struct Detector {
    consecutive: u32,
    buckets: [Bucket; BUCKETS],
}

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    /// Which bucket period (since the detector's epoch) the counts belong to.
    period: u64,
    calls: u32,
    failures: u32,
}

const BUCKETS: usize = 10;

// === impl Detector ===

impl Detector {
    pub(crate) fn new() -> Self {
        Detector {
            consecutive: 0,
            buckets: [Bucket::default(); BUCKETS],
        }
    }

    /// Folds in one outcome at `now` (`epoch` fixes the bucket periods); returns
    /// whether a detector trips.
    pub(crate) fn record(
        &mut self,
        config: &FailureAccrual,
        verdict: Verdict,
        epoch: Instant,
        now: Instant,
    ) -> bool {
        let failed = verdict == Verdict::Failure;
        // Saturating: with both detectors off nothing resets the count but a success.
        self.consecutive = if failed {
            self.consecutive.saturating_add(1)
        } else {
            0
        };
        let consecutive_trip = config.consecutive.is_some_and(|n| self.consecutive >= n);
        let rate_trip = config
            .rate
            .is_some_and(|rate| self.record_rate(&rate, failed, epoch, now));
        consecutive_trip || rate_trip
    }

    fn record_rate(
        &mut self,
        rate: &FailureRate,
        failed: bool,
        epoch: Instant,
        now: Instant,
    ) -> bool {
        let width = (rate.window.as_nanos() / BUCKETS as u128).max(1);
        let period = (now.saturating_duration_since(epoch).as_nanos() / width) as u64;
        let bucket = &mut self.buckets[(period % BUCKETS as u64) as usize];
        if bucket.period != period {
            *bucket = Bucket {
                period,
                ..Bucket::default()
            };
        }
        bucket.calls = bucket.calls.saturating_add(1);
        bucket.failures = bucket.failures.saturating_add(u32::from(failed));
        if !failed {
            return false;
        }
        let oldest = period.saturating_sub(BUCKETS as u64 - 1);
        let (calls, failures) = self
            .buckets
            .iter()
            .filter(|b| b.period >= oldest && b.period <= period && b.calls > 0)
            .fold((0u64, 0u64), |(c, f), b| {
                (c + u64::from(b.calls), f + u64::from(b.failures))
            });
        calls >= u64::from(rate.min_requests) && failures as f64 >= rate.threshold * calls as f64
    }

    /// Failures in a row so far.
    pub(crate) fn consecutive(&self) -> u32 {
        self.consecutive
    }

    /// Forgets everything: an ejected endpoint starts afresh when it returns.
    pub(crate) fn reset(&mut self) {
        *self = Detector::new();
    }
}

#[cfg(test)]
#[path = "accrual_tests.rs"]
mod tests;
