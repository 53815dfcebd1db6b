//! Discovery of one service: a prefix read, then a watch from the next revision.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use etcd_client::{GetOptions, WatchOptions, WatchResponse, WatchStream};
use futures_core::Stream;
use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, DropGuard};
use tower::discover::Change;
use tracing::Instrument;

use super::client::{Client, map_error};
use super::keys::KeyLayout;
use super::state::{Event, WatchState};
use crate::backoff::{Backoff, BackoffState};
use crate::error::{Error, Result};
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
    _task: DropGuard,
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
        let watch = Watch {
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

// === the watch task ===

/// Why following a watch stream stopped.
enum Stop {
    /// The start revision was compacted: read the prefix again.
    Compacted,
    /// The stream broke: watch again from the last applied revision + 1.
    Broken(Error),
    /// The consumer is gone.
    Closed,
}

struct Watch {
    client: Client,
    prefix: String,
    state: WatchState,
    tx: mpsc::Sender<Change<InstanceKey, Instance>>,
    retry: BackoffState,
}

impl Watch {
    async fn run(mut self) {
        loop {
            if let Err(e) = self.resync().await {
                if self.tx.is_closed() {
                    return;
                }
                self.pause(&e, "read").await;
                continue;
            }
            loop {
                match self.watch_once().await {
                    Stop::Compacted => break,
                    Stop::Closed => return,
                    Stop::Broken(e) => self.pause(&e, "watch").await,
                }
            }
        }
    }

    async fn pause(&mut self, error: &Error, what: &str) {
        let delay = self.retry.next_delay();
        tracing::warn!(%error, ?delay, revision = self.state.revision(), "etcd {what} failed; retrying");
        tokio::time::sleep(delay).await;
    }

    /// Reads the whole prefix and emits the difference to the applied set.
    async fn resync(&mut self) -> Result<()> {
        let mut etcd = self.client.etcd();
        let options = GetOptions::new().with_prefix();
        let resp = self
            .client
            .call("get", etcd.get(self.prefix.as_str(), Some(options)))
            .await?;
        let revision = resp
            .header()
            .map(|h| h.revision())
            .ok_or_else(|| Error::decode("etcd get answered without a header", "no header"))?;
        let kvs = resp.kvs().iter().map(|kv| {
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            (key, kv.value().to_vec())
        });
        let changes = self.state.resync(revision, kvs.collect::<Vec<_>>());
        tracing::debug!(revision, changes = changes.len(), "etcd prefix read");
        self.retry.reset();
        self.send(changes).await
    }

    async fn send(&self, changes: Vec<Change<InstanceKey, Instance>>) -> Result<()> {
        for change in changes {
            self.tx
                .send(change)
                .await
                .map_err(|_| Error::closed("discovery dropped"))?;
        }
        Ok(())
    }

    /// Opens a watch from the last applied revision + 1 and follows it until it stops.
    async fn watch_once(&mut self) -> Stop {
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(self.state.revision() + 1)
            .with_progress_notify();
        let mut etcd = self.client.etcd();
        let opened = self
            .client
            .call("watch", etcd.watch(self.prefix.as_str(), Some(options)))
            .await;
        match opened {
            Ok(stream) => self.follow(stream).await,
            Err(e) => Stop::Broken(e),
        }
    }

    async fn follow(&mut self, mut stream: WatchStream) -> Stop {
        loop {
            let resp = match stream.message().await {
                Ok(Some(resp)) => resp,
                Ok(None) => return Stop::Broken(Error::closed("etcd ended the watch stream")),
                Err(e) => return Stop::Broken(map_error("watch stream", e)),
            };
            if let Some(stop) = self.on_response(resp).await {
                return stop;
            }
        }
    }

    async fn on_response(&mut self, resp: WatchResponse) -> Option<Stop> {
        if resp.compact_revision() != 0 {
            tracing::info!(
                compacted = resp.compact_revision(),
                "etcd watch compacted; reading again"
            );
            return Some(Stop::Compacted);
        }
        if resp.canceled() {
            let reason = format!("etcd canceled the watch: {}", resp.cancel_reason());
            return Some(Stop::Broken(Error::closed(reason)));
        }
        if resp.created() {
            tracing::debug!(from = self.state.revision() + 1, "etcd watch created");
            self.retry.reset();
            return None;
        }
        if resp.events().is_empty() {
            if let Some(header) = resp.header() {
                self.state.progress(header.revision());
            }
            return None;
        }
        let changes = self.state.apply(events(&resp));
        tracing::trace!(
            events = resp.events().len(),
            changes = changes.len(),
            "etcd watch events"
        );
        self.send(changes).await.err().map(|_| Stop::Closed)
    }
}

/// Converts a response's events. A deleted key comes as a tombstone whose version is 0;
/// a put always has version ≥ 1. (etcd-client's `event_type()` panics on an unknown
/// type, so the version tells them apart.)
fn events(resp: &WatchResponse) -> Vec<Event> {
    resp.events()
        .iter()
        .filter_map(|event| event.kv())
        .map(|kv| {
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            let mod_revision = kv.mod_revision();
            if kv.version() == 0 {
                Event::Delete { key, mod_revision }
            } else {
                Event::Put {
                    key,
                    mod_revision,
                    value: kv.value().to_vec(),
                }
            }
        })
        .collect()
}
