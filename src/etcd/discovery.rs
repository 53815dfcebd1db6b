//! Discovery of one service: a prefix read, then a watch from the next revision.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};
use std::task::{Context, Poll};

use futures_core::Stream;
use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, DropGuard};
use tower::discover::Change;
use tracing::Instrument;

use super::client::Client;
use super::keys::KeyLayout;
use super::state::WatchState;
use super::watch::Watch;
use crate::backoff::{Backoff, BackoffState};
use crate::error::Error;
use crate::instance::{Instance, InstanceKey};

/// Builds a [`Discovery`]. Created by [`Client::discovery`].
#[must_use]
pub struct DiscoveryBuilder {
    client: Client,
    service: String,
    layout: KeyLayout,
    backoff: Backoff,
}

/// The instances of one service in etcd, as a stream of
/// `Change<InstanceKey, Instance>`: a [`tower::discover::Discover`] for a balancer.
///
/// The instance key is the etcd key. The stream never yields an error and never
/// ends; while etcd is unreachable it is quiet and the consumer keeps the last set.
/// A background task reads and watches etcd; it ends when the `Discovery` is dropped.
pub struct Discovery {
    changes: mpsc::Receiver<Change<InstanceKey, Instance>>,
    service: String,
    status: Arc<Status>,
    _task: DropGuard,
}

/// What the watch task reports to its `Discovery`.
#[derive(Debug, Default)]
pub(super) struct Status {
    pub(super) revision: AtomicI64,
    pub(super) failures: AtomicU32,
}

// === impl DiscoveryBuilder ===

impl DiscoveryBuilder {
    pub(crate) fn new(client: Client, service: String) -> Self {
        DiscoveryBuilder {
            client,
            service,
            layout: KeyLayout::default(),
            backoff: Backoff::new(
                std::time::Duration::from_millis(100),
                std::time::Duration::from_secs(5),
            ),
        }
    }

    /// Where instances live in etcd. Default: [`KeyLayout::Endpoints`].
    pub fn layout(mut self, layout: KeyLayout) -> Self {
        self.layout = layout;
        self
    }

    /// Delay between attempts to read or watch while etcd fails. Default: 100 ms to 5 s.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Starts the watch task on the current tokio runtime.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn build(self) -> Discovery {
        let (tx, changes) = mpsc::channel(256);
        let cancel = CancellationToken::new();
        let status = Arc::new(Status::default());
        let watch = Watch {
            status: status.clone(),
            prefix: self.layout.prefix(&self.service),
            state: WatchState::new(self.layout, self.service.clone()),
            client: self.client,
            tx,
            retry: BackoffState::new(self.backoff),
        };
        let span = tracing::info_span!("etcd_discovery", service = %self.service);
        let token = cancel.clone();
        tokio::spawn(
            async move {
                tokio::select! {
                    () = token.cancelled() => {}
                    () = watch.run() => {}
                }
            }
            .instrument(span),
        );
        Discovery {
            changes,
            service: self.service,
            status,
            _task: cancel.drop_guard(),
        }
    }
}

impl fmt::Debug for DiscoveryBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("etcd::DiscoveryBuilder")
            .field("service", &self.service)
            .field("layout", &self.layout)
            .field("backoff", &self.backoff)
            .finish()
    }
}

// === impl Discovery ===

impl Discovery {
    /// The service this discovery watches.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The etcd revision the yielded changes reflect (0 before the first read).
    pub fn revision(&self) -> i64 {
        self.status.revision.load(Ordering::Relaxed)
    }

    /// Consecutive failed attempts to read or watch etcd; 0 while the watch is healthy.
    pub fn failures(&self) -> u32 {
        self.status.failures.load(Ordering::Relaxed)
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
        f.debug_struct("etcd::Discovery")
            .field("service", &self.service)
            .finish()
    }
}
