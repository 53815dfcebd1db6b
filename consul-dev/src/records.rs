//! The records the store keeps for the endpoint families above it: KV entries,
//! sessions, config entries and the autopilot configuration. Plain data, so the
//! store depends on none of the endpoints; their handlers and renderings live with
//! the endpoints (`kv`, `session`, `config`, `operator_ops`).

use std::time::Duration;

use serde_json::{Map, Value};
use tokio::time::Instant;

/// One KV entry.
#[derive(Debug, Clone, Default)]
pub(super) struct KvEntry {
    pub(super) value: Vec<u8>,
    pub(super) flags: u64,
    pub(super) lock_index: u64,
    pub(super) session: Option<String>,
    pub(super) create_index: u64,
    pub(super) modify_index: u64,
}

/// One session.
#[derive(Debug, Clone)]
pub(super) struct Session {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) node: String,
    pub(super) lock_delay: Duration,
    pub(super) behavior: String,
    pub(super) ttl: String,
    pub(super) node_checks: Vec<String>,
    /// When the session is invalidated unless renewed (sessions with a TTL).
    pub(super) expires: Option<Instant>,
    pub(super) create_index: u64,
    pub(super) modify_index: u64,
}

/// One stored config entry.
#[derive(Debug, Clone)]
pub(super) struct ConfigEntry {
    pub(super) body: Map<String, Value>,
    pub(super) create_index: u64,
    pub(super) modify_index: u64,
}

/// The stored autopilot configuration (`structs.AutopilotConfig`).
#[derive(Debug, Clone)]
pub(super) struct Autopilot {
    pub(super) cleanup_dead_servers: bool,
    pub(super) last_contact_threshold: Duration,
    pub(super) max_trailing_logs: u64,
    pub(super) min_quorum: u64,
    pub(super) server_stabilization_time: Duration,
    pub(super) redundancy_zone_tag: String,
    pub(super) disable_upgrade_migration: bool,
    pub(super) upgrade_version_tag: String,
    pub(super) create_index: u64,
    pub(super) modify_index: u64,
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
