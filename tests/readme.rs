//! The README's usage block is compiled here: `usage` holds it verbatim between the
//! markers, and `readme_usage_block_is_compiled_here` fails when the two differ.

use std::net::SocketAddr;

// The README's `GreeterClient` stands for any tonic-generated client; the Echo test
// service's is one, with the same bounds on its transport.
use tonic_discovery_testkit::pb::echo_client::EchoClient as GreeterClient;

const BEGIN: &str = "// README usage: begin\n";
const END: &str = "// README usage: end\n";

/// Never called: compiling it is the check.
#[allow(dead_code, unused_mut, unused_variables)]
async fn usage(listen_addr: SocketAddr) -> Result<(), Box<dyn std::error::Error>> {
    // README usage: begin
    use std::time::Duration;
    use tonic_discovery::{balance::BalancedChannel, consul};

    // Reads CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN(_FILE), CONSUL_CACERT, … like the official clients.
    let consul = consul::Client::from_env()?;

    // Server side: register with a TTL check kept passing by a background task. Keep the
    // handle while serving: dropping it deregisters.
    let registration = consul
        .register(consul::Registration::new("greeter", listen_addr).ttl(Duration::from_secs(10)))
        .await?;

    // Client side: a channel over the passing instances of "greeter", into the
    // tonic-generated client.
    let discovery = consul.discovery("greeter").build();
    let channel = BalancedChannel::builder("greeter").build(discovery)?;
    let mut client = GreeterClient::new(channel);

    // Shutdown: fail the check, wait for clients to drop the instance, deregister.
    registration.drain(Duration::from_secs(2)).await?;
    // README usage: end
    Ok(())
}

/// The first ```` ```rust ```` block after `## Usage` in the README.
fn readme_block() -> String {
    let readme = include_str!("../README.md");
    let usage = &readme[readme.find("\n## Usage\n").expect("a Usage section")..];
    let start = usage.find("\n```rust\n").expect("a rust block in Usage") + "\n```rust\n".len();
    let len = usage[start..].find("```\n").expect("the block ends");
    usage[start..start + len].to_owned()
}

/// The lines between the markers in this file, without the function's indentation.
fn compiled_block() -> String {
    let this = include_str!("readme.rs");
    let start = this.find(BEGIN).expect("begin marker") + BEGIN.len();
    let len = this[start..].find(END).expect("end marker");
    this[start..start + len]
        .trim_end_matches(' ')
        .lines()
        .map(|line| line.strip_prefix("    ").unwrap_or(line).trim_end())
        .map(|line| format!("{line}\n"))
        .collect()
}

#[test]
fn readme_usage_block_is_compiled_here() {
    let (readme, compiled) = (readme_block(), compiled_block());
    assert!(compiled.contains("BalancedChannel::builder"), "{compiled}");
    assert_eq!(
        readme, compiled,
        "README.md's usage block and tests/readme.rs's `usage` differ: change both"
    );
}
