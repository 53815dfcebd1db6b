//! Scenario 6, scale: one service with 5,000 and 10,000 instances (update latency,
//! decode + diff, memory; in `scale_big.rs`), and 100 services watched through one
//! client (connections, requests per minute).

use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;
use tokio::time::{Instant, sleep};
use tonic_discovery::consul::Client;

use crate::common::{self, Config, Registry, Res, Section};
use crate::overhead::verdict;
use crate::scale_big::{Big, big_service, put};
use crate::stats::quantile;

const SIZES: [usize; 2] = [5000, 10000];
const SERVICES: usize = 100;
/// Targets: heap a discovery holds per instance, KiB; TCP connections of the watches
/// over HTTPS once all are parked.
const MAX_HELD_KIB: f64 = 4.0;
const MAX_TLS_CONNECTIONS: usize = 2;

pub async fn run(cfg: &Config) -> Res<Section> {
    let mut big = Vec::new();
    for n in SIZES {
        big.push(big_service(cfg, n).await?);
    }
    let many = many_services(cfg).await?;
    Ok(section(&big, &many))
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
    /// The same 100 watches over HTTPS (HTTP/2): connections once all are parked.
    tls_connections: Option<usize>,
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
        tls_connections: many_tls().await?,
        requests,
        requests_per_minute: requests as f64 * 60.0 / measured.as_secs_f64(),
        expected_per_minute: SERVICES as f64 * 60.0 / wait.as_secs_f64(),
    })
}

/// 100 watches through one client over HTTPS: TCP connections once every blocking
/// query is parked at the registry.
#[cfg(feature = "tls-ring")]
async fn many_tls() -> Res<Option<usize>> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    const CA: &str = include_str!("../../tests/fixtures/tls/ca.pem");
    const CERT: &str = include_str!("../../tests/fixtures/tls/server.pem");
    const KEY: &str = include_str!("../../tests/fixtures/tls/server.key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from_pem_slice(CERT.as_bytes())?],
            PrivateKeyDer::from_pem_slice(KEY.as_bytes())?,
        )?;
    let dev = consul_dev::ConsulDev::builder()
        .tls(Arc::new(config))
        .start()
        .await?;
    let client = Client::builder(dev.url())
        .ca_cert_pem(CA)
        .tls_server_name("server.dc1.consul")
        .build()?;
    let held: Vec<_> = (0..SERVICES)
        .map(|k| {
            client
                .discovery(format!("t{k}"))
                .health(tonic_discovery::consul::HealthFilter::Any)
                .build()
        })
        .collect();
    common::wait_for(
        Duration::from_secs(30),
        "100 parked queries over TLS",
        || async { dev.blocked_queries() >= SERVICES },
    )
    .await?;
    let n = connections_to(dev.addr().port());
    drop(held);
    Ok(Some(n))
}

#[cfg(not(feature = "tls-ring"))]
async fn many_tls() -> Res<Option<usize>> {
    Ok(None)
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

fn med(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    quantile(&v, 0.5)
}

fn big_rows(md: &mut String, big: &[Big]) {
    let row = |md: &mut String, what: &str, f: &dyn Fn(&Big) -> String| {
        let cells: Vec<String> = big.iter().map(f).collect();
        let _ = writeln!(md, "| {what} | {} |", cells.join(" | "));
    };
    let sizes: Vec<String> = big
        .iter()
        .map(|b| format!("{} instances", b.instances))
        .collect();
    let _ = writeln!(md, "| measurement (ms) | {} |", sizes.join(" | "));
    let _ = writeln!(md, "|---|{}", "---|".repeat(big.len()));
    row(md, "first snapshot → one `Insert` per instance", &|b| {
        format!("{:.1}", b.initial_ms)
    });
    row(
        md,
        "one instance changed → its `Change` (end to end)",
        &|b| stat(&b.update_ms),
    );
    row(md, "registry share: GET the same list, full body", &|b| {
        stat(&b.fetch_ms)
    });
    row(md, "body size, KiB", &|b| {
        format!("{}", b.body_bytes / 1024)
    });
    row(md, "decode alone (`consul::HealthDecoder::decode`)", &|b| {
        stat(&b.decode_ms)
    });
    row(
        md,
        "diff alone (`SnapshotDiff::apply_slice`, one instance changed)",
        &|b| stat(&b.diff_ms),
    );
    row(md, "**decode + diff**", &|b| stat(&b.decode_diff_ms));
    row(
        md,
        "before: every entry decoded (`consul::decode_health`) + diff",
        &|b| stat(&b.full_decode_diff_ms),
    );
    row(
        md,
        "reference: `serde_json::Value` decode of that body",
        &|b| stat(&b.json_value_decode_ms),
    );
    row(md, "heap held by the discovery, bytes per instance", &|b| {
        format!("{:.0}", b.held_bytes as f64 / b.instances as f64)
    });
    row(
        md,
        "process RSS growth once synced, KiB per instance",
        &|b| format!("{:.1}", b.rss_growth_kib as f64 / b.instances as f64),
    );
}

fn section(big: &[Big], many: &Many) -> Section {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "**One service, {} instances** (registered in the in-process registry, no checks). Our `consul::Discovery` \
         alone (no balancer). Update = re-register one instance on a new port → the one `Change` out of the \
         discovery stream: registry wake-up, encoding and sending every entry, decoding and diffing them. \
         The registry runs in the same process, so its encoding counts against us; the fetch row is the \
         registry's share (plain GET of the same list), the `serde_json::Value` row a reference decoder. \
         The decoder decodes only the entries whose bytes changed since the last answer; the \"before\" row \
         decodes every entry, as the watch did before it. Heap held: what dropping a synced discovery (and so \
         its watch, the decoder's cache included) frees, counted by the harness's global allocator; measured \
         on a discovery whose source replays the registry's answer through the decoder, so that no registry \
         memory is freed meanwhile. Cells: min / median / max over {} trials.\n",
        SIZES.map(|n| n.to_string()).join(" and "),
        big.first().map_or(0, |b| b.update_ms.len())
    );
    big_rows(&mut md, big);
    for b in big {
        let est = med(&b.decode_diff_ms);
        let target = b.target_decode_diff_ms;
        let per = b.held_bytes as f64 / b.instances as f64 / 1024.0;
        let _ = writeln!(
            md,
            "\n{} instances: decode + diff median **{est:.2} ms** (target ≤ {target:.0} ms: {}; every entry \
             decoded: {:.2} ms); heap held {per:.2} KiB per instance (target ≤ {MAX_HELD_KIB:.0} KiB: {}).",
            b.instances,
            verdict(est <= target),
            med(&b.full_decode_diff_ms),
            verdict(per <= MAX_HELD_KIB)
        );
    }
    md.push('\n');
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
        "\nOver plain HTTP/1.1 every waiting blocking query holds a TCP connection of its own, so {} watches \
         hold about as many connections (the pool setting of {} bounds only idle ones); \
         `ClientBuilder::max_concurrent_watches` caps them, at the price of freshness for queued watches. \
         Requests ≈ one per service per wait: ratio {:.2} ({}; Consul's wait jitter of up to wait/16 makes \
         it slightly below 1).",
        many.services,
        many.pool_max_idle_per_host,
        many.requests_per_minute / many.expected_per_minute,
        verdict((many.requests_per_minute / many.expected_per_minute - 1.0).abs() < 0.15)
    );
    if let Some(n) = many.tls_connections {
        let _ = writeln!(
            md,
            "\nThe same {} watches over HTTPS (`tls-ring`: the client offers HTTP/2 by ALPN, every blocking query \
             a stream): **{n}** TCP connection(s) once all {} queries are parked (target ≤ {MAX_TLS_CONNECTIONS}: {}).",
            many.services,
            many.services,
            verdict(n <= MAX_TLS_CONNECTIONS)
        );
    }
    Section {
        key: "6-scale",
        json: json!({"big": big, "many": many,
            "target_held_kib_per_instance": MAX_HELD_KIB,
            "target_tls_connections": MAX_TLS_CONNECTIONS}),
        markdown: md,
    }
}
