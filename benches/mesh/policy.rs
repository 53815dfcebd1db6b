//! Scenarios 10 (weights) and 11 (zones): the traffic policy measured through ours.
//!
//! Weights: three equally fast servers registered with `Weights.Passing` 1, 2 and 4;
//! the shares of the calls under load (and at one call at a time, for the record);
//! then the weight-4 server made slow (10 ms per reply): latency still wins.
//!
//! Zones: two zones of two servers, the client in zone a, open-loop load; steady
//! state, one of zone a's servers killed (spill-over), then back on its address.

use std::collections::HashMap;
use std::fmt::Write;
use std::time::Duration;

use serde_json::json;
use tokio::time::{Instant, sleep, sleep_until};
use tonic_discovery::Locality;
use tonic_discovery::balance::{BalancedChannel, TrafficPolicy};
use tonic_discovery::consul::Registration;
use tonic_discovery_testkit::TestEchoServer;

use crate::common::{self, Config, Registry, Res, Section};
use crate::load::{Event, OpenLoad, boxed, closed_loop};
use crate::overhead::verdict;
use crate::stats::{Spread, q_us};

const WEIGHTS: [u32; 3] = [1, 2, 4];
/// What the weight-4 server adds to every reply in the last row.
const SLOW_DELAY: Duration = Duration::from_millis(10);
/// Targets (issue #22): at 5,000 calls/s, each median share this many points from its
/// weight's at most; the slow weight-4 server's share below this, %.
const MAX_POINTS_OFF: f64 = 3.0;
const MAX_SLOW_SHARE_PCT: f64 = 2.0;
/// Zones' targets: steady state in the client's zone at least, %; the first call
/// answered in the other zone after the kill within, ms.
const MIN_STEADY_LOCAL_PCT: f64 = 99.0;
const MAX_SPILL_MS: f64 = 1000.0;

#[derive(Debug, Default, Clone, serde::Serialize)]
struct Shares {
    /// Per server, percent of the calls.
    pct: [Vec<f64>; 3],
    p99_us: Vec<f64>,
    errors: Vec<f64>,
    /// Per server, the median latency of the calls it answered, µs (open loop only).
    p50_us: [Vec<f64>; 3],
}

impl Shares {
    fn add(&mut self, ids: &[String], c: &crate::load::Closed) {
        for (i, id) in ids.iter().enumerate() {
            let n = c.per_instance.get(id).copied().unwrap_or(0);
            self.pct[i].push(100.0 * n as f64 / c.ok.max(1) as f64);
        }
        self.p99_us.push(q_us(&c.hist, 0.99));
        self.errors.push(c.errors as f64);
    }

    fn add_events(&mut self, ids: &[String], events: &[&Event]) {
        let ok: Vec<&String> = events
            .iter()
            .filter_map(|e| e.outcome.as_ref().ok())
            .collect();
        for (i, id) in ids.iter().enumerate() {
            let n = ok.iter().filter(|o| **o == id).count();
            self.pct[i].push(100.0 * n as f64 / ok.len().max(1) as f64);
            let mut hist = crate::stats::hist();
            for e in events
                .iter()
                .filter(|e| e.outcome.as_ref().is_ok_and(|o| o == id))
            {
                crate::stats::record(&mut hist, e.latency());
            }
            self.p50_us[i].push(q_us(&hist, 0.5));
        }
        let mut hist = crate::stats::hist();
        for e in events {
            crate::stats::record(&mut hist, e.latency());
        }
        self.p99_us.push(q_us(&hist, 0.99));
        self.errors.push((events.len() - ok.len()) as f64);
    }
}

async fn weighted(
    registry: &Registry,
    service: &str,
    servers: &[TestEchoServer],
) -> Res<(
    Vec<tonic_discovery::consul::RegistrationHandle>,
    BalancedChannel,
)> {
    let mut handles = Vec::new();
    for (s, w) in servers.iter().zip(WEIGHTS) {
        let reg = Registration::new(service, s.addr())
            .id(s.service().id())
            .weights(w, 1)
            .ttl(Duration::from_secs(600))
            .heartbeat_interval(Duration::from_secs(200));
        handles.push(registry.client.register(reg).await?);
    }
    let ours = registry.ours(service);
    common::wait_ready(&ours, servers.len()).await?;
    Ok((handles, ours))
}

/// Open-loop calls per second for the "under load" row: well below saturation, so the
/// three servers stay equally fast whatever their shares.
const OPEN_RATE: u32 = 5000;

pub async fn weights(cfg: &Config) -> Res<Section> {
    let registry = Registry::start().await?;
    let servers = common::servers("w", 3).await?;
    let ids = common::ids(&servers);
    let (handles, ours) = weighted(&registry, "weights", &servers).await?;
    let chan = boxed(ours);
    let (warm, dur) = (
        Duration::from_millis(cfg.pick(1000, 300)),
        Duration::from_millis(cfg.pick(5000, 1000)),
    );
    let mut rows = [
        Shares::default(),
        Shares::default(),
        Shares::default(),
        Shares::default(),
    ];
    for run in 0..cfg.runs() {
        let load = OpenLoad::start(chan.clone(), OPEN_RATE, Duration::from_secs(2));
        sleep(warm + dur).await;
        let started = load.started;
        let events = load.finish().await;
        let events: Vec<&Event> = events.iter().filter(|e| e.sent >= started + warm).collect();
        rows[0].add_events(&ids, &events);
        let c = closed_loop(&chan, 64, warm, dur).await;
        rows[1].add(&ids, &c);
        let c = closed_loop(&chan, 1, warm, dur).await;
        rows[2].add(&ids, &c);
        eprintln!(
            "  run {run} shares at {OPEN_RATE}/s: {:.1} / {:.1} / {:.1} %, 64 workers: {:.1} / {:.1} / {:.1} %, 1 worker: {:.1} / {:.1} / {:.1} %",
            rows[0].pct[0][run],
            rows[0].pct[1][run],
            rows[0].pct[2][run],
            rows[1].pct[0][run],
            rows[1].pct[1][run],
            rows[1].pct[2][run],
            rows[2].pct[0][run],
            rows[2].pct[1][run],
            rows[2].pct[2][run],
        );
    }
    servers[2].service().set_delay(SLOW_DELAY);
    for run in 0..cfg.runs() {
        let c = closed_loop(&chan, 16, warm, dur).await;
        rows[3].add(&ids, &c);
        eprintln!(
            "  run {run} weight-4 server slow: {:.2} % on it",
            rows[3].pct[2][run]
        );
    }
    servers[2].service().set_delay(Duration::ZERO);
    drop(handles);
    Ok(weights_section(cfg, dur, &rows))
}

fn weights_section(cfg: &Config, dur: Duration, rows: &[Shares; 4]) -> Section {
    let want = WEIGHTS.map(|w| 100.0 * f64::from(w) / 7.0);
    let mut md = String::new();
    let _ = writeln!(
        md,
        "Three equally fast servers registered with `Weights.Passing` 1, 2 and 4; {:.0} s per cell, {} run(s); \
         min / median / max of each server's share of the calls.\n",
        dur.as_secs_f64(),
        cfg.runs()
    );
    md.push_str("| load | weight 1 % | weight 2 % | weight 4 % | p99 µs | errors |\n|---|---|---|---|---|---|\n");
    let _ = writeln!(
        md,
        "| target | {:.1} | {:.1} | {:.1} | | |",
        want[0], want[1], want[2]
    );
    let names = [
        format!("{OPEN_RATE} calls/s, open loop"),
        "64 workers, closed loop (saturated)".to_owned(),
        "1 worker, closed loop".to_owned(),
        format!(
            "16 workers, the weight-4 server {} ms slow",
            SLOW_DELAY.as_millis()
        ),
    ];
    for (name, s) in names.iter().zip(rows) {
        let _ = writeln!(
            md,
            "| {name} | {} | {} | {} | {} | {} |",
            Spread::of(&s.pct[0]).show(1),
            Spread::of(&s.pct[1]).show(1),
            Spread::of(&s.pct[2]).show(1),
            Spread::of(&s.p99_us).show(0),
            Spread::of(&s.errors).show(0),
        );
    }
    let off = |row: &Shares| {
        (0..3)
            .map(|i| (Spread::of(&row.pct[i]).median - want[i]).abs())
            .fold(0.0, f64::max)
    };
    let (open, saturated, single) = (off(&rows[0]), off(&rows[1]), off(&rows[2]));
    let slow_share = Spread::of(&rows[3].pct[2]).median;
    // Whether the weight-4 server was "clearly slower" under load (1.5× or more, the
    // threshold the weights' target is stated with): its median latency over the
    // weight-1 server's, per run, median of the runs.
    let ratios: Vec<f64> = (0..rows[0].p50_us[0].len())
        .map(|r| rows[0].p50_us[2][r] / rows[0].p50_us[0][r].max(1.0))
        .collect();
    let w4_slower = Spread::of(&ratios).median;
    let _ = writeln!(
        md,
        "\nAt {OPEN_RATE} calls/s, median latency of the calls each server answered (µs): weight 1 {}, \
         weight 2 {}, weight 4 {}; the weight-4 server's over the weight-1 server's: **{w4_slower:.2}×** \
         (median of the runs). At 2× or more (the balancer's threshold on typical latencies \
         under load) the weight-4 server is clearly slower at this load, not equally fast, and \
         latency taking calls back from it is the intended behaviour.",
        Spread::of(&rows[0].p50_us[0]).show(0),
        Spread::of(&rows[0].p50_us[1]).show(0),
        Spread::of(&rows[0].p50_us[2]).show(0),
    );
    let _ = writeln!(
        md,
        "\nUnder load ({OPEN_RATE} calls/s) the medians are at most **{open:.1} points** from 14.3 / 28.6 / 57.1 % \
         (target ±{MAX_POINTS_OFF:.0}: {}); one call at a time, {single:.1} points. Saturated, {saturated:.1} points: every server \
         is one thread on the same 2 cores, so the weight-4 server is no faster than the others, its replies \
         slow down under four times the load, and latency takes calls back from it, as it should. With the \
         weight-4 server {} ms slow it gets **{slow_share:.2}%** of the calls (its weight alone would give it \
         57%): latency wins ({}).",
        verdict(open <= MAX_POINTS_OFF),
        SLOW_DELAY.as_millis(),
        verdict(slow_share < MAX_SLOW_SHARE_PCT)
    );
    Section {
        key: "10-weights",
        json: json!({"seconds": dur.as_secs_f64(), "weights": WEIGHTS, "open_rate": OPEN_RATE,
            "open": rows[0], "saturated_64": rows[1], "single": rows[2], "slow_16": rows[3],
            "points_off": {"open": open, "saturated": saturated, "single": single},
            "slow_share_pct": slow_share, "open_w4_over_w1_p50": w4_slower, "slow_delay_ms": SLOW_DELAY.as_secs_f64() * 1e3,
            "target_points_off": MAX_POINTS_OFF, "target_slow_share_pct": MAX_SLOW_SHARE_PCT}),
        markdown: md,
    }
}

#[derive(Debug, Default, Clone, serde::Serialize)]
struct ZoneRuns {
    steady_local_pct: Vec<f64>,
    spill_first_ms: Vec<f64>,
    spilled_pct: Vec<f64>,
    failed_after_kill: Vec<f64>,
    in_flight_at_kill: Vec<f64>,
    back_first_ms: Vec<f64>,
    back_last_remote_ms: Vec<f64>,
    returned_local_pct: Vec<f64>,
    failed_total: Vec<f64>,
}

fn local_pct(events: &[&Event]) -> f64 {
    let ok: Vec<_> = events
        .iter()
        .filter_map(|e| e.outcome.as_ref().ok())
        .collect();
    100.0 * ok.iter().filter(|id| id.starts_with("za")).count() as f64 / ok.len().max(1) as f64
}

pub async fn zones(cfg: &Config) -> Res<Section> {
    let mut runs = ZoneRuns::default();
    let phase = Duration::from_millis(cfg.pick(3000, 1000));
    for run in 0..cfg.runs() {
        let registry = Registry::start().await?;
        let service = format!("zones{run}");
        let mut servers: HashMap<String, TestEchoServer> = HashMap::new();
        let mut handles = Vec::new();
        for id in ["za0", "za1", "zb0", "zb1"] {
            let server = TestEchoServer::start(format!("{id}-{run}")).await?;
            let reg = Registration::new(&service, server.addr())
                .id(server.service().id())
                .meta("zone", &id[..2])
                .meta("region", "r1")
                .ttl(Duration::from_secs(600))
                .heartbeat_interval(Duration::from_secs(200));
            handles.push(registry.client.register(reg).await?);
            servers.insert(id.to_owned(), server);
        }
        let ours = BalancedChannel::builder(&service)
            .traffic_policy(TrafficPolicy::new().locality(Locality::new("r1", "za")))
            .build(registry.client.discovery(&service).build())?;
        common::wait_ready(&ours, 4).await?;
        let load = OpenLoad::start(boxed(ours.clone()), 1000, Duration::from_secs(2));
        sleep(phase).await;
        let killed = servers.remove("za0").expect("za0");
        let addr = killed.addr();
        let kill = Instant::now();
        killed.kill().await;
        sleep_until(kill + phase).await;
        let back = Instant::now();
        let server = TestEchoServer::start_on(addr, format!("za0-{run}")).await?;
        sleep_until(back + 2 * phase).await;
        let events = load.finish().await;
        drop(server);
        drop(handles);

        let before: Vec<&Event> = events.iter().filter(|e| e.done < kill).collect();
        let after_kill: Vec<&Event> = events
            .iter()
            .filter(|e| e.sent >= kill && e.sent < back)
            .collect();
        let remote = |e: &&Event| e.outcome.as_ref().is_ok_and(|id| id.starts_with("zb"));
        let ms = |from: Instant, to: Instant| common::ms_between(from, to);
        let first_remote = after_kill
            .iter()
            .find(|e| remote(e))
            .map_or(f64::NAN, |e| ms(kill, e.done));
        let in_flight = events
            .iter()
            .filter(|e| e.sent < kill && e.done >= kill)
            .count();
        let failed_after = events
            .iter()
            .filter(|e| e.done >= kill && e.outcome.is_err())
            .count();
        let after_back: Vec<&Event> = events.iter().filter(|e| e.sent >= back).collect();
        let first_back = after_back
            .iter()
            .find(|e| e.outcome.as_ref().is_ok_and(|id| id.starts_with("za0")))
            .map_or(f64::NAN, |e| ms(back, e.done));
        let last_remote = after_back
            .iter()
            .rev()
            .find(|e| remote(e))
            .map_or(0.0, |e| ms(back, e.sent));
        let settled: Vec<&Event> = after_back
            .iter()
            .copied()
            .filter(|e| e.sent >= back + phase)
            .collect();
        runs.steady_local_pct.push(local_pct(&before));
        runs.spill_first_ms.push(first_remote);
        runs.spilled_pct.push(100.0 - local_pct(&after_kill));
        runs.failed_after_kill.push(failed_after as f64);
        runs.in_flight_at_kill.push(in_flight as f64);
        runs.back_first_ms.push(first_back);
        runs.back_last_remote_ms.push(last_remote);
        runs.returned_local_pct.push(local_pct(&settled));
        runs.failed_total
            .push(events.iter().filter(|e| e.outcome.is_err()).count() as f64);
        eprintln!(
            "  run {run}: steady {:.2}% local, spill after {first_remote:.0} ms ({:.1}% spilled), failed {failed_after}, \
             back after {first_back:.0} ms, last remote {last_remote:.0} ms, then {:.2}% local",
            runs.steady_local_pct[run], runs.spilled_pct[run], runs.returned_local_pct[run]
        );
    }
    Ok(zones_section(cfg, phase, &runs))
}

fn zones_section(cfg: &Config, phase: Duration, r: &ZoneRuns) -> Section {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "Two zones of two servers (`Meta.zone` za / zb, region r1), ours told it runs in za, 1,000 calls/s \
         open loop, {} run(s); {:.0} s steady, za0 killed for {:.0} s, then back on its address for {:.0} s. \
         min / median / max.\n",
        cfg.runs(),
        phase.as_secs_f64(),
        phase.as_secs_f64(),
        2.0 * phase.as_secs_f64()
    );
    md.push_str("| measure | value |\n|---|---|\n");
    let rows: [(&str, &Vec<f64>, usize); 9] = [
        (
            "steady state: calls answered in za %",
            &r.steady_local_pct,
            2,
        ),
        ("kill → first call answered in zb ms", &r.spill_first_ms, 0),
        ("calls spilled to zb while za0 is down %", &r.spilled_pct, 1),
        ("failed calls after the kill", &r.failed_after_kill, 0),
        ("calls in flight at the kill", &r.in_flight_at_kill, 0),
        ("back → first call answered by za0 ms", &r.back_first_ms, 0),
        (
            "back → last call sent that zb answered ms",
            &r.back_last_remote_ms,
            0,
        ),
        (
            "after return (from 1 phase on): calls answered in za %",
            &r.returned_local_pct,
            2,
        ),
        ("failed calls in all", &r.failed_total, 0),
    ];
    for (name, v, digits) in rows {
        let _ = writeln!(md, "| {name} | {} |", Spread::of(v).show(digits));
    }
    let steady = Spread::of(&r.steady_local_pct).min;
    let spill = Spread::of(&r.spill_first_ms).max;
    let extra_failures = r
        .failed_after_kill
        .iter()
        .zip(&r.in_flight_at_kill)
        .map(|(f, i)| f - i)
        .fold(f64::MIN, f64::max);
    let _ = writeln!(
        md,
        "\nSteady state ≥ {MIN_STEADY_LOCAL_PCT:.0}% in the client's zone: worst run {steady:.2}% ({}). Spill-over within {:.0} s: \
         worst {spill:.0} ms ({}). Failed calls beyond those in flight at the kill: at most {:.0} ({}). \
         With one of two instances down, zone a is 50% ready: × 1.4 it keeps 70% of the calls and 30% \
         spill over (the median above). When za0 returns the spilled share goes back to za.",
        verdict(steady >= MIN_STEADY_LOCAL_PCT),
        MAX_SPILL_MS / 1000.0,
        verdict(spill <= MAX_SPILL_MS),
        extra_failures.max(0.0),
        verdict(extra_failures <= 0.0)
    );
    Section {
        key: "11-zones",
        json: json!({"phase_seconds": phase.as_secs_f64(), "rate": 1000, "runs": r,
            "target_steady_local_pct": MIN_STEADY_LOCAL_PCT, "target_spill_ms": MAX_SPILL_MS}),
        markdown: md,
    }
}
