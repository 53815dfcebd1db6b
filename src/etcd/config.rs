//! A service config kept in one etcd key, followed live: a read of the key, then a
//! watch from the read's revision + 1, rebuilt (read again, watch again) when it breaks
//! or its start revision was compacted.
//!
//! The stream holds its state and the watch itself: there is no task, and dropping
//! the stream closes the watch.

use std::fmt;
use std::time::Duration;

use etcd_client::WatchStream;

use super::client::Client;
use super::follow::{self, Scope, Step};
use super::state::{Event, newer};
use crate::backoff::{Backoff, BackoffState};
use crate::error::Error;
use crate::source::{ConfigUpdate, ServiceConfigWatch};

/// Builds a [`ServiceConfigWatch`] over one etcd key. Created by
/// [`Client::service_config`].
#[must_use]
pub struct ServiceConfigBuilder {
    client: Client,
    key: String,
    backoff: Backoff,
}

// === impl Client ===

impl Client {
    /// A builder for the live service config of `service`: the gRPC service config
    /// JSON kept in one etcd key (default `service-config/<service>`, see
    /// [`ServiceConfigBuilder::key`]), for
    /// [`BalancedChannelBuilder::service_config_watch`](crate::balance::BalancedChannelBuilder::service_config_watch).
    ///
    /// ```no_run
    /// use tonic_discovery::etcd::Client;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> tonic_discovery::Result<()> {
    /// let etcd = Client::connect("etcd://127.0.0.1:2379").await?;
    /// // `etcdctl put service-config/echo '{"methodConfig":[…]}'` reaches the watch.
    /// let config = etcd.service_config("echo").build();
    /// # Ok(())
    /// # }
    /// ```
    pub fn service_config(&self, service: impl AsRef<str>) -> ServiceConfigBuilder {
        ServiceConfigBuilder {
            client: self.clone(),
            key: default_key(service.as_ref()),
            backoff: crate::source::DEFAULT_BACKOFF,
        }
    }
}

/// `service-config/<service>`: beside the instances' prefix `<service>/`, not under it.
fn default_key(service: &str) -> String {
    format!("service-config/{service}")
}

// === impl ServiceConfigBuilder ===

impl ServiceConfigBuilder {
    /// The etcd key holding the document (the JSON as UTF-8 text). Default:
    /// `service-config/<service>`.
    ///
    /// The default sits beside the instances' prefix `<service>/` of the default
    /// [`KeyLayout::Endpoints`](super::KeyLayout::Endpoints), never under it, as
    /// discovery takes every key under that prefix for an instance. (A service named
    /// `service-config` would see the config keys among its instances, and skip them
    /// as undecodable: give it another key.) Services in the
    /// [`KeyLayout::Kratos`](super::KeyLayout::Kratos) layout set the key their
    /// deployment uses, outside `/microservices/<name>/`.
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = key.into();
        self
    }

    /// Delay between attempts to read or watch while etcd fails. Default:
    /// [`DEFAULT_BACKOFF`](crate::source::DEFAULT_BACKOFF) (100 ms to 5 s, jittered).
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// The watch of the key, named `etcd <key>` in logs. Nothing happens until it is
    /// polled.
    ///
    /// Its first item is the key's value (`Ok(None)` when absent). Then each put of a
    /// different value yields `Ok(Some(document))` and a delete yields `Ok(None)`; a
    /// put of the value already yielded yields nothing. Errors are the crate's
    /// [`Error`] (boxed): a value that is not UTF-8 yields one ([`Error::is_decode`]),
    /// and each failure to read or watch etcd yields one (a transport error, or a
    /// timeout); after a failure the watch waits as the backoff says, reads the key
    /// again (yielding it only if it changed) and watches again. A watch whose start
    /// revision was compacted is rebuilt the same way, without an error. The stream
    /// never ends.
    ///
    /// # Drop
    ///
    /// Dropping the watch closes its etcd watch stream; there is no background task.
    pub fn build(self) -> ServiceConfigWatch {
        let origin = format!("etcd {}", self.key);
        let follower = Follower {
            document: Document::new(self.key.clone()),
            client: self.client,
            key: self.key,
            phase: Phase::Read,
            backoff: BackoffState::new(self.backoff),
            pause: None,
        };
        let updates = futures_util::stream::unfold(follower, |mut follower| async move {
            let update = follower.next().await;
            Some((update, follower))
        });
        ServiceConfigWatch::new(origin, updates)
    }
}

impl fmt::Debug for ServiceConfigBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("etcd::ServiceConfigBuilder")
            .field("key", &self.key)
            .field("backoff", &self.backoff)
            .finish()
    }
}

/// Where the follower is.
enum Phase {
    /// Read the key: first, after a failure, after a compaction.
    Read,
    /// Open a watch from the revision after the read.
    Open,
    /// Follow the open watch (boxed: a stream is large, the other phases empty).
    Follow(Box<WatchStream>),
}

/// The state of one [`ServiceConfigWatch`] from etcd, moved through the stream.
struct Follower {
    client: Client,
    key: String,
    document: Document,
    phase: Phase,
    backoff: BackoffState,
    /// How long to wait before the next attempt, set by a failure.
    pause: Option<Duration>,
}

// === impl Follower ===

impl Follower {
    /// The next update; steps that change nothing yield nothing.
    async fn next(&mut self) -> ConfigUpdate {
        loop {
            if let Some(update) = self.step().await {
                return update;
            }
        }
    }

    async fn step(&mut self) -> Option<ConfigUpdate> {
        if let Some(delay) = self.pause.take() {
            tokio::time::sleep(delay).await;
        }
        match &mut self.phase {
            Phase::Read => self.read().await,
            Phase::Open => self.open().await,
            Phase::Follow(stream) => {
                let step = follow::next(stream).await;
                self.on_step(step)
            }
        }
    }

    async fn read(&mut self) -> Option<ConfigUpdate> {
        match follow::read(&self.client, &self.key, Scope::Key).await {
            Ok(read) => {
                self.phase = Phase::Open;
                let value = read.kvs.into_iter().next().map(|(_, value)| value);
                self.document.read(read.revision, value)
            }
            Err(e) => Some(Err(self.fail(e, "read").into())),
        }
    }

    async fn open(&mut self) -> Option<ConfigUpdate> {
        let from = self.document.revision + 1;
        match follow::open(&self.client, &self.key, Scope::Key, from).await {
            Ok(stream) => {
                self.phase = Phase::Follow(Box::new(stream));
                None
            }
            Err(e) => Some(Err(self.fail(e, "watch").into())),
        }
    }

    fn on_step(&mut self, step: Step) -> Option<ConfigUpdate> {
        match step {
            Step::Created => {
                // A read and a watch in a row: etcd is back.
                self.backoff.reset();
                None
            }
            Step::Progress(revision) => {
                self.document.revision = self.document.revision.max(revision);
                None
            }
            Step::Events(events) => self.document.apply(events),
            Step::Compacted(compacted) => {
                tracing::info!(key = %self.key, compacted, "etcd config watch compacted; reading again");
                self.phase = Phase::Read;
                None
            }
            Step::Broken(e) => Some(Err(self.fail(e, "watch").into())),
        }
    }

    /// Records a failure: read again after the backoff delay. Returns `error`, to yield.
    fn fail(&mut self, error: Error, what: &str) -> Error {
        let delay = self.backoff.next_delay();
        let failures = self.backoff.failures();
        tracing::debug!(key = %self.key, %error, ?delay, failures, "etcd config {what} failed");
        self.phase = Phase::Read;
        self.pause = Some(delay);
        error
    }
}

/// What the watch of a config key knows: the revision it has applied and the value it
/// last yielded. Pure, so the change rules are tested alone.
#[derive(Debug)]
struct Document {
    key: String,
    revision: i64,
    /// The raw value last yielded: `None` before the first item, `Some(None)` after
    /// "no document".
    yielded: Option<Option<Vec<u8>>>,
}

// === impl Document ===

impl Document {
    fn new(key: String) -> Self {
        Document {
            key,
            revision: 0,
            yielded: None,
        }
    }

    /// A read of the key at `revision` found `value`. A fresh read may go back in
    /// revisions (an etcd restored from a backup); the watch starts after it anyway.
    fn read(&mut self, revision: i64, value: Option<Vec<u8>>) -> Option<ConfigUpdate> {
        self.revision = revision;
        self.offer(value)
    }

    /// The events of one watch response: the last one not applied yet sets the value.
    fn apply(&mut self, events: Vec<Event>) -> Option<ConfigUpdate> {
        let value = match newer(&mut self.revision, events).pop()? {
            Event::Put { value, .. } => Some(value),
            Event::Delete { .. } => None,
        };
        self.offer(value)
    }

    /// The update for `value`, unless it is the value last yielded.
    fn offer(&mut self, value: Option<Vec<u8>>) -> Option<ConfigUpdate> {
        if self.yielded.as_ref() == Some(&value) {
            return None;
        }
        let update = match value.as_deref().map(std::str::from_utf8) {
            None => Ok(None),
            Some(Ok(text)) => Ok(Some(text.to_owned())),
            Some(Err(e)) => Err(Error::decode(
                format!(
                    "etcd key {} holds a value that is not UTF-8 text (a service config is JSON)",
                    self.key
                ),
                e,
            )
            .into()),
        };
        self.yielded = Some(value);
        Some(update)
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
