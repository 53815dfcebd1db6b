//! State shared by the server, the request handlers and the background tasks.
//!
//! With the state the test controls keep: `faults` (the active fault rules) and
//! `request_log`.

pub(crate) mod faults;
pub(crate) mod request_log;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;

use crate::shared::faults::FaultSet;
use crate::shared::request_log::{RecordedRequest, RequestLog};
use crate::store::Store;
use crate::store::model::{CONSUL_SERVICE, Check, CheckKind, CheckStatus, Node, Service};

/// Fixed configuration of one registry.
#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) node_name: String,
    pub(crate) node_id: String,
    /// The Connect CA's cluster ID: the trust domain is `<cluster_id>.consul`.
    pub(crate) cluster_id: String,
    pub(crate) datacenter: String,
    pub(crate) acl_token: Option<String>,
    pub(crate) reap_interval: Duration,
    pub(crate) min_deregister_after: Duration,
    /// `enable_script_checks`: script checks registered over HTTP run.
    pub(crate) enable_script_checks: bool,
    /// `enable_local_script_checks`: only checks from configuration files may be
    /// scripts; HTTP registrations of script checks are refused.
    pub(crate) enable_local_script_checks: bool,
    /// How long a KV write takes to commit (Consul's raft apply).
    pub(crate) kv_commit_latency: Duration,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("node_name", &self.node_name)
            .field("datacenter", &self.datacenter)
            .field("acl", &self.acl_token.as_ref().map(|_| "<redacted>"))
            .field("reap_interval", &self.reap_interval)
            .field("min_deregister_after", &self.min_deregister_after)
            .finish_non_exhaustive()
    }
}

/// Everything the registry's tasks share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) cfg: Config,
    pub(crate) store: Mutex<Store>,
    /// Bumped on every write and on faults that wake blocking queries.
    pub(crate) changed: watch::Sender<u64>,
    /// Wakes the TTL timer task when a deadline changes.
    pub(crate) timers: Notify,
    pub(crate) faults: FaultSet,
    pub(crate) counts: Mutex<BTreeMap<String, u64>>,
    /// The last requests received, oldest first.
    pub(crate) requests: Mutex<RequestLog>,
    /// How many blocking queries are waiting for a change right now.
    pub(crate) blocked: AtomicUsize,
    /// Runner tasks of HTTP/gRPC/TCP checks, keyed by (node, check ID).
    pub(crate) runners: Mutex<HashMap<(String, String), AbortHandle>>,
    /// When the agent started (autopilot's `StableSince`).
    pub(crate) started: std::time::SystemTime,
    /// Cancelled by `/v1/agent/leave`: the current listener stops accepting and
    /// its connections close once their answers are written. Replaced on restart.
    left: Mutex<CancellationToken>,
}

// === impl Shared ===

impl Shared {
    pub(crate) fn new(cfg: Config) -> Self {
        Shared {
            cfg,
            store: Mutex::new(Store::default()),
            changed: watch::Sender::new(0),
            timers: Notify::new(),
            faults: FaultSet::default(),
            counts: Mutex::new(BTreeMap::new()),
            requests: Mutex::new(RequestLog::default()),
            blocked: AtomicUsize::new(0),
            runners: Mutex::new(HashMap::new()),
            started: std::time::SystemTime::now(),
            left: Mutex::new(CancellationToken::new()),
        }
    }

    /// A fresh leave token for a listener that starts serving.
    pub(crate) fn serving(&self) -> CancellationToken {
        let token = CancellationToken::new();
        *self.left.lock().unwrap_or_else(|p| p.into_inner()) = token.clone();
        token
    }

    /// The agent leaves: its listener shuts down gracefully.
    pub(crate) fn leave(&self) {
        self.left.lock().unwrap_or_else(|p| p.into_inner()).cancel();
    }

    /// The current leave token (ends streams such as `/v1/agent/monitor`).
    pub(crate) fn left(&self) -> CancellationToken {
        self.left.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Locks the store. A poisoned lock is taken over: the store has no invariant a
    /// panicking writer could have broken halfway that matters more than serving.
    pub(crate) fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs a write against the store, then wakes blocking queries and timers.
    pub(crate) fn write<T>(&self, f: impl FnOnce(&mut Store) -> T) -> T {
        let out = f(&mut self.store());
        self.wake();
        out
    }

    /// Wakes every blocking query (they re-check their index) and the timer task.
    pub(crate) fn wake(&self) {
        self.changed.send_modify(|g| *g = g.wrapping_add(1));
        self.timers.notify_one();
    }

    pub(crate) fn count(&self, path: &str) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        *counts.entry(path.to_owned()).or_default() += 1;
    }

    /// Appends a request to the log.
    pub(crate) fn record(&self, request: RecordedRequest) {
        self.log().push(request);
    }

    pub(crate) fn log(&self) -> MutexGuard<'_, RequestLog> {
        self.requests.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts a blocking query as waiting until the guard drops (the query
    /// answers, or its connection closes and the handler is dropped).
    pub(crate) fn waiting(&self) -> Waiting<'_> {
        self.blocked.fetch_add(1, Ordering::SeqCst);
        Waiting(&self.blocked)
    }

    pub(crate) fn counts(&self) -> BTreeMap<String, u64> {
        self.counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn set_runner(&self, key: (String, String), task: Option<AbortHandle>) {
        let mut runners = self.runners.lock().unwrap_or_else(|p| p.into_inner());
        let old = match task {
            Some(t) => runners.insert(key, t),
            None => runners.remove(&key),
        };
        if let Some(old) = old {
            old.abort();
        }
    }

    pub(crate) fn abort_runners(&self) {
        let mut runners = self.runners.lock().unwrap_or_else(|p| p.into_inner());
        for (_, task) in runners.drain() {
            task.abort();
        }
    }
}

/// A blocking query counted in [`Shared::blocked`]; from [`Shared::waiting`].
#[derive(Debug)]
pub(crate) struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The server's check of its node's gossip membership (catalog only, not the agent's).
pub(crate) const SERF_CHECK: &str = "serfHealth";

/// The dev agent's own node, its `serfHealth` check and the `consul` service.
pub(crate) fn seed(shared: &Shared, addr: SocketAddr) {
    let cfg = &shared.cfg;
    let ip = addr.ip().to_string();
    let node = Node {
        id: cfg.node_id.clone(),
        name: cfg.node_name.clone(),
        address: ip.clone(),
        datacenter: cfg.datacenter.clone(),
        tagged_addresses: [
            ("lan", &ip),
            ("lan_ipv4", &ip),
            ("wan", &ip),
            ("wan_ipv4", &ip),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.clone()))
        .collect(),
        meta: [("consul-network-segment".to_owned(), String::new())].into(),
        ..Node::default()
    };
    let consul = Service {
        node: cfg.node_name.clone(),
        id: CONSUL_SERVICE.to_owned(),
        name: CONSUL_SERVICE.to_owned(),
        port: 8300,
        weights: (1, 1),
        ..Service::default()
    };
    let serf = Check {
        node: cfg.node_name.clone(),
        id: "serfHealth".to_owned(),
        name: "Serf Health Status".to_owned(),
        status: CheckStatus::Passing,
        output: "Agent alive and reachable".to_owned(),
        kind: CheckKind::Manual,
        ..Check::default()
    };
    shared.write(|s| {
        s.upsert_node(node);
        s.upsert_service(consul);
        s.upsert_check(serf, false);
    });
}

/// A random UUID-shaped ID (node IDs, session IDs).
pub(crate) fn random_uuid() -> String {
    let b: [u8; 16] = rand::random();
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}
