//! Scenario 4, slow instance: one of three servers adds 10 ms to every reply.

use std::fmt::Write;
use std::time::Duration;

use serde_json::json;

use crate::common::{self, Config, Registry, Res, Section};
use crate::load::{Chan, boxed, closed_loop};
use crate::overhead::verdict;
use crate::stats::{Spread, q_us};

const NAMES: [&str; 2] = ["tonic-balance", "ours"];
const WORKERS: usize = 16;
const SERVERS: usize = 3;
/// What the slow server adds to every reply.
const DELAY: Duration = Duration::from_millis(10);
/// The target: ours / tonic-balance p99 (medians) at most.
const MAX_P99_RATIO: f64 = 0.5;

#[derive(Debug, Default, Clone, serde::Serialize)]
struct Runs {
    rps: Vec<f64>,
    p50_us: Vec<f64>,
    p90_us: Vec<f64>,
    p99_us: Vec<f64>,
    slow_share_pct: Vec<f64>,
    errors: Vec<f64>,
}

pub async fn run(cfg: &Config) -> Res<Section> {
    let servers = common::servers("s", SERVERS).await?;
    let slow = &servers[SERVERS - 1];
    slow.service().set_delay(DELAY);
    let slow_id = slow.service().id().to_owned();
    let registry = Registry::start().await?;
    let (handles, ours) = registry.serve("slow", &servers).await?;
    let chans: [Chan; 2] = [common::tonic_list(&servers)?, boxed(ours)];
    let (warm, dur) = (
        Duration::from_millis(cfg.pick(1000, 300)),
        Duration::from_millis(cfg.pick(5000, 1000)),
    );
    let mut runs = vec![Runs::default(); 2];
    for run in 0..cfg.runs() {
        for k in 0..2 {
            let i = (run + k) % 2;
            let c = closed_loop(&chans[i], WORKERS, warm, dur).await;
            let slow = c.per_instance.get(&slow_id).copied().unwrap_or(0);
            let r = &mut runs[i];
            r.rps.push(c.rate);
            r.p50_us.push(q_us(&c.hist, 0.5));
            r.p90_us.push(q_us(&c.hist, 0.9));
            r.p99_us.push(q_us(&c.hist, 0.99));
            r.slow_share_pct
                .push(100.0 * slow as f64 / c.ok.max(1) as f64);
            r.errors.push(c.errors as f64);
            eprintln!(
                "  run {run} {:<14} p99 {:.0} µs",
                NAMES[i],
                q_us(&c.hist, 0.99)
            );
        }
    }
    drop(handles);
    Ok(section(cfg, &runs, dur))
}

fn section(cfg: &Config, runs: &[Runs], dur: Duration) -> Section {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "Closed loop, {WORKERS} workers, {:.0} s per cell, {} run(s) interleaved; server s{} sleeps {} ms before \
         every reply. min / median / max.\n",
        dur.as_secs_f64(),
        cfg.runs(),
        SERVERS - 1,
        DELAY.as_millis()
    );
    md.push_str("| contender | req/s | p50 µs | p90 µs | p99 µs | share on the slow server % | errors |\n|---|---|---|---|---|---|---|\n");
    for (name, r) in NAMES.iter().zip(runs) {
        let _ = writeln!(
            md,
            "| {name} | {} | {} | {} | {} | {} | {} |",
            Spread::of(&r.rps).show(0),
            Spread::of(&r.p50_us).show(0),
            Spread::of(&r.p90_us).show(0),
            Spread::of(&r.p99_us).show(0),
            Spread::of(&r.slow_share_pct).show(2),
            Spread::of(&r.errors).show(0),
        );
    }
    let ratio = Spread::of(&runs[1].p99_us).median / Spread::of(&runs[0].p99_us).median;
    let _ = writeln!(
        md,
        "\nours / tonic-balance p99 (medians): **{ratio:.3}×** (target ≤ {MAX_P99_RATIO}: {}); throughput ratio {:.2}×.",
        verdict(ratio <= MAX_P99_RATIO),
        Spread::of(&runs[1].rps).median / Spread::of(&runs[0].rps).median
    );
    Section {
        key: "4-slow-instance",
        json: json!({"workers": WORKERS, "seconds": dur.as_secs_f64(),
            "servers": SERVERS, "delay_ms": DELAY.as_secs_f64() * 1e3,
            "contenders": NAMES.iter().zip(runs).map(|(n, r)| json!({"name": n, "runs": r})).collect::<Vec<_>>(),
            "p99_ratio_ours_over_tonic_balance": ratio,
            "target_p99_ratio_ours_over_tonic_balance": MAX_P99_RATIO}),
        markdown: md,
    }
}
