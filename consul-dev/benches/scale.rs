//! Scale benchmark (not a test): 10,000 services with one TTL check each.
//!
//! Reports the memory the registry holds per registered service (resident set growth
//! while registering, Linux only), how long a blocking health query takes to wake
//! after a change to its own service, and that blocking queries on other services do
//! not return. Timings are printed, never asserted.
//!
//! `cargo bench -p consul-dev --bench scale [-- --services N --watchers N --rounds N]`

use std::time::Duration;

use clap::Parser;
use consul_dev::ConsulDev;
use serde_json::json;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Command-line settings; cargo's own `--bench` flag is accepted and ignored, any other
/// unknown flag is refused.
#[derive(Debug, Parser)]
#[command(about = "consul-dev scale benchmark: registration memory and blocking-query wakes")]
struct Settings {
    /// Services to register, each with one TTL check.
    #[arg(long, default_value_t = 10_000)]
    services: usize,
    /// Blocking queries per round, one per service (clamped to 1..=services).
    #[arg(long, default_value_t = 200)]
    watchers: usize,
    /// Rounds of change-and-wake.
    #[arg(long, default_value_t = 20)]
    rounds: usize,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn settings() -> Settings {
    let mut s = Settings::parse();
    s.watchers = s.watchers.clamp(1, s.services.max(1));
    s
}

/// Resident set size in bytes, from `/proc/self/statm` (0 elsewhere).
fn rss() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// GETs `path` and returns `X-Consul-Index`.
async fn index_of(http: &reqwest::Client, url: &str) -> u64 {
    let resp = http.get(url).send().await.expect("request");
    resp.headers()
        .get("x-consul-index")
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .expect("index header")
}

async fn register_all(http: &reqwest::Client, base: &str, n: usize) {
    let mut set = JoinSet::new();
    for chunk in (0..n).collect::<Vec<_>>().chunks(n.div_ceil(16).max(1)) {
        let (http, base, chunk) = (http.clone(), base.to_owned(), chunk.to_vec());
        set.spawn(async move {
            for i in chunk {
                let body = json!({
                    "Name": format!("svc-{i}"), "ID": format!("svc-{i}"), "Port": 8000 + (i % 1000),
                    "Check": {"TTL": "1h", "Status": "passing"},
                });
                let resp = http
                    .put(format!("{base}/v1/agent/service/register"))
                    .body(body.to_string())
                    .send()
                    .await
                    .expect("register");
                assert_eq!(resp.status(), 200, "register svc-{i}");
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r.expect("register task");
    }
}

/// One round: blocking queries on `watchers` services, a change to the first;
/// returns the wake latency and how many of the others returned.
async fn round(
    http: &reqwest::Client,
    dev: &ConsulDev,
    watchers: usize,
    r: usize,
) -> (Duration, usize) {
    let base = dev.url();
    // Queries of earlier rounds leave once their connections are seen closed.
    let deadline = Instant::now() + Duration::from_secs(10);
    while dev.blocked_queries() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut others = JoinSet::new();
    for k in 1..watchers {
        let url = format!("{base}/v1/health/service/svc-{k}");
        let index = index_of(http, &url).await;
        let (http, url) = (http.clone(), format!("{url}?index={index}&wait=60s"));
        others.spawn(async move { http.get(url).send().await.map(|_| ()) });
    }
    let url = format!("{base}/v1/health/service/svc-0");
    let index = index_of(http, &url).await;
    let target = {
        let (http, url) = (http.clone(), format!("{url}?index={index}&wait=60s"));
        tokio::spawn(async move {
            http.get(url).send().await.expect("blocking query");
            Instant::now()
        })
    };
    // Every query parked on its index before the change (bounded, so a miscount
    // cannot stall the benchmark).
    let deadline = Instant::now() + Duration::from_secs(10);
    while dev.blocked_queries() < watchers && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let changed = Instant::now();
    let body = json!({"Name": "svc-0", "ID": "svc-0", "Port": 8000, "Tags": [format!("r{r}")],
                      "Check": {"TTL": "1h", "Status": "passing"}});
    http.put(format!("{base}/v1/agent/service/register"))
        .body(body.to_string())
        .send()
        .await
        .expect("change");
    let woke = target.await.expect("target task");
    // Give the others the same time again to (wrongly) return.
    let latency = woke - changed;
    tokio::time::sleep(latency.max(Duration::from_millis(20))).await;
    let mut returned = 0;
    while let Some(done) = others.try_join_next() {
        returned += usize::from(done.is_ok());
    }
    others.abort_all();
    (latency, returned)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() {
    let s = settings();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(s.watchers + 32)
            .build()
            .expect("client");
        let dev = ConsulDev::start().await.expect("registry");
        let before = rss();
        let started = Instant::now();
        register_all(&http, &dev.url(), s.services).await;
        let took = started.elapsed();
        let grown = rss().saturating_sub(before);
        println!(
            "registered {} services with one TTL check each in {took:?} ({:.0}/s)",
            s.services,
            s.services as f64 / took.as_secs_f64()
        );
        println!(
            "resident set grew {:.1} MiB: about {} bytes per service with its check \
             (includes the client's and allocator's share)",
            grown as f64 / 1_048_576.0,
            grown / s.services.max(1) as u64
        );
        let mut latencies = Vec::new();
        let mut spurious = 0;
        for r in 0..s.rounds {
            let (latency, returned) = round(&http, &dev, s.watchers, r).await;
            latencies.push(latency);
            spurious += returned;
        }
        latencies.sort();
        println!(
            "blocking query wake after a change to its service ({} rounds, {} watchers): \
             p50 {:?}, p90 {:?}, max {:?}",
            s.rounds,
            s.watchers,
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.9),
            latencies[latencies.len() - 1]
        );
        println!(
            "blocking queries on other services that returned: {spurious} of {}",
            s.rounds * (s.watchers - 1)
        );
    });
}
