//! `consul-dev`: the in-process Consul-compatible registry as a standalone process.
//!
//! ```text
//! consul-dev [--http-addr 127.0.0.1:8500] [--node-name consul-dev] [--datacenter dc1]
//!            [--acl-token T] [--enable-script-checks] [--enable-local-script-checks]
//! ```
//!
//! The defaults are those of `consul agent -dev` (API on `127.0.0.1:8500`), except the
//! node name, which is `consul-dev` rather than the host's name.
//!
//! Prints `consul-dev listening on http://ADDR` once the API answers and exits 0 on
//! SIGTERM or SIGINT. The ACL token may also come from `CONSUL_DEV_ACL_TOKEN`, which
//! keeps it out of the process list.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{CommandFactory, Parser};
use consul_dev::ConsulDev;

/// The in-process Consul-compatible registry as a standalone process. Prints
/// `consul-dev listening on http://ADDR` once the API answers; exits 0 on SIGTERM or
/// SIGINT.
#[derive(Parser)]
#[command(name = "consul-dev", version)]
struct Args {
    /// Address of the HTTP API, 127.0.0.1:8500 as `consul agent -dev`; port 0 picks a
    /// free one
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8500")]
    http_addr: SocketAddr,
    /// The agent's node name.
    #[arg(long, value_name = "NAME", default_value = "consul-dev")]
    node_name: String,
    /// The datacenter.
    #[arg(long, value_name = "DC", default_value = "dc1")]
    datacenter: String,
    /// A token every request must carry; CONSUL_DEV_ACL_TOKEN, read when this is not
    /// given, keeps it out of the process list [default: none, ACLs off]
    #[arg(long, value_name = "TOKEN")]
    acl_token: Option<String>,
    /// Run script checks (`Args`) registered over the HTTP API, as Consul's
    /// -enable-script-checks: anyone who reaches the API runs commands as this process
    #[arg(long)]
    enable_script_checks: bool,
    /// Consul's -enable-local-script-checks: script checks only from configuration
    /// files, which the dev agent has none of, so HTTP registrations are refused
    #[arg(long)]
    enable_local_script_checks: bool,
}

/// Consul spells its flags with one dash (`-enable-script-checks`); both spellings
/// are taken.
fn normalized_args() -> Vec<std::ffi::OsString> {
    std::env::args_os()
        .enumerate()
        .map(|(i, a)| match a.to_str() {
            Some(s) if i > 0 && s.len() > 2 && s.starts_with('-') && !s.starts_with("--") => {
                let rest = &s[1..];
                if rest.starts_with(|c: char| c.is_ascii_alphabetic()) {
                    format!("-{s}").into()
                } else {
                    a
                }
            }
            _ => a,
        })
        .collect()
}

/// Parses the command line; exits 2 on a bad one (0 for `--help` and `--version`).
fn parse_args() -> Args {
    Args::try_parse_from(normalized_args()).unwrap_or_else(|e| {
        // Keeps the message of the hand-written parser this replaced, "unknown flag
        // --NAME", which tests/binary.rs matches.
        if e.kind() == ErrorKind::UnknownArgument
            && let Some(ContextValue::String(flag)) = e.get(ContextKind::InvalidArg)
        {
            let mut message = format!("unknown flag {flag}");
            if let Some(ContextValue::String(similar)) = e.get(ContextKind::SuggestedArg) {
                message.push_str(&format!("\n\n  tip: a similar flag exists: '{similar}'"));
            }
            Args::command()
                .error(ErrorKind::UnknownArgument, message)
                .exit()
        }
        e.exit()
    })
}

fn main() -> ExitCode {
    let args = parse_args();
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
    trace_init();
    let builder = ConsulDev::builder()
        .http_addr(args.http_addr)
        .node_name(args.node_name)
        .datacenter(args.datacenter)
        .enable_script_checks(args.enable_script_checks)
        .enable_local_script_checks(args.enable_local_script_checks);
    let token = args
        .acl_token
        .or_else(|| std::env::var("CONSUL_DEV_ACL_TOKEN").ok());
    let mut dev = builder.acl_token(token).start().await?;
    // The handlers are in place before the line that says the agent is up, so a
    // signal sent as soon as it is read ends the process as it should.
    let mut signals = Signals::install()?;
    // The listener is bound and the accept loop spawned: connections are served.
    println!("consul-dev listening on {}", dev.url());
    // Like `consul agent`, the process ends after `/v1/agent/leave`.
    tokio::select! {
        () = signals.recv() => {}
        () = dev.left() => {}
    }
    drop(dev);
    Ok(())
}

/// Logs to stderr, filtered by `RUST_LOG` (default `warn`).
fn trace_init() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// SIGTERM and SIGINT, listened for from the moment they are installed.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Waits for either.
    async fn recv(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn command_line() {
        super::Args::command().debug_assert();
    }

    #[test]
    fn defaults_to_the_dev_agent_address_and_says_so() {
        use clap::Parser;
        let args = super::Args::try_parse_from(["consul-dev"]).expect("no flags parse");
        assert_eq!(args.http_addr, "127.0.0.1:8500".parse().unwrap());
        assert_eq!(args.node_name, "consul-dev");
        let help = super::Args::command().render_long_help().to_string();
        assert!(help.contains("[default: 127.0.0.1:8500]"), "{help}");
        assert!(help.contains("consul agent -dev"), "{help}");
    }
}
