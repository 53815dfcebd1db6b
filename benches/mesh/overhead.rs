//! Scenario 1, overhead: unary Echo, 64-byte payload, 3 servers; latency at
//! concurrency 1 and throughput at concurrency 64, contenders interleaved per run.

use std::fmt::Write;
use std::time::Duration;

use serde_json::json;

use crate::common::{self, Config, Registry, Res, Section};
use crate::load::{Chan, boxed, closed_loop};
use crate::stats::{Spread, q_us, ratio};

/// The last contender is ours over server 0 alone: plain's server, so that its c=1
/// latency against plain's is the balancer's own cost, without the three servers'
/// spread (each a thread of its own, woken in turn on 2 cores).
const NAMES: [&str; 4] = ["plain", "tonic-balance", "ours", "ours, server 0 alone"];
/// Targets, ratios of medians: ours / plain c=1 p50 at most, ours / tonic-balance c=64
/// throughput at least, ours / tonic-balance c=64 client CPU per call at most.
const MAX_P50_RATIO: f64 = 1.0;
const MIN_C64_RATIO: f64 = 1.0;
const MAX_CPU_RATIO: f64 = 1.0;

#[derive(Debug, Default, Clone, serde::Serialize)]
struct Runs {
    c1_p50_us: Vec<f64>,
    c1_p99_us: Vec<f64>,
    c64_rps: Vec<f64>,
    c64_p99_ms: Vec<f64>,
    /// The client's CPU time per call (all its threads, user + system), µs.
    c1_cpu_us: Vec<f64>,
    c64_cpu_us: Vec<f64>,
    errors: Vec<f64>,
}

pub async fn run(cfg: &Config) -> Res<Section> {
    let servers = common::servers("o", 3).await?;
    let registry = Registry::start().await?;
    let (handles, ours) = registry.serve("overhead", &servers).await?;
    let (handles_one, ours_one) = registry.serve("overhead-one", &servers[..1]).await?;
    let chans: [Chan; 4] = [
        common::plain(&servers[0]).await?,
        common::tonic_list(&servers)?,
        boxed(ours),
        boxed(ours_one),
    ];
    let (warm, dur) = (
        Duration::from_millis(cfg.pick(500, 200)),
        Duration::from_millis(cfg.pick(3000, 500)),
    );
    let mut runs = vec![Runs::default(); NAMES.len()];
    for run in 0..cfg.runs() {
        for k in 0..NAMES.len() {
            let i = (run + k) % NAMES.len(); // rotate the order between runs
            let c1 = closed_loop(&chans[i], 1, warm, dur).await;
            let c64 = closed_loop(&chans[i], 64, warm, dur).await;
            let r = &mut runs[i];
            r.c1_p50_us.push(q_us(&c1.hist, 0.5));
            r.c1_p99_us.push(q_us(&c1.hist, 0.99));
            r.c64_rps.push(c64.rate);
            r.c64_p99_ms.push(q_us(&c64.hist, 0.99) / 1e3);
            r.c1_cpu_us.push(c1.cpu_us_per_call);
            r.c64_cpu_us.push(c64.cpu_us_per_call);
            r.errors.push((c1.errors + c64.errors) as f64);
            eprintln!(
                "  run {run} {:<14} c=1 p50 {:.0} µs | c=64 {:.0} req/s",
                NAMES[i],
                q_us(&c1.hist, 0.5),
                c64.rate
            );
        }
    }
    drop((handles, handles_one));
    Ok(section(cfg, &runs, dur))
}

fn section(cfg: &Config, runs: &[Runs], dur: Duration) -> Section {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "Closed loop, {} run(s) interleaved (order rotated per run), {:.1} s per cell after warm-up; \
         plain → server 0, tonic-balance = `Channel::balance_list` over the 3 servers, ours = \
         `BalancedChannel` over `consul::Discovery` (3 registered instances), ours, server 0 alone = the same over \
         server 0 only (plain's server: its c=1 p50 against plain's is what the balancer itself costs). Cells: min / median / max over runs. \
         Each server is one current-thread runtime, so plain's c=64 throughput can be bounded by its single \
         server; compare c=64 between the two balanced contenders. CPU per call: the client's threads' user + \
         system time (every thread but the servers', from `/proc/self/task/*/stat`, 10 ms ticks) over the \
         measured seconds, divided by the calls answered; the servers' share of the cores does not move it.\n",
        cfg.runs(),
        dur.as_secs_f64()
    );
    md.push_str("| contender | c=1 p50 µs | c=1 p99 µs | c=64 req/s | c=64 p99 ms | c=1 CPU µs/call | c=64 CPU µs/call | errors |\n");
    md.push_str("|---|---|---|---|---|---|---|---|\n");
    for (name, r) in NAMES.iter().zip(runs) {
        let _ = writeln!(
            md,
            "| {name} | {} | {} | {} | {} | {} | {} | {} |",
            Spread::of(&r.c1_p50_us).show(0),
            Spread::of(&r.c1_p99_us).show(0),
            Spread::of(&r.c64_rps).show(0),
            Spread::of(&r.c64_p99_ms).show(2),
            Spread::of(&r.c1_cpu_us).show(1),
            Spread::of(&r.c64_cpu_us).show(1),
            Spread::of(&r.errors).show(0),
        );
    }
    let med = |v: &[f64]| Spread::of(v).median;
    let (p, t, o, one) = (&runs[0], &runs[1], &runs[2], &runs[3]);
    let p50_vs_plain = med(&o.c1_p50_us) / med(&p.c1_p50_us);
    let rps_vs_tonic = med(&o.c64_rps) / med(&t.c64_rps);
    let cpu_vs_tonic = med(&o.c64_cpu_us) / med(&t.c64_cpu_us);
    let one_vs_plain = med(&one.c1_p50_us) / med(&p.c1_p50_us);
    let _ = writeln!(
        md,
        "\nRatios (of medians): ours / plain c=1 p50 **{}** (target ≤ {MAX_P50_RATIO:.2}: {}); ours / tonic-balance c=1 p50 {}; \
         ours / tonic-balance c=64 throughput **{}** (target ≥ {MIN_C64_RATIO:.2}: {}); ours / plain c=64 throughput {}; \
         client CPU per call at c=64, ours / tonic-balance **{}** (target ≤ {MAX_CPU_RATIO:.2}: {}), ours / plain {}. \
         On plain's server alone, ours / plain c=1 p50 {} and c=1 CPU per call {}.",
        ratio(med(&o.c1_p50_us), med(&p.c1_p50_us)),
        verdict(p50_vs_plain <= MAX_P50_RATIO),
        ratio(med(&o.c1_p50_us), med(&t.c1_p50_us)),
        ratio(med(&o.c64_rps), med(&t.c64_rps)),
        verdict(rps_vs_tonic >= MIN_C64_RATIO),
        ratio(med(&o.c64_rps), med(&p.c64_rps)),
        ratio(med(&o.c64_cpu_us), med(&t.c64_cpu_us)),
        verdict(cpu_vs_tonic <= MAX_CPU_RATIO),
        ratio(med(&o.c64_cpu_us), med(&p.c64_cpu_us)),
        ratio(med(&one.c1_p50_us), med(&p.c1_p50_us)),
        ratio(med(&one.c1_cpu_us), med(&p.c1_cpu_us)),
    );
    let json = json!({
        "runs": cfg.runs(),
        "seconds_per_cell": dur.as_secs_f64(),
        "contenders": NAMES.iter().zip(runs).map(|(n, r)| json!({"name": n, "runs": r})).collect::<Vec<_>>(),
        "ratio_p50_ours_over_plain": p50_vs_plain,
        "ratio_c64_ours_over_tonic_balance": rps_vs_tonic,
        "ratio_c64_cpu_per_call_ours_over_tonic_balance": cpu_vs_tonic,
        "ratio_p50_ours_on_server_0_alone_over_plain": one_vs_plain,
        "target_ratio_p50_ours_over_plain": MAX_P50_RATIO,
        "target_ratio_c64_ours_over_tonic_balance": MIN_C64_RATIO,
        "target_ratio_c64_cpu_per_call_ours_over_tonic_balance": MAX_CPU_RATIO,
    });
    Section {
        key: "1-overhead",
        json,
        markdown: md,
    }
}

pub fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "**missed**" }
}
