//! Discovery of one service: the shared subscription's list, filtered per discovery.

use std::collections::BTreeMap;
use std::fmt;

use super::client::Client;
use super::select::in_clusters;
use super::subscription::Subscription;
use crate::source::Discovery;
use crate::source::meta_filter::MetaFilter;

/// Builds a [`Discovery`]. Created by [`Client::discovery`].
#[must_use]
pub struct DiscoveryBuilder {
    client: Client,
    service: String,
    group: String,
    clusters: Vec<String>,
    keep_last_on_empty: bool,
    filter: MetaFilter,
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
            filter: MetaFilter::default(),
        }
    }

    /// The group. Default: the client's.
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group = group.into();
        self
    }

    /// Only instances of this cluster (may be given several times: any of them).
    /// Default: every cluster. Per discovery, as [`meta`](Self::meta) is: the
    /// subscription is shared with the discoveries of other clusters.
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

    /// Starts following the service, joining the client's live subscription of the
    /// same group and service (whatever its clusters and filters) or starting one,
    /// followed as the client says
    /// ([`ClientBuilder::resync_interval`](super::ClientBuilder::resync_interval),
    /// [`watch_backoff`](super::ClientBuilder::watch_backoff)).
    ///
    /// Only healthy, enabled instances with a positive weight are yielded (what
    /// Nacos's own clients select), from the chosen clusters if any. The key is
    /// Nacos's instance id (`ip#port#cluster#group@@service`); the metadata carries
    /// the instance's, plus `nacos.cluster`. The shared
    /// [`state`](Discovery::state) lists every cluster's instances.
    ///
    /// The subscription task is spawned on the current tokio runtime, or on first
    /// poll when built outside one.
    pub fn build(self) -> Discovery {
        let mut filter = self.filter;
        if !self.clusters.is_empty() {
            let clusters = self.clusters.clone();
            filter = filter.with(move |meta| in_clusters(&clusters, meta));
        }
        // The namespace is the client's: one watch per (namespace, group, service).
        let key = (self.group.clone(), self.service.clone());
        let client = &self.client;
        let discovery = Discovery::shared(client.watches(), key, &*self.service, || {
            Subscription::new(
                client,
                &self.group,
                &self.service,
                client.config().resync,
                client.config().watch_backoff,
            )
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
