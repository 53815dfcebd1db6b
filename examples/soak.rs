//! Soak: churn under load, in one process, for a long time. Not run in CI.
//!
//! An in-process registry (`ConsulDev`), Echo servers that register with a TTL
//! heartbeat (`consul::Registration`), and a `BalancedChannel` over
//! `consul::Discovery`. Every `--churn` one instance registers or drains (check
//! critical, `--drain-grace`, deregister, then its server shuts down), between `--min`
//! and `--max` live instances, while `--rps` calls per second go through the
//! channel. Reports failed calls (target 0: every call goes to a passing instance
//! or one draining and still up) and the resident memory at start and end.
//!
//! ```text
//! cargo run --release --example soak -- --duration 10m [--rps 500] [--churn 200ms]
//!     [--drain-grace 1s] [--min 3] [--max 8]
//! ```

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use clap::builder::RangedU64ValueParser;
use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};
use consul_dev::ConsulDev;
use tokio::sync::Semaphore;
use tokio::time::{Instant, MissedTickBehavior};
use tonic_discovery::balance::{BalancedChannel, EndpointState};
use tonic_discovery::consul::{Client, Registration, RegistrationHandle};
use tonic_discovery_testkit::TestEchoServer;
use tonic_discovery_testkit::pb::EchoRequest;
use tonic_discovery_testkit::pb::echo_client::EchoClient;

/// Churn under load in one process: instances register and drain while calls go
/// through one balanced channel. Exits 1 on any failed call.
#[derive(Parser)]
#[command(name = "soak")]
struct Config {
    /// How long to run (at most a year).
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = common::run_length)]
    duration: Duration,
    /// Calls per second through the balanced channel (at most 1000000).
    #[arg(long, value_name = "N", default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=1_000_000), alias = "rate")]
    rps: u32,
    /// How often one instance registers or drains.
    #[arg(long, value_name = "DURATION", default_value = "200ms", value_parser = common::period)]
    churn: Duration,
    /// How long a draining instance keeps serving after leaving the registry.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = humantime::parse_duration, alias = "grace")]
    drain_grace: Duration,
    /// Fewest live instances.
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    min: usize,
    /// Most live instances (at least --min).
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    max: usize,
}

/// The command line, with the check clap cannot make on one value alone.
fn config() -> Config {
    let config = Config::parse();
    if config.max < config.min {
        let message = format!("--max {} is below --min {}", config.max, config.min);
        Config::command()
            .error(ErrorKind::ArgumentConflict, message)
            .exit();
    }
    config
}

/// A registered instance and its server.
struct Member {
    server: TestEchoServer,
    handle: RegistrationHandle,
}

/// The live instances and what churn did.
struct Churn {
    client: Client,
    live: Vec<Member>,
    next_id: u64,
    registered: u64,
    drained: Arc<AtomicU64>,
    grace: Duration,
}

impl Churn {
    async fn register(&mut self) -> Result<(), String> {
        self.next_id += 1;
        let id = format!("soak-{}", self.next_id);
        let server = (TestEchoServer::start(id.clone()).await).map_err(|e| e.to_string())?;
        let registration = Registration::new("echo", server.addr())
            .id(id)
            .ttl(Duration::from_secs(5));
        let handle = (self.client.register(registration).await).map_err(|e| e.to_string())?;
        self.live.push(Member { server, handle });
        self.registered += 1;
        Ok(())
    }

    /// Drains a random live instance in the background, then shuts its server down.
    fn drain(&mut self) {
        let i = rand::random_range(0..self.live.len());
        let Member { server, handle } = self.live.swap_remove(i);
        let (grace, drained) = (self.grace, self.drained.clone());
        tokio::spawn(async move {
            if let Err(e) = handle.drain(grace).await {
                eprintln!("drain failed: {e}");
            }
            server.shutdown().await;
            drained.fetch_add(1, Ordering::Relaxed);
        });
    }

    async fn step(&mut self, min: usize, max: usize) -> Result<(), String> {
        let grow = self.live.len() <= min || (self.live.len() < max && rand::random::<bool>());
        if grow {
            self.register().await
        } else {
            self.drain();
            Ok(())
        }
    }
}

/// Call counters shared with the load tasks.
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    failed: AtomicU64,
    first_errors: std::sync::Mutex<Vec<String>>,
}

/// Sends `rate` calls per second, each on its own task, until `until`.
async fn load(channel: BalancedChannel, rate: u32, until: Instant, tally: Arc<Tally>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1) / rate);
    tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let in_flight = Arc::new(Semaphore::new(2_000));
    while Instant::now() < until {
        tick.tick().await;
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let (mut client, tally) = (EchoClient::new(channel.clone()), tally.clone());
        tokio::spawn(async move {
            match client.echo(EchoRequest::default()).await {
                Ok(_) => tally.ok.fetch_add(1, Ordering::Relaxed),
                Err(status) => {
                    let mut first = tally.first_errors.lock().unwrap_or_else(|p| p.into_inner());
                    if first.len() < 5 {
                        first.push(status.to_string());
                    }
                    tally.failed.fetch_add(1, Ordering::Relaxed)
                }
            };
            drop(permit);
        });
    }
    // Let the last calls finish.
    let _ = in_flight.acquire_many(2_000).await;
}

/// Resident memory in kB, from `/proc/self/status` (0 where it is not available).
fn rss_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    (status.lines())
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn ready(channel: &BalancedChannel) -> usize {
    (channel.endpoints().iter())
        .filter(|e| e.state() == EndpointState::Ready)
        .count()
}

#[tokio::main]
async fn main() {
    let config = config();
    common::init_tracing();
    #[cfg(feature = "tls-ring")]
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dev = ConsulDev::start()
        .await
        .unwrap_or_else(|e| common::fail(&e.to_string()));
    let client = Client::builder(dev.url())
        .build()
        .unwrap_or_else(|e| common::fail(&e.to_string()));
    let mut churn = Churn {
        client: client.clone(),
        live: Vec::new(),
        next_id: 0,
        registered: 0,
        drained: Arc::new(AtomicU64::new(0)),
        grace: config.drain_grace,
    };
    for _ in 0..config.min {
        churn.register().await.unwrap_or_else(|e| common::fail(&e));
    }
    let channel = BalancedChannel::builder("echo")
        .build(client.discovery("echo").build())
        .unwrap_or_else(|e| common::fail(&e.to_string()));
    while ready(&channel) < config.min {
        // Start-up only: wait for the first instances before measuring.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let churn = run(config, churn, channel).await;
    for member in churn.live {
        let _ = member.handle.deregister().await;
    }
    // The registry is part of the process: its per-path request counters grow with
    // every new instance ID, by design, and weigh in the RSS.
    println!(
        "registry: {} request paths counted",
        dev.request_counts().len()
    );
}

async fn run(config: Config, mut churn: Churn, channel: BalancedChannel) -> Churn {
    let start = Instant::now();
    let until = start + config.duration;
    let rss_start = rss_kb();
    let tally = Arc::new(Tally::default());
    let load = tokio::spawn(load(channel.clone(), config.rps, until, tally.clone()));
    let mut churn_tick = tokio::time::interval(config.churn);
    let mut report = tokio::time::interval(Duration::from_secs(10));
    println!(
        "soak: {:?} at {} calls/s, churn every {:?}, RSS {rss_start} kB",
        config.duration, config.rps, config.churn
    );
    while Instant::now() < until {
        tokio::select! {
            _ = churn_tick.tick() => {
                if let Err(e) = churn.step(config.min, config.max).await {
                    eprintln!("churn step failed: {e}");
                }
            }
            _ = report.tick() => println!(
                "{:>6.0?}: {} ok, {} failed, {} live, {} ready, RSS {} kB",
                start.elapsed(), tally.ok.load(Ordering::Relaxed),
                tally.failed.load(Ordering::Relaxed), churn.live.len(), ready(&channel), rss_kb()
            ),
        }
    }
    let _ = load.await;
    let elapsed = start.elapsed();
    let (ok, failed) = (
        tally.ok.load(Ordering::Relaxed),
        tally.failed.load(Ordering::Relaxed),
    );
    let rss_end = rss_kb();
    println!(
        "soak done in {elapsed:.1?}: {ok} calls ok, {failed} failed ({:.0} calls/s); \
         {} registered, {} drained; RSS {rss_start} kB -> {rss_end} kB",
        (ok + failed) as f64 / elapsed.as_secs_f64(),
        churn.registered,
        churn.drained.load(Ordering::Relaxed),
    );
    let first = tally.first_errors.lock().unwrap_or_else(|p| p.into_inner());
    for e in first.iter() {
        println!("  failed call: {e}");
    }
    if failed > 0 {
        std::process::exit(1);
    }
    churn
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn command_line() {
        super::Config::command().debug_assert();
    }
}
