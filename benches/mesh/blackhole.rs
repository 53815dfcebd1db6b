//! Scenario 7, black hole: one of three servers (then two of three) answers every call
//! at once with `UNAVAILABLE` while it stays registered and passing; how many calls
//! fail, when the failures stop, and how much of the service stays up; ours also with
//! a retry policy (gRFC A6: 3 attempts on `UNAVAILABLE`), against issue #23's target.

use std::fmt::Write;
use std::time::Duration;

use serde_json::json;

use crate::common::{Config, Res, Section};
use crate::outcome::{self, Runs, show};
use crate::overhead::verdict;
use crate::report;
use crate::trial::{self, Fault, NAMES, Plan};

/// The share of the calls in the window after the fault that may fail, %.
const MAX_FAILED_PCT: f64 = 0.5;
/// Failures stop within this after the fault, ms.
const MAX_LAST_FAILURE_MS: f64 = 1000.0;
/// With a retry policy (issue #23): failures after the first burst, and the share of
/// the calls sent after the fault that may fail, %.
const RETRY_MAX_AFTER_BURST: f64 = 0.0;
const RETRY_MAX_FAILED_PCT: f64 = 0.01;

pub async fn run(cfg: &Config) -> Res<Section> {
    let after = Duration::from_millis(cfg.pick(10_000, 3000));
    let plan = |tag, n| Plan {
        retrying: true,
        ..Plan::new(cfg, tag, Fault::BlackHole(n), after)
    };
    let plans = [plan("hole1-", 1), plan("hole2-", 2)];
    let mut runs = Vec::new();
    for plan in &plans {
        eprintln!("  {} of 3 black-holed", plan.fault.count());
        runs.push(trial::runs(cfg, plan).await?);
    }
    Ok(section(cfg, &plans, &runs))
}

fn section(cfg: &Config, plans: &[Plan; 2], runs: &[Vec<Runs>]) -> Section {
    let window = plans[0].window.as_secs_f64();
    let mut md = outcome::setup(
        cfg,
        &plans[0],
        "server 0 (then servers 0 and 1, a second set of runs) starts answering every call at once \
         with `UNAVAILABLE` (a trailers-only response)",
    );
    md.push_str(
        "ours + retry policy = ours with a retry policy for every method (gRFC A6: 3 attempts \
         in all on `UNAVAILABLE`, backoff 10–100 ms, no throttling), set with \
         `BalancedChannelBuilder::service_config`.\n\n",
    );
    let mut rows = Vec::new();
    for (plan, pair) in plans.iter().zip(runs) {
        for (name, r) in NAMES.iter().zip(pair) {
            rows.push((format!("{name}, {} of 3", plan.fault.count()), r));
        }
    }
    let share = format!("failed of the calls sent in the {window:.0} s after %");
    md.push_str(&report::table(
        "contender, black-holed",
        &rows,
        &[
            ("requests", &|r| show(&r.requests, 0)),
            ("failed", &|r| show(&r.failed, 0)),
            ("fault → last failure ms", &|r| {
                show(&r.to_last_failure_ms, 0)
            }),
            ("fault → end of the first burst ms", &|r| {
                show(&r.burst_ms, 0)
            }),
            ("failures after it", &|r| show(&r.after_burst, 0)),
            (&share, &|r| show(&r.window_failed_pct(), 2)),
            ("succeeded of the calls after the fault %", &|r| {
                show(&r.ok_after_pct, 2)
            }),
            ("fewest successes in a second after", &|r| {
                show(&r.min_ok_per_s, 0)
            }),
            ("ejected (channel's state every 10 ms)", &|r| r.ejected()),
            ("failures per second after the fault (median)", &|r| {
                r.per_second()
            }),
        ],
    ));
    let one = &runs[0][1];
    let (last, burst, pct) = (
        outcome::max(&one.to_last_failure_ms),
        outcome::max(&one.burst_ms),
        outcome::max(&one.window_failed_pct()),
    );
    let two = &runs[1];
    let _ = writeln!(
        md,
        "\nTargets, 1 of 3 black-holed, ours, worst run: failures stop within {:.0} s of the fault — last \
         failure at {last:.0} ms ({}); the first burst of failures (up to the first {} ms without one) \
         ended at {burst:.0} ms, and {} failures came after it (median): the half-open probes of an \
         ejected instance (one real call each time its ejection runs out, after about 1 s, 2 s, 4 s …) \
         or calls that the failure penalty, bounded at 11× the cost, still lets through to one that is \
         not ejected; the ejection column tells which. At most {MAX_FAILED_PCT}% of the calls \
         sent in the {window:.0} s after the fault fail — {pct:.2}% ({}). tonic-balance, for \
         comparison: {:.2}% failed (median).\n\n\
         2 of 3 black-holed: the healthy instance keeps the service up (the capacity guard ejects at \
         most one of three; the failure penalty steers calls off the other) — ours succeeded on \
         {:.2}% of the calls after the fault (median; tonic-balance {:.2}%), and every second after \
         the fault had successful calls in every run ({}).",
        MAX_LAST_FAILURE_MS / 1000.0,
        verdict(last <= MAX_LAST_FAILURE_MS),
        outcome::QUIET.as_millis(),
        outcome::median(&one.after_burst),
        verdict(pct <= MAX_FAILED_PCT),
        outcome::median(&runs[0][0].window_failed_pct()),
        outcome::median(&two[1].ok_after_pct),
        outcome::median(&two[0].ok_after_pct),
        verdict(two[1].min_ok_per_s.iter().all(|n| *n > 0.0)),
    );
    md.push_str(&retry_verdict(plans, runs));
    let variants: Vec<_> = plans
        .iter()
        .zip(runs)
        .map(|(p, r)| outcome::json(p, r))
        .collect();
    Section {
        key: "7-black-hole",
        json: json!({
            "variants": variants,
            "target_failed_pct": MAX_FAILED_PCT,
            "target_last_failure_ms": MAX_LAST_FAILURE_MS,
            "target_retry_after_burst": RETRY_MAX_AFTER_BURST,
            "target_retry_failed_pct": RETRY_MAX_FAILED_PCT,
        }),
        markdown: md,
    }
}

/// The verdict on ours + retry policy, 1 and 2 of 3 black-holed, worst run: no failure
/// after the first burst, and at most [`RETRY_MAX_FAILED_PCT`] of the calls sent after
/// the fault failed.
fn retry_verdict(plans: &[Plan; 2], runs: &[Vec<Runs>]) -> String {
    let mut md = format!(
        "\nTargets with a retry policy (issue #23), ours + retry policy, worst run: \
         {RETRY_MAX_AFTER_BURST:.0} failed calls after the first burst, and failed calls at \
         most {RETRY_MAX_FAILED_PCT}% of those sent in the {:.0} s after the fault —",
        plans[0].window.as_secs_f64()
    );
    for (plan, pair) in plans.iter().zip(runs) {
        let Some(r) = pair.get(2) else { continue };
        let (later, pct) = (
            outcome::max(&r.after_burst),
            outcome::max(&r.window_failed_pct()),
        );
        let _ = write!(
            md,
            " {} of 3: {later:.0} after the burst ({}), {pct:.3}% ({}), {:.0} failed in all (median);",
            plan.fault.count(),
            verdict(later <= RETRY_MAX_AFTER_BURST),
            verdict(pct <= RETRY_MAX_FAILED_PCT),
            outcome::median(&r.failed),
        );
    }
    md.pop();
    md.push_str(".\n");
    md
}
