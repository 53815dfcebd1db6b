//! Consul: discovery through blocking health queries, and self-registration with a
//! TTL heartbeat.
//!
//! # The client
//!
//! A [`Client`] talks to one agent over one connection pool; clone it freely. Build
//! it like Consul's own tools do, from `CONSUL_HTTP_ADDR`, `CONSUL_HTTP_TOKEN(_FILE)`,
//! `CONSUL_HTTP_SSL(_VERIFY)`, `CONSUL_CACERT`, `CONSUL_CLIENT_CERT`/`_KEY` and
//! `CONSUL_TLS_SERVER_NAME` with [`Client::from_env`], or explicitly with
//! [`Client::builder`]. [`ClientBuilder::connect`] checks that the agent answers
//! before it hands the client over; [`ClientBuilder::build`] and
//! [`Client::from_env`] do no I/O (each request is its own HTTP exchange, so a
//! client made while the agent is down works once it is up). HTTPS needs the
//! `tls-ring` feature. The ACL token travels
//! only in the `X-Consul-Token` header: never in a URL, a log line or a `Debug`.
//!
//! # Discovery
//!
//! [`Client::discovery`] builds a [`Discovery`]: a
//! `Stream<Item = Result<Change<InstanceKey, Instance>, Error>>`, hence a
//! [`tower::discover::Discover`], of the instances of one service whose checks all
//! pass.
//!
//! - **Watch.** Behind it runs a blocking query on `/v1/health/service/:name`
//!   following Consul's client rules: the first read has no index, an index that
//!   goes backwards is reset, index 0 is never sent as a wait, re-queries that did
//!   not move the index are rate limited (token bucket, burst 2), the HTTP timeout
//!   is `wait + wait/16` plus the client's request timeout, and errors back off with
//!   jitter and retry without an index. Discoveries of one client with equal options
//!   share one watch.
//! - **Key identity.** An instance is keyed by `(Node.Node, Service.ID)`
//!   ([`InstanceKey`](crate::InstanceKey)): two agents may register the same ID. Its
//!   address is `Service.Address`, else `Node.Address` (or a tagged address, see
//!   [`AddressKind`]); IPv6 hosts are unbracketed in [`Instance::host`](crate::Instance::host) and
//!   bracketed in [`Instance::authority`](crate::Instance::authority). A changed address, port, tag, metadata
//!   entry or weight yields a new `Insert` for the same key.
//! - **Only real differences.** Each snapshot is diffed against what was emitted;
//!   an answer without a change yields nothing. Inserts come before removes.
//! - **Outage.** A registry failure never yields an error item (tower's p2c would
//!   turn it into a `poll_ready` error and fail the channel) and never ends the
//!   stream: the last known set stays, the failure is logged at `WARN` with the
//!   retry delay, and [`Discovery::state`] reports it (as does a
//!   [`WatchObserver`], which stays readable after the discovery moved into a
//!   balancer). Before the first answer
//!   nothing is emitted: an unknown set is not an empty one. A service that loses
//!   every instance drains to empty with `Remove`s.
//! - **Drop.** The watch task ends when the last discovery using it drops.
//!
//! # With the balanced channel
//!
//! ```no_run
//! use tonic_discovery::{balance::BalancedChannel, consul};
//! # use tonic_discovery_testkit::pb::{EchoRequest, echo_client::EchoClient};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let consul = consul::Client::from_env()?;
//! // The passing instances of `echo` tagged `v2`, as a balanced channel.
//! let discovery = consul.discovery("echo").tag("v2").build();
//! let channel = BalancedChannel::builder("echo").build(discovery)?;
//! // Into any tonic-generated client (here the Echo service's).
//! let reply = EchoClient::new(channel).echo(EchoRequest::default()).await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Using it alone with tower's balancer
//!
//! Map each instance to a service (here a stand-in for a connection) and hand the
//! stream to [`tower::balance::p2c::Balance`] with a load metric:
//!
//! ```no_run
//! use futures_util::TryStreamExt;
//! use tonic_discovery::Instance;
//! use tower::balance::p2c::Balance;
//! use tower::discover::Change;
//! use tower::load::{CompleteOnResponse, PendingRequestsDiscover};
//!
//! # fn connect(instance: Instance) -> impl tower::Service<String, Response = String, Error = std::convert::Infallible, Future = std::future::Ready<Result<String, std::convert::Infallible>>> {
//! #     let _ = instance;
//! #     tower::service_fn(|req: String| std::future::ready(Ok(req)))
//! # }
//! # async fn run() -> Result<(), tonic_discovery::Error> {
//! let consul = tonic_discovery::consul::Client::from_env()?;
//! let discovery = consul.discovery("echo").tag("v2").build();
//! let services = discovery.map_ok(|change| match change {
//!     Change::Insert(key, instance) => Change::Insert(key, connect(instance)),
//!     Change::Remove(key) => Change::Remove(key),
//! });
//! let balance: Balance<_, String> =
//!     Balance::new(PendingRequestsDiscover::new(services, CompleteOnResponse::default()));
//! # let _ = balance;
//! # Ok(())
//! # }
//! ```
//!
//! With no instance, `Balance::poll_ready` pends until one appears: bound the wait
//! (the crate's balanced channel does).
mod agent;
mod builder;
mod client;
mod config;
mod decoder;
mod discovery;
mod env;
mod handle;
mod heartbeat;
mod payload;
mod query;
mod register;
mod tls;
mod types;
mod watch;

// Shared by every registry since 0.2; re-exported where it first lived.
pub use crate::register::HealthSource;
pub use crate::source::{Discovery, WatchObserver, WatchState};
pub use builder::ClientBuilder;
pub use client::Client;
pub use config::ServiceConfigBuilder;
#[doc(hidden)]
pub use decoder::{Decoded, HealthDecoder};
pub use discovery::DiscoveryBuilder;
pub use handle::{AgentRegistrar, KeepAlive, RegistrationHandle};
pub use query::Consistency;
pub use register::Registration;
#[doc(hidden)]
pub use types::decode_health;
pub use types::{AddressKind, HealthFilter};
