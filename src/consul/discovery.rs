//! [`Discovery`]: a consul watch turned into the `Change` stream tower balancers read.

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use futures_core::Stream;
use tokio::sync::watch;
use tokio_util::sync::ReusableBoxFuture;
use tower::discover::Change;
use tracing::{error, info};

use super::client::Client;
use super::query::{Consistency, HttpTransport, QueryOptions};
use super::shared::WatchHandle;
use super::types::AddressKind;
use super::watch::{WatchConfig, WatchState};
use crate::backoff::Backoff;
use crate::change::SnapshotDiff;
use crate::error::Error;
use crate::instance::{Instance, InstanceKey};

/// Consul caps `wait` at 10 minutes.
const MAX_WAIT: Duration = Duration::from_secs(600);

/// Builds a [`Discovery`]. Created by [`Client::discovery`].
#[must_use]
pub struct DiscoveryBuilder {
    client: Client,
    query: QueryOptions,
    config: WatchConfig,
}

/// The instances of one Consul service, as a stream of changes: a
/// [`tower::discover::Discover`] through tower's blanket impl.
///
/// It never yields an error and never ends: registry failures keep the last known
/// set (see [`state`](Self::state)). See the [module docs](super) for key identity
/// and outage behaviour.
///
/// # Drop
///
/// Dropping the last discovery that uses a watch ends the watch's task and closes
/// its pending blocking query.
pub struct Discovery {
    service: Arc<str>,
    handle: Arc<WatchHandle>,
    rx: watch::Receiver<WatchState>,
    changed: ReusableBoxFuture<'static, Changed>,
    applied: SnapshotDiff,
    seen_version: u64,
    pending: VecDeque<Change<InstanceKey, Instance>>,
    ended: bool,
}

type Changed = (
    Result<(), watch::error::RecvError>,
    watch::Receiver<WatchState>,
);

// === impl Client ===

impl Client {
    /// A builder for the discovery of the instances of `service` whose checks pass.
    pub fn discovery(&self, service: impl Into<String>) -> DiscoveryBuilder {
        DiscoveryBuilder {
            client: self.clone(),
            query: QueryOptions::new(service),
            config: WatchConfig {
                margin: self.inner.request_timeout,
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

    /// Backoff between failed reads. Default: 250 ms to 30 s, jitter 0.2.
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

    /// Whether only instances whose checks all pass are discovered (`?passing`).
    /// Default: true.
    pub fn passing_only(mut self, passing_only: bool) -> Self {
        self.query.passing_only = passing_only;
        self
    }

    /// Which address to dial. Default: [`AddressKind::Service`].
    pub fn address(mut self, kind: AddressKind) -> Self {
        self.query.address = kind;
        self
    }

    /// Builds the discovery, joining the client's live watch with the same options
    /// or starting one. Backoff and re-query pacing come from the first discovery
    /// that started the watch.
    ///
    /// The watch task is spawned on the current tokio runtime, or on first poll when
    /// built outside one.
    pub fn build(self) -> Discovery {
        let client = self.client.clone();
        let handle = self
            .client
            .inner
            .watches
            .subscribe(self.query.clone(), self.config, || HttpTransport { client });
        Discovery::new(&self.query.service, handle)
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

// === impl Discovery ===

impl Discovery {
    pub(crate) fn new(service: &str, handle: Arc<WatchHandle>) -> Self {
        let mut rx = handle.receiver();
        rx.mark_changed();
        Discovery {
            service: service.into(),
            changed: ReusableBoxFuture::new(changed(rx.clone())),
            handle,
            rx,
            applied: SnapshotDiff::default(),
            seen_version: 0,
            pending: VecDeque::new(),
            ended: false,
        }
    }

    /// The watch's state: index, last known instances, last error, failures.
    pub fn state(&self) -> WatchState {
        self.rx.borrow().clone()
    }

    pub(crate) fn receiver(&self) -> watch::Receiver<WatchState> {
        self.rx.clone()
    }

    /// The service this discovery watches.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// Queues the changes from the latest state, if its instance list is new.
    fn absorb(&mut self, state: &WatchState) {
        if !state.is_synced() || state.version() == self.seen_version {
            return;
        }
        self.seen_version = state.version();
        for change in self.applied.apply_slice(state.instances()) {
            match &change {
                Change::Insert(k, i) => {
                    info!(service = %self.service, key = %k, addr = %i.authority(), "instance added")
                }
                Change::Remove(k) => info!(service = %self.service, key = %k, "instance removed"),
            }
            self.pending.push_back(change);
        }
    }
}

async fn changed(mut rx: watch::Receiver<WatchState>) -> Changed {
    let result = rx.changed().await;
    (result, rx)
}

impl Stream for Discovery {
    type Item = Result<Change<InstanceKey, Instance>, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        this.handle.ensure_started();
        loop {
            if let Some(change) = this.pending.pop_front() {
                return Poll::Ready(Some(Ok(change)));
            }
            if this.ended {
                // Never end while held: a balancer treats the end of discovery as fatal.
                return Poll::Pending;
            }
            let (result, mut rx) = ready!(this.changed.poll(cx));
            if result.is_err() {
                error!(service = %this.service, "Consul watch task ended; keeping the last known instances");
                this.ended = true;
                continue;
            }
            let state = rx.borrow_and_update().clone();
            this.changed.set(changed(rx));
            this.absorb(&state);
        }
    }
}

impl fmt::Debug for Discovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("consul::Discovery")
            .field("service", &self.service)
            .field("applied", &self.applied.len())
            .field("pending", &self.pending.len())
            .finish()
    }
}

const _: () = {
    fn assert_discover<D: tower::discover::Discover + Unpin + Send + 'static>() {}
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    fn assert_all() {
        assert_discover::<Discovery>();
        assert_send_sync::<Discovery>();
        assert_send_sync::<DiscoveryBuilder>();
        assert_send_sync::<WatchState>();
        assert_send_sync::<Client>();
        assert_send_sync::<super::ClientBuilder>();
    }
    let _ = assert_all;
};

#[cfg(test)]
mod tests;
