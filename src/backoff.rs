//! Jittered exponential backoff.

use std::time::Duration;

use rand::Rng;

/// How long to wait between attempts after failures: exponential from `min` to `max`,
/// each delay spread by a random jitter so that many clients do not retry in step.
///
/// Used for registry watches, heartbeats and reconnects. The `n`-th consecutive
/// failure waits `min × 2ⁿ⁻¹`, capped at `max`, multiplied by a random factor in
/// `[1 - jitter, 1]`. A success resets the sequence.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct Backoff {
    min: Duration,
    max: Duration,
    jitter: f64,
}

// === impl Backoff ===

impl Backoff {
    /// A backoff from `min` up to `max` with a jitter of 0.2.
    ///
    /// `max` below `min` is taken as `min`.
    pub const fn new(min: Duration, max: Duration) -> Self {
        let max = if max.as_nanos() < min.as_nanos() {
            min
        } else {
            max
        };
        Backoff {
            min,
            max,
            jitter: 0.2,
        }
    }

    /// The fraction by which a delay may be shortened at random, from 0 (none) to 1.
    /// Default: 0.2. Values outside `[0, 1]` are clamped.
    #[must_use]
    pub fn jitter(mut self, jitter: f64) -> Self {
        self.jitter = if jitter.is_nan() {
            0.0
        } else {
            jitter.clamp(0.0, 1.0)
        };
        self
    }

    /// The shortest delay.
    pub fn min(&self) -> Duration {
        self.min
    }

    /// The longest delay.
    pub fn max(&self) -> Duration {
        self.max
    }

    /// The delay before the attempt that follows `failures` consecutive failures
    /// (`failures >= 1`), before jitter.
    pub(crate) fn base_delay(&self, failures: u32) -> Duration {
        let exp = failures.saturating_sub(1).min(32);
        let factor = 1u64 << exp;
        let nanos = (self.min.as_nanos() as u64).saturating_mul(factor);
        Duration::from_nanos(nanos).min(self.max)
    }

    /// The jittered delay after `failures` consecutive failures.
    pub(crate) fn delay(&self, failures: u32) -> Duration {
        let base = self.base_delay(failures);
        if self.jitter == 0.0 {
            return base;
        }
        let factor = 1.0 - rand::rng().random_range(0.0..=self.jitter);
        base.mul_f64(factor)
    }
}

// Jitter is clamped to [0, 1] and never NaN, so comparing its bits is an equivalence
// (with -0.0 folded into 0.0); a watch shared by its options is keyed by its backoff.
impl Eq for Backoff {}

impl std::hash::Hash for Backoff {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.min.hash(state);
        self.max.hash(state);
        (self.jitter + 0.0).to_bits().hash(state);
    }
}

impl Default for Backoff {
    /// 100 ms to 10 s, jitter 0.2.
    fn default() -> Self {
        Backoff::new(Duration::from_millis(100), Duration::from_secs(10))
    }
}

/// The failure count of one retry loop, paired with its [`Backoff`].
#[derive(Debug, Clone)]
pub(crate) struct BackoffState {
    config: Backoff,
    failures: u32,
}

impl BackoffState {
    pub(crate) fn new(config: Backoff) -> Self {
        BackoffState {
            config,
            failures: 0,
        }
    }

    /// Records a failure and returns how long to wait before the next attempt.
    pub(crate) fn next_delay(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        self.config.delay(self.failures)
    }

    /// Records a success.
    pub(crate) fn reset(&mut self) {
        self.failures = 0;
    }

    pub(crate) fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn doubles_from_min_and_caps_at_max() {
        let b = Backoff::new(100 * MS, 1000 * MS);
        let bases: Vec<_> = (1..=6).map(|n| b.base_delay(n)).collect();
        assert_eq!(
            bases,
            [100 * MS, 200 * MS, 400 * MS, 800 * MS, 1000 * MS, 1000 * MS]
        );
        assert_eq!(b.base_delay(u32::MAX), 1000 * MS);
    }

    #[test]
    fn jitter_stays_within_bounds() {
        let b = Backoff::new(100 * MS, 1000 * MS).jitter(0.5);
        for n in 1..50 {
            let d = b.delay(n);
            let base = b.base_delay(n);
            assert!(
                d <= base && d >= base / 2,
                "{d:?} outside [{:?}, {base:?}]",
                base / 2
            );
        }
    }

    #[test]
    fn state_resets_after_success() {
        let mut s = BackoffState::new(Backoff::new(10 * MS, 100 * MS).jitter(0.0));
        assert_eq!(s.next_delay(), 10 * MS);
        assert_eq!(s.next_delay(), 20 * MS);
        s.reset();
        assert_eq!(s.failures(), 0);
        assert_eq!(s.next_delay(), 10 * MS);
    }

    #[test]
    fn max_below_min_is_min_and_jitter_is_clamped() {
        let b = Backoff::new(100 * MS, 10 * MS).jitter(7.0);
        assert_eq!(b.max(), 100 * MS);
        assert!(b.delay(3) <= 100 * MS);
        assert_eq!(Backoff::new(MS, MS).jitter(f64::NAN).delay(1), MS);
    }
}
