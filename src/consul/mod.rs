//! Consul: discovery through blocking health queries, and self-registration with a
//! TTL heartbeat.
mod agent;
mod builder;
mod client;
mod discovery;
mod env;
mod query;
mod register;
mod shared;
mod tls;
mod types;
mod watch;

pub use builder::ClientBuilder;
pub use client::Client;
pub use discovery::{Discovery, DiscoveryBuilder};
pub use query::Consistency;
pub use types::AddressKind;
pub use watch::WatchState;
