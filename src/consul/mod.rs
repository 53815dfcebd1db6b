//! Consul: discovery through blocking health queries, and self-registration with a
//! TTL heartbeat.
mod builder;
mod client;

pub use builder::ClientBuilder;
pub use client::Client;
