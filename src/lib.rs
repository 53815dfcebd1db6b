//! Service discovery, load balancing and self-registration for [tonic] gRPC services,
//! backed by Consul (or etcd, or Nacos).
//!
//! A client builds one [`balance::BalancedChannel`] for a service name and hands it to
//! any tonic-generated client; requests then go only to instances whose health checks
//! pass, and the set follows the registry within milliseconds. A server registers
//! itself with [`consul::Registration`]: a valid name, a unique ID, and a TTL check kept
//! passing by a background task until the server drains.
//!
//! # Example
//!
//! A server registers with the local Consul agent, serves, and drains on Ctrl-C; a
//! client balances over the passing instances. `EchoServer`, `EchoClient` and
//! `EchoRequest` stand for your tonic-generated code, `MyEcho` for your service.
//!
//! ```no_run
//! use std::net::SocketAddr;
//! use std::time::Duration;
//! use tonic::transport::Server;
//! use tonic_discovery::{balance::BalancedChannel, consul};
//! # use tonic_discovery_testkit::EchoService as MyEcho;
//! # use tonic_discovery_testkit::pb::{EchoRequest, echo_client::EchoClient, echo_server::EchoServer};
//! type BoxError = Box<dyn std::error::Error>;
//!
//! /// Registers, serves, and on Ctrl-C leaves discovery, gives clients 5 s to notice,
//! /// deregisters and stops (finishing the requests in flight).
//! async fn server(consul: consul::Client, addr: SocketAddr) -> Result<(), BoxError> {
//!     // The handle keeps the TTL check passing. Keep it: dropping it deregisters.
//!     let registration = consul
//!         .register(consul::Registration::new("echo", addr).ttl(Duration::from_secs(10)))
//!         .await?;
//!     let ctrl_c = async {
//!         let _ = tokio::signal::ctrl_c().await;
//!     };
//!     Server::builder()
//!         .add_service(EchoServer::new(MyEcho::new("echo-1")))
//!         .serve_with_shutdown(addr, registration.drain_on(ctrl_c, Duration::from_secs(5)))
//!         .await?;
//!     Ok(())
//! }
//!
//! /// One channel over the passing instances of `echo`, in a generated client.
//! async fn client(consul: consul::Client) -> Result<(), BoxError> {
//!     let discovery = consul.discovery("echo").build();
//!     let channel = BalancedChannel::builder("echo").build(discovery)?;
//!     let mut client = EchoClient::new(channel);
//!     let reply = client.echo(EchoRequest { message: "hi".into() }).await?;
//!     println!("answered by {}", reply.into_inner().instance_id);
//!     Ok(())
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), BoxError> {
//!     // CONSUL_HTTP_ADDR (default http://127.0.0.1:8500), CONSUL_HTTP_TOKEN, …
//!     let consul = consul::Client::from_env()?;
//!     let addr = "127.0.0.1:50051".parse()?;
//!     tokio::try_join!(server(consul.clone(), addr), client(consul))?;
//!     Ok(())
//! }
//! ```
//!
//! # Features
//!
//! | feature | default | what |
//! |---|---|---|
//! | `consul` | yes | [`consul`]: discovery through blocking health queries, registration with a TTL heartbeat |
//! | `etcd` | no | [`etcd`]: discovery through a prefix watch, registration with a kept-alive lease (needs `protoc` to build) |
//! | `nacos` | no | [`nacos`]: discovery through server pushes, registration of ephemeral instances (the official `nacos-sdk`) |
//! | `dns` | no | `source::Dns`: discovery through A/AAAA or SRV records (`hickory-resolver`), re-resolved at the TTL |
//! | `health` | no | client-side health checking in the balancer (`BalancedChannelBuilder::health_check`, gRFC A17); `register::HealthSource::tonic_health`: a registration follows a `tonic_health` reporter |
//! | `metrics` | no | metrics through the [`metrics`](https://docs.rs/metrics) facade: calls, failures by gRPC code, latency, endpoints by state, watches, registrations (names in the README) |
//! | `tls-ring` | no | TLS towards Consul and towards gRPC endpoints (rustls with ring) |
//!
//! # Internals
//!
//! A registry watch (Consul blocking queries) publishes full snapshots of a service; one
//! watch serves every discovery of the same service and options. Each discovery diffs
//! snapshots against what it already emitted and yields `tower::discover::Change`s:
//! `Insert` for a new or changed instance, `Remove` for one that is gone, nothing for an
//! unchanged snapshot, and never an error: during a registry outage the last known set
//! stays. The balanced channel's worker task owns the discovery and a power-of-two-choices
//! balancer over one HTTP/2 connection per instance. It applies changes while idle, treats
//! an instance as ready only while its connection is up and its calls do not fail (failure
//! accrual ejects instances that answer but fail), resends calls an instance never
//! processed to another, and fails a request with `Unavailable` when no instance becomes
//! ready in time.
//!
//! [tonic]: https://docs.rs/tonic
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(
    no_crate_inject,
    attr(deny(warnings, rust_2018_idioms), allow(dead_code, unused_variables))
))]

mod backoff;
mod change;
mod error;
mod instance;
mod telemetry;
#[cfg_attr(not(feature = "consul"), allow(dead_code))]
mod validate;

pub mod balance;
#[cfg(feature = "consul")]
#[cfg_attr(docsrs, doc(cfg(feature = "consul")))]
pub mod consul;
#[cfg(feature = "etcd")]
#[cfg_attr(docsrs, doc(cfg(feature = "etcd")))]
pub mod etcd;
#[cfg(feature = "nacos")]
#[cfg_attr(docsrs, doc(cfg(feature = "nacos")))]
pub mod nacos;
pub mod register;
pub mod source;
pub mod target;

pub use backoff::Backoff;
pub use change::SnapshotDiff;
pub use error::{BoxError, Error, Result};
pub use instance::{Instance, InstanceKey, Locality};
pub use target::Target;
