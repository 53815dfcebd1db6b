//! Nodes, services and checks as the store keeps them.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::time::Instant;

/// The service the dev agent's server registers for itself (catalog only).
pub(crate) const CONSUL_SERVICE: &str = "consul";

/// A catalog node.
#[derive(Debug, Clone, Default)]
pub(crate) struct Node {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) address: String,
    pub(crate) datacenter: String,
    pub(crate) tagged_addresses: BTreeMap<String, String>,
    pub(crate) meta: BTreeMap<String, String>,
    pub(crate) create_index: u64,
    pub(crate) modify_index: u64,
}

/// A service instance on a node.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Service {
    pub(crate) node: String,
    pub(crate) kind: String,
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) tags: Vec<String>,
    pub(crate) address: String,
    pub(crate) tagged_addresses: Map<String, Value>,
    pub(crate) meta: BTreeMap<String, String>,
    pub(crate) port: u64,
    /// `SocketPath`: a Unix socket instead of a port.
    pub(crate) socket_path: String,
    pub(crate) weights: (i64, i64),
    pub(crate) enable_tag_override: bool,
    pub(crate) proxy: Option<Value>,
    pub(crate) connect: Option<Value>,
    /// `Locality` (Consul 1.17+): `{Region, Zone}`, kept as registered.
    pub(crate) locality: Option<Value>,
    /// The parent's ID when the agent registered this one from its
    /// `Connect.SidecarService` (`LocallyRegisteredAsSidecar`, never rendered).
    pub(crate) sidecar_of: Option<String>,
    pub(crate) create_index: u64,
    pub(crate) modify_index: u64,
}

/// A check's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum CheckStatus {
    Passing,
    Warning,
    #[default]
    Critical,
}

/// What runs a check.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) enum CheckKind {
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
pub(crate) struct Check {
    pub(crate) node: String,
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) status: CheckStatus,
    pub(crate) notes: String,
    pub(crate) output: String,
    pub(crate) service_id: String,
    pub(crate) service_name: String,
    pub(crate) kind: CheckKind,
    pub(crate) interval: Option<Duration>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) deregister_after: Option<Duration>,
    /// When a TTL check turns critical unless updated.
    pub(crate) ttl_deadline: Option<Instant>,
    /// Since when the check is critical (for the reaper).
    pub(crate) critical_since: Option<Instant>,
    pub(crate) create_index: u64,
    pub(crate) modify_index: u64,
}

// === impl CheckStatus ===

impl CheckStatus {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            CheckStatus::Passing => "passing",
            CheckStatus::Warning => "warning",
            CheckStatus::Critical => "critical",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "passing" => Some(CheckStatus::Passing),
            "warning" => Some(CheckStatus::Warning),
            "critical" => Some(CheckStatus::Critical),
            _ => None,
        }
    }
}
