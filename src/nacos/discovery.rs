//! Discovery of one service: the shared subscription's lists, filtered and diffed.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::client::Client;
use super::select::select;
use super::subscription::{Options, Snapshot, Subscription};
use crate::backoff::Backoff;
use crate::source::meta_filter::MetaFilter;
use crate::source::{Discovery, Sink, Source};

/// Builds a [`Discovery`]. Created by [`Client::discovery`].
#[must_use]
pub struct DiscoveryBuilder {
    client: Client,
    service: String,
    group: String,
    clusters: Vec<String>,
    keep_last_on_empty: bool,
    options: Options,
    filter: MetaFilter,
}

/// One discovery's view of a shared subscription: the instances that can serve, from
/// the chosen clusters, as a [`Source`] of the shared core.
struct NacosSource {
    /// Keeps the subscription alive while the watch runs.
    _subscription: Arc<Subscription>,
    rx: watch::Receiver<Snapshot>,
    service: String,
    clusters: Vec<String>,
}

// === impl DiscoveryBuilder ===

impl DiscoveryBuilder {
    pub(crate) fn new(client: Client, service: String) -> Self {
        DiscoveryBuilder {
            group: client.group().to_owned(),
            client,
            service,
            clusters: Vec::new(),
            keep_last_on_empty: false,
            options: Options {
                resync: Duration::from_secs(30),
                backoff: crate::source::DEFAULT_BACKOFF,
            },
            filter: MetaFilter::default(),
        }
    }

    /// The group. Default: the client's.
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group = group.into();
        self
    }

    /// Only instances of this cluster (may be given several times: any of them).
    /// Default: every cluster.
    pub fn cluster(mut self, cluster: impl Into<String>) -> Self {
        self.clusters.push(cluster.into());
        self
    }

    /// Keeps the last instances when the server lists none that can serve, as the
    /// SDK's "push empty protection" does: the core's
    /// [`Discovery::keep_last_on_empty`], which every registry has. Default: off.
    pub fn keep_last_on_empty(mut self, keep: bool) -> Self {
        self.keep_last_on_empty = keep;
        self
    }

    /// How often the list is read again without a push from the server, repairing a
    /// lost one. Default: 30 s. A subscription is shared by every discovery of the same
    /// group and service on one client; the first one's setting applies.
    pub fn resync_interval(mut self, interval: Duration) -> Self {
        self.options.resync = interval.max(Duration::from_millis(10));
        self
    }

    /// Delay between queries while the server fails. Default:
    /// [`DEFAULT_BACKOFF`](crate::source::DEFAULT_BACKOFF) (100 ms to 5 s). Shared as
    /// [`resync_interval`](Self::resync_interval) is.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.options.backoff = backoff;
        self
    }

    /// Keeps only the instances whose metadata has `key` set to `value` (the
    /// instance's own metadata, plus `nacos.cluster`). Several calls must all match.
    pub fn meta(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.filter = self.filter.with_entry(key.into(), value.into());
        self
    }

    /// Keeps only the instances whose metadata `keep` accepts. Several filters must
    /// all accept. The subscription is shared with other discoveries of the service,
    /// filtered or not; each discovery filters what it yields.
    pub fn meta_filter(
        mut self,
        keep: impl Fn(&BTreeMap<String, String>) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.filter = self.filter.with(keep);
        self
    }

    /// Starts following the service, on the current tokio runtime.
    ///
    /// Only healthy, enabled instances with a positive weight are yielded (what
    /// Nacos's own clients select), from the chosen clusters if any. The key is
    /// Nacos's instance id (`ip#port#cluster#group@@service`); the metadata carries
    /// the instance's, plus `nacos.cluster`.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn build(self) -> Discovery {
        let mut clusters = self.clusters;
        clusters.sort();
        clusters.dedup();
        let key = (self.group.clone(), self.service.clone(), clusters.clone());
        let client = self.client.clone();
        let service = self.service.clone();
        let filter = self.filter.clone();
        let discovery = Discovery::shared(client.watches(), key, service, || {
            let subscription = self.client.subscriptions().get(
                &self.client,
                &self.group,
                &self.service,
                &self.options,
            );
            let mut rx = subscription.receiver();
            rx.mark_changed();
            NacosSource {
                _subscription: subscription,
                rx,
                service: self.service,
                clusters,
            }
        });
        filter
            .apply(discovery)
            .keep_last_on_empty(self.keep_last_on_empty)
    }
}

impl fmt::Debug for DiscoveryBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("nacos::DiscoveryBuilder")
            .field("service", &self.service)
            .field("group", &self.group)
            .field("clusters", &self.clusters)
            .field("keep_last_on_empty", &self.keep_last_on_empty)
            .field("filter", &self.filter)
            .finish()
    }
}

// === impl NacosSource ===

impl Source for NacosSource {
    fn registry(&self) -> &'static str {
        "nacos"
    }

    async fn run(mut self, sink: Sink) {
        loop {
            if self.rx.changed().await.is_err() {
                // The subscription ended; its last list stays.
                sink.closed().await;
                return;
            }
            let published = self.rx.borrow_and_update().clone();
            if published.failures > 0 {
                sink.failed(published.error.as_deref().unwrap_or("nacos query failed"));
                continue;
            }
            let Some(records) = published.records else {
                continue;
            };
            sink.snapshot(select(&self.service, &records, &self.clusters));
        }
    }
}
