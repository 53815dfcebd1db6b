//! The test kit of tonic-discovery (a workspace crate, not published): the Echo gRPC service of
//! `proto/echo.proto` and loopback servers for it (a tonic one that can fail calls, freeze
//! and age out connections, a raw HTTP/2 one that refuses streams and sends GOAWAYs, and one that polices PINGs
//! as grpc-go does),
//! launchers of real etcd and Nacos (rnacos) servers, and tracing set-up for tests.
//!
//! These are for the tests, examples and benchmarks of tonic-discovery, never for
//! production traffic. The Consul-compatible dev agent they run against is its own
//! crate, `consul-dev`.

mod echo;
mod echo_conn;
mod echo_server;
mod error;
mod etcd;
mod etcd_cluster;
mod h2_fault;
mod nacos;
mod policing;
mod process;

/// HTTP/2 framing at the byte level: the library's own file (`src/balance/frames.rs`),
/// compiled here for the PING-policing server rather than copied.
#[allow(dead_code, unreachable_pub)]
#[path = "../../src/balance/frames.rs"]
mod frames;

pub use echo::{EchoService, HoldGuard};
pub use echo_server::{TestEchoServer, TestEchoServerBuilder};
pub use error::{Error, Result};
pub use etcd::EtcdServer;
pub use etcd_cluster::EtcdCluster;
pub use h2_fault::H2FaultServer;
pub use nacos::NacosServer;
pub use policing::{PingPolicy, PolicingServer};

pub mod pb;

/// Installs a `tracing` subscriber that writes through the test harness's capture,
/// filtered by `RUST_LOG` (default `warn`). Safe to call from every test.
pub fn trace_init() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}
