//! An Echo gRPC server that registers itself (Consul: a TTL check kept passing and
//! following `grpc.health.v1`; etcd: a kept-alive lease; Nacos: an ephemeral instance);
//! SIGTERM or SIGINT drains it (out of the registry, wait, stop) and it exits 0.
//!
//! ```text
//! cargo run --release --example echo_server -- --listen 127.0.0.1:0 \
//!     --registry consul://127.0.0.1:8500 --service echo [--id ID] [--tag T]... \
//!     [--ttl 2s] [--drain-grace 2s] [--fail-after 30s] [--max-connection-age 10s]
//! ```
//!
//! `--registry none` serves without registering; `--registry etcd://HOST:PORT[,…]` registers
//! in etcd (build with `--features etcd`), `--registry nacos://HOST:PORT[?namespace=NS&group=G]`
//! in Nacos (build with `--features nacos`; an ephemeral instance held by the connection). Consul's ACL token and TLS settings come from
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
//! - **Connection age:** `--max-connection-age D` closes each connection gracefully
//!   (HTTP/2 GOAWAY) once it is `D` old, as grpc-go's `MaxConnectionAge` does, so clients
//!   reconnect.

#[path = "common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use tokio::signal::unix::{Signal, SignalKind};
use tonic::Code;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic_discovery::consul::HealthSource;
use tonic_discovery::testkit::EchoService;
use tonic_discovery::testkit::pb::echo_server::EchoServer;

use common::{Args, Registry};

/// The gRPC service name whose `grpc.health.v1` status the TTL check follows.
const ECHO: &str = <EchoServer<EchoService> as tonic::server::NamedService>::NAME;

const USAGE: &str = "echo_server --listen ADDR --registry consul://HOST:PORT|etcd://HOST:PORT|nacos://HOST:PORT|none \
--service NAME [--id ID] [--tag T]... [--ttl 2s] [--drain-grace 2s] [--fail-after DURATION] \
[--max-connection-age DURATION]; SIGUSR1 toggles black-hole mode";

struct Options {
    listen: SocketAddr,
    registry: Registry,
    service: String,
    id: Option<String>,
    tags: Vec<String>,
    ttl: Option<Duration>,
    drain_grace: Duration,
    fail_after: Option<Duration>,
    max_connection_age: Option<Duration>,
}

fn options() -> Result<Options, String> {
    let mut args = Args::from_env();
    let listen = args.required("--listen")?;
    let options = Options {
        listen: listen
            .parse()
            .map_err(|_| format!("--listen: `{listen}` is not ADDR:PORT"))?,
        registry: args.required("--registry")?.parse()?,
        service: args.required("--service")?,
        id: args.optional("--id")?,
        tags: args.all("--tag"),
        ttl: optional_duration(&mut args, "--ttl")?,
        drain_grace: args.duration("--drain-grace", Duration::from_secs(2))?,
        fail_after: optional_duration(&mut args, "--fail-after")?,
        max_connection_age: optional_duration(&mut args, "--max-connection-age")?,
    };
    args.finish()?;
    Ok(options)
}

fn optional_duration(args: &mut Args, name: &str) -> Result<Option<Duration>, String> {
    args.optional(name)?
        .map(|v| common::parse_duration(&v).map_err(|e| format!("{name}: {e}")))
        .transpose()
}

#[tokio::main]
async fn main() -> ExitCode {
    common::init_tracing();
    let options = match options() {
        Ok(options) => options,
        Err(e) => common::usage_error(&e, USAGE),
    };
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
    let (id, registered) = options
        .registry
        .register(
            &options.service,
            addr,
            options.id.as_deref(),
            &options.tags,
            options.ttl,
            health,
        )
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
