//! The budget that bounds transparent resends.

use std::time::Duration;

use tower::retry::budget::TpsBudget;

/// How many calls may be resent to another endpoint after the server did not process
/// them (a refused stream, a GOAWAY, a connection found closed): a ratio of the calls
/// plus a floor per second, over a sliding window (the budget of linkerd and Finagle,
/// through tower's [`TpsBudget`]). It keeps resends from multiplying the load when
/// many endpoints turn requests away at once.
#[derive(Debug, Clone, Copy, PartialEq)]
#[must_use]
pub struct RetryBudget {
    pub(crate) ratio: f32,
    pub(crate) min_per_sec: u32,
    pub(crate) ttl: Duration,
}

// === impl RetryBudget ===

impl RetryBudget {
    /// `ratio` resends per call (0 to 1000; 0.2 allows one resend per five calls), plus
    /// `min_per_sec` resends per second whatever the traffic, counted over the last
    /// `ttl` (1 s to 60 s). Values outside those ranges are a configuration error at
    /// `build()`.
    pub fn new(ratio: f32, min_per_sec: u32, ttl: Duration) -> Self {
        RetryBudget {
            ratio,
            min_per_sec,
            ttl,
        }
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        if !(0.0..=1000.0).contains(&self.ratio) {
            return Err(format!(
                "retry_budget: ratio {} is outside [0, 1000]",
                self.ratio
            ));
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(60)).contains(&self.ttl) {
            return Err(format!(
                "retry_budget: ttl {:?} is outside [1 s, 60 s]",
                self.ttl
            ));
        }
        if self.min_per_sec >= i32::MAX as u32 {
            return Err(format!(
                "retry_budget: min_per_sec {} is too large",
                self.min_per_sec
            ));
        }
        Ok(())
    }

    /// The budget itself; call after [`validate`](Self::validate), whose checks are
    /// the ones `TpsBudget::new` asserts.
    pub(crate) fn build(&self) -> TpsBudget {
        TpsBudget::new(self.ttl, self.min_per_sec, self.ratio)
    }
}

impl Default for RetryBudget {
    /// 20% of the calls plus 10 per second, over 10 s (linkerd's default).
    fn default() -> Self {
        RetryBudget::new(0.2, 10, Duration::from_secs(10))
    }
}
