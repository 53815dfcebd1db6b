//! Nodes, services and checks as the store keeps them.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::time::Instant;

/// The service the dev agent's server registers for itself (catalog only).
pub(super) const CONSUL_SERVICE: &str = "consul";

/// A catalog node.
#[derive(Debug, Clone, Default)]
pub(super) struct Node {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) address: String,
    pub(super) datacenter: String,
    pub(super) tagged_addresses: BTreeMap<String, String>,
    pub(super) meta: BTreeMap<String, String>,
    pub(super) create_index: u64,
    pub(super) modify_index: u64,
}

/// A service instance on a node.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Service {
    pub(super) node: String,
    pub(super) kind: String,
    pub(super) id: String,
    pub(super) name: String,
    pub(super) tags: Vec<String>,
    pub(super) address: String,
    pub(super) tagged_addresses: Map<String, Value>,
    pub(super) meta: BTreeMap<String, String>,
    pub(super) port: u64,
    /// `SocketPath`: a Unix socket instead of a port.
    pub(super) socket_path: String,
    pub(super) weights: (i64, i64),
    pub(super) enable_tag_override: bool,
    pub(super) proxy: Option<Value>,
    pub(super) connect: Option<Value>,
    /// `Locality` (Consul 1.17+): `{Region, Zone}`, kept as registered.
    pub(super) locality: Option<Value>,
    /// The parent's ID when the agent registered this one from its
    /// `Connect.SidecarService` (`LocallyRegisteredAsSidecar`, never rendered).
    pub(super) sidecar_of: Option<String>,
    pub(super) create_index: u64,
    pub(super) modify_index: u64,
}

/// A check's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) enum CheckStatus {
    Passing,
    Warning,
    #[default]
    Critical,
}

/// What runs a check.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) enum CheckKind {
    /// Updated from outside; turns critical when the TTL runs out.
    Ttl(Duration),
    /// `GET`/`Method` on a URL: 2xx passing, 429 warning, else critical.
    Http {
        url: String,
        method: String,
        header: BTreeMap<String, Vec<String>>,
        body: String,
        tls_skip_verify: bool,
    },
    /// `grpc.health.v1.Health/Check` on `host:port[/service]`.
    Grpc { target: String, use_tls: bool },
    /// A TCP connect to `host:port`.
    Tcp(String),
    /// `ScriptArgs`: run as a process when the agent enables script checks.
    Script(Vec<String>),
    /// `AliasService`/`AliasNode`: mirrors the health of a service (or node)
    /// (`checks::alias_loop`).
    Alias { service: String, node: String },
    /// UDP, H2PING, OS-service and Docker checks: accepted, never run here (they
    /// stay at their initial status). The string is Consul's `Type`.
    Unrun(&'static str),
    /// Checks with no runner here (alias, docker, …): status set from outside.
    #[default]
    Manual,
}

/// A health check, of a service or of its node (empty `service_id`).
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Check {
    pub(super) node: String,
    pub(super) id: String,
    pub(super) name: String,
    pub(super) status: CheckStatus,
    pub(super) notes: String,
    pub(super) output: String,
    pub(super) service_id: String,
    pub(super) service_name: String,
    pub(super) kind: CheckKind,
    pub(super) interval: Option<Duration>,
    pub(super) timeout: Option<Duration>,
    pub(super) deregister_after: Option<Duration>,
    /// When a TTL check turns critical unless updated.
    pub(super) ttl_deadline: Option<Instant>,
    /// Since when the check is critical (for the reaper).
    pub(super) critical_since: Option<Instant>,
    pub(super) create_index: u64,
    pub(super) modify_index: u64,
}

// === impl CheckStatus ===

impl CheckStatus {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            CheckStatus::Passing => "passing",
            CheckStatus::Warning => "warning",
            CheckStatus::Critical => "critical",
        }
    }

    pub(super) fn parse(s: &str) -> Option<Self> {
        match s {
            "passing" => Some(CheckStatus::Passing),
            "warning" => Some(CheckStatus::Warning),
            "critical" => Some(CheckStatus::Critical),
            _ => None,
        }
    }
}
