//! Discovery of one service: a prefix read, then a watch from the next revision.

use std::collections::BTreeMap;
use std::fmt;

use super::client::Client;
use super::keys::KeyLayout;
use super::state::Cursor;
use super::watch::Watch;
use crate::backoff::Backoff;
use crate::source::Discovery;
use crate::source::meta_filter::MetaFilter;

/// Builds a [`Discovery`]. Created by [`Client::discovery`].
#[must_use]
pub struct DiscoveryBuilder {
    client: Client,
    service: String,
    layout: KeyLayout,
    backoff: Backoff,
    filter: MetaFilter,
}

// === impl DiscoveryBuilder ===

impl DiscoveryBuilder {
    pub(crate) fn new(client: Client, service: String) -> Self {
        DiscoveryBuilder {
            client,
            service,
            layout: KeyLayout::default(),
            backoff: crate::source::DEFAULT_BACKOFF,
            filter: MetaFilter::default(),
        }
    }

    /// Where instances live in etcd. Default: [`KeyLayout::Endpoints`].
    pub fn layout(mut self, layout: KeyLayout) -> Self {
        self.layout = layout;
        self
    }

    /// Delay between attempts to read or watch while etcd fails. Default:
    /// [`DEFAULT_BACKOFF`](crate::source::DEFAULT_BACKOFF) (100 ms to 5 s).
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Keeps only the instances whose metadata has `key` set to `value` (kratos and
    /// Go services put version, zone or color there). Several calls must all match.
    pub fn meta(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.filter = self.filter.with_entry(key.into(), value.into());
        self
    }

    /// Keeps only the instances whose metadata `keep` accepts. Several filters must
    /// all accept. The watch is shared with other discoveries of the service, filtered
    /// or not; each discovery filters what it yields.
    pub fn meta_filter(
        mut self,
        keep: impl Fn(&BTreeMap<String, String>) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.filter = self.filter.with(keep);
        self
    }

    /// Builds the discovery, joining the client's live watch of the same service,
    /// layout and backoff or starting one.
    /// The instance key is the etcd key; [`WatchState::position`] is the revision the
    /// set reflects.
    ///
    /// The watch task is spawned on the current tokio runtime, or on first poll when
    /// built outside one.
    ///
    /// [`WatchState::position`]: crate::source::WatchState::position
    pub fn build(self) -> Discovery {
        let key = (self.service.clone(), self.layout, self.backoff);
        let watches = self.client.watches.clone();
        let service = self.service.clone();
        let filter = self.filter;
        let discovery = Discovery::shared(&watches, key, service, || Watch {
            prefix: self.layout.prefix(&self.service),
            state: Cursor::new(self.layout, self.service.clone()),
            client: self.client,
            backoff: self.backoff,
        });
        filter.apply(discovery)
    }
}

impl fmt::Debug for DiscoveryBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("etcd::DiscoveryBuilder")
            .field("service", &self.service)
            .field("layout", &self.layout)
            .field("backoff", &self.backoff)
            .field("filter", &self.filter)
            .finish()
    }
}
