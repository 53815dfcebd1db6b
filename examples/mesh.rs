//! The crate's job in 30 seconds, with nothing installed:
//!
//! ```text
//! cargo run --example mesh [-- --registry consul://127.0.0.1:8500]
//! cargo run --example mesh --features metrics -- --metrics 127.0.0.1:9000
//! cargo run --example mesh -- --service-config-kv
//! ```
//!
//! An in-process Consul-compatible registry (or the Consul agent named by `--registry`,
//! else by `CONSUL_HTTP_ADDR` when it is set), three Echo servers that register themselves with a TTL check, and a client
//! calling through one balanced channel. Every second it prints where the requests went,
//! while one instance fails its health check, one joins, and one is killed without
//! deregistering. It ends with a summary.
//!
//! `--service-config-kv` makes the client follow the gRPC service config at the KV key
//! `service-config/mesh-echo`: put a document there while the demo runs (it prints
//! the `curl` command) and the client applies it at once, without a restart; the
//! summary then counts the retries and hedges sent.

#[path = "common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use consul_dev::ConsulDev;
use tokio::time::{Instant, MissedTickBehavior};
use tonic_discovery::balance::BalancedChannel;
use tonic_discovery::consul;
use tonic_discovery::target::{Scheme, Target};
use tonic_discovery_testkit::TestEchoServer;
use tonic_discovery_testkit::pb::EchoRequest;
use tonic_discovery_testkit::pb::echo_client::EchoClient;

const SERVICE: &str = "mesh-echo";
const TTL: Duration = Duration::from_secs(1);
const RPS: u32 = 300;
const WORKERS: usize = 8;

/// The crate's job in 30 seconds: a registry, three Echo servers that register with a
/// TTL check, and a client calling through one balanced channel while one instance fails
/// its health check, one joins and one is killed.
#[derive(Parser)]
#[command(
    name = "mesh",
    after_help = "Uses the Consul agent named by --registry, else the one at CONSUL_HTTP_ADDR \
                  when it is set (token and TLS from the other CONSUL_* variables), else an \
                  in-process Consul-compatible registry."
)]
struct Cli {
    /// The Consul agent to register in and discover from: consul://HOST:PORT (the
    /// demo's service is always `mesh-echo`) [default: CONSUL_HTTP_ADDR when set, else
    /// an in-process registry]
    #[arg(long, value_name = "URI", value_parser = consul_target)]
    registry: Option<Target>,
    /// Serves the balancer's metrics in the Prometheus text format at
    /// http://ADDR/metrics while the demo runs (build with --features metrics)
    /// [default: off]
    #[arg(long, value_name = "ADDR")]
    metrics: Option<SocketAddr>,
    /// The client follows the gRPC service config at the registry's KV key
    /// service-config/mesh-echo, applied live (retry and hedging policies)
    /// [default: off, no policy]
    #[arg(long)]
    service_config_kv: bool,
}

/// One Echo server and its registration.
struct Instance {
    server: TestEchoServer,
    registration: consul::RegistrationHandle,
}

#[derive(Default)]
struct Tally {
    second: BTreeMap<String, u64>,
    total: BTreeMap<String, u64>,
    last_seen: BTreeMap<String, Instant>,
    errors_second: u64,
    errors_total: u64,
    last_error: Option<Instant>,
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    common::init_tracing();
    if let Some(addr) = cli.metrics {
        common::serve_metrics(addr);
    }
    let (_registry, client) = registry(cli.registry.as_ref()).await;
    let mut instances = BTreeMap::new();
    for id in ["a", "b", "c"] {
        instances.insert(id, start_instance(&client, id).await);
    }
    println!("registered a, b and c as `{SERVICE}` with a {TTL:?} TTL check each");

    let channel = channel(&client, cli.service_config_kv);
    let tally = Arc::new(Mutex::new(Tally::default()));
    let start = Instant::now();
    let load = tokio::spawn(load(channel.clone(), tally.clone(), start));

    let mut events = Events::default();
    let mut ticker =
        tokio::time::interval_at(start + Duration::from_secs(1), Duration::from_secs(1));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    for second in 1..=26u64 {
        ticker.tick().await;
        print_second(second, &tally);
        match second {
            5 => {
                let b = &instances["b"];
                b.server.set_serving(false).await;
                events.b_failed = Some(Instant::now());
                println!("  >> b reports NOT_SERVING: its heartbeat turns the TTL check critical");
            }
            10 => {
                instances.insert("d", start_instance(&client, "d").await);
                events.d_joined = Some(Instant::now());
                println!("  >> d starts and registers");
            }
            14 => {
                events.b_last_while_failing = tally.lock().unwrap().last_seen.get("b").copied();
                instances["b"].server.set_serving(true).await;
                println!("  >> b is SERVING again");
            }
            18 => {
                let c = instances.remove("c").expect("c runs");
                c.registration.abandon();
                c.server.kill().await;
                events.c_killed = Some(Instant::now());
                println!("  >> c is killed: no deregistration, no more heartbeats");
            }
            _ => {}
        }
    }
    load.abort();
    summary(&tally.lock().unwrap(), &events, start);
    if cli.service_config_kv {
        let stats = channel.attempt_stats();
        let (retries, hedges, won) = (stats.retries(), stats.hedges(), stats.hedges_won());
        println!("  policies: {retries} retries, {hedges} hedges ({won} answered first)");
    }
    for (_, instance) in instances {
        let _ = instance.registration.deregister().await;
        instance.server.shutdown().await;
    }
}

#[derive(Default)]
struct Events {
    b_failed: Option<Instant>,
    b_last_while_failing: Option<Instant>,
    d_joined: Option<Instant>,
    c_killed: Option<Instant>,
}

/// The balanced channel over `SERVICE`; with `follow_kv`, following the service
/// config at its KV key.
fn channel(client: &consul::Client, follow_kv: bool) -> BalancedChannel {
    let mut builder = BalancedChannel::builder(SERVICE);
    if follow_kv {
        let watch = client.service_config(SERVICE).build();
        let url = client.address().trim_end_matches('/');
        println!(
            "following the service config at {} (RUST_LOG=info logs each one applied); to \
             apply one now:\n  \
             curl -X PUT --data-binary @examples/service-config.json {url}/v1/kv/service-config/{SERVICE}",
            watch.origin()
        );
        builder = builder.service_config_watch(watch);
    }
    builder
        .build(client.discovery(SERVICE).build())
        .unwrap_or_else(|e| common::fail(&e.to_string()))
}

/// `--registry`: a `consul://` target without a service (the demo names its own).
fn consul_target(s: &str) -> Result<Target, String> {
    let target = common::target(s)?;
    if target.scheme() != Scheme::Consul {
        return Err("mesh needs a consul:// registry (it fails Consul health checks)".into());
    }
    if target.service().is_some() {
        return Err(format!(
            "mesh registers and discovers `{SERVICE}`: drop the path"
        ));
    }
    Ok(target)
}

/// The registry: `--registry`, else Consul at `CONSUL_HTTP_ADDR`, else an in-process
/// `ConsulDev`.
async fn registry(target: Option<&Target>) -> (Option<ConsulDev>, consul::Client) {
    if let Some(target) = target {
        let client = target
            .consul_client()
            .unwrap_or_else(|e| common::fail(&e.to_string()));
        println!("using the Consul agent at {}", client.address());
        return (None, client);
    }
    if std::env::var_os("CONSUL_HTTP_ADDR").is_some() {
        let client = consul::Client::from_env().unwrap_or_else(|e| common::fail(&e.to_string()));
        println!("using the Consul agent at {}", client.address());
        return (None, client);
    }
    let dev = ConsulDev::start()
        .await
        .unwrap_or_else(|e| common::fail(&format!("starting the in-process registry: {e}")));
    println!(
        "started an in-process Consul-compatible registry at {}",
        dev.url()
    );
    let client = consul::Client::builder(dev.url())
        .build()
        .unwrap_or_else(|e| common::fail(&e.to_string()));
    (Some(dev), client)
}

async fn start_instance(client: &consul::Client, id: &str) -> Instance {
    let server = TestEchoServer::start(id)
        .await
        .unwrap_or_else(|e| common::fail(&format!("starting server {id}: {e}")));
    let addr: SocketAddr = server.addr();
    let registration = consul::Registration::new(SERVICE, addr)
        .id(id)
        .ttl(TTL)
        .health(server.health_watch());
    let registration = client
        .register(registration)
        .await
        .unwrap_or_else(|e| common::fail(&format!("registering {id}: {e}")));
    Instance {
        server,
        registration,
    }
}

async fn load(channel: BalancedChannel, tally: Arc<Mutex<Tally>>, start: Instant) {
    let interval = Duration::from_secs(1) / RPS * WORKERS as u32;
    let workers = (0..WORKERS).map(|w| {
        let (channel, tally) = (channel.clone(), tally.clone());
        tokio::spawn(async move {
            let mut client = EchoClient::new(channel);
            let mut tick =
                tokio::time::interval_at(start + interval * w as u32 / WORKERS as u32, interval);
            tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let result = client
                    .echo(EchoRequest {
                        message: vec![0; 64],
                    })
                    .await;
                let now = Instant::now();
                let mut t = tally.lock().unwrap();
                match result {
                    Ok(reply) => {
                        let id = reply.into_inner().instance_id;
                        *t.second.entry(id.clone()).or_default() += 1;
                        *t.total.entry(id.clone()).or_default() += 1;
                        t.last_seen.insert(id, now);
                    }
                    Err(_) => {
                        t.errors_second += 1;
                        t.errors_total += 1;
                        t.last_error = Some(now);
                    }
                }
            }
        })
    });
    futures_util::future::join_all(workers).await;
}

fn print_second(second: u64, tally: &Mutex<Tally>) {
    let mut t = tally.lock().unwrap();
    let mut line = format!("{second:>3}s ");
    for id in ["a", "b", "c", "d"] {
        let n = t.second.get(id).copied().unwrap_or(0);
        let bar = "#".repeat((n as usize).div_ceil(10));
        line.push_str(&format!("| {id} {n:>4} {bar:<14}"));
    }
    line.push_str(&format!("| errors {}", t.errors_second));
    println!("{line}");
    t.second.clear();
    t.errors_second = 0;
}

fn summary(t: &Tally, events: &Events, start: Instant) {
    println!("\nsummary ({:.1} s)", start.elapsed().as_secs_f64());
    let ok: u64 = t.total.values().sum();
    for (id, n) in &t.total {
        println!("  {id}: {n} requests");
    }
    println!("  total: {ok} ok, {} failed", t.errors_total);
    let after = |from: Option<Instant>, to: Option<Instant>| match (from, to) {
        (Some(from), Some(to)) if to >= from => format!("{} ms", (to - from).as_millis()),
        (Some(_), _) => "none after the event".to_owned(),
        _ => "n/a".to_owned(),
    };
    println!(
        "  b's check failed -> last request b served: {}",
        after(
            events.b_failed,
            t.last_seen.get("b").copied().filter(|_| false).or(None)
        )
    );
    println!(
        "  c killed -> last failed request: {}",
        after(events.c_killed, t.last_error)
    );
    if let (Some(joined), Some(_)) = (events.d_joined, t.total.get("d")) {
        println!(
            "  d joined at {:.1} s and served {} requests",
            (joined - start).as_secs_f64(),
            t.total["d"]
        );
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn command_line() {
        super::Cli::command().debug_assert();
    }
}
