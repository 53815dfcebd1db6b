//! What a channel's retry and hedging policies did: counters kept beside its
//! metrics, read through [`BalancedChannel::attempt_stats`].
//!
//! [`BalancedChannel::attempt_stats`]: super::BalancedChannel::attempt_stats

use std::sync::atomic::{AtomicU64, Ordering};

/// What a channel's retry and hedging policies did since it was built, as
/// [`BalancedChannel::attempt_stats`](super::BalancedChannel::attempt_stats)
/// reads it.
///
/// Only a policy's decisions count: a call the server never processed (a refused
/// stream, a GOAWAY) is sent again within the [`RetryBudget`](super::RetryBudget)
/// and counts in none of these. The attempts the channel sent are its calls plus
/// [`retries`](Self::retries) plus [`hedges`](Self::hedges). The same events are
/// the `retries_total` and `hedges_total` metrics (feature `metrics`), which split
/// them by method.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AttemptStats {
    retries: u64,
    retries_throttled: u64,
    hedges: u64,
    hedges_won: u64,
    hedges_throttled: u64,
}

impl AttemptStats {
    /// Retries sent: attempts after a failure with a retryable status, or after a
    /// connection lost before any response.
    pub fn retries(&self) -> u64 {
        self.retries
    }

    /// Failures a retry policy would have retried but retry throttling stopped
    /// (`retries_total{outcome="throttled"}`).
    pub fn retries_throttled(&self) -> u64 {
        self.retries_throttled
    }

    /// Hedges sent: attempts beyond a hedged call's first.
    pub fn hedges(&self) -> u64 {
        self.hedges
    }

    /// Hedged calls a hedge answered, not the first attempt.
    pub fn hedges_won(&self) -> u64 {
        self.hedges_won
    }

    /// Hedged calls that sent no more hedges because retry throttling stopped them
    /// after a non-fatal failure (`hedges_total{outcome="throttled"}`).
    pub fn hedges_throttled(&self) -> u64 {
        self.hedges_throttled
    }
}

/// The counters behind [`AttemptStats`]. Touched only where a policy acts (a
/// retryable failure, a hedge), never on the path every call takes.
#[derive(Debug, Default)]
pub(crate) struct AttemptCounters {
    retries: AtomicU64,
    retries_throttled: AtomicU64,
    hedges: AtomicU64,
    hedges_won: AtomicU64,
    hedges_throttled: AtomicU64,
}

impl AttemptCounters {
    /// A retry policy's decision, by its metric `outcome`.
    pub(crate) fn retry(&self, outcome: &str) {
        let counter = match outcome {
            "retried" => &self.retries,
            "throttled" => &self.retries_throttled,
            _ => return,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// A hedged call's event, by its metric `outcome`.
    pub(crate) fn hedge(&self, outcome: &str) {
        let counter = match outcome {
            "sent" => &self.hedges,
            "won" => &self.hedges_won,
            "throttled" => &self.hedges_throttled,
            _ => return,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> AttemptStats {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        AttemptStats {
            retries: read(&self.retries),
            retries_throttled: read(&self.retries_throttled),
            hedges: read(&self.hedges),
            hedges_won: read(&self.hedges_won),
            hedges_throttled: read(&self.hedges_throttled),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::AttemptCounters;

    #[test]
    fn counts_the_outcomes_it_reports_and_ignores_the_others() {
        let counters = AttemptCounters::default();
        for outcome in ["retried", "retried", "throttled", "deadline", "pushback"] {
            counters.retry(outcome);
        }
        for outcome in ["sent", "sent", "sent", "won", "throttled", "not_kept"] {
            counters.hedge(outcome);
        }
        let stats = counters.snapshot();
        assert_eq!(
            (stats.retries(), stats.retries_throttled()),
            (2, 1),
            "{stats:?}"
        );
        assert_eq!(
            (stats.hedges(), stats.hedges_won(), stats.hedges_throttled()),
            (3, 1, 1),
            "{stats:?}"
        );
    }
}
