//! etcd: discovery through a prefix watch, and self-registration with a lease kept
//! alive by a background task.
//!
//! etcd has no service model, so both halves live in the client:
//!
//! - **Registration** ([`Client::register`]) grants a lease (TTL default 10 s), puts the
//!   instance key with it and keeps the lease alive from a task, every TTL/3. When a
//!   keep-alive answer says the lease is gone (TTL 0), no answer comes within the TTL, or
//!   the stream or connection breaks, the task grants a new lease and puts the key again,
//!   with backoff, forever. With a [`HealthSource`](crate::register::HealthSource)
//!   ([`Registration::health`]) the key is deleted while the instance does not serve and
//!   put back on the current lease once it does.
//! - **Discovery** ([`Client::discovery`]) reads the prefix, then watches it from the
//!   read's revision + 1. A broken watch is rebuilt from the last applied revision + 1,
//!   so no event is lost; a compacted one (the revision is gone) reads the prefix again
//!   and yields the difference. Events at or below the last applied revision are
//!   dropped (etcd 3.4 can repeat some).
//! - **Service config** ([`Client::service_config`]) follows the gRPC service config
//!   JSON kept in one key (default `service-config/<service>`, beside the instances'
//!   prefix) for a balanced channel: a read, then a watch of the key from the read's
//!   revision + 1, on the same steps as discovery's watch; broken or compacted, it
//!   reads the key again and watches again.
//!
//! ```no_run
//! use std::time::Duration;
//! use tonic_discovery::balance::BalancedChannel;
//! use tonic_discovery::etcd::{Client, Registration};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> tonic_discovery::Result<()> {
//! let etcd = Client::connect("etcd://127.0.0.1:2379,127.0.0.1:22379").await?;
//!
//! // A server registers itself; the lease is kept alive until `handle` goes.
//! let registration =
//!     Registration::new("echo", "10.0.0.7:50051".parse().unwrap()).ttl(Duration::from_secs(10));
//! let handle = etcd.register(registration).await?;
//!
//! // A client follows the instances (a `Stream` of `tower::discover::Change`s)
//! // through a balanced channel, for any tonic-generated client.
//! let discovery = etcd.discovery("echo").build();
//! let channel = BalancedChannel::builder("echo").build(discovery)?;
//!
//! handle.drain(Duration::from_secs(5)).await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Key layouts
//!
//! [`KeyLayout::Endpoints`] (the default) is etcd's own `naming/endpoints` format that
//! grpc-go's etcd resolver reads: key `<service>/<host:port>`, value
//! `{"Op":0,"Addr":"host:port","Metadata":…}`, so Rust and Go services see each other.
//! [`KeyLayout::Kratos`] is the go-kratos layout: key `/microservices/<name>/<id>`, value
//! a JSON instance with `grpc://host:port` endpoints. The identity of a discovered
//! instance is its etcd key (two keys may carry the same address).
//!
//! # Outages
//!
//! The discovery never yields an error and never ends: while etcd is unreachable the
//! last known set stays, and the watch is rebuilt with backoff. The client sets
//! `require_leader` so a member cut off from its cluster fails the watch instead of
//! freezing it, and HTTP/2 keep-alive pings so a silent network cut is noticed.
//! A service config watch yields one `Err` per failed attempt instead (the channel
//! keeps its config meanwhile), with the same backoff.
//!
//! # Drop
//!
//! Dropping a [`Discovery`] ends its watch task. Dropping a [`RegistrationHandle`] ends
//! the keep-alive task and then revokes the lease best-effort on a spawned task (the
//! key goes with it; if etcd cannot be reached, the key goes when the lease expires,
//! one TTL later). [`RegistrationHandle::deregister`] and
//! [`RegistrationHandle::drain`] do the same and report errors. A service config watch
//! has no task: dropping it closes its etcd watch.
mod client;
mod config;
mod discovery;
mod follow;
mod handle;
mod keys;
mod lease;
mod register;
mod state;
mod watch;

pub use crate::source::Discovery;
pub use client::{Client, ClientBuilder};
pub use config::ServiceConfigBuilder;
pub use discovery::DiscoveryBuilder;
pub use handle::{KeepAlive, LeaseRegistrar, RegistrationHandle};
pub use keys::KeyLayout;
pub use register::Registration;

const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    const fn assert_send<T: Send + Unpin>() {}
    assert_send_sync::<Client>();
    assert_send_sync::<Registration>();
    assert_send_sync::<ServiceConfigBuilder>();
    assert_send_sync::<RegistrationHandle>();
    assert_send::<Discovery>();
};
