//! Discovery of one service: the shared subscription's lists, filtered and diffed.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::Stream;
use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, DropGuard};
use tower::discover::Change;
use tracing::Instrument;

use super::client::Client;
use super::select::select;
use super::subscription::{Options, Subscription};
use crate::backoff::Backoff;
use crate::change::SnapshotDiff;
use crate::error::Error;
use crate::instance::{Instance, InstanceKey};

/// Builds a [`Discovery`]. Created by [`Client::discovery`].
#[must_use]
pub struct DiscoveryBuilder {
    client: Client,
    service: String,
    group: String,
    clusters: Vec<String>,
    keep_last_on_empty: bool,
    options: Options,
}

/// The instances of one Nacos service, as a stream of
/// `Change<InstanceKey, Instance>`: a [`tower::discover::Discover`] for a balancer.
///
/// Only healthy, enabled instances with a positive weight are yielded (what Nacos's
/// own clients select), from the chosen clusters if any. The key is Nacos's instance
/// id (`ip#port#cluster#group@@service`); the metadata carries the instance's, plus
/// `nacos.cluster`. The stream never yields an error and never ends; while the server
/// is unreachable it is quiet and the consumer keeps the last set. A background task
/// feeds it; it ends when the `Discovery` is dropped.
pub struct Discovery {
    changes: mpsc::Receiver<Change<InstanceKey, Instance>>,
    service: String,
    subscription: Arc<Subscription>,
    _task: DropGuard,
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
                backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(5)),
            },
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
    /// SDK's "push empty protection" does. Default: off, the set follows the server,
    /// so a service whose last instance leaves fails fast instead of sending to an
    /// instance that is gone.
    ///
    /// Turn it on to ride out a registry that restarts empty: until the services
    /// register again, the old set keeps serving. While the server is unreachable the
    /// last set is kept either way.
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

    /// Delay between queries while the server fails. Default: 100 ms to 5 s. Shared as
    /// [`resync_interval`](Self::resync_interval) is.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.options.backoff = backoff;
        self
    }

    /// Starts following the service, on the current tokio runtime.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn build(self) -> Discovery {
        let subscription = self.client.subscriptions().get(
            &self.client,
            &self.group,
            &self.service,
            &self.options,
        );
        let mut rx = subscription.receiver();
        rx.mark_changed();
        let (tx, changes) = mpsc::channel(256);
        let cancel = CancellationToken::new();
        let token = cancel.clone();
        let (service, clusters, keep) =
            (self.service.clone(), self.clusters, self.keep_last_on_empty);
        let span =
            tracing::info_span!("nacos_discovery", service = %self.service, group = %self.group);
        tokio::spawn(
            async move {
                let mut applied = SnapshotDiff::default();
                loop {
                    tokio::select! {
                        () = token.cancelled() => return,
                        r = rx.changed() => if r.is_err() { return },
                    }
                    let Some(records) = rx.borrow_and_update().clone() else {
                        continue;
                    };
                    let next = select(&service, &records, &clusters);
                    if next.is_empty() && keep && !applied.is_empty() {
                        tracing::info!("no instance can serve; keeping the last {}", applied.len());
                        continue;
                    }
                    for change in applied.apply(next) {
                        if tx.send(change).await.is_err() {
                            return;
                        }
                    }
                }
            }
            .instrument(span),
        );
        Discovery {
            changes,
            service: self.service,
            subscription,
            _task: cancel.drop_guard(),
        }
    }
}

impl fmt::Debug for DiscoveryBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("nacos::DiscoveryBuilder")
            .field("service", &self.service)
            .field("group", &self.group)
            .field("clusters", &self.clusters)
            .field("keep_last_on_empty", &self.keep_last_on_empty)
            .finish()
    }
}

// === impl Discovery ===

impl Discovery {
    /// The service this discovery follows.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// Consecutive failed queries of the server; 0 while it answers.
    pub fn failures(&self) -> u32 {
        self.subscription.failures()
    }
}

impl Stream for Discovery {
    type Item = Result<Change<InstanceKey, Instance>, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.changes.poll_recv(cx).map(|change| change.map(Ok))
    }
}

impl fmt::Debug for Discovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("nacos::Discovery")
            .field("service", &self.service)
            .finish()
    }
}
