//! Consul: discovery through blocking health queries, and self-registration with a
//! TTL heartbeat.
mod agent;
mod builder;
mod client;
mod discovery;
mod handle;
mod health;
#[cfg(feature = "health")]
mod health_adapter;
mod heartbeat;
mod payload;
mod register;
mod types;
mod watch;

pub use builder::ClientBuilder;
pub use client::Client;
pub use handle::RegistrationHandle;
pub use health::HealthSource;
pub use register::Registration;
