//! The records the store keeps for the endpoint families above it: KV entries,
//! sessions, config entries and the autopilot configuration. Plain data, so the
//! store depends on none of the endpoints; their handlers and renderings live with
//! the endpoints (`kv`, `session`, `config`, `operator::ops`).

use std::time::Duration;

use serde_json::{Map, Value};
use tokio::time::Instant;

/// One KV entry.
#[derive(Debug, Clone, Default)]
pub(crate) struct KvEntry {
    pub(crate) value: Vec<u8>,
    pub(crate) flags: u64,
    pub(crate) lock_index: u64,
    pub(crate) session: Option<String>,
    pub(crate) create_index: u64,
    pub(crate) modify_index: u64,
}

/// One session.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) node: String,
    pub(crate) lock_delay: Duration,
    pub(crate) behavior: String,
    pub(crate) ttl: String,
    pub(crate) node_checks: Vec<String>,
    /// When the session is invalidated unless renewed (sessions with a TTL).
    pub(crate) expires: Option<Instant>,
    pub(crate) create_index: u64,
    pub(crate) modify_index: u64,
}

/// One stored config entry.
#[derive(Debug, Clone)]
pub(crate) struct ConfigEntry {
    pub(crate) body: Map<String, Value>,
    pub(crate) create_index: u64,
    pub(crate) modify_index: u64,
}

/// The stored autopilot configuration (`structs.AutopilotConfig`).
#[derive(Debug, Clone)]
pub(crate) struct Autopilot {
    pub(crate) cleanup_dead_servers: bool,
    pub(crate) last_contact_threshold: Duration,
    pub(crate) max_trailing_logs: u64,
    pub(crate) min_quorum: u64,
    pub(crate) server_stabilization_time: Duration,
    pub(crate) redundancy_zone_tag: String,
    pub(crate) disable_upgrade_migration: bool,
    pub(crate) upgrade_version_tag: String,
    pub(crate) create_index: u64,
    pub(crate) modify_index: u64,
}

impl Default for Autopilot {
    /// Consul's defaults, written at index 1 when the leader starts.
    fn default() -> Self {
        Autopilot {
            cleanup_dead_servers: true,
            last_contact_threshold: Duration::from_millis(200),
            max_trailing_logs: 250,
            min_quorum: 0,
            server_stabilization_time: Duration::from_secs(10),
            redundancy_zone_tag: String::new(),
            disable_upgrade_migration: false,
            upgrade_version_tag: String::new(),
            create_index: 1,
            modify_index: 1,
        }
    }
}
