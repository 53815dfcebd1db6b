//! A method's recent latency, for an adaptive hedging delay.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// Latency buckets: bucket `i` holds latencies from `BASE_US × GROWTH^i`.
const BUCKETS: usize = 64;
const BASE_US: f64 = 50.0;
const GROWTH: f64 = 1.25;
/// Counts halve this often, so the window follows the last seconds of calls.
const HALF_LIFE: Duration = Duration::from_secs(5);
/// Below this many calls measured, there is no percentile.
const MIN_SAMPLES: u64 = 20;

/// A method's recent latency: counts in log-spaced buckets (25% apart, 50 µs to
/// about 80 s), halved every [`HALF_LIFE`], and the hedging delay read from them,
/// recomputed every [`RECOMPUTE_EVERY`] calls. Lock-free: atomics only.
#[derive(Debug)]
pub(crate) struct LatencyWindow {
    buckets: [AtomicU32; BUCKETS],
    epoch: Instant,
    /// When counts last halved, in ms since `epoch`.
    halved_at: AtomicU64,
    recorded: AtomicU32,
    /// The delay in use, µs (0: not computed yet).
    delay_us: AtomicU64,
}

impl Default for LatencyWindow {
    fn default() -> Self {
        LatencyWindow {
            buckets: std::array::from_fn(|_| AtomicU32::new(0)),
            epoch: Instant::now(),
            halved_at: AtomicU64::new(0),
            recorded: AtomicU32::new(0),
            delay_us: AtomicU64::new(0),
        }
    }
}

impl LatencyWindow {
    /// Counts one call's latency; returns how many were counted before it.
    pub(crate) fn record(&self, latency: Duration) -> u32 {
        self.decay();
        let us = latency.as_secs_f64() * 1e6;
        let i = if us <= BASE_US {
            0
        } else {
            ((us / BASE_US).ln() / GROWTH.ln()) as usize
        };
        self.buckets[i.min(BUCKETS - 1)].fetch_add(1, Ordering::Relaxed);
        self.recorded.fetch_add(1, Ordering::Relaxed)
    }

    /// The adaptive delay last computed, if any.
    pub(crate) fn delay(&self) -> Option<Duration> {
        match self.delay_us.load(Ordering::Relaxed) {
            0 => None,
            us => Some(Duration::from_micros(us)),
        }
    }

    /// Computes the delay again: the `percentile` (0–100) within `floor` and `cap`,
    /// the cap while too few calls were measured.
    pub(crate) fn recompute(&self, percentile: f64, floor: Duration, cap: Duration) -> Duration {
        let delay = self
            .quantile(percentile / 100.0)
            .map_or(cap, |q| q.clamp(floor, cap));
        self.delay_us
            .store(delay.as_micros().max(1) as u64, Ordering::Relaxed);
        delay
    }

    /// The `q` quantile (the upper bound of its bucket), if enough calls were
    /// measured.
    pub(crate) fn quantile(&self, q: f64) -> Option<Duration> {
        let counts: [u64; BUCKETS] =
            std::array::from_fn(|i| u64::from(self.buckets[i].load(Ordering::Relaxed)));
        let total: u64 = counts.iter().sum();
        if total < MIN_SAMPLES {
            return None;
        }
        let target = (q * total as f64).ceil() as u64;
        let mut seen = 0;
        for (i, n) in counts.iter().enumerate() {
            seen += n;
            if seen >= target.max(1) {
                let upper = BASE_US * GROWTH.powi(i as i32 + 1);
                return Some(Duration::from_secs_f64(upper / 1e6));
            }
        }
        None
    }

    /// Halves every count once per [`HALF_LIFE`] gone by (the first recorder to see
    /// it due does it, for every half-life since the last time).
    fn decay(&self) {
        let now = self.epoch.elapsed().as_millis() as u64;
        let last = self.halved_at.load(Ordering::Relaxed);
        let lives = now.saturating_sub(last) / HALF_LIFE.as_millis() as u64;
        if lives == 0 {
            return;
        }
        if self
            .halved_at
            .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        let shift = lives.min(31) as u32;
        for bucket in &self.buckets {
            let _ = bucket.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| Some(n >> shift));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_window_reads_percentiles_and_forgets_old_calls() {
        let window = LatencyWindow::default();
        let add = |ms: u64, n: usize| {
            for _ in 0..n {
                window.decay();
                let us = ms as f64 * 1000.0;
                let i = ((us / BASE_US).ln() / GROWTH.ln()) as usize;
                window.buckets[i.min(BUCKETS - 1)].fetch_add(1, Ordering::Relaxed);
            }
        };
        assert_eq!(window.quantile(0.95), None, "too few calls");
        add(1, 95);
        add(20, 5);
        let p50 = window.quantile(0.5).expect("enough calls");
        let p95 = window.quantile(0.95).expect("enough calls");
        let p99 = window.quantile(0.99).expect("enough calls");
        assert!(
            p50 >= Duration::from_millis(1) && p50 < Duration::from_micros(1300),
            "{p50:?}"
        );
        assert!(
            p95 < Duration::from_micros(1300),
            "95 of 100 at 1 ms: {p95:?}"
        );
        assert!(
            p99 >= Duration::from_millis(20) && p99 < Duration::from_millis(26),
            "{p99:?}"
        );
        // Old calls fade: after many half-lives only the new ones count.
        for _ in 0..8 {
            tokio::time::advance(HALF_LIFE).await;
            add(5, 40);
        }
        let p99 = window.quantile(0.99).expect("enough calls");
        assert!(
            p99 >= Duration::from_millis(5) && p99 < Duration::from_micros(6300),
            "{p99:?}"
        );
    }
}
