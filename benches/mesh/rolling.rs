//! Scenario 5, rolling restart: replace all three instances one by one (start the
//! new one, register it, drain the old one: check critical, grace, deregister, then
//! graceful shutdown) under 1,000 requests/s per contender.

use std::fmt::Write;
use std::time::Duration;

use serde_json::json;
use tokio::time::{Instant, sleep};
use tonic_discovery_testkit::TestEchoServer;

use crate::common::{self, Config, Registry, Res, Section};
use crate::load::{Event, OpenLoad, boxed};
use crate::overhead::verdict;
use crate::propagation::added;
use crate::stats::{self, Spread, q_us};

const NAMES: [&str; 2] = ["ours (consul)", "tonic-balance (consul-fed)"];
const RATE: u32 = 1000;
const GRACE: Duration = Duration::from_secs(1);
const BUCKET: Duration = Duration::from_millis(100);

#[derive(Debug, Default, Clone, serde::Serialize)]
struct Runs {
    requests: Vec<f64>,
    failed: Vec<f64>,
    p50_ms: Vec<f64>,
    p99_ms: Vec<f64>,
    max_ms: Vec<f64>,
}

/// p99 latency per 100 ms bucket: (seconds since the load started, ms).
pub type Series = Vec<(f64, f64)>;

pub async fn run(cfg: &Config) -> Res<Section> {
    let registry = Registry::start().await?;
    let mut runs = vec![Runs::default(); 2];
    let mut chart: Vec<(String, Series)> = Vec::new();
    for run in 0..cfg.runs() {
        let (logs, started) = one_restart(&registry, run).await?;
        for (i, events) in logs.iter().enumerate() {
            record(&mut runs[i], events);
            if run == 0 {
                chart.push((format!("{} p99", NAMES[i]), series(events, started, 0.99)));
                chart.push((format!("{} max", NAMES[i]), series(events, started, 1.0)));
            }
            eprintln!(
                "  run {run} {:<28} failed {}",
                NAMES[i],
                runs[i].failed.last().unwrap_or(&0.0)
            );
        }
    }
    crate::chart::lines(
        &cfg.out.join("rolling-restart.svg"),
        "Rolling restart under 1,000 req/s: latency per 100 ms",
        "seconds since the load started",
        "latency (ms)",
        &chart,
    )?;
    Ok(section(cfg, &runs, &chart))
}

async fn one_restart(registry: &Registry, run: usize) -> Res<([Vec<Event>; 2], Instant)> {
    let service = format!("roll{run}");
    let mut servers = common::servers(&format!("r{run}-"), 3).await?;
    let (mut handles, ours) = registry.serve(&service, &servers).await?;
    let fed = registry.tonic_fed(&service);
    let ids = common::ids(&servers);
    common::until_all_answer(&fed, &ids).await?;
    let timeout = Duration::from_secs(2);
    let loads = [
        OpenLoad::start(boxed(ours.clone()), RATE, timeout),
        OpenLoad::start(fed, RATE, timeout),
    ];
    let started = loads[0].started;
    sleep(Duration::from_secs(1)).await;
    for i in 0..3 {
        let new = TestEchoServer::start(format!("r{run}-{i}n")).await?;
        let handle = registry.register(&service, &new).await?;
        added(&ours, new.service().id()).await?;
        handles.remove(0).drain(GRACE).await?;
        servers.remove(0).shutdown().await;
        servers.push(new);
        handles.push(handle);
        sleep(Duration::from_millis(300)).await;
    }
    sleep(Duration::from_secs(1)).await;
    let [a, b] = loads;
    Ok(([a.finish().await, b.finish().await], started))
}

fn record(r: &mut Runs, events: &[Event]) {
    let mut h = stats::hist();
    for e in events.iter().filter(|e| e.outcome.is_ok()) {
        stats::record(&mut h, e.latency());
    }
    r.requests.push(events.len() as f64);
    r.failed
        .push(events.iter().filter(|e| e.outcome.is_err()).count() as f64);
    r.p50_ms.push(q_us(&h, 0.5) / 1e3);
    r.p99_ms.push(q_us(&h, 0.99) / 1e3);
    r.max_ms.push(q_us(&h, 1.0) / 1e3);
}

fn series(events: &[Event], started: Instant, q: f64) -> Series {
    let mut out = Vec::new();
    let mut i = 0;
    let mut bucket = 0u32;
    while i < events.len() {
        let end = started + BUCKET * (bucket + 1);
        let mut h = stats::hist();
        while i < events.len() && events[i].sent < end {
            stats::record(&mut h, events[i].latency());
            i += 1;
        }
        if !h.is_empty() {
            out.push((BUCKET.as_secs_f64() * f64::from(bucket), q_us(&h, q) / 1e3));
        }
        bucket += 1;
    }
    out
}

fn section(cfg: &Config, runs: &[Runs], chart: &[(String, Series)]) -> Section {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "Three registered instances; each is replaced in turn: a new server starts and registers, once it \
         is in the balancer the old one drains (`RegistrationHandle::drain`: check critical, {:.0} s grace, \
         deregister) and shuts down gracefully. Open-loop {RATE} requests/s on each contender at the same \
         time (2 s timeout). {} run(s); min / median / max. Chart (first run): \
         [rolling-restart.svg](benches/results/rolling-restart.svg).\n",
        GRACE.as_secs_f64(),
        cfg.runs()
    );
    md.push_str(
        "| contender | requests | failed | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|---|\n",
    );
    for (name, r) in NAMES.iter().zip(runs) {
        let _ = writeln!(
            md,
            "| {name} | {} | {} | {} | {} | {} |",
            Spread::of(&r.requests).show(0),
            Spread::of(&r.failed).show(0),
            Spread::of(&r.p50_ms).show(3),
            Spread::of(&r.p99_ms).show(2),
            Spread::of(&r.max_ms).show(1),
        );
    }
    let ours = Spread::of(&runs[0].failed).max;
    let _ = writeln!(
        md,
        "\nTarget: zero failed requests (ours, all runs: {ours:.0} failed; {}).",
        verdict(ours == 0.0)
    );
    Section {
        key: "5-rolling-restart",
        json: json!({"rate": RATE, "grace_s": GRACE.as_secs_f64(),
            "contenders": NAMES.iter().zip(runs).map(|(n, r)| json!({"name": n, "runs": r})).collect::<Vec<_>>(),
            "series_first_run": chart.iter().map(|(n, s)| json!({"name": n, "points": s})).collect::<Vec<_>>()}),
        markdown: md,
    }
}
