//! An Echo gRPC server that registers itself with Consul and keeps its TTL check
//! passing; SIGTERM or SIGINT drains it (check critical, wait, deregister) and it
//! exits 0.
//!
//! ```text
//! cargo run --release --example echo_server -- --listen 127.0.0.1:0 \
//!     --registry consul://127.0.0.1:8500 --service echo [--id ID] [--tag T]... \
//!     [--ttl 2s] [--drain-grace 2s]
//! ```
//!
//! `--registry none` serves without registering. The ACL token, if any, comes from
//! `CONSUL_HTTP_TOKEN` only. Prints `serving ID on ADDR` once it accepts requests.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic_discovery::consul::{self, HealthSource, Registration};
use tonic_discovery::testkit::EchoService;
use tonic_discovery::testkit::pb::echo_server::EchoServer;

/// The gRPC service name whose `grpc.health.v1` status the TTL check follows.
const ECHO: &str = <EchoServer<EchoService> as tonic::server::NamedService>::NAME;

const USAGE: &str = "usage: echo_server --listen ADDR --registry consul://HOST:PORT|none \
--service NAME [--id ID] [--tag T]... [--ttl 2s] [--drain-grace 2s]";

#[derive(Debug)]
struct Args {
    listen: SocketAddr,
    registry: Option<String>,
    service: String,
    id: Option<String>,
    tags: Vec<String>,
    ttl: Option<Duration>,
    drain_grace: Duration,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // reqwest is built without a default crypto provider when `tls-ring` is on.
    #[cfg(feature = "tls-ring")]
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("echo_server: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("echo_server: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let addr = listener.local_addr()?;
    let (reporter, health_service) = tonic_health::server::health_reporter();
    reporter.set_serving::<EchoServer<EchoService>>().await;

    let (id, shutdown): (String, std::pin::Pin<Box<dyn Future<Output = ()> + Send>>) =
        match &args.registry {
            None => {
                let id = args
                    .id
                    .clone()
                    .unwrap_or_else(|| format!("{}-{}", args.service, addr.port()));
                (id, Box::pin(signal()))
            }
            Some(url) => {
                let client = consul_client(url)?;
                let health = HealthSource::tonic_health(&reporter, ECHO).await?;
                let handle = client.register(registration(&args, addr, health)).await?;
                let id = handle.id().to_owned();
                (id, Box::pin(handle.drain_on(signal(), args.drain_grace)))
            }
        };

    let echo = EchoServer::new(EchoService::new(id.clone()));
    println!("serving {id} on {addr}");
    Server::builder()
        .add_service(health_service)
        .add_service(echo)
        .serve_with_incoming_shutdown(TcpIncoming::from(listener), shutdown)
        .await?;
    eprintln!("echo_server: {id} stopped");
    Ok(())
}

fn registration(args: &Args, addr: SocketAddr, health: HealthSource) -> Registration {
    let mut reg = Registration::new(args.service.clone(), addr).health(health);
    if let Some(id) = &args.id {
        reg = reg.id(id.clone());
    }
    for tag in &args.tags {
        reg = reg.tag(tag.clone());
    }
    if let Some(ttl) = args.ttl {
        reg = reg.ttl(ttl);
    }
    reg
}

/// `consul://host:port` (or `http://`, `https://`); the token only from the environment.
fn consul_client(url: &str) -> Result<consul::Client, Box<dyn std::error::Error>> {
    let address = match url.strip_prefix("consul://") {
        Some(rest) => format!("http://{rest}"),
        None => url.to_owned(),
    };
    let mut builder = consul::Client::builder(address);
    if let Ok(token) = std::env::var("CONSUL_HTTP_TOKEN") {
        builder = builder.token(token);
    }
    Ok(builder.build()?)
}

/// Resolves on the first SIGTERM or SIGINT.
async fn signal() {
    #[cfg(unix)]
    {
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
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    eprintln!("echo_server: signal received, draining");
}

fn parse_args(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut args = Args {
        listen: "127.0.0.1:0".parse().map_err(|_| "default address")?,
        registry: None,
        service: "echo".to_owned(),
        id: None,
        tags: Vec::new(),
        ttl: None,
        drain_grace: Duration::from_secs(2),
    };
    let mut registry_given = false;
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--listen" => {
                let v = value()?;
                args.listen = v
                    .parse()
                    .map_err(|_| format!("--listen: `{v}` is not ADDR:PORT"))?;
            }
            "--registry" => {
                let v = value()?;
                registry_given = true;
                args.registry = (v != "none").then_some(v);
            }
            "--service" => args.service = value()?,
            "--id" => args.id = Some(value()?),
            "--tag" => args.tags.push(value()?),
            "--ttl" => args.ttl = Some(parse_duration(&value()?)?),
            "--drain-grace" => args.drain_grace = parse_duration(&value()?)?,
            "-h" | "--help" => return Err("help".to_owned()),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    if !registry_given {
        return Err("--registry is required (consul://HOST:PORT or none)".to_owned());
    }
    if let Some(url) = &args.registry
        && !["consul://", "http://", "https://"]
            .iter()
            .any(|p| url.starts_with(p))
    {
        return Err(format!(
            "--registry: `{url}` is not consul://HOST:PORT or none"
        ));
    }
    Ok(args)
}

/// `2s`, `500ms`, `1m`, `100us`, `1.5s`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("`{text}` is not a duration like 2s or 500ms");
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(bad)?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "ms" => number / 1e3,
        "us" | "µs" => number / 1e6,
        "s" => number,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        _ => return Err(bad()),
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| bad())
}
