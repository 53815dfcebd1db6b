//! Scenario 17, tail latency: three servers that each delay a random 1% of their
//! replies by 50 ms (no instance is slow on average: a GC pause, a cold cache), an
//! open-loop load, and the calls' p50/p99/p99.9 through tonic's balancer, ours, and
//! ours with hedged requests (gRFC A6 hedging; "The Tail at Scale"): after a fixed
//! 5 ms, and after the method's p95 latency. What hedging costs: attempts per call.

use std::fmt::Write;
use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;
use tonic_discovery::balance::{
    BalancedChannel, HedgingPolicy, MethodConfig, MethodName, ServiceConfig,
};
use tonic_discovery::source::StaticList;
use tonic_discovery_testkit::TestEchoServer;

use crate::common::{self, Config, Res, Section};
use crate::fleet::quantile;
use crate::load::{Chan, OpenLoad, boxed};
use crate::overhead::verdict;

const SERVERS: usize = 3;
/// Each server delays this share of its replies by `TAIL`.
const TAIL_SHARE: f64 = 0.01;
const TAIL: Duration = Duration::from_millis(50);
/// The fixed hedging delay.
const FIXED: Duration = Duration::from_millis(5);
/// Targets (issue #23): p99 with hedging at most this, ms; extra attempts at most
/// this share of the calls.
const MAX_HEDGED_P99_MS: f64 = 5.0;
const MAX_EXTRA_ATTEMPTS: f64 = 0.05;

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
    for s in &servers {
        s.service().set_tail(TAIL_SHARE, TAIL);
    }
    let list = StaticList::from_addrs(servers.iter().map(|s| s.addr().to_string()))?;
    let fixed = HedgingPolicy::new(2, FIXED, []);
    let adaptive = HedgingPolicy::new(2, Duration::ZERO, []).adaptive_delay(
        95.0,
        Duration::from_millis(1),
        TAIL,
    );
    let contenders: Vec<(&'static str, Chan)> = vec![
        ("tonic-balance", common::tonic_list(&servers)?),
        ("ours", boxed(ours(&list, None)?)),
        ("ours + hedging (5 ms)", boxed(ours(&list, Some(fixed))?)),
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
    for s in &servers {
        s.service().set_tail(0.0, TAIL);
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
        "{SERVERS} servers; each delays a random {:.0}% of its replies by {} ms (drawn per call: \
         no instance is slow on average). Open loop, {rate} calls/s for {:.0} s per contender \
         (after a warm-up), 2 s deadline. ours + hedging: the same channel with a gRFC A6 \
         hedging policy for `Echo` (2 attempts at most; the second after {} ms, or after the \
         method's p95 latency as the channel measures it, floored at 1 ms and capped at {} ms). \
         Attempts per call: the calls the servers received over the calls sent.\n\n",
        TAIL_SHARE * 100.0,
        TAIL.as_millis(),
        dur.as_secs_f64(),
        FIXED.as_millis(),
        TAIL.as_millis(),
    );
    md.push_str("| contender | calls | failed | p50 µs | p99 µs | p99.9 µs | max µs | attempts per call |\n|---|---|---|---|---|---|---|---|\n");
    for r in runs {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.3} |",
            r.name, r.calls, r.failed, r.p50_us, r.p99_us, r.p999_us, r.max_us, r.attempts_per_call
        );
    }
    let _ = write!(
        md,
        "\nTargets, with hedging: p99 at most {MAX_HEDGED_P99_MS} ms, extra attempts at most {:.0}% of the calls —",
        MAX_EXTRA_ATTEMPTS * 100.0
    );
    for r in runs.iter().filter(|r| r.name.contains("hedging")) {
        let (p99, extra) = (r.p99_us / 1e3, r.attempts_per_call - 1.0);
        let _ = write!(
            md,
            " {}: {p99:.1} ms ({}), {:.1}% ({});",
            r.name,
            verdict(p99 <= MAX_HEDGED_P99_MS),
            extra * 100.0,
            verdict(extra <= MAX_EXTRA_ATTEMPTS),
        );
    }
    md.pop();
    md.push_str(".\n");
    Section {
        key: "17-tail",
        json: json!({
            "servers": SERVERS,
            "tail_share": TAIL_SHARE,
            "tail_ms": TAIL.as_millis() as u64,
            "rate": rate,
            "target_hedged_p99_ms": MAX_HEDGED_P99_MS,
            "target_extra_attempts": MAX_EXTRA_ATTEMPTS,
            "runs": runs,
        }),
        markdown: md,
    }
}
