//! The budget that bounds transparent resends, and the token bucket that throttles
//! policy retries (gRFC A6).

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use http::HeaderMap;
use tower::retry::budget::TpsBudget;

use super::service_config::RetryThrottling;

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

/// gRFC A6's retry throttling, in thousandths of a token: each retryable failure
/// takes a token, each success gives back the ratio, and retries are allowed while
/// more than half the bucket is left.
#[derive(Debug)]
pub(crate) struct Throttle {
    max: u32,
    ratio: u32,
    tokens: AtomicU32,
}

impl Throttle {
    pub(crate) fn new(config: RetryThrottling) -> Self {
        let max = config.max_tokens.saturating_mul(1000);
        Throttle {
            max,
            ratio: (config.token_ratio * 1000.0).round() as u32,
            tokens: AtomicU32::new(max),
        }
    }

    /// Records a call that failed with a retryable status; whether it may be retried.
    pub(crate) fn failure(&self) -> bool {
        let before = self
            .tokens
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                Some(t.saturating_sub(1000))
            })
            .unwrap_or_else(|t| t);
        before.saturating_sub(1000) > self.max / 2
    }

    /// Whether a retry or hedge may be sent now (more than half the bucket left),
    /// without taking a token.
    pub(crate) fn allows(&self) -> bool {
        self.tokens.load(Ordering::Acquire) > self.max / 2
    }

    pub(crate) fn success(&self) {
        let _ = self
            .tokens
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                (t < self.max).then(|| t.saturating_add(self.ratio).min(self.max))
            });
    }

    #[cfg(test)]
    pub(crate) fn tokens(&self) -> f64 {
        f64::from(self.tokens.load(Ordering::Acquire)) / 1000.0
    }
}

/// What the server asked of retries in `grpc-retry-pushback-ms`: nothing (absent),
/// a delay, or `None` to stop retrying (a negative or malformed value).
pub(crate) fn pushback(headers: &HeaderMap) -> Option<Option<Duration>> {
    let value = headers.get("grpc-retry-pushback-ms")?;
    let ms = value
        .to_str()
        .ok()
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse::<i32>().ok());
    Some(ms.map(|ms| Duration::from_millis(ms as u64)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_stops_retries_at_half_the_bucket_and_successes_refill_it() {
        let t = Throttle::new(RetryThrottling::new(10, 0.5));
        assert_eq!(t.tokens(), 10.0);
        for left in (6..10).rev() {
            assert!(t.failure(), "{left} tokens left: above half");
            assert_eq!(t.tokens(), f64::from(left));
        }
        assert!(!t.failure(), "5 left is not above half");
        t.success();
        assert_eq!(t.tokens(), 5.5);
        assert!(!t.failure(), "4.5 left");
        for _ in 0..100 {
            t.success();
        }
        assert_eq!(t.tokens(), 10.0, "never above the bucket");
        for _ in 0..100 {
            t.failure();
        }
        assert_eq!(t.tokens(), 0.0, "never below empty");
    }

    #[test]
    fn pushback_is_a_delay_or_a_stop() {
        let of = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert("grpc-retry-pushback-ms", v.parse().expect("header value"));
            pushback(&h)
        };
        assert_eq!(pushback(&HeaderMap::new()), None, "absent");
        assert_eq!(of("250"), Some(Some(Duration::from_millis(250))));
        assert_eq!(of("0"), Some(Some(Duration::ZERO)));
        assert_eq!(of("-1"), Some(None), "negative stops retrying");
        assert_eq!(of("soon"), Some(None), "malformed stops retrying");
        assert_eq!(of("99999999999"), Some(None), "beyond int32 stops retrying");
    }
}
