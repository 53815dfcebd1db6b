//! Calls Echo through a balanced channel that discovers instances in a registry, and
//! prints once a second where the requests went.
//!
//! ```text
//! cargo run --release --example echo_client -- --registry consul://127.0.0.1:8500/echo \
//!     [--service echo] [--tag T]... [--rps 200] [--concurrency 8] [--duration 10s] \
//!     [--timeout 500ms] [--zone Z [--region R]] [--metrics 127.0.0.1:9000] \
//!     [--service-config examples/service-config.json]
//! ```
//!
//! `--zone Z` turns on zone-aware routing (calls stay on instances of zone `Z` while
//! enough of them are ready). `--metrics ADDR` (build with `--features metrics`) serves
//! the balancer's metrics in the Prometheus text format at `http://ADDR/metrics`.
//!
//! Every second it prints one JSON line
//! `{"elapsed_ms":N,"ok":{"<instance id>":N,...},"errors":{"<grpc code name>":N},"latency_us":{"p50":N,"p90":N,"p99":N,"p999":N,"max":N}}`
//! with that second's counts and the latency of the calls answered in it, failed ones
//! included (`null` when none was), and at the end
//! `{"summary":{"ok":{...},"errors":{...},"latency_us":{...},"attempts":N,"retries":N,"hedges":N,"hedges_won":N}}`
//! over the whole run: `attempts` is the calls plus the retries and hedges the
//! channel's policies sent (`BalancedChannel::attempt_stats`).
//!
//! `--service-config FILE` gives the channel a gRPC service config (the JSON document
//! grpc-go and grpc-java read: per-method `retryPolicy`, `hedgingPolicy`, `timeout`,
//! and `retryThrottling`); `examples/service-config.json` retries `UNAVAILABLE`.
//! Without it no call is retried or hedged, as in gRPC.
//! `--timeout D` gives every call a deadline of `D` (sent as `grpc-timeout`; default:
//! none); a call that misses it counts as `DeadlineExceeded`.
//! The ACL token, if any, comes from `CONSUL_HTTP_TOKEN` or `CONSUL_HTTP_TOKEN_FILE`.
//!
//! `--registry` takes a target URI (`tonic_discovery::Target`): the service is its path
//! or `--service`. Without a registry: `--registry static:///127.0.0.1:50051,127.0.0.1:50052`
//! balances over a fixed list, and (build with `--features dns`)
//! `--registry dns:///HOST:PORT` over the A/AAAA records of `HOST`,
//! `--registry dns+srv:///_grpc._tcp.example.com` over SRV records, both re-resolved at
//! the records' TTL. `--service` is then optional and only names the channel in logs.

#[path = "common/mod.rs"]
mod common;
#[path = "common/counts.rs"]
mod counts;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use clap::builder::RangedU64ValueParser;
use tokio::time::{Instant, MissedTickBehavior};
use tonic::{Code, Status};
use tonic_discovery::balance::{BalancedChannel, ServiceConfig};
use tonic_discovery_testkit::pb::EchoRequest;
use tonic_discovery_testkit::pb::echo_client::EchoClient;

use tonic_discovery::Target;

use counts::Counts;

/// Calls Echo through a balanced channel that discovers instances in a registry, and
/// prints one JSON line a second with where the requests went, then a summary.
#[derive(Parser)]
#[command(
    name = "echo_client",
    after_help = "Consul's ACL token, if any, comes from CONSUL_HTTP_TOKEN or CONSUL_HTTP_TOKEN_FILE."
)]
struct Options {
    /// Where to discover instances, a target URI: consul://HOST:PORT[/SERVICE][?tag=…],
    /// etcd://HOST:PORT[,HOST:PORT…][/SERVICE] (feature etcd),
    /// nacos://HOST:PORT[/SERVICE][?namespace=NS&group=G&cluster=C] (feature nacos),
    /// static:///HOST:PORT[,HOST:PORT…] (a fixed list), dns:///HOST:PORT (A/AAAA
    /// records) or dns+srv:///NAME (SRV records) (both feature dns).
    #[arg(long, value_name = "URI", value_parser = common::target)]
    registry: Target,
    /// Service name to discover, unless the target names it (static and DNS targets
    /// need none).
    #[arg(long, value_name = "NAME")]
    service: Option<String>,
    /// Only instances carrying this tag (Consul only); repeat to require several.
    #[arg(long = "tag", value_name = "TAG")]
    tags: Vec<String>,
    /// Calls per second, across all workers.
    #[arg(long, value_name = "N", default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..))]
    rps: u32,
    /// Concurrent workers (calls in flight at most).
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = RangedU64ValueParser::<usize>::new().range(1..=100_000))]
    concurrency: usize,
    /// How long to send calls (at most a year).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = common::run_length)]
    duration: Duration,
    /// Deadline of every call, sent as `grpc-timeout`; a call that misses it counts as
    /// DeadlineExceeded [default: none]
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    timeout: Option<Duration>,
    /// The client's zone: traffic stays on instances of this zone while enough of
    /// them are ready, then spills over to other zones (zone-aware routing)
    /// [default: none, every instance alike]
    #[arg(long, value_name = "ZONE")]
    zone: Option<String>,
    /// The client's region, for zone-aware routing's second tier [default: none]
    #[arg(long, value_name = "REGION", requires = "zone")]
    region: Option<String>,
    /// Serves the balancer's metrics in the Prometheus text format at
    /// http://ADDR/metrics (build with --features metrics) [default: off]
    #[arg(long, value_name = "ADDR")]
    metrics: Option<std::net::SocketAddr>,
    /// A gRPC service config JSON document (retryPolicy, hedgingPolicy, timeout,
    /// retryThrottling per method), e.g. examples/service-config.json
    /// [default: none, no call retried or hedged]
    #[arg(long, value_name = "FILE")]
    service_config: Option<PathBuf>,
}

#[tokio::main]
async fn main() {
    let options = Options::parse();
    common::init_tracing();
    if let Some(addr) = options.metrics {
        common::serve_metrics(addr);
    }
    let target =
        common::client_target(&options.registry, options.service.as_deref(), &options.tags)
            .unwrap_or_else(|e| common::fail(&e));
    let mut builder = BalancedChannel::builder(target.name());
    if let Some(path) = &options.service_config {
        let config = service_config(path).unwrap_or_else(|e| common::fail(&e));
        builder = builder.service_config(config);
    }
    if let Some(zone) = &options.zone {
        let region = options.region.as_deref().unwrap_or_default();
        builder = builder.traffic_policy(
            tonic_discovery::balance::TrafficPolicy::new()
                .locality(tonic_discovery::Locality::new(region, zone)),
        );
    }
    let channel = match common::channel(&target, builder).await {
        Ok(channel) => channel,
        Err(e) => common::fail(&format!("registry: {e}")),
    };
    run(channel, &options).await;
}

/// Reads and parses the `--service-config` file; the error names the file and, for
/// a bad document, the field.
fn service_config(path: &Path) -> Result<ServiceConfig, String> {
    let what = format!("--service-config {}", path.display());
    let json = std::fs::read_to_string(path).map_err(|e| format!("{what}: {e}"))?;
    ServiceConfig::from_json(&json).map_err(|e| format!("{what}: {e}"))
}

async fn run(channel: BalancedChannel, options: &Options) {
    let counts = Arc::new(Mutex::new(Counts::new()));
    let start = Instant::now();
    let end = start + options.duration;
    let pacer = Arc::new(Pacer::new(start, Duration::from_secs(1) / options.rps));
    let workers: Vec<_> = (0..options.concurrency)
        .map(|_| {
            let client = EchoClient::new(channel.clone());
            let calls = calls(client, counts.clone(), pacer.clone(), end, options.timeout);
            tokio::spawn(calls)
        })
        .collect();
    let mut total = Counts::new();
    let mut report =
        tokio::time::interval_at(start + Duration::from_secs(1), Duration::from_secs(1));
    report.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut second = 0;
    while Instant::now() < end || second == 0 {
        report.tick().await;
        second += 1;
        let counts = std::mem::replace(&mut *counts.lock().unwrap(), Counts::new());
        counts.merge_into(&mut total);
        println!("{}", counts.line(second * 1000));
    }
    for worker in workers {
        let _ = worker.await;
    }
    let rest = std::mem::replace(&mut *counts.lock().unwrap(), Counts::new());
    rest.merge_into(&mut total);
    if rest.calls() > 0 {
        println!("{}", rest.line((Instant::now() - start).as_millis() as u64));
    }
    println!("{}", summary(&total, &channel));
}

/// One worker: calls Echo at the pacer's slots until `end`, counting each answer.
async fn calls(
    mut client: EchoClient<BalancedChannel>,
    counts: Arc<Mutex<Counts>>,
    pacer: Arc<Pacer>,
    end: Instant,
    timeout: Option<Duration>,
) {
    loop {
        let slot = pacer.next_slot();
        if slot >= end {
            return;
        }
        tokio::time::sleep_until(slot).await;
        let mut request = tonic::Request::new(EchoRequest {
            message: vec![0; 64],
        });
        if let Some(timeout) = timeout {
            request.set_timeout(timeout);
        }
        let sent = Instant::now();
        let result = client.echo(request).await;
        let latency = sent.elapsed();
        let result = result
            .map(|reply| reply.into_inner().instance_id)
            .map_err(|status| code_name(&status));
        counts.lock().unwrap().record(result, latency);
    }
}

/// The summary line: the run's counts and latency, and the attempts the channel
/// sent (every call's first, plus the retries and hedges its policies sent).
fn summary(total: &Counts, channel: &BalancedChannel) -> String {
    let stats = channel.attempt_stats();
    let (retries, hedges) = (stats.retries(), stats.hedges());
    let attempts = total.calls() + retries + hedges;
    let body = total.body();
    format!(
        r#"{{"summary":{},"attempts":{attempts},"retries":{retries},"hedges":{hedges},"hedges_won":{}}}}}"#,
        &body[..body.len() - 1],
        stats.hedges_won(),
    )
}

/// The name a failed call is counted under: its code, except that a tonic server
/// reports a deadline it enforced as `Cancelled` "Timeout expired" (the client's own
/// deadline is `DeadlineExceeded` already), which counts as the deadline it is.
fn code_name(status: &Status) -> String {
    let code = match status.code() {
        Code::Cancelled if status.message() == "Timeout expired" => Code::DeadlineExceeded,
        code => code,
    };
    format!("{code:?}")
}

/// Hands out request start times `interval` apart. A worker that fell behind (a
/// slow or failing call) skips the missed slots instead of bursting to catch up.
struct Pacer {
    next: Mutex<Instant>,
    interval: Duration,
}

impl Pacer {
    fn new(start: Instant, interval: Duration) -> Self {
        Pacer {
            next: Mutex::new(start),
            interval,
        }
    }

    fn next_slot(&self) -> Instant {
        let mut next = self.next.lock().unwrap();
        let now = Instant::now();
        if *next + self.interval < now {
            *next = now;
        }
        let slot = *next;
        *next += self.interval;
        slot
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn command_line() {
        super::Options::command().debug_assert();
    }

    #[test]
    fn a_bad_service_config_is_refused_naming_the_file_and_the_field() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("bad.json");
        let bad = r#"{"methodConfig":[{"name":[{"service":"echo.v1.Echo"}],
            "retryPolicy":{"maxAttempts":1,"initialBackoff":"0.1s","maxBackoff":"1s",
            "backoffMultiplier":2,"retryableStatusCodes":["UNAVAILABLE"]}}]}"#;
        std::fs::write(&path, bad).expect("written");
        let error = super::service_config(&path).expect_err("maxAttempts 1 is refused");
        assert!(error.contains("bad.json"), "{error}");
        assert!(error.contains("maxAttempts"), "{error}");
        let missing = super::service_config(&dir.path().join("none.json"));
        assert!(missing.expect_err("no file").contains("none.json"));
        let sample = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples")
            .join("service-config.json");
        super::service_config(&sample).expect("the sample parses");
    }
}
