//! Scenario 3, dead instance: one of three servers is killed under 1,000 requests/s
//! and stays registered; how many requests fail and when the errors stop.

use std::fmt::Write;
use std::time::Duration;

use serde_json::json;
use tokio::time::{Instant, sleep};

use crate::common::{self, Config, Registry, Res, Section, ms_between};
use crate::load::{Chan, Event, OpenLoad, boxed};
use crate::overhead::verdict;
use crate::stats::Spread;

const NAMES: [&str; 2] = ["tonic-balance", "ours"];
const RATE: u32 = 1000;

#[derive(Debug, Default, Clone, serde::Serialize)]
struct Runs {
    failed: Vec<f64>,
    /// Kill → answer of the last failed request, ms.
    errors_stop_ms: Vec<f64>,
    /// Failures in the last second of the run.
    failed_last_s: Vec<f64>,
    requests: Vec<f64>,
}

pub async fn run(cfg: &Config) -> Res<Section> {
    let (before, after) = (
        Duration::from_millis(cfg.pick(2000, 1000)),
        Duration::from_millis(cfg.pick(8000, 2500)),
    );
    let registry = Registry::start().await?;
    let mut runs = vec![Runs::default(); 2];
    for run in 0..cfg.runs() {
        for (i, r) in runs.iter_mut().enumerate() {
            let service = format!("dead{run}{i}");
            let mut servers = common::servers(&format!("d{run}{i}-"), 3).await?;
            let mut handles = Vec::new();
            let chan: Chan = if i == 0 {
                common::tonic_list(&servers)?
            } else {
                let (registered, ours) = registry.serve(&service, &servers).await?;
                handles = registered;
                boxed(ours)
            };
            let ids = common::ids(&servers);
            common::until_all_answer(&chan, &ids).await?;
            let load = OpenLoad::start(chan, RATE, Duration::from_secs(2));
            sleep(before).await;
            let killed = Instant::now();
            servers.remove(0).kill().await;
            sleep(after).await;
            let end = Instant::now();
            let events = load.finish().await;
            record(r, &events, killed, end);
            eprintln!(
                "  run {run} {:<14} failed {} errors stop {:.0} ms",
                NAMES[i],
                r.failed.last().unwrap_or(&0.0),
                r.errors_stop_ms.last().unwrap_or(&0.0)
            );
            drop(handles);
        }
    }
    Ok(section(cfg, &runs, before, after))
}

fn record(r: &mut Runs, events: &[Event], killed: Instant, end: Instant) {
    let failed: Vec<&Event> = events.iter().filter(|e| e.outcome.is_err()).collect();
    r.failed.push(failed.len() as f64);
    r.requests.push(events.len() as f64);
    let last = failed.iter().map(|e| e.done).max();
    r.errors_stop_ms
        .push(last.map_or(0.0, |l| ms_between(killed, l).max(0.0)));
    let last_s = end - Duration::from_secs(1);
    r.failed_last_s
        .push(failed.iter().filter(|e| e.sent >= last_s).count() as f64);
}

fn section(cfg: &Config, runs: &[Runs], before: Duration, after: Duration) -> Section {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "Open loop {RATE} requests/s (2 s timeout per request), 3 servers, server 0 killed (listener and \
         every connection closed at once) {:.0} s into the load and never deregistered; the load goes on \
         {:.1} s after the kill. {} run(s) per contender, interleaved; min / median / max. tonic-balance = \
         `Channel::balance_list`; ours = `BalancedChannel` over `consul::Discovery` (the dead instance \
         stays registered and passing).\n",
        before.as_secs_f64(),
        after.as_secs_f64(),
        cfg.runs()
    );
    md.push_str("| contender | requests | failed | kill → last failure ms | failures in the last second |\n|---|---|---|---|---|\n");
    for (name, r) in NAMES.iter().zip(runs) {
        let _ = writeln!(
            md,
            "| {name} | {} | {} | {} | {} |",
            Spread::of(&r.requests).show(0),
            Spread::of(&r.failed).show(0),
            Spread::of(&r.errors_stop_ms).show(0),
            Spread::of(&r.failed_last_s).show(0),
        );
    }
    let ours = Spread::of(&runs[1].errors_stop_ms).max;
    let ratio = Spread::of(&runs[0].failed).median / Spread::of(&runs[1].failed).median.max(1.0);
    let _ = writeln!(
        md,
        "\nTarget: errors stop within 1 s — ours, worst run: {ours:.0} ms ({}). tonic-balance failed \
         {ratio:.0}× as many requests (medians); a non-zero last-second count means its errors had not stopped.",
        verdict(ours <= 1000.0)
    );
    Section {
        key: "3-dead-instance",
        json: json!({"rate": RATE, "before_s": before.as_secs_f64(), "after_s": after.as_secs_f64(),
            "contenders": NAMES.iter().zip(runs).map(|(n, r)| json!({"name": n, "runs": r})).collect::<Vec<_>>()}),
        markdown: md,
    }
}
