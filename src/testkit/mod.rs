//! Testing support, behind the `testkit` feature: the Echo gRPC service of
//! `proto/echo.proto` and loopback servers for it (a tonic one that can fail calls, freeze
//! and age out connections, a raw HTTP/2 one that refuses streams and sends GOAWAYs, and one that polices PINGs
//! as grpc-go does),
//! launchers of real etcd and Nacos (rnacos) servers, and tracing set-up for tests.
//!
//! These are for tests and examples (ours and yours), never for production traffic. The
//! Consul-compatible dev agent these tests run against is its own crate, `consul-dev`.

mod echo;
mod echo_conn;
mod echo_server;
mod etcd;
mod etcd_cluster;
mod h2_fault;
mod nacos;
mod policing;
mod process;

pub use echo::{EchoService, HoldGuard};
pub use echo_server::{TestEchoServer, TestEchoServerBuilder};
pub use etcd::EtcdServer;
pub use etcd_cluster::EtcdCluster;
pub use h2_fault::H2FaultServer;
pub use nacos::NacosServer;
pub use policing::{PingPolicy, PolicingServer};

pub mod pb {
    //! Code generated from `proto/echo.proto` (package `echo.v1`).
    #![allow(
        missing_docs,
        unreachable_pub,
        clippy::all,
        rust_2018_idioms,
        missing_debug_implementations
    )]
    include!("pb/echo.v1.rs");
}

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
