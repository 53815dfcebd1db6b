//! Scenario 17, tail latency: four servers that each pause now and then (every reply
//! held for 20 ms, at random every 0.5–1.5 s: a GC pause, a compaction), an open-loop
//! load, and the calls' p50/p99/p99.9 through tonic's balancer, ours, and ours with
//! hedged requests (gRFC A6 hedging; "The Tail at Scale"): a fixed delay, and the
//! adaptive delay at the method's p95. What hedging costs: attempts per call.

use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rand::Rng;
use serde_json::json;
use tokio::time::Instant;
use tonic_discovery::balance::{
    BalancedChannel, HedgingPolicy, MethodConfig, MethodName, ServiceConfig,
};
use tonic_discovery::source::StaticList;
use tonic_discovery::testkit::TestEchoServer;

use crate::common::{self, Config, Res, Section};
use crate::fleet::quantile;
use crate::load::{Chan, OpenLoad, boxed};
use crate::overhead::verdict;

const SERVERS: usize = 4;
const PAUSE: Duration = Duration::from_millis(20);
/// A server pauses at a random time in this range after its last pause.
const PAUSE_EVERY_MS: std::ops::Range<u64> = 500..1500;
/// Targets: hedged (adaptive) p99.9 at most this times ours without hedging (the
/// tail hedging is for: ours already moves calls off a paused server by its load, so
/// only the calls that reached it first are slow); extra attempts at most this share
/// of the calls.
const MAX_P999_RATIO: f64 = 0.5;
const MAX_EXTRA_ATTEMPTS: f64 = 0.1;

#[derive(Debug, Default, serde::Serialize)]
struct Run {
    name: &'static str,
    calls: usize,
    failed: usize,
    p50_us: f64,
    p99_us: f64,
    p999_us: f64,
    max_us: f64,
    /// Attempts the servers received per call sent.
    attempts_per_call: f64,
}

pub async fn run(cfg: &Config) -> Res<Section> {
    let servers = common::servers("t", SERVERS).await?;
    let rate = cfg.pick(1000, 500);
    let (warm, dur) = (
        Duration::from_millis(cfg.pick(1000, 300)),
        Duration::from_millis(cfg.pick(8000, 2000)),
    );
    let pausing = Arc::new(AtomicBool::new(true));
    let pausers: Vec<_> = servers
        .iter()
        .map(|s| {
            let (service, pausing) = (s.service().clone(), pausing.clone());
            tokio::spawn(async move {
                while pausing.load(Ordering::Relaxed) {
                    let gap = rand::rng().random_range(PAUSE_EVERY_MS);
                    tokio::time::sleep(Duration::from_millis(gap)).await;
                    let hold = service.hold();
                    tokio::time::sleep(PAUSE).await;
                    drop(hold);
                }
            })
        })
        .collect();
    let list = StaticList::from_addrs(servers.iter().map(|s| s.addr().to_string()))?;
    let fixed = HedgingPolicy::new(2, Duration::from_millis(2), []);
    let adaptive = HedgingPolicy::new(2, Duration::ZERO, []).adaptive_delay(
        95.0,
        Duration::from_millis(1),
        PAUSE,
    );
    let contenders: Vec<(&'static str, Chan)> = vec![
        ("tonic-balance", common::tonic_list(&servers)?),
        ("ours", boxed(ours(&list, None)?)),
        ("ours + hedging (2 ms)", boxed(ours(&list, Some(fixed))?)),
        ("ours + hedging (p95)", boxed(ours(&list, Some(adaptive))?)),
    ];
    let mut runs = Vec::new();
    for (name, chan) in contenders {
        let received = |s: &[TestEchoServer]| s.iter().map(|s| s.service().received()).sum::<u64>();
        let load = OpenLoad::start(chan, rate, Duration::from_secs(2));
        tokio::time::sleep(warm).await;
        let (start, before) = (Instant::now(), received(&servers));
        tokio::time::sleep(dur).await;
        let after = received(&servers);
        let events = load.finish().await;
        let measured: Vec<_> = events
            .iter()
            .filter(|e| e.sent >= start && e.sent < start + dur)
            .collect();
        let ok: Vec<f64> = measured
            .iter()
            .filter(|e| e.outcome.is_ok())
            .map(|e| e.latency().as_secs_f64() * 1e6)
            .collect();
        let run = Run {
            name,
            calls: measured.len(),
            failed: measured.len() - ok.len(),
            p50_us: quantile(&ok, 0.5),
            p99_us: quantile(&ok, 0.99),
            p999_us: quantile(&ok, 0.999),
            max_us: quantile(&ok, 1.0),
            attempts_per_call: (after - before) as f64 / measured.len().max(1) as f64,
        };
        eprintln!(
            "  {name:<22} p50 {:.0} µs, p99 {:.0} µs, p99.9 {:.0} µs, {:.3} attempts per call",
            run.p50_us, run.p99_us, run.p999_us, run.attempts_per_call
        );
        runs.push(run);
    }
    pausing.store(false, Ordering::Relaxed);
    for p in pausers {
        p.abort();
    }
    Ok(section(&runs, rate, dur))
}

/// Ours over the servers, hedging every Echo call by `hedge` when given.
fn ours(list: &StaticList, hedge: Option<HedgingPolicy>) -> Res<BalancedChannel> {
    let mut builder = BalancedChannel::builder("tail").metrics_endpoints(0);
    if let Some(policy) = hedge {
        let method = MethodConfig::new([MethodName::method("echo.v1.Echo", "Echo")]).hedge(policy);
        builder = builder.service_config(ServiceConfig::new().method(method));
    }
    Ok(builder.build(list.discovery("tail"))?)
}

fn section(runs: &[Run], rate: u32, dur: Duration) -> Section {
    let mut md = format!(
        "{SERVERS} servers; each holds every reply for {} ms at a random time every {:.1}–{:.1} s \
         (a GC pause). Open loop, {rate} calls/s for {:.0} s per contender (after a warm-up), \
         2 s deadline. ours + hedging: the same channel with a gRFC A6 hedging policy for \
         `Echo` (2 attempts at most; the second after 2 ms, or after the method's p95 latency \
         measured by the channel, floored at 1 ms and capped at {} ms). Attempts per call: \
         the calls the servers received over the calls sent.\n\n",
        PAUSE.as_millis(),
        PAUSE_EVERY_MS.start as f64 / 1e3,
        PAUSE_EVERY_MS.end as f64 / 1e3,
        dur.as_secs_f64(),
        PAUSE.as_millis(),
    );
    md.push_str("| contender | calls | failed | p50 µs | p99 µs | p99.9 µs | max µs | attempts per call |\n|---|---|---|---|---|---|---|---|\n");
    for r in runs {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.3} |",
            r.name, r.calls, r.failed, r.p50_us, r.p99_us, r.p999_us, r.max_us, r.attempts_per_call
        );
    }
    let find = |name: &str| runs.iter().find(|r| r.name == name);
    if let (Some(plain), Some(hedged)) = (find("ours"), find("ours + hedging (p95)")) {
        let ratio = hedged.p999_us / plain.p999_us;
        let extra = hedged.attempts_per_call - 1.0;
        let _ = writeln!(
            md,
            "\nTargets, ours + hedging (p95) against ours: p99.9 at most {MAX_P999_RATIO}× — {ratio:.2}× ({}); \
             extra attempts at most {:.0}% of the calls — {:.1}% ({}). A hedged call waits the \
             delay before its second attempt, so the calls just above the delay get slower: \
             compare the p99 columns.",
            verdict(ratio <= MAX_P999_RATIO),
            MAX_EXTRA_ATTEMPTS * 100.0,
            extra * 100.0,
            verdict(extra <= MAX_EXTRA_ATTEMPTS),
        );
    }
    Section {
        key: "17-tail",
        json: json!({
            "servers": SERVERS,
            "pause_ms": PAUSE.as_millis() as u64,
            "rate": rate,
            "target_p999_ratio": MAX_P999_RATIO,
            "target_extra_attempts": MAX_EXTRA_ATTEMPTS,
            "runs": runs,
        }),
        markdown: md,
    }
}
