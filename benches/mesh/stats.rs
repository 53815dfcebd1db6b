//! Histograms and min/median/max over runs.

use std::time::Duration;

use hdrhistogram::Histogram;

/// A latency histogram in nanoseconds, 1 ns to 100 s at 3 significant digits.
pub fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("static histogram bounds")
}

/// Records `d` (clamped into the histogram's range).
pub fn record(h: &mut Histogram<u64>, d: Duration) {
    let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    h.saturating_record(ns.max(1));
}

/// The `q` quantile (0..=1) in microseconds.
pub fn q_us(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1e3
}

/// Min, median and max of one measurement over several runs.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Spread {
    pub min: f64,
    pub median: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(values: &[f64]) -> Spread {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return Spread {
                min: f64::NAN,
                median: f64::NAN,
                max: f64::NAN,
            };
        }
        v.sort_by(f64::total_cmp);
        Spread {
            min: v[0],
            median: v[v.len() / 2],
            max: v[v.len() - 1],
        }
    }

    /// `min / median / max` with `decimals` digits, or the single value for one run.
    pub fn show(&self, decimals: usize) -> String {
        if self.median.is_nan() {
            return "–".to_owned();
        }
        if self.min == self.max {
            return format!("{:.decimals$}", self.median);
        }
        format!(
            "{:.decimals$} / {:.decimals$} / {:.decimals$}",
            self.min, self.median, self.max
        )
    }
}

/// Quantile of a sorted slice (nearest rank); NaN when empty.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((sorted.len() as f64) * q).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// `a / b` as a ratio string with two decimals.
pub fn ratio(a: f64, b: f64) -> String {
    if b == 0.0 || !a.is_finite() || !b.is_finite() {
        return "–".to_owned();
    }
    format!("{:.2}×", a / b)
}

/// The CPU time (user + system) the client's threads have used so far: every thread of
/// this process but the servers' (named `echo-…`, `fleet-…`, `h2-fault-…`), read from
/// `/proc/self/task/*/stat` in clock ticks. `None` off Linux.
pub fn client_cpu() -> Option<Duration> {
    let ticks_per_s = 100.0; // USER_HZ on Linux
    let mut ticks = 0u64;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let Ok(task) = task else { continue };
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = &stat[open + 1..close];
        if name.starts_with("echo-") || name.starts_with("fleet-") || name.starts_with("h2-fault") {
            continue;
        }
        // After the name: state is field 3; utime and stime are fields 14 and 15.
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let utime: u64 = fields.get(11).and_then(|f| f.parse().ok()).unwrap_or(0);
        let stime: u64 = fields.get(12).and_then(|f| f.parse().ok()).unwrap_or(0);
        ticks += utime + stime;
    }
    Some(Duration::from_secs_f64(ticks as f64 / ticks_per_s))
}
