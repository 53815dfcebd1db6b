//! Consul: discovery through blocking health queries, and self-registration with a
//! TTL heartbeat.
mod agent;
mod builder;
mod client;
mod discovery;
mod register;
mod types;
mod watch;

pub use builder::ClientBuilder;
pub use client::Client;
pub use types::AddressKind;
