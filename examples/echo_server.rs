//! An Echo gRPC server that registers itself (Consul: a TTL check kept passing; etcd: a
//! kept-alive lease; Nacos: an ephemeral instance), following its own `grpc.health.v1`
//! status (out of discovery while not serving); SIGTERM or SIGINT drains it (out of the
//! registry, wait, stop) and it exits 0.
//!
//! ```text
//! cargo run --release --example echo_server -- --listen 127.0.0.1:0 \
//!     --registry consul://127.0.0.1:8500 --service echo [--id ID] [--tag T]... \
//!     [--ttl 2s] [--weight N] [--zone Z [--region R]] [--meta K=V]... [--drain-grace 2s] \
//!     [--fail-after 30s] [--max-connection-age 10s] [--fail-rate 0.3] \
//!     [--delay 50ms [--delay-rate 0.01]]
//! ```
//!
//! `--registry none` serves without registering; `--registry etcd://HOST:PORT[,…]` registers
//! in etcd (build with `--features etcd`), `--registry nacos://HOST:PORT[?namespace=NS&group=G]`
//! in Nacos (build with `--features nacos`; an ephemeral instance held by the connection).
//! The service is `--service` or the registry's path (`consul://127.0.0.1:8500/echo`).
//! A server cannot register in a `static:` list or in DNS (`dns:`, `dns+srv:`): those
//! are refused; serve with `--registry none` and give the address to the clients' list or
//! DNS records. Consul's ACL token and TLS settings come from
//! the `CONSUL_*` environment variables. Prints `serving ID on ADDR` once it accepts
//! requests.
//!
//! Faults, for gray-failure experiments:
//!
//! - **Black hole:** `--fail-after D` answers every Echo call with `UNAVAILABLE` once `D`
//!   has passed since it started serving, while the instance stays registered and its
//!   health check passing, as a broken instance that looks healthy would. SIGUSR1 switches black-hole
//!   mode on and off at any time (also before or after `--fail-after`); each switch prints
//!   `black hole on` or `black hole off`.
//! - **Flaky:** `--fail-rate F` answers a random share `F` (0 to 1) of the Echo calls
//!   with `UNAVAILABLE`, each call drawn on its own: what a retry policy answers
//!   (`echo_client --service-config examples/service-config.json`).
//! - **Slow tail:** `--delay D` delays a random share of the Echo calls, `--delay-rate F`
//!   (default 1: every call), by `D`: the tail that hedging answers
//!   (`echo_client --service-config examples/service-config-hedging.json`).
//! - **Connection age:** `--max-connection-age D` closes each connection gracefully
//!   (HTTP/2 GOAWAY) once it is `D` old, as grpc-go's `MaxConnectionAge` does, so clients
//!   reconnect.

#[path = "common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tokio::signal::unix::{Signal, SignalKind};
use tonic::Code;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic_discovery::register::HealthSource;
use tonic_discovery_testkit::EchoService;
use tonic_discovery_testkit::pb::echo_server::EchoServer;

use common::{Publish, Registry};

/// The gRPC service name whose `grpc.health.v1` status the registration follows.
const ECHO: &str = <EchoServer<EchoService> as tonic::server::NamedService>::NAME;

/// An Echo gRPC server that registers itself; SIGTERM or SIGINT drains it (out of the
/// registry, wait, stop) and it exits 0. Prints `serving ID on ADDR` once it accepts
/// requests.
#[derive(Parser)]
#[command(
    name = "echo_server",
    after_help = "Signals: SIGTERM or SIGINT drains and exits 0; SIGUSR1 switches black-hole \
                  mode on or off (prints `black hole on` / `black hole off`).\n\
                  Consul's ACL token and TLS settings come from the CONSUL_* environment variables."
)]
struct Options {
    /// Address to listen on; port 0 picks a free one.
    #[arg(long, value_name = "ADDR")]
    listen: SocketAddr,
    /// Where to register: consul://HOST:PORT, etcd://HOST:PORT[,HOST:PORT…] (feature etcd),
    /// nacos://HOST:PORT[?namespace=NS&group=G] (feature nacos), or none (serve only; use
    /// it for clients with static: or dns: targets, which a server cannot register in).
    #[arg(long, value_name = "URL")]
    registry: Registry,
    /// Service name to register under, unless the registry target names it
    /// (consul://HOST:PORT/SERVICE).
    #[arg(long, value_name = "NAME")]
    service: Option<String>,
    /// Instance ID [default: derived from the service name and address]
    #[arg(long)]
    id: Option<String>,
    /// A tag on the registration (Consul only); repeat for several.
    #[arg(long = "tag", value_name = "TAG")]
    tags: Vec<String>,
    /// TTL of the Consul check or the etcd lease (not for Nacos, whose connection keeps
    /// the instance) [default: the registry's, 10s]
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    ttl: Option<Duration>,
    /// The instance's weight, at least 1: Consul `Weights.Passing`, the Nacos weight,
    /// a `weight` metadata entry in etcd [default: the registry's, 1]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    weight: Option<u32>,
    /// The instance's zone: Consul `Service.Locality.Zone`, the Nacos cluster, a `zone`
    /// metadata entry in etcd [default: none]
    #[arg(long, value_name = "ZONE")]
    zone: Option<String>,
    /// The instance's region: Consul `Service.Locality.Region`, a `region` metadata
    /// entry in etcd and Nacos [default: none]
    #[arg(long, value_name = "REGION", requires = "zone")]
    region: Option<String>,
    /// A metadata entry (Consul `Meta`, Nacos and etcd metadata); repeat for several.
    #[arg(long = "meta", value_name = "KEY=VALUE", value_parser = common::key_value)]
    meta: Vec<(String, String)>,
    /// On SIGTERM or SIGINT, how long to wait between leaving the registry and stopping.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = humantime::parse_duration)]
    drain_grace: Duration,
    /// Black hole: once this long after serving starts, answer every Echo call with
    /// UNAVAILABLE while staying registered and passing [default: never]
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    fail_after: Option<Duration>,
    /// Close each connection gracefully (HTTP/2 GOAWAY) once it is this old, so that
    /// clients reconnect [default: never]
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    max_connection_age: Option<Duration>,
    /// Answer this share (0 to 1) of the Echo calls, drawn at random, with UNAVAILABLE
    /// [default: 0, none]
    #[arg(long, value_name = "F", value_parser = share)]
    fail_rate: Option<f64>,
    /// Delay the share of the Echo calls --delay-rate draws by this long before
    /// answering [default: none]
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    delay: Option<Duration>,
    /// The share (0 to 1) of the Echo calls --delay delays, drawn at random
    /// [default: 1, every call]
    #[arg(long, value_name = "F", value_parser = share, requires = "delay")]
    delay_rate: Option<f64>,
}

/// A share: a number from 0 to 1.
fn share(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if (0.0..=1.0).contains(&f) => Ok(f),
        _ => Err(format!("`{s}` is not a number from 0 to 1")),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let options = Options::parse();
    common::init_tracing();
    match run(options).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("echo_server: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(options: Options) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|e| format!("listening on {}: {e}", options.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let (reporter, health_service) = tonic_health::server::health_reporter();
    reporter.set_serving::<EchoServer<EchoService>>().await;
    let health = HealthSource::tonic_health(&reporter, ECHO)
        .await
        .map_err(|e| e.to_string())?;
    let publish = Publish {
        id: options.id.clone(),
        tags: options.tags.clone(),
        ttl: options.ttl,
        weight: options.weight,
        zone: options.zone.clone(),
        region: options.region.clone(),
        meta: options.meta.clone(),
    };
    let target = match &options.registry {
        Registry::Target(target) => Some(target),
        Registry::None => None,
    };
    let service = common::service(target, options.service.as_deref())?
        .ok_or("--service is needed: the registry names no service")?;
    let (id, registered) = options
        .registry
        .register(&service, addr, &publish, health)
        .await?;

    let grace = options.drain_grace;
    let shutdown = async move {
        signal().await;
        eprintln!("echo_server: signal received, draining");
        if let Err(e) = registered.drain(grace).await {
            eprintln!("echo_server: drain: {e}");
        }
    };
    // Listening before the first line, so that a SIGUSR1 sent once it is printed
    // toggles instead of killing (SIGUSR1's default action).
    let usr1 = tokio::signal::unix::signal(SignalKind::user_defined1())
        .map_err(|e| format!("listening for SIGUSR1: {e}"))?;
    let service = EchoService::new(id.clone());
    service.set_fail_rate(options.fail_rate.unwrap_or(0.0));
    if let Some(delay) = options.delay {
        service.set_tail(options.delay_rate.unwrap_or(1.0), delay);
    }
    tokio::spawn(black_hole(service.clone(), options.fail_after, usr1));
    let mut server = Server::builder();
    if let Some(age) = options.max_connection_age {
        server = server.max_connection_age(age);
    }
    println!("serving {id} on {addr}");
    server
        .add_service(health_service)
        .add_service(EchoServer::new(service))
        .serve_with_incoming_shutdown(TcpIncoming::from(listener), shutdown)
        .await
        .map_err(|e| e.to_string())?;
    eprintln!("echo_server: {id} stopped");
    Ok(())
}

/// Runs black-hole mode: on once `fail_after` has passed since the start, switched
/// by every SIGUSR1. Health is left alone, so the instance stays registered and passing.
async fn black_hole(service: EchoService, fail_after: Option<Duration>, mut usr1: Signal) {
    let timer = async {
        match fail_after {
            Some(after) => tokio::time::sleep(after).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(timer);
    let mut timer_done = false;
    let mut on = false;
    loop {
        let switch_to = tokio::select! {
            () = &mut timer, if !timer_done => {
                timer_done = true;
                true
            }
            Some(()) = usr1.recv() => !on,
            else => return,
        };
        if switch_to != on {
            on = switch_to;
            service.fail_with(on.then_some(Code::Unavailable));
            println!("black hole {}", if on { "on" } else { "off" });
        }
    }
}

/// Resolves on the first SIGTERM or SIGINT.
async fn signal() {
    use tokio::signal::unix::signal;
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        eprintln!("echo_server: cannot listen for signals");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
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
    fn shares_are_numbers_from_0_to_1() {
        assert_eq!(super::share("0.3"), Ok(0.3));
        assert_eq!(super::share("1"), Ok(1.0));
        for bad in ["1.5", "-0.1", "NaN", "30%"] {
            assert!(super::share(bad).is_err(), "{bad}");
        }
    }
}
