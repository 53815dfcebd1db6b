//! Scenario 3, dead instance: one of three servers is killed under 1,000 requests/s
//! and stays registered; how many requests fail, when the errors stop, and how many
//! calls were on the killed instance when it died.

use std::fmt::Write;
use std::time::Duration;

use crate::common::{Config, Res, Section};
use crate::outcome::{self, Runs, show};
use crate::overhead::verdict;
use crate::report;
use crate::trial::{self, Fault, Plan};

/// The target: errors stop within this after the kill, ms.
const MAX_LAST_FAILURE_MS: f64 = 1000.0;

pub async fn run(cfg: &Config) -> Res<Section> {
    let after = Duration::from_millis(cfg.pick(8000, 2500));
    let plan = Plan::new(cfg, "dead", Fault::Kill(1), after);
    let runs = trial::runs(cfg, &plan).await?;
    Ok(section(cfg, &plan, &runs))
}

fn section(cfg: &Config, plan: &Plan, runs: &[Runs]) -> Section {
    let mut md = outcome::setup(
        cfg,
        plan,
        "server 0 killed (listener and every connection closed at once, as a crashed process)",
    );
    md.push_str(&report::table(
        "contender",
        &report::by_contender(runs),
        &[
            ("requests", &|r| show(&r.requests, 0)),
            ("failed", &|r| show(&r.failed, 0)),
            ("kill → last failure ms", &|r| {
                show(&r.to_last_failure_ms, 0)
            }),
            ("failures in the last second", &|r| {
                show(&r.failed_last_s, 0)
            }),
            ("in flight at the kill", &|r| show(&r.in_flight, 0)),
            ("of them on the killed instance", &|r| {
                show(&r.in_flight_faulted, 0)
            }),
            ("open on it (channel's count)", &|r| {
                show(&r.open_at_fault, 0)
            }),
            ("failures per second after the kill (median)", &|r| {
                r.per_second()
            }),
        ],
    ));
    let ours = outcome::max(&runs[1].to_last_failure_ms);
    let ratio = outcome::median(&runs[0].failed) / outcome::median(&runs[1].failed).max(1.0);
    let _ = writeln!(
        md,
        "\nTarget: errors stop within {:.0} s — ours, worst run: {ours:.0} ms ({}). tonic-balance failed \
         {ratio:.0}× as many requests (medians); a non-zero last-second count means its errors had not \
         stopped. In flight at the kill: calls sent before it and not answered by then; they are \
         counted on the killed instance unless a live instance answered them later (the answer names \
         its instance; live instances answer every call). For ours the channel's own count of streams \
         open on the endpoint at the kill is shown too (tonic's balancer does not expose one).",
        MAX_LAST_FAILURE_MS / 1000.0,
        verdict(ours <= MAX_LAST_FAILURE_MS)
    );
    let mut json = outcome::json(plan, runs);
    json["target_last_failure_ms"] = MAX_LAST_FAILURE_MS.into();
    Section {
        key: "3-dead-instance",
        json,
        markdown: md,
    }
}
