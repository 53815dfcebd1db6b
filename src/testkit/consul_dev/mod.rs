//! The in-process Consul-compatible registry.
//!
//! [`ConsulDev`] serves Consul's HTTP API (HTTP/1.1) on loopback with a dev agent's
//! semantics: one server node that is also the agent, its `serfHealth` check and
//! `consul` service, agent services and checks (TTL, HTTP, gRPC, TCP), health and
//! catalog queries with blocking, KV, an optional required ACL token, and fault
//! injection for tests (in process through [`ConsulDev::faults`], or over HTTP
//! under `/_consul_dev/`).
//!
//! # Drop
//! Dropping a `ConsulDev` stops its server, closes its connections (pending
//! blocking queries end with them) and ends every check runner and timer.

mod admin;
mod agent;
mod agent_health;
mod catalog;
mod checks;
mod checks_api;
mod decode;
mod faults;
mod filter;
mod health;
mod http;
mod kv;
mod model;
mod probe;
mod query;
mod register;
mod render;
mod router;
mod schema;
mod server;
mod session;
mod shared;
mod store;

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use faults::{Fault, FaultId, FaultRule, Faults};

use model::CheckStatus;
use shared::{Config, Shared};

/// An in-process Consul-compatible registry listening on loopback.
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// use tonic_discovery::testkit::ConsulDev;
/// let consul = ConsulDev::start().await?;
/// println!("Consul API at {}", consul.url());
/// # Ok(()) }
/// ```
pub struct ConsulDev {
    shared: Arc<Shared>,
    addr: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

/// Configures a [`ConsulDev`]; from [`ConsulDev::builder`].
#[must_use]
pub struct ConsulDevBuilder {
    http_addr: SocketAddr,
    cfg: Config,
}

// === impl ConsulDev ===

impl ConsulDev {
    /// Starts a registry with the defaults of [`ConsulDevBuilder`] on `127.0.0.1:0`.
    ///
    /// # Errors
    /// When the listening socket cannot be bound.
    pub async fn start() -> io::Result<ConsulDev> {
        ConsulDev::builder().start().await
    }

    /// A builder to configure the registry before starting it.
    pub fn builder() -> ConsulDevBuilder {
        ConsulDevBuilder {
            http_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            cfg: Config {
                node_name: "consul-dev".to_owned(),
                node_id: shared::random_uuid(),
                datacenter: "dc1".to_owned(),
                acl_token: None,
                reap_interval: Duration::from_secs(30),
                min_deregister_after: Duration::from_secs(60),
            },
        }
    }

    /// The address the HTTP API listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL of the HTTP API, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The fault-injection handle.
    pub fn faults(&self) -> Faults {
        Faults {
            shared: self.shared.clone(),
        }
    }

    /// Sets the status (`passing`, `warning` or `critical`) and output of one of the
    /// agent's checks, as a check runner would. Returns false for an unknown check
    /// or status.
    pub fn set_check_status(&self, check_id: &str, status: &str, output: &str) -> bool {
        let Some(status) = CheckStatus::parse(status) else {
            return false;
        };
        admin::set_check_status(&self.shared, check_id, status, output)
    }

    /// Forgets every service and check registered with the agent, as an agent
    /// restarted without state. The index keeps counting (see
    /// [`Faults::reset_index`] to move it back).
    pub fn forget_all(&self) {
        admin::forget_all(&self.shared);
    }

    /// How many requests were made to `path` (exact path, no query string), faulty
    /// answers included.
    pub fn request_count(&self, path: &str) -> u64 {
        self.shared.counts().get(path).copied().unwrap_or(0)
    }

    /// The request counts of every path served so far.
    pub fn request_counts(&self) -> BTreeMap<String, u64> {
        self.shared.counts()
    }

    /// The current raft-like index.
    pub fn index(&self) -> u64 {
        self.shared.store().index
    }
}

impl Drop for ConsulDev {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        self.shared.abort_runners();
    }
}

impl fmt::Debug for ConsulDev {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsulDev")
            .field("addr", &self.addr)
            .field("node_name", &self.shared.cfg.node_name)
            .field("datacenter", &self.shared.cfg.datacenter)
            .field(
                "acl",
                &self.shared.cfg.acl_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

// === impl ConsulDevBuilder ===

impl ConsulDevBuilder {
    /// The address to listen on. Default: `127.0.0.1:0` (a free port).
    pub fn http_addr(mut self, addr: SocketAddr) -> Self {
        self.http_addr = addr;
        self
    }

    /// The agent's node name. Default: `consul-dev`.
    pub fn node_name(mut self, name: impl Into<String>) -> Self {
        self.cfg.node_name = name.into();
        self
    }

    /// The datacenter. Default: `dc1`.
    pub fn datacenter(mut self, dc: impl Into<String>) -> Self {
        self.cfg.datacenter = dc.into();
        self
    }

    /// A token every request must carry (`X-Consul-Token`, `Authorization: Bearer`
    /// or `?token=`); without it the answer is `403 Permission denied`, with a
    /// wrong one `403 ACL not found`. Default: none (ACLs off).
    pub fn acl_token(mut self, token: Option<String>) -> Self {
        self.cfg.acl_token = token.filter(|t| !t.is_empty());
        self
    }

    /// How often critical services are reaped. Default: 30 s, as Consul.
    pub fn reap_interval(mut self, every: Duration) -> Self {
        self.cfg.reap_interval = every.max(Duration::from_millis(1));
        self
    }

    /// The floor `DeregisterCriticalServiceAfter` values are raised to.
    /// Default: 1 min, as Consul.
    pub fn min_deregister_critical_after(mut self, min: Duration) -> Self {
        self.cfg.min_deregister_after = min;
        self
    }

    /// Binds the listener and starts serving.
    ///
    /// # Errors
    /// When the listening socket cannot be bound.
    pub async fn start(self) -> io::Result<ConsulDev> {
        let listener = TcpListener::bind(self.http_addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(self.cfg));
        shared::seed(&shared, addr);
        let tasks = vec![
            tokio::spawn(server::serve(listener, shared.clone())),
            tokio::spawn(checks::ttl_loop(shared.clone())),
            tokio::spawn(checks::reap_loop(shared.clone())),
        ];
        Ok(ConsulDev {
            shared,
            addr,
            tasks,
        })
    }
}

impl fmt::Debug for ConsulDevBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsulDevBuilder")
            .field("http_addr", &self.http_addr)
            .field("cfg", &self.cfg)
            .finish()
    }
}
