//! The watch task behind a [`Discovery`](super::Discovery): reads the prefix, watches
//! from the next revision, rebuilds broken watches and reads again after compaction.

use etcd_client::{GetOptions, WatchOptions, WatchResponse, WatchStream};

use super::client::{Client, map_error};
use super::state::{Cursor, Event};
use crate::backoff::Backoff;
use crate::error::{Error, Result};
use crate::source::{Sink, Source};

/// Why following a watch stream stopped.
enum Stop {
    /// The start revision was compacted: read the prefix again.
    Compacted,
    /// The stream broke: watch again from the last applied revision + 1.
    Broken(Error),
    /// The consumer is gone.
    Closed,
}

/// The watch of one service's prefix, as a [`Source`] of the shared core.
pub(super) struct Watch {
    // Fields are set by `DiscoveryBuilder::build`.
    pub(super) client: Client,
    pub(super) prefix: String,
    pub(super) state: Cursor,
    pub(super) backoff: Backoff,
}

impl Source for Watch {
    fn registry(&self) -> &'static str {
        "etcd"
    }

    fn backoff(&self) -> Backoff {
        self.backoff
    }

    async fn run(mut self, sink: Sink) {
        loop {
            if let Err(e) = self.resync(&sink).await {
                if sink.is_closed() {
                    return;
                }
                self.pause(&sink, &e, "read").await;
                continue;
            }
            loop {
                match self.watch_once(&sink).await {
                    Stop::Compacted => break,
                    Stop::Closed => return,
                    Stop::Broken(e) => self.pause(&sink, &e, "watch").await,
                }
            }
        }
    }
}

impl Watch {
    /// etcd answered: the failures are over (the set is published by the caller).
    fn recovered(&mut self, sink: &Sink) {
        self.publish_revision(sink);
    }

    fn publish_revision(&self, sink: &Sink) {
        let revision = u64::try_from(self.state.revision()).unwrap_or(0);
        sink.set_position(revision);
    }

    async fn pause(&mut self, sink: &Sink, error: &Error, what: &str) {
        tracing::debug!(revision = self.state.revision(), "etcd {what} failed");
        tokio::time::sleep(sink.retry_later(error)).await;
    }

    /// Reads the whole prefix and reports it as a snapshot.
    async fn resync(&mut self, sink: &Sink) -> Result<()> {
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
        let set = self.state.resync(revision, kvs.collect::<Vec<_>>());
        tracing::debug!(revision, instances = set.len(), "etcd prefix read");
        self.recovered(sink);
        sink.snapshot(set);
        Ok(())
    }

    /// Opens a watch from the last applied revision + 1 and follows it until it stops.
    async fn watch_once(&mut self, sink: &Sink) -> Stop {
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
            Ok(stream) => self.follow(sink, stream).await,
            Err(e) => Stop::Broken(e),
        }
    }

    async fn follow(&mut self, sink: &Sink, mut stream: WatchStream) -> Stop {
        loop {
            let resp = match stream.message().await {
                Ok(Some(resp)) => resp,
                Ok(None) => return Stop::Broken(Error::closed("etcd ended the watch stream")),
                Err(e) => return Stop::Broken(map_error("watch stream", e)),
            };
            if let Some(stop) = self.on_response(sink, resp) {
                return stop;
            }
        }
    }

    fn on_response(&mut self, sink: &Sink, resp: WatchResponse) -> Option<Stop> {
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
            self.recovered(sink);
            sink.unchanged();
            return None;
        }
        if resp.events().is_empty() {
            if let Some(header) = resp.header() {
                self.state.progress(header.revision());
                self.publish_revision(sink);
            }
            return None;
        }
        let delta = self.state.apply(events(&resp));
        self.publish_revision(sink);
        tracing::trace!(
            events = resp.events().len(),
            inserts = delta.inserts.len(),
            removes = delta.removes.len(),
            "etcd watch events"
        );
        sink.apply(delta.inserts, delta.removes);
        sink.is_closed().then_some(Stop::Closed)
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
