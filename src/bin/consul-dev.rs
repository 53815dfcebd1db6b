//! `consul-dev`: the in-process Consul-compatible registry as a standalone process.
//!
//! ```text
//! consul-dev --http-addr 127.0.0.1:8500 [--node-name node1] [--datacenter dc1] [--acl-token T]
//! ```
//!
//! Prints `consul-dev listening on http://ADDR` once the API answers and exits 0 on
//! SIGTERM or SIGINT. The ACL token may also come from `CONSUL_DEV_ACL_TOKEN`, which
//! keeps it out of the process list.

use std::net::SocketAddr;
use std::process::ExitCode;

use tonic_discovery::testkit::ConsulDev;

const USAGE: &str =
    "usage: consul-dev --http-addr ADDR [--node-name NAME] [--datacenter DC] [--acl-token TOKEN]";

#[derive(Debug, Default)]
struct Args {
    http_addr: Option<SocketAddr>,
    node_name: Option<String>,
    datacenter: Option<String>,
    acl_token: Option<String>,
}

fn parse_args(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut args = Args::default();
    while let Some(flag) = it.next() {
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) => (n.to_owned(), Some(v.to_owned())),
            None => (flag.clone(), None),
        };
        if name == "-h" || name == "--help" {
            return Err(USAGE.to_owned());
        }
        let value = match inline.or_else(|| it.next()) {
            Some(v) => v,
            None => return Err(format!("missing value for {name}\n{USAGE}")),
        };
        match name.trim_start_matches('-') {
            "http-addr" => {
                let addr = value
                    .parse()
                    .map_err(|e| format!("invalid --http-addr {value:?}: {e}"))?;
                args.http_addr = Some(addr);
            }
            "node-name" => args.node_name = Some(value),
            "datacenter" => args.datacenter = Some(value),
            "acl-token" => args.acl_token = Some(value),
            _ => return Err(format!("unknown flag {name}\n{USAGE}")),
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("consul-dev: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("consul-dev: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> std::io::Result<()> {
    tonic_discovery::testkit::trace_init();
    let mut builder = ConsulDev::builder();
    if let Some(addr) = args.http_addr {
        builder = builder.http_addr(addr);
    }
    if let Some(name) = args.node_name {
        builder = builder.node_name(name);
    }
    if let Some(dc) = args.datacenter {
        builder = builder.datacenter(dc);
    }
    let token = args
        .acl_token
        .or_else(|| std::env::var("CONSUL_DEV_ACL_TOKEN").ok());
    let dev = builder.acl_token(token).start().await?;
    // The listener is bound and the accept loop spawned: connections are served.
    println!("consul-dev listening on {}", dev.url());
    wait_for_signal().await?;
    drop(dev);
    Ok(())
}

async fn wait_for_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r,
        _ = term.recv() => Ok(()),
    }
}
