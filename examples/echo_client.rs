//! Calls Echo through a balanced channel that discovers instances in a registry, and
//! prints once a second where the requests went.
//!
//! ```text
//! cargo run --release --example echo_client -- --registry consul://127.0.0.1:8500/echo \
//!     [--service echo] [--tag T]... [--rps 200] [--concurrency 8] [--duration 10s] \
//!     [--timeout 500ms] [--zone Z [--region R]] [--metrics 127.0.0.1:9000]
//! ```
//!
//! `--zone Z` turns on zone-aware routing (calls stay on instances of zone `Z` while
//! enough of them are ready). `--metrics ADDR` (build with `--features metrics`) serves
//! the balancer's metrics in the Prometheus text format at `http://ADDR/metrics`.
//!
//! Every second it prints one JSON line
//! `{"elapsed_ms":N,"ok":{"<instance id>":N,...},"errors":{"<grpc code name>":N}}`
//! with that second's counts, and at the end `{"summary":{"ok":{...},"errors":{...}}}`.
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

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use clap::builder::RangedU64ValueParser;
use tokio::time::{Instant, MissedTickBehavior};
use tonic::{Code, Status};
use tonic_discovery::balance::BalancedChannel;
use tonic_discovery::testkit::pb::EchoRequest;
use tonic_discovery::testkit::pb::echo_client::EchoClient;

use tonic_discovery::Target;

#[derive(Default)]
struct Counts {
    ok: BTreeMap<String, u64>,
    errors: BTreeMap<String, u64>,
}

impl Counts {
    /// `"ok":{...},"errors":{...}` in the documented key order.
    fn body(&self) -> String {
        format!(
            r#"{{"ok":{},"errors":{}}}"#,
            serde_json::to_string(&self.ok).expect("string map"),
            serde_json::to_string(&self.errors).expect("string map"),
        )
    }

    fn line(&self, elapsed_ms: u64) -> String {
        format!(r#"{{"elapsed_ms":{elapsed_ms},{}"#, &self.body()[1..])
    }

    fn merge_into(&self, total: &mut Counts) {
        for (k, v) in &self.ok {
            *total.ok.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &self.errors {
            *total.errors.entry(k.clone()).or_default() += v;
        }
    }
}

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
    if let Some(zone) = &options.zone {
        let region = options.region.as_deref().unwrap_or_default();
        builder = builder.locality(tonic_discovery::Locality::new(region, zone));
    }
    let channel = match common::channel(&target, builder).await {
        Ok(channel) => channel,
        Err(e) => common::fail(&format!("registry: {e}")),
    };
    run(channel, &options).await;
}

async fn run(channel: BalancedChannel, options: &Options) {
    let counts = Arc::new(Mutex::new(Counts::default()));
    let start = Instant::now();
    let end = start + options.duration;
    let pacer = Arc::new(Pacer::new(start, Duration::from_secs(1) / options.rps));
    let timeout = options.timeout;
    let workers: Vec<_> = (0..options.concurrency)
        .map(|_| {
            let (channel, counts, pacer) = (channel.clone(), counts.clone(), pacer.clone());
            tokio::spawn(async move {
                let mut client = EchoClient::new(channel);
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
                    let result = client.echo(request).await;
                    let mut counts = counts.lock().unwrap();
                    match result {
                        Ok(reply) => {
                            *counts.ok.entry(reply.into_inner().instance_id).or_default() += 1
                        }
                        Err(status) => *counts.errors.entry(code_name(&status)).or_default() += 1,
                    }
                }
            })
        })
        .collect();
    let mut total = Counts::default();
    let mut report =
        tokio::time::interval_at(start + Duration::from_secs(1), Duration::from_secs(1));
    report.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut second = 0;
    while Instant::now() < end || second == 0 {
        report.tick().await;
        second += 1;
        let counts = std::mem::take(&mut *counts.lock().unwrap());
        counts.merge_into(&mut total);
        println!("{}", counts.line(second * 1000));
    }
    for worker in workers {
        let _ = worker.await;
    }
    let rest = std::mem::take(&mut *counts.lock().unwrap());
    rest.merge_into(&mut total);
    if !rest.ok.is_empty() || !rest.errors.is_empty() {
        println!("{}", rest.line((Instant::now() - start).as_millis() as u64));
    }
    println!(r#"{{"summary":{}}}"#, total.body());
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
}
