//! Scenario 8, frozen instance: one of three servers stops as `SIGSTOP` would (its
//! connections stay open, nothing is read or answered, not even PINGs) and stays
//! registered; how long a call can hang and how many fail.

use std::fmt::Write;
use std::time::Duration;

use crate::common::{Config, Res, Section};
use crate::outcome::{self, Runs, show};
use crate::overhead::verdict;
use crate::report;
use crate::trial::{self, Fault, Plan};

/// Ours' keep-alive bound with the builder's defaults: 10 s interval + 5 s timeout.
const DEFAULT_BOUND: Duration = Duration::from_secs(15);

/// Allowed past the bound: tokio's timers tick in milliseconds, and the closed
/// connection reaches the caller through a few task wake-ups.
const SLACK: Duration = Duration::from_millis(10);

pub async fn run(cfg: &Config) -> Res<Section> {
    // The load must outlast the keep-alive bound; `--quick` shortens the bound instead.
    let after = Duration::from_millis(cfg.pick(18_000, 4000));
    let plan = Plan {
        // Longer than our bound: tonic's balancer has no keep-alive, so only the
        // deadline ends its calls on the frozen instance.
        deadline: Duration::from_secs(cfg.pick(20, 5)),
        keep_alive: cfg
            .quick
            .then(|| (Duration::from_secs(2), Duration::from_secs(1))),
        ..Plan::new(cfg, "frozen", Fault::Freeze(1), after)
    };
    let runs = trial::runs(cfg, &plan).await?;
    Ok(section(cfg, &plan, &runs))
}

fn section(cfg: &Config, plan: &Plan, runs: &[Runs]) -> Section {
    let bound = plan
        .keep_alive
        .map_or(DEFAULT_BOUND, |(every, wait)| every + wait);
    let mut md = outcome::setup(
        cfg,
        plan,
        "server 0 frozen (its connections stay open; it reads and writes nothing, not even PING \
         acks or a FIN)",
    );
    let deadline = format!(
        "of them at the {:.0} s deadline",
        plan.deadline.as_secs_f64()
    );
    md.push_str(&report::table(
        "contender",
        &report::by_contender(runs),
        &[
            ("requests", &|r| show(&r.requests, 0)),
            ("failed", &|r| show(&r.failed, 0)),
            (&deadline, &|r| show(&r.deadline_hits, 0)),
            ("longest call ms", &|r| show(&r.longest_ms, 0)),
            ("in flight at the freeze", &|r| show(&r.in_flight, 0)),
            ("of them on the frozen instance", &|r| {
                show(&r.in_flight_faulted, 0)
            }),
            ("open on it (channel's count)", &|r| {
                show(&r.open_at_fault, 0)
            }),
            ("freeze → last failure ms", &|r| {
                show(&r.to_last_failure_ms, 0)
            }),
            ("failures per second after the freeze (median)", &|r| {
                r.per_second()
            }),
        ],
    ));
    let ours = &runs[1];
    let longest = outcome::max(&ours.longest_ms);
    let within = ours
        .failed
        .iter()
        .zip(&ours.open_at_fault)
        .all(|(failed, open)| failed <= open);
    let _ = writeln!(
        md,
        "\nTargets, ours, every run: no call lasts longer than the keep-alive bound ({:.0} s: \
         interval + timeout, + {} ms of timer resolution) — longest {longest:.1} ms ({}); no more calls fail than were in flight \
         on the frozen instance at the freeze, by the channel's count — failed {} vs in flight {} \
         ({}). tonic-balance has no keep-alive: its calls on the frozen instance end only at the \
         deadline ({} of its calls hit it, median). In flight at the freeze: calls sent before it \
         and not answered by then; counted on the frozen instance unless a live instance answered \
         them later. Failures per second are counted by when the failure was answered.",
        bound.as_secs_f64(),
        SLACK.as_millis(),
        verdict(longest <= (bound + SLACK).as_secs_f64() * 1e3),
        show(&ours.failed, 0),
        show(&ours.open_at_fault, 0),
        verdict(within),
        outcome::median(&runs[0].deadline_hits),
    );
    let mut json = outcome::json(plan, runs);
    json["keep_alive_bound_s"] = bound.as_secs_f64().into();
    json["timer_slack_ms"] = (SLACK.as_secs_f64() * 1e3).into();
    Section {
        key: "8-frozen-instance",
        json,
        markdown: md,
    }
}
