//! An Echo gRPC server that registers itself (Consul: a TTL check kept passing and
//! following `grpc.health.v1`; etcd: a kept-alive lease; Nacos: an ephemeral instance);
//! SIGTERM or SIGINT drains it (out of the registry, wait, stop) and it exits 0.
//!
//! ```text
//! cargo run --release --example echo_server -- --listen 127.0.0.1:0 \
//!     --registry consul://127.0.0.1:8500 --service echo [--id ID] [--tag T]... \
//!     [--ttl 2s] [--drain-grace 2s]
//! ```
//!
//! `--registry none` serves without registering; `--registry etcd://HOST:PORT[,…]` registers
//! in etcd (build with `--features etcd`), `--registry nacos://HOST:PORT[?namespace=NS&group=G]`
//! in Nacos (build with `--features nacos`; an ephemeral instance held by the connection). Consul's ACL token and TLS settings come from
//! the `CONSUL_*` environment variables. Prints `serving ID on ADDR` once it accepts
//! requests.

#[path = "common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic_discovery::consul::HealthSource;
use tonic_discovery::testkit::EchoService;
use tonic_discovery::testkit::pb::echo_server::EchoServer;

use common::{Args, Registry};

/// The gRPC service name whose `grpc.health.v1` status the TTL check follows.
const ECHO: &str = <EchoServer<EchoService> as tonic::server::NamedService>::NAME;

const USAGE: &str = "echo_server --listen ADDR --registry consul://HOST:PORT|etcd://HOST:PORT|nacos://HOST:PORT|none \
--service NAME [--id ID] [--tag T]... [--ttl 2s] [--drain-grace 2s]";

struct Options {
    listen: SocketAddr,
    registry: Registry,
    service: String,
    id: Option<String>,
    tags: Vec<String>,
    ttl: Option<Duration>,
    drain_grace: Duration,
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
        ttl: args
            .optional("--ttl")?
            .map(|v| common::parse_duration(&v))
            .transpose()?,
        drain_grace: args.duration("--drain-grace", Duration::from_secs(2))?,
    };
    args.finish()?;
    Ok(options)
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
    let echo = EchoServer::new(EchoService::new(id.clone()));
    println!("serving {id} on {addr}");
    Server::builder()
        .add_service(health_service)
        .add_service(echo)
        .serve_with_incoming_shutdown(TcpIncoming::from(listener), shutdown)
        .await
        .map_err(|e| e.to_string())?;
    eprintln!("echo_server: {id} stopped");
    Ok(())
}

/// Resolves on the first SIGTERM or SIGINT.
async fn signal() {
    use tokio::signal::unix::{SignalKind, signal};
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
