//! The in-process Consul-compatible registry.
