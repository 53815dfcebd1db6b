//! What the answers of fault trials say, run by run, and how the fault scenarios
//! show it.

use std::fmt::Write;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use crate::common::{Config, ms_between};
use crate::load::Event;
use crate::stats::{self, Spread, q_us};
use crate::trial::{Fault, NAMES, Plan, RATE, SERVERS, Trial};

/// One contender's measurements, one value per run.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Runs {
    pub requests: Vec<f64>,
    pub failed: Vec<f64>,
    /// Fault → answer of the last failed call, ms (0 when none failed after the fault).
    pub to_last_failure_ms: Vec<f64>,
    /// Fault → answer of the last failure of the first burst after it, ms: the failures
    /// until the first [`QUIET`] without one (0 when none failed after the fault).
    pub burst_ms: Vec<f64>,
    /// Failures answered after that burst (a probe of an ejected instance is one).
    pub after_burst: Vec<f64>,
    /// Failures among the calls sent in the last second of the load.
    pub failed_last_s: Vec<f64>,
    /// Calls sent in the window after the fault, and how many of those failed.
    pub window_sent: Vec<f64>,
    pub window_failed: Vec<f64>,
    /// Share of the calls sent after the fault that succeeded, %.
    pub ok_after_pct: Vec<f64>,
    /// The fewest successful calls sent in any whole second after the fault.
    pub min_ok_per_s: Vec<f64>,
    /// The longest call, answered or not (a call past the deadline counts as the deadline).
    pub longest_ms: Vec<f64>,
    /// p99 of the answered calls, ms.
    pub p99_ms: Vec<f64>,
    /// Calls the load gave up on at their deadline.
    pub deadline_hits: Vec<f64>,
    /// Calls sent before the fault and not answered by it: all of them, and those
    /// counted on the faulted instances (every one not answered later by a healthy
    /// instance; healthy instances answer every call they get).
    pub in_flight: Vec<f64>,
    pub in_flight_faulted: Vec<f64>,
    /// Ours only: streams open on the faulted endpoints at the fault (the channel's count).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub open_at_fault: Vec<f64>,
    /// Ours only: fault → first seen ejected, ms (NaN: never), and the share of the
    /// time after the fault it was held out, %.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ejected_ms: Vec<f64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ejected_pct: Vec<f64>,
    /// Connections the servers accepted in all.
    pub connections: Vec<f64>,
    /// Failures answered in each second after the fault.
    pub failed_per_s: Vec<Vec<f64>>,
}

impl Runs {
    /// Folds in one trial; `window` is the span after the fault the failure share covers.
    pub fn record(&mut self, t: &Trial, window: Duration) {
        let failed: Vec<&Event> = t.events.iter().filter(|e| e.outcome.is_err()).collect();
        self.requests.push(t.events.len() as f64);
        self.record_failures(t, &failed);
        self.record_after(t, window);
        self.record_in_flight(t);
        let mut h = stats::hist();
        for e in t.events.iter().filter(|e| e.outcome.is_ok()) {
            stats::record(&mut h, e.latency());
        }
        self.p99_ms.push(q_us(&h, 0.99) / 1e3);
        let longest = t.events.iter().map(Event::latency).max();
        self.longest_ms
            .push(longest.unwrap_or_default().as_secs_f64() * 1e3);
        if let Some(ejection) = t.ejection {
            let ms = ejection.first.map_or(f64::NAN, |d| d.as_secs_f64() * 1e3);
            self.ejected_ms.push(ms);
            self.ejected_pct.push(100.0 * ejection.share);
        }
        self.connections.push(t.connections as f64);
    }

    /// How many failed, when, and how.
    fn record_failures(&mut self, t: &Trial, failed: &[&Event]) {
        self.failed.push(failed.len() as f64);
        let last = failed.iter().map(|e| e.done).max();
        self.to_last_failure_ms
            .push(last.map_or(0.0, |l| ms_between(t.fault, l).max(0.0)));
        let (burst, later) = burst(failed, t.fault);
        self.burst_ms.push(burst);
        self.after_burst.push(later as f64);
        let last_s = t.end - Duration::from_secs(1);
        let late = failed.iter().filter(|e| e.sent >= last_s).count();
        self.failed_last_s.push(late as f64);
        let deadline = Err(tonic::Code::DeadlineExceeded);
        let hits = failed.iter().filter(|e| e.outcome == deadline).count();
        self.deadline_hits.push(hits as f64);
        self.failed_per_s.push(per_second(failed, t.fault));
    }

    /// What became of the calls sent after the fault, and of those in `window`.
    fn record_after(&mut self, t: &Trial, window: Duration) {
        let after: Vec<&Event> = t.events.iter().filter(|e| e.sent >= t.fault).collect();
        let in_window = after.iter().filter(|e| e.sent < t.fault + window);
        let (sent, failed) = in_window.fold((0, 0), |(s, f), e| {
            (s + 1, f + usize::from(e.outcome.is_err()))
        });
        self.window_sent.push(sent as f64);
        self.window_failed.push(failed as f64);
        let ok = after.iter().filter(|e| e.outcome.is_ok()).count();
        self.ok_after_pct
            .push(100.0 * ok as f64 / after.len().max(1) as f64);
        self.min_ok_per_s.push(min_ok_per_s(&after, t.fault, t.end));
    }

    /// The calls in flight at the fault: all, on the faulted instances, and as ours counts.
    fn record_in_flight(&mut self, t: &Trial) {
        let in_flight = t
            .events
            .iter()
            .filter(|e| e.sent < t.fault && e.done >= t.fault);
        let on_faulted = in_flight.clone().filter(|e| match &e.outcome {
            Ok(id) => t.faulted.contains(id),
            Err(_) => true,
        });
        self.in_flight.push(in_flight.count() as f64);
        self.in_flight_faulted.push(on_faulted.count() as f64);
        if let Some(open) = t.open_at_fault {
            self.open_at_fault.push(open as f64);
        }
    }

    /// The last run in one line, for the console.
    pub fn last(&self) -> String {
        let at = |v: &[f64]| v.last().copied().unwrap_or(f64::NAN);
        format!(
            "failed {} (last at {:.0} ms), longest call {:.0} ms, in flight on the faulted {}",
            at(&self.failed),
            at(&self.to_last_failure_ms),
            at(&self.longest_ms),
            at(&self.in_flight_faulted),
        )
    }

    /// `ejected in n of m runs, after a / b / c ms, held out x / y / z% of the time`,
    /// or `–` where ejection is not observed (tonic's balancer).
    pub fn ejected(&self) -> String {
        if self.ejected_ms.is_empty() {
            return "–".to_owned();
        }
        let n = self.ejected_ms.iter().filter(|v| v.is_finite()).count();
        let mut out = format!("{n} of {} runs", self.ejected_ms.len());
        if n > 0 {
            let _ = write!(
                out,
                ", after {} ms, held out {}% of the time",
                show(&self.ejected_ms, 0),
                show(&self.ejected_pct, 0)
            );
        }
        out
    }

    /// The share of the window's calls that failed, %, one value per run.
    pub fn window_failed_pct(&self) -> Vec<f64> {
        self.window_failed
            .iter()
            .zip(&self.window_sent)
            .map(|(f, s)| 100.0 * f / s.max(1.0))
            .collect()
    }

    /// Failures per second after the fault, the median of each second over the runs,
    /// `a · b · c` (trailing quiet seconds left out).
    pub fn per_second(&self) -> String {
        let len = self.failed_per_s.iter().map(Vec::len).max().unwrap_or(0);
        let medians: Vec<f64> = (0..len)
            .map(|s| {
                let at: Vec<f64> = self
                    .failed_per_s
                    .iter()
                    .map(|r| r.get(s).copied().unwrap_or(0.0))
                    .collect();
                Spread::of(&at).median
            })
            .collect();
        let end = medians.iter().rposition(|m| *m > 0.0).map_or(0, |i| i + 1);
        if end == 0 {
            return "0".to_owned();
        }
        medians[..end]
            .iter()
            .map(|m| format!("{m:.0}"))
            .collect::<Vec<_>>()
            .join(" · ")
    }
}

/// A gap between failures that ends the first burst after the fault.
pub const QUIET: Duration = Duration::from_millis(500);

/// Fault → the last failure of the first burst after it (ms), and how many failures
/// came after that burst.
fn burst(failed: &[&Event], fault: Instant) -> (f64, usize) {
    let mut done: Vec<Instant> = failed
        .iter()
        .map(|e| e.done)
        .filter(|d| *d >= fault)
        .collect();
    done.sort();
    let end = done
        .windows(2)
        .position(|w| w[1] - w[0] >= QUIET)
        .unwrap_or(done.len().saturating_sub(1));
    match done.get(end) {
        Some(last) => (ms_between(fault, *last), done.len() - end - 1),
        None => (0.0, 0),
    }
}

/// Failures answered in each second after `fault` (earlier ones in the first).
fn per_second(failed: &[&Event], fault: Instant) -> Vec<f64> {
    let mut out = Vec::new();
    for e in failed {
        let s = e.done.saturating_duration_since(fault).as_secs() as usize;
        if out.len() <= s {
            out.resize(s + 1, 0.0);
        }
        out[s] += 1.0;
    }
    out
}

/// The fewest successes among the calls sent in each whole second from `fault` to `end`.
fn min_ok_per_s(after: &[&Event], fault: Instant, end: Instant) -> f64 {
    let seconds = end.saturating_duration_since(fault).as_secs() as usize;
    let mut ok = vec![0.0; seconds];
    for e in after.iter().filter(|e| e.outcome.is_ok()) {
        if let Some(n) = ok.get_mut(e.sent.saturating_duration_since(fault).as_secs() as usize) {
            *n += 1.0;
        }
    }
    ok.into_iter().fold(f64::NAN, f64::min)
}

/// The paragraph that opens a fault scenario's section: load, servers, `fault` (what
/// happens and when), runs and contenders.
pub fn setup(cfg: &Config, plan: &Plan, fault: &str) -> String {
    let when = match plan.fault {
        // The fault lasts the whole load.
        Fault::Nothing => format!(
            "; the load runs {:.1} s",
            (plan.before + plan.after).as_secs_f64()
        ),
        _ => format!(
            " {:.0} s into the load; the load goes on {:.1} s after that",
            plan.before.as_secs_f64(),
            plan.after.as_secs_f64()
        ),
    };
    format!(
        "Open loop {RATE} calls/s ({:.0} s deadline per call), {SERVERS} servers, {fault}{when}. {} run(s) \
         per contender, interleaved; cells are min / median / max over runs. tonic-balance = \
         `Channel::balance_list`; ours = `BalancedChannel` over `consul::Discovery`, defaults{}. \
         Every instance stays registered and passing.\n\n",
        plan.deadline.as_secs_f64(),
        cfg.runs(),
        match plan.keep_alive {
            Some((every, wait)) => format!(
                " but keep-alive {:.0} s + {:.0} s (`--quick`)",
                every.as_secs_f64(),
                wait.as_secs_f64()
            ),
            None => String::new(),
        },
    )
}

/// The section's JSON: the plan and every contender's runs.
pub fn json(plan: &Plan, runs: &[Runs]) -> Value {
    json!({
        "rate": RATE,
        "servers": SERVERS,
        "fault": format!("{:?}", plan.fault),
        "before_s": plan.before.as_secs_f64(),
        "after_s": plan.after.as_secs_f64(),
        "deadline_s": plan.deadline.as_secs_f64(),
        "max_connection_age_s": plan.max_age.map(|d| d.as_secs_f64()),
        "keep_alive_s": plan.keep_alive.map(|(i, t)| [i.as_secs_f64(), t.as_secs_f64()]),
        "window_s": plan.window.as_secs_f64(),
        "contenders": NAMES.iter().zip(runs).map(|(n, r)| json!({"name": n, "runs": r})).collect::<Vec<_>>(),
    })
}

/// `v` as min / median / max with `decimals` digits.
pub fn show(v: &[f64], decimals: usize) -> String {
    Spread::of(v).show(decimals)
}

/// The median of `v`.
pub fn median(v: &[f64]) -> f64 {
    Spread::of(v).median
}

/// The largest of `v` (the worst run).
pub fn max(v: &[f64]) -> f64 {
    Spread::of(v).max
}
