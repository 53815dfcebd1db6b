//! Scenario 6, first part: one service with 5,000 and 10,000 instances (update
//! latency, decode + diff, memory held by the discovery).

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;
use tokio::time::{Instant, sleep, timeout};
use tonic_discovery::SnapshotDiff;
use tonic_discovery::consul::{AddressKind, Decoded, HealthDecoder, HealthFilter, decode_health};
use tonic_discovery::source::{Discovery, Sink, Source};

use crate::common::{Config, Registry, Res};

#[derive(Debug, serde::Serialize)]
pub struct Big {
    pub instances: usize,
    pub initial_ms: f64,
    pub rss_growth_kib: i64,
    /// Heap a synced discovery holds (freed when it and its watch drop), bytes.
    pub held_bytes: usize,
    pub update_ms: Vec<f64>,
    pub fetch_ms: Vec<f64>,
    pub body_bytes: usize,
    /// `HealthDecoder::decode` (what the watch runs).
    pub decode_ms: Vec<f64>,
    pub diff_ms: Vec<f64>,
    pub decode_diff_ms: Vec<f64>,
    /// `decode_health` + the diff: every entry decoded, as before the decoder.
    pub full_decode_diff_ms: Vec<f64>,
    pub json_value_decode_ms: Vec<f64>,
    /// The target for `decode_diff_ms` (median), ms.
    pub target_decode_diff_ms: f64,
}

/// The target for decoding and diffing one change: 5 ms up to 5,000 instances, 10 ms above.
fn decode_diff_target_ms(instances: usize) -> f64 {
    if instances <= 5000 { 5.0 } else { 10.0 }
}

pub async fn put(http: &reqwest::Client, url: &str, name: &str, id: &str, port: u16) -> Res<()> {
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

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

pub async fn big_service(cfg: &Config, n: usize) -> Res<Big> {
    let registry = Registry::start().await?;
    let (url, http) = (registry.dev.url(), reqwest::Client::new());
    for i in 0..n {
        put(
            &http,
            &url,
            "big",
            &format!("big-{i}"),
            20000 + (i % 40000) as u16,
        )
        .await?;
    }
    let (rss0, t) = (rss_kib(), Instant::now());
    let mut disc = registry.client.discovery("big").build();
    for _ in 0..n {
        timeout(Duration::from_secs(60), disc.next())
            .await?
            .ok_or("discovery ended")??;
    }
    let initial_ms = ms(t.elapsed());
    sleep(Duration::from_millis(300)).await;
    let rss_growth_kib = rss_kib() - rss0;
    let mut pace = crate::common::Pacer::new(crate::propagation::GAP);
    let mut update_ms = Vec::new();
    for trial in 0..cfg.pick(30, 5) {
        let at = pace.next().await;
        put(
            &http,
            &url,
            "big",
            &format!("big-{trial}"),
            60000 + trial as u16,
        )
        .await?;
        timeout(Duration::from_secs(10), disc.next())
            .await?
            .ok_or("discovery ended")??;
        update_ms.push(ms(at.elapsed()));
    }
    drop(disc);
    let held_bytes = held_by_discovery(&http, &url, n).await?;
    let mut big = Big {
        instances: n,
        initial_ms,
        rss_growth_kib,
        held_bytes,
        update_ms,
        fetch_ms: Vec::new(),
        body_bytes: 0,
        decode_ms: Vec::new(),
        diff_ms: Vec::new(),
        decode_diff_ms: Vec::new(),
        full_decode_diff_ms: Vec::new(),
        json_value_decode_ms: Vec::new(),
        target_decode_diff_ms: decode_diff_target_ms(n),
    };
    decode_trials(cfg, &http, &url, &mut big).await?;
    eprintln!("  big {n}: initial {initial_ms:.0} ms, held {held_bytes} B");
    Ok(big)
}

/// The heap a discovery of the `n` instances holds once synced: what dropping it
/// frees. Measured on a discovery whose source replays the registry's answer
/// through `HealthDecoder`, as the Consul watch does, and then holds it: with no
/// request in flight, the registry frees nothing in the meantime (a parked blocking
/// query holds its own copy of the answer until the client goes away).
async fn held_by_discovery(http: &reqwest::Client, url: &str, n: usize) -> Res<usize> {
    let body = http
        .get(format!("{url}/v1/health/service/big?passing"))
        .send()
        .await?
        .bytes()
        .await?;
    let mut disc = Discovery::new("big", Replay(body));
    let mut observer = disc.observer();
    for _ in 0..n {
        timeout(Duration::from_secs(60), disc.next())
            .await?
            .ok_or("discovery ended")??;
    }
    let before = crate::ALLOC.allocated();
    drop(disc);
    // `changed` is false once the watch's task (and its state sender) is gone.
    timeout(Duration::from_secs(10), async {
        while observer.changed().await {}
    })
    .await
    .map_err(|_| "the watch did not end with its discovery")?;
    drop(observer);
    Ok(before.saturating_sub(crate::ALLOC.allocated()))
}

/// A source that decodes one health answer as the Consul watch does, publishes it
/// and keeps its decoder, as the watch keeps it between answers.
struct Replay(bytes::Bytes);

impl Source for Replay {
    async fn run(self, sink: Sink) {
        let mut decoder = HealthDecoder::new(AddressKind::default(), HealthFilter::Passing);
        if let Ok(Decoded::Changed(instances)) = decoder.decode(&self.0) {
            sink.snapshot(instances);
        }
        drop(self.0);
        std::future::pending::<()>().await;
        drop(decoder);
    }
}

/// Decode + diff alone, through the public functions the discovery runs, on the
/// registry's own answers: each trial changes one instance, fetches the list, then
/// times the decode and the diff against the previous list.
async fn decode_trials(cfg: &Config, http: &reqwest::Client, url: &str, big: &mut Big) -> Res<()> {
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
    let mut decoder = HealthDecoder::new(kind.clone(), HealthFilter::Passing);
    let (mut diff, mut full_diff) = (SnapshotDiff::new(), SnapshotDiff::new());
    let first = fetch().await?;
    let Decoded::Changed(instances) = decoder.decode(&first)? else {
        return Err("the first answer decoded as unchanged".into());
    };
    diff.apply(instances);
    full_diff.apply(decode_health(&first, &kind, HealthFilter::Passing)?);
    for trial in 0..cfg.pick(30, 5) {
        let id = format!("big-{}", big.instances - 1 - trial);
        put(http, url, "big", &id, 50000 + trial as u16).await?;
        let t = Instant::now();
        let body = fetch().await?;
        big.fetch_ms.push(ms(t.elapsed()));
        big.body_bytes = body.len();
        let t = Instant::now();
        let Decoded::Changed(instances) = decoder.decode(&body)? else {
            return Err("a changed answer decoded as unchanged".into());
        };
        let decoded = t.elapsed();
        let changes = diff.apply_slice(&instances);
        let total = t.elapsed();
        one_change(changes.len())?;
        big.decode_ms.push(ms(decoded));
        big.diff_ms.push(ms(total - decoded));
        big.decode_diff_ms.push(ms(total));
        let t = Instant::now();
        let changes = full_diff.apply_slice(&decode_health(&body, &kind, HealthFilter::Passing)?);
        big.full_decode_diff_ms.push(ms(t.elapsed()));
        one_change(changes.len())?;
        let t = Instant::now();
        let value: serde_json::Value = serde_json::from_slice(&body)?;
        big.json_value_decode_ms.push(ms(t.elapsed()));
        drop(value);
    }
    Ok(())
}

fn one_change(n: usize) -> Res<()> {
    if n == 1 {
        Ok(())
    } else {
        Err(format!("expected one change, got {n}").into())
    }
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
