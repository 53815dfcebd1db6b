//! The watch task behind a [`Discovery`](super::Discovery): reads the prefix, watches
//! from the next revision, rebuilds broken watches and reads again after compaction.

use super::client::Client;
use super::follow::{self, Scope, Step};
use super::state::Cursor;
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
        let read = follow::read(&self.client, &self.prefix, Scope::Prefix).await?;
        let set = self.state.resync(read.revision, read.kvs);
        tracing::debug!(
            revision = read.revision,
            instances = set.len(),
            "etcd prefix read"
        );
        self.recovered(sink);
        sink.snapshot(set);
        Ok(())
    }

    /// Opens a watch from the last applied revision + 1 and follows it until it stops.
    async fn watch_once(&mut self, sink: &Sink) -> Stop {
        let from = self.state.revision() + 1;
        let opened = follow::open(&self.client, &self.prefix, Scope::Prefix, from).await;
        let mut stream = match opened {
            Ok(stream) => stream,
            Err(e) => return Stop::Broken(e),
        };
        loop {
            let step = follow::next(&mut stream).await;
            if let Some(stop) = self.on_step(sink, step) {
                return stop;
            }
        }
    }

    fn on_step(&mut self, sink: &Sink, step: Step) -> Option<Stop> {
        match step {
            Step::Compacted(compacted) => {
                tracing::info!(compacted, "etcd watch compacted; reading again");
                Some(Stop::Compacted)
            }
            Step::Broken(e) => Some(Stop::Broken(e)),
            Step::Created => {
                tracing::debug!(from = self.state.revision() + 1, "etcd watch created");
                self.recovered(sink);
                sink.unchanged();
                None
            }
            Step::Progress(revision) => {
                self.state.progress(revision);
                self.publish_revision(sink);
                None
            }
            Step::Events(events) => {
                let count = events.len();
                let delta = self.state.apply(events);
                self.publish_revision(sink);
                tracing::trace!(
                    events = count,
                    inserts = delta.inserts.len(),
                    removes = delta.removes.len(),
                    "etcd watch events"
                );
                sink.apply(delta.inserts, delta.removes);
                sink.is_closed().then_some(Stop::Closed)
            }
        }
    }
}
