//! Calls Echo through a balanced channel that discovers instances in a registry, and
//! prints once a second where the requests went.
//!
//! ```text
//! cargo run --release --example echo_client -- --registry consul://127.0.0.1:8500 \
//!     --service echo [--tag T]... [--rps 200] [--concurrency 8] [--duration 10s] \
//!     [--timeout 500ms]
//! ```
//!
//! Every second it prints one JSON line
//! `{"elapsed_ms":N,"ok":{"<instance id>":N,...},"errors":{"<grpc code name>":N}}`
//! with that second's counts, and at the end `{"summary":{"ok":{...},"errors":{...}}}`.
//! `--timeout D` gives every call a deadline of `D` (sent as `grpc-timeout`; default:
//! none); a call that misses it counts as `DeadlineExceeded`.
//! The ACL token, if any, comes from `CONSUL_HTTP_TOKEN` or `CONSUL_HTTP_TOKEN_FILE`.

#[path = "common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior};
use tonic::{Code, Status};
use tonic_discovery::balance::BalancedChannel;
use tonic_discovery::testkit::pb::EchoRequest;
use tonic_discovery::testkit::pb::echo_client::EchoClient;

use common::{Args, Registry};

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

struct Options {
    registry: Registry,
    service: String,
    tags: Vec<String>,
    rps: u32,
    concurrency: usize,
    duration: Duration,
    timeout: Option<Duration>,
}

fn options() -> Result<Options, String> {
    let mut args = Args::from_env();
    let options = Options {
        registry: args.required("--registry")?.parse()?,
        service: args.required("--service")?,
        tags: args.all("--tag"),
        rps: args.parsed("--rps", 200)?,
        concurrency: args.parsed("--concurrency", 8)?,
        duration: args.duration("--duration", Duration::from_secs(10))?,
        timeout: args
            .optional("--timeout")?
            .map(|v| common::parse_duration(&v).map_err(|e| format!("--timeout: {e}")))
            .transpose()?,
    };
    args.finish()?;
    if options.rps == 0 || options.concurrency == 0 {
        return Err("--rps and --concurrency must be at least 1".into());
    }
    Ok(options)
}

#[tokio::main]
async fn main() {
    common::init_tracing();
    let options = match options() {
        Ok(o) => o,
        Err(e) => common::usage_error(&e, USAGE),
    };
    let channel = match options
        .registry
        .channel(&options.service, &options.tags)
        .await
    {
        Ok(channel) => channel,
        Err(e) => common::fail(&format!("registry: {e}")),
    };
    run(channel, &options).await;
}

const USAGE: &str = "echo_client --registry consul://HOST:PORT|etcd://HOST:PORT[,…]|nacos://HOST:PORT --service NAME \
[--tag T]... [--rps 200] [--concurrency 8] [--duration 10s] [--timeout DURATION]";

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
