//! [`DiscoveryBuilder`]: the options of a Consul watch; the discovery itself is the
//! shared core's [`Discovery`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::client::Client;
use super::query::{Consistency, HttpTransport, QueryOptions};
use super::types::{AddressKind, HealthFilter};
use super::watch::{ConsulSource, WatchConfig};
use crate::backoff::Backoff;
use crate::source::Discovery;

/// Consul caps `wait` at 10 minutes.
const MAX_WAIT: Duration = Duration::from_secs(600);

/// Builds a [`Discovery`]. Created by [`Client::discovery`].
#[must_use]
pub struct DiscoveryBuilder {
    client: Client,
    query: QueryOptions,
    config: WatchConfig,
}

// === impl Client ===

impl Client {
    /// A builder for the discovery of the instances of `service` whose checks pass.
    pub fn discovery(&self, service: impl Into<String>) -> DiscoveryBuilder {
        DiscoveryBuilder {
            client: self.clone(),
            query: QueryOptions::new(service),
            config: WatchConfig {
                margin: self.inner.request_timeout,
                permits: self.inner.watch_permits.clone(),
                ..WatchConfig::default()
            },
        }
    }
}

// === impl DiscoveryBuilder ===

impl DiscoveryBuilder {
    /// Keeps only instances carrying `tag` (`?tag=`). Repeatable: all tags must match
    /// (Consul compares them case-insensitively). Default: no tag filter.
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.query.tags.push(tag.into());
        self
    }

    /// The datacenter (`?dc=`). Default: the agent's.
    pub fn dc(mut self, dc: impl Into<String>) -> Self {
        self.query.dc = Some(dc.into());
        self
    }

    /// The namespace (`?ns=`, Consul Enterprise). Default: the token's or `default`.
    pub fn namespace(mut self, ns: impl Into<String>) -> Self {
        self.query.namespace = Some(ns.into());
        self
    }

    /// The admin partition (`?partition=`, Consul Enterprise). Default: the token's.
    pub fn partition(mut self, partition: impl Into<String>) -> Self {
        self.query.partition = Some(partition.into());
        self
    }

    /// A filter expression on each entry (`?filter=`), e.g.
    /// `Service.Meta.version == "2"`. Default: none.
    pub fn filter(mut self, expression: impl Into<String>) -> Self {
        self.query.filter = Some(expression.into());
        self
    }

    /// Sorts by round-trip time from this node (`?near=`, `_agent` for the agent's).
    /// Disables Consul's streaming backend. Default: none.
    pub fn near(mut self, node: impl Into<String>) -> Self {
        self.query.near = Some(node.into());
        self
    }

    /// Keeps only nodes with this metadata pair (`?node-meta=k:v`). Repeatable: all
    /// must match. Default: none.
    pub fn node_meta(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.query.node_meta.push((key.into(), value.into()));
        self
    }

    /// The consistency mode. Default: [`Consistency::Default`].
    pub fn consistency(mut self, consistency: Consistency) -> Self {
        self.query.consistency = consistency;
        self
    }

    /// Reads through the agent's cache (`?cached`); ignored with
    /// [`Consistency::Consistent`], which Consul rejects it with. Default: false.
    pub fn cached(mut self, cached: bool) -> Self {
        self.query.cached = cached;
        self
    }

    /// How long one blocking read may wait for a change (`?wait=`), capped at
    /// Consul's 10 minutes. The HTTP timeout is `wait + wait/16` plus the client's
    /// request timeout. Default: 5 minutes, Consul's own default.
    pub fn wait(mut self, wait: Duration) -> Self {
        self.query.wait = wait.clamp(Duration::from_millis(1), MAX_WAIT);
        self
    }

    /// Backoff between failed reads. Default: 250 ms to 30 s, jitter 0.2, not the
    /// sources' [`DEFAULT_BACKOFF`](crate::source::DEFAULT_BACKOFF): every service
    /// of every client reads one agent, which answers errors mostly when it is
    /// overloaded or has lost its servers, so retries start later and spread wider;
    /// the last instances keep serving meanwhile, and the first read after the agent
    /// is back brings the whole set.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.config.backoff = backoff;
        self
    }

    /// The refill interval of the token bucket (burst 2) that paces re-queries whose
    /// index did not move, so a server answering at once cannot make us spin.
    /// Default: 1 s.
    pub fn requery_interval(mut self, interval: Duration) -> Self {
        self.config.requery_interval = interval;
        self
    }

    /// Which instances are discovered, by the worst status of their checks.
    /// Default: [`HealthFilter::Passing`] (`?passing`).
    pub fn health(mut self, filter: HealthFilter) -> Self {
        self.query.health = filter;
        self
    }

    /// Which address to dial. Default: [`AddressKind::Service`].
    pub fn address(mut self, kind: AddressKind) -> Self {
        self.query.address = kind;
        self
    }

    /// Builds the discovery, joining the client's live watch with the same options
    /// (the query's, the backoff and the re-query pacing) or starting one.
    ///
    /// The watch task is spawned on the current tokio runtime, or on first poll when
    /// built outside one.
    pub fn build(self) -> Discovery {
        let client = self.client.clone();
        let service = self.query.service.clone();
        let (query, config) = (self.query, self.config);
        let key = (query.clone(), config.backoff, config.requery_interval);
        Discovery::shared(&self.client.inner.watches, key, service, || ConsulSource {
            transport: HttpTransport { client },
            query: Arc::new(query),
            config,
        })
    }
}

impl fmt::Debug for DiscoveryBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("consul::DiscoveryBuilder")
            .field("client", &self.client)
            .field("query", &self.query)
            .field("config", &self.config)
            .finish()
    }
}

// `Discovery` itself is checked where it is defined (`source::discovery`).
const _: () = {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    fn assert_all() {
        assert_send_sync::<DiscoveryBuilder>();
        assert_send_sync::<Client>();
        assert_send_sync::<super::ClientBuilder>();
    }
    let _ = assert_all;
};

#[cfg(test)]
mod tests;
