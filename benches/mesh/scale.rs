//! Scenario 6, scale: one service with 5,000 instances (update latency, memory), and
//! 100 services watched through one client (connections, requests per minute).

use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;
use tokio::time::{Instant, sleep, timeout};
use tonic_discovery::SnapshotDiff;
use tonic_discovery::consul::{AddressKind, Client, decode_health};

use crate::common::{self, Config, Pacer, Registry, Res, Section};
use crate::overhead::verdict;
use crate::stats::quantile;

const BIG: usize = 5000;
const SERVICES: usize = 100;

pub async fn run(cfg: &Config) -> Res<Section> {
    let big = big_service(cfg).await?;
    let many = many_services(cfg).await?;
    Ok(section(&big, &many))
}

#[derive(Debug, serde::Serialize)]
struct Big {
    instances: usize,
    initial_ms: f64,
    rss_growth_kib: i64,
    update_ms: Vec<f64>,
    fetch_ms: Vec<f64>,
    body_bytes: usize,
    decode_ms: Vec<f64>,
    diff_ms: Vec<f64>,
    decode_diff_ms: Vec<f64>,
    json_value_decode_ms: Vec<f64>,
}

async fn put(http: &reqwest::Client, url: &str, name: &str, id: &str, port: u16) -> Res<()> {
    let body = json!({"ID": id, "Name": name, "Address": "127.0.0.1", "Port": port}).to_string();
    let resp = http
        .put(format!("{url}/v1/agent/service/register"))
        .body(body)
        .send()
        .await?;
    if !resp.status().is_success() {
        return Err(format!("register {id}: {}", resp.status()).into());
    }
    Ok(())
}

async fn big_service(cfg: &Config) -> Res<Big> {
    let registry = Registry::start().await?;
    let (url, http) = (registry.dev.url(), reqwest::Client::new());
    for i in 0..BIG {
        put(&http, &url, "big", &format!("big-{i}"), 20000 + i as u16).await?;
    }
    let rss0 = rss_kib();
    let mut disc = registry.client.discovery("big").build();
    let t = Instant::now();
    for _ in 0..BIG {
        timeout(Duration::from_secs(30), disc.next())
            .await?
            .ok_or("discovery ended")??;
    }
    let initial_ms = t.elapsed().as_secs_f64() * 1e3;
    sleep(Duration::from_millis(300)).await;
    let rss_growth_kib = rss_kib() - rss0;
    let mut pace = Pacer::new(crate::propagation::GAP);
    let mut update_ms = Vec::new();
    for trial in 0..cfg.pick(30, 5) {
        let port = 40000 + trial as u16;
        let at = pace.next().await;
        put(&http, &url, "big", &format!("big-{trial}"), port).await?;
        timeout(Duration::from_secs(10), disc.next())
            .await?
            .ok_or("discovery ended")??;
        update_ms.push(at.elapsed().as_secs_f64() * 1e3);
    }
    // Decode + diff alone, through the same public functions the discovery uses, on
    // the registry's own answers: each trial changes one instance, fetches the list,
    // then times the decode and the diff against the previous list.
    let kind = AddressKind::default();
    let fetch = || async {
        let body = http
            .get(format!("{url}/v1/health/service/big?passing"))
            .send()
            .await?
            .bytes()
            .await?;
        Res::Ok(body)
    };
    let mut diff = SnapshotDiff::new();
    diff.apply(decode_health(&fetch().await?, &kind, true)?);
    let (mut fetch_ms, mut json_value_decode_ms) = (Vec::new(), Vec::new());
    let (mut decode_ms, mut diff_ms, mut decode_diff_ms) = (Vec::new(), Vec::new(), Vec::new());
    let mut body_bytes = 0;
    for trial in 0..cfg.pick(30, 5) {
        let port = 50000 + trial as u16;
        put(
            &http,
            &url,
            "big",
            &format!("big-{}", BIG - 1 - trial),
            port,
        )
        .await?;
        let t = Instant::now();
        let body = fetch().await?;
        fetch_ms.push(t.elapsed().as_secs_f64() * 1e3);
        body_bytes = body.len();
        let t = Instant::now();
        let instances = decode_health(&body, &kind, true)?;
        let decoded = t.elapsed();
        let changes = diff.apply_slice(&instances);
        let total = t.elapsed();
        if changes.len() != 1 {
            return Err(format!("expected one change, got {}", changes.len()).into());
        }
        decode_ms.push(decoded.as_secs_f64() * 1e3);
        diff_ms.push((total - decoded).as_secs_f64() * 1e3);
        decode_diff_ms.push(total.as_secs_f64() * 1e3);
        let t = Instant::now();
        let value: serde_json::Value = serde_json::from_slice(&body)?;
        json_value_decode_ms.push(t.elapsed().as_secs_f64() * 1e3);
        drop(value);
    }
    eprintln!("  big: initial {initial_ms:.0} ms, updates {update_ms:?}");
    Ok(Big {
        instances: BIG,
        initial_ms,
        rss_growth_kib,
        update_ms,
        fetch_ms,
        body_bytes,
        decode_ms,
        diff_ms,
        decode_diff_ms,
        json_value_decode_ms,
    })
}

#[derive(Debug, serde::Serialize)]
struct Many {
    services: usize,
    wait_s: f64,
    measured_s: f64,
    pool_max_idle_per_host: usize,
    connections_max: usize,
    connections_end: usize,
    requests: u64,
    requests_per_minute: f64,
    expected_per_minute: f64,
}

async fn many_services(cfg: &Config) -> Res<Many> {
    let registry = Registry::start().await?;
    let (url, http) = (registry.dev.url(), reqwest::Client::new());
    for k in 0..SERVICES {
        put(
            &http,
            &url,
            &format!("w{k}"),
            &format!("w{k}-0"),
            30000 + k as u16,
        )
        .await?;
    }
    let client = Client::builder(url).build()?;
    let wait = Duration::from_secs(cfg.pick(10, 1));
    let seen = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for k in 0..SERVICES {
        let mut disc = client.discovery(format!("w{k}")).wait(wait).build();
        let seen = seen.clone();
        tasks.spawn(async move {
            while disc.next().await.is_some() {
                seen.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    common::wait_for(
        Duration::from_secs(30),
        "every service discovered",
        || async { seen.load(Ordering::Relaxed) >= SERVICES },
    )
    .await?;
    sleep(wait).await;
    let port = registry.dev.addr().port();
    let count = |dev: &consul_dev::ConsulDev| -> u64 {
        dev.request_counts()
            .iter()
            .filter(|(p, _)| p.starts_with("/v1/health/service/w"))
            .map(|(_, n)| n)
            .sum()
    };
    let c0 = count(&registry.dev);
    let measured = Duration::from_secs(cfg.pick(60, 3));
    let end = Instant::now() + measured;
    let mut connections_max = 0;
    while Instant::now() < end {
        connections_max = connections_max.max(connections_to(port));
        sleep(Duration::from_millis(250)).await;
    }
    let requests = count(&registry.dev) - c0;
    let connections_end = connections_to(port);
    tasks.abort_all();
    Ok(Many {
        services: SERVICES,
        wait_s: wait.as_secs_f64(),
        measured_s: measured.as_secs_f64(),
        pool_max_idle_per_host: 32,
        connections_max,
        connections_end,
        requests,
        requests_per_minute: requests as f64 * 60.0 / measured.as_secs_f64(),
        expected_per_minute: SERVICES as f64 * 60.0 / wait.as_secs_f64(),
    })
}

/// Established TCP connections from this process to `port` on loopback.
fn connections_to(port: u16) -> usize {
    let want = format!(":{port:04X}");
    ["/proc/self/net/tcp", "/proc/self/net/tcp6"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .flat_map(|s| s.lines().skip(1).map(str::to_owned).collect::<Vec<_>>())
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[2].ends_with(&want) && f[3] == "01"
        })
        .count()
}

/// Resident set size of this process, KiB.
fn rss_kib() -> i64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn stat(v: &[f64]) -> String {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    format!(
        "{:.2} / {:.2} / {:.2}",
        quantile(&v, 0.0),
        quantile(&v, 0.5),
        quantile(&v, 1.0)
    )
}

fn section(big: &Big, many: &Many) -> Section {
    let mut md = String::new();
    let med = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        quantile(&v, 0.5)
    };
    let _ = writeln!(
        md,
        "**One service, {} instances** (registered in the in-process registry, no checks). Our `consul::Discovery` \
         alone (no balancer). Update = re-register one instance on a new port → the one `Change` out of the \
         discovery stream: registry wake-up, encoding and sending 5,000 entries, decoding and diffing them. \
         The registry runs in the same process, so its encoding counts against us; the fetch row is the \
         registry's share (plain GET of the same list), the `serde_json::Value` row a reference decoder. \
         Cells: min / median / max over {} trials.\n",
        big.instances,
        big.update_ms.len()
    );
    md.push_str("| measurement | ms |\n|---|---|\n");
    let _ = writeln!(
        md,
        "| first snapshot → 5,000 `Insert`s | {:.1} |",
        big.initial_ms
    );
    let _ = writeln!(
        md,
        "| one instance changed → its `Change` (end to end) | {} |",
        stat(&big.update_ms)
    );
    let _ = writeln!(
        md,
        "| registry share: GET the same list, full body | {} |",
        stat(&big.fetch_ms)
    );
    let _ = writeln!(
        md,
        "| decode alone (`consul::decode_health`, {} KiB body) | {} |",
        big.body_bytes / 1024,
        stat(&big.decode_ms)
    );
    let _ = writeln!(
        md,
        "| diff alone (`SnapshotDiff::apply_slice`, one instance changed) | {} |",
        stat(&big.diff_ms)
    );
    let _ = writeln!(md, "| **decode + diff** | {} |", stat(&big.decode_diff_ms));
    let _ = writeln!(
        md,
        "| reference: `serde_json::Value` decode of that body | {} |",
        stat(&big.json_value_decode_ms)
    );
    let est = med(&big.decode_diff_ms);
    let _ = writeln!(
        md,
        "\nDecode + diff of one update, measured alone (the functions the discovery runs, on the registry's \
         own answers): median **{est:.2} ms** (target < 5 ms: {}). Process RSS growth for the discovery \
         holding 5,000 instances: {} KiB (upper bound: includes buffers the allocator kept).\n",
        verdict(est < 5.0),
        big.rss_growth_kib
    );
    let _ = writeln!(
        md,
        "**{} services watched through one `consul::Client`** (default pool: {} idle connections per host), \
         blocking wait {:.0} s, measured over {:.0} s in steady state (no changes).\n",
        many.services, many.pool_max_idle_per_host, many.wait_s, many.measured_s
    );
    md.push_str("| measurement | value |\n|---|---|\n");
    let _ = writeln!(
        md,
        "| TCP connections to the registry (max seen / at the end) | {} / {} |",
        many.connections_max, many.connections_end
    );
    let _ = writeln!(
        md,
        "| health requests per minute | {:.0} |",
        many.requests_per_minute
    );
    let _ = writeln!(
        md,
        "| expected: one per service per wait period | {:.0} |",
        many.expected_per_minute
    );
    let _ = writeln!(
        md,
        "\nConnections bounded by the pool setting ({}): {}. Requests ≈ one per service per wait: ratio {:.2} ({}; \
         Consul's wait jitter of up to wait/16 makes it slightly below 1).",
        many.pool_max_idle_per_host,
        verdict(many.connections_max <= many.pool_max_idle_per_host),
        many.requests_per_minute / many.expected_per_minute,
        verdict((many.requests_per_minute / many.expected_per_minute - 1.0).abs() < 0.15)
    );
    Section {
        key: "6-scale",
        json: json!({"big": big, "many": many}),
        markdown: md,
    }
}
