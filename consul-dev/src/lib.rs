//! A Consul-compatible dev agent, in process or as the `consul-dev` binary: tests of
//! Consul clients run against it without a Consul binary.
//!
//! [`ConsulDev`] serves Consul's HTTP API on loopback with the semantics of `consul agent
//! -dev` (one server node that is also the agent, its own datacenter only, ACLs off
//! unless a token is required): status codes, error texts, headers, JSON field names and
//! zero values as Consul 1.17–1.20 answers, blocking queries with Consul's index rules,
//! check runners, and test controls a real agent lacks (fault injection, a request log,
//! snapshots, restarts). The crate's README has the endpoint table.
//!
//! | Feature | Default | Enables |
//! | --- | --- | --- |
//! | `grpc` | yes | running GRPC checks (tonic's `grpc.health.v1` client) |
//! | `cli` | yes | the `consul-dev` binary |
//! | `tls-ring` | no | HTTPS for the API ([`ConsulDevBuilder::tls`]) and `https://` HTTP checks |
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(
    no_crate_inject,
    attr(deny(warnings, rust_2018_idioms), allow(dead_code, unused_variables))
))]

mod admin;
mod agent;
mod builder;
mod catalog;
mod checks;
mod config;
mod health;
mod http;
mod kv;
mod misc;
mod operator;
mod prepared;
mod query;
mod restart;
mod server;
mod session;
mod shared;
mod snapshot;
mod store;

#[cfg(test)]
mod proptests;

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::task::JoinHandle;

pub use admin::Faults;
pub use builder::ConsulDevBuilder;
pub use shared::faults::{Fault, FaultId, FaultRule};
pub use shared::request_log::RecordedRequest;
pub use snapshot::Snapshot;

use shared::Shared;
use store::model::CheckStatus;

/// An in-process Consul-compatible registry listening on loopback.
///
/// [`ConsulDev`] serves Consul's HTTP API (HTTP/1.1) on loopback with a dev agent's
/// semantics: one server node that is also the agent, with its `serfHealth` check
/// and the `consul` service in the catalog. It follows Consul's status codes, error
/// texts, JSON field names and shapes (`[]` never `null`), headers and defaults, so
/// a client that works against it works against a real agent.
///
/// # Endpoints
///
/// Agent (services with their sidecars, checks, health, maintenance, self, members,
/// metrics, leave, force-leave, monitor), catalog (gateway services included),
/// health (service, connect, ingress, checks, node, state), status, KV, sessions, txn,
/// events, coordinates, prepared queries, operator (raft, autopilot, keyring, usage),
/// config entries, discovery chains of plain services, and the answers of ACL and
/// Connect CA endpoints while those are off. The crate's
/// README has the table of what is implemented, partial or left out, with the reason
/// for each gap.
///
/// Every query endpoint takes `dc` (another datacenter → 500 `No path to
/// datacenter`), `stale`/`consistent`/`leader`/`max_stale`/`cached` (with Consul's 400
/// conflicts), `index`/`wait` (Go durations, 10 min cap, 5 min default, wait/16
/// jitter) and `pretty`, and answers with `X-Consul-Index` (never 0),
/// `X-Consul-KnownLeader`, `X-Consul-LastContact`, `X-Consul-Effective-Consistency`
/// and `X-Consul-Default-ACL-Policy`. Blocking health/catalog queries on a service
/// use its own index (the last-extinction index when it has no instances), so they
/// wake only when the result can have changed.
///
/// # Test controls
///
/// In process: [`ConsulDev::faults`], [`ConsulDev::set_check_status`],
/// [`ConsulDev::forget_all`], [`ConsulDev::snapshot`] and [`ConsulDev::restore`],
/// [`ConsulDev::stop`] and [`ConsulDev::restart`] (the agent dies and comes back
/// on the same port), and what clients sent: [`ConsulDev::requests`],
/// [`ConsulDev::request_count`], [`ConsulDev::request_uris`],
/// [`ConsulDev::blocked_queries`]. None of them changes what the registry answers
/// until used. Over HTTP, under
/// `/_consul_dev/` (a path Consul does not use), for the `consul-dev` binary:
///
/// | Request | Effect |
/// | --- | --- |
/// | `PUT /_consul_dev/faults` `{"Fault": "no-leader"\|"too-many-connections"\|"delay"\|"malformed-json"\|"not-json"\|"wrong-content-type"\|"drop-connection"\|"zero-index"\|"answer", "PathPrefix": "/v1/health/", "Times": 2, "Delay": "200ms", "Status": 404, "Body": "…"}` | adds a fault rule (`Delay` for `delay`, `Status` and `Body` for `answer`), answers `{"ID": n}` |
/// | `DELETE /_consul_dev/faults[/ID]` | removes all rules (or one) |
/// | `PUT /_consul_dev/index?reset=N` | sets the index to N, as a restart from an older snapshot |
/// | `PUT /_consul_dev/wakeup` | wakes blocking queries with unchanged data |
/// | `PUT /_consul_dev/check/ID?status=S&output=O` | sets a check's status |
/// | `PUT /_consul_dev/forget` | forgets the agent's services and checks |
/// | `GET /_consul_dev/requests` | request counts per path |
///
/// # TLS
///
/// With the `tls-ring` feature, [`ConsulDevBuilder::tls`] serves HTTPS with a rustls
/// server configuration (client certificates required when its verifier says so);
/// [`ConsulDev::url`] then starts with `https://`.
///
/// # Drop
/// Dropping a `ConsulDev` stops its server, closes its connections (pending
/// blocking queries end with them) and ends every check runner and timer.
///
/// # Example
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// use consul_dev::ConsulDev;
/// let consul = ConsulDev::start().await?;
/// println!("Consul API at {}", consul.url());
/// # Ok(()) }
/// ```
pub struct ConsulDev {
    shared: Arc<Shared>,
    addr: SocketAddr,
    https: bool,
    tls: server::Tls,
    /// The accept loop; `None` while stopped.
    listening: Option<server::Listening>,
    /// The TTL timer and the reaper.
    tasks: Vec<JoinHandle<()>>,
}

const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<ConsulDev>();
    assert_send_sync::<ConsulDevBuilder>();
    assert_send_sync::<Faults>();
    assert_send_sync::<FaultRule>();
    assert_send_sync::<RecordedRequest>();
    assert_send_sync::<Snapshot>();
};

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
        ConsulDevBuilder::new()
    }

    /// The address the HTTP API listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL of the HTTP API, `http://127.0.0.1:PORT` (`https://` when
    /// serving TLS).
    pub fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
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

    /// The request targets (path and query string, as sent) of the last 4096
    /// requests, oldest first: to check what clients put in URLs.
    pub fn request_uris(&self) -> Vec<String> {
        self.shared.log().uris()
    }

    /// The last 4096 requests (method, target, headers and body), oldest first,
    /// faulty answers included: to check what clients put on the wire.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.log().to_vec()
    }

    /// How many blocking queries are waiting for a change right now (parked
    /// past their first look at the state). A test that sees its client's query
    /// counted here knows that a [`ConsulDev::restore`] or
    /// [`Faults::reset_index`] from then on ends that wait.
    pub fn blocked_queries(&self) -> usize {
        self.shared
            .blocked
            .load(std::sync::atomic::Ordering::SeqCst)
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
        if let Some(listening) = &self.listening {
            listening.abort();
        }
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
            .field("https", &self.https)
            .field("serving", &self.listening.is_some())
            .field("node_name", &self.shared.cfg.node_name)
            .field("datacenter", &self.shared.cfg.datacenter)
            .field(
                "acl",
                &self.shared.cfg.acl_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}
