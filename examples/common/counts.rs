//! The echo client's tallies: where the calls answered in a period went, how they
//! failed and how long they took, as the JSON it prints.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;

/// The longest latency told apart (an hour, in µs); longer calls count as this.
const LATENCY_MAX_US: u64 = 3_600_000_000;

/// What the calls answered in a period did: where they went, how they failed, and
/// how long they took.
pub(crate) struct Counts {
    ok: BTreeMap<String, u64>,
    errors: BTreeMap<String, u64>,
    /// Call latencies in µs, 3 significant digits.
    latency: Histogram<u64>,
}

impl Counts {
    pub(crate) fn new() -> Self {
        Counts {
            ok: BTreeMap::new(),
            errors: BTreeMap::new(),
            latency: Histogram::new_with_bounds(1, LATENCY_MAX_US, 3).expect("valid bounds"),
        }
    }

    /// Counts one call's outcome and latency.
    pub(crate) fn record(&mut self, result: Result<String, String>, latency: Duration) {
        match result {
            Ok(id) => *self.ok.entry(id).or_default() += 1,
            Err(code) => *self.errors.entry(code).or_default() += 1,
        }
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.latency.saturating_record(us);
    }

    /// How many calls were answered, failed or not.
    pub(crate) fn calls(&self) -> u64 {
        self.ok.values().chain(self.errors.values()).sum()
    }

    /// `"ok":{...},"errors":{...},"latency_us":{...}` in the documented key order.
    pub(crate) fn body(&self) -> String {
        format!(
            r#"{{"ok":{},"errors":{},"latency_us":{}}}"#,
            serde_json::to_string(&self.ok).expect("string map"),
            serde_json::to_string(&self.errors).expect("string map"),
            self.latency_json(),
        )
    }

    /// The latency percentiles, or `null` without calls.
    pub(crate) fn latency_json(&self) -> String {
        let h = &self.latency;
        if h.is_empty() {
            return "null".to_owned();
        }
        let q = |q: f64| h.value_at_quantile(q);
        format!(
            r#"{{"p50":{},"p90":{},"p99":{},"p999":{},"max":{}}}"#,
            q(0.5),
            q(0.9),
            q(0.99),
            q(0.999),
            h.max(),
        )
    }

    pub(crate) fn line(&self, elapsed_ms: u64) -> String {
        format!(r#"{{"elapsed_ms":{elapsed_ms},{}"#, &self.body()[1..])
    }

    pub(crate) fn merge_into(&self, total: &mut Counts) {
        for (k, v) in &self.ok {
            *total.ok.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &self.errors {
            *total.errors.entry(k.clone()).or_default() += v;
        }
        total
            .latency
            .add(&self.latency)
            .expect("histograms of the same bounds");
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::Counts;

    #[test]
    fn lines_are_json_with_the_latency_of_the_calls_answered() {
        let mut counts = Counts::new();
        let line: serde_json::Value =
            serde_json::from_str(&counts.line(1000)).expect("a JSON line");
        assert!(line["latency_us"].is_null(), "no calls, no latency: {line}");
        for ms in 1..=100 {
            counts.record(Ok("a".into()), Duration::from_millis(ms));
        }
        counts.record(Err("Unavailable".into()), Duration::from_secs(2));
        let line: serde_json::Value =
            serde_json::from_str(&counts.line(1000)).expect("a JSON line");
        let latency = &line["latency_us"];
        assert_eq!(line["ok"]["a"], 100);
        assert_eq!(line["errors"]["Unavailable"], 1);
        let p50 = latency["p50"].as_u64().expect("p50");
        assert!((50_000..=51_100).contains(&p50), "{latency}");
        let max = latency["max"].as_u64().expect("max");
        assert!((2_000_000..=2_002_000).contains(&max), "{latency}");
        let mut total = Counts::new();
        counts.merge_into(&mut total);
        counts.merge_into(&mut total);
        assert_eq!(total.calls(), 202);
        assert_eq!(total.latency.len(), 202);
    }
}
