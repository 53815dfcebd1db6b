//! One subscription per (group, service) and client, shared by every discovery of it.
//!
//! The SDK keeps one server-side subscription per (group, service) and connection: an
//! `unsubscribe` ends it for every listener. So discoveries do not subscribe
//! themselves; they share a [`Subscription`] whose task subscribes once, and
//! unsubscribes when the last discovery is gone.
//!
//! The task does not trust the order of the SDK's events (it hands each event to a
//! task of its own, so two quick pushes can arrive swapped). An event only wakes it;
//! it then asks the server for the current list and publishes that. It also asks
//! every `resync` interval, so a lost push is repaired, and after a failed query it
//! asks again with backoff while publishing nothing: the last list stays.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use nacos_sdk::api::naming::{NamingChangeEvent, NamingEventListener, NamingService};
use tokio::sync::{Notify, watch};
use tokio_util::sync::{CancellationToken, DropGuard};
use tracing::Instrument;

use super::client::{Client, call};
use super::select::Record;
use crate::backoff::{Backoff, BackoffState};

/// What the task publishes: the list (`None` until the first successful read), and
/// the failed queries since the last good one.
#[derive(Debug, Clone, Default)]
pub(crate) struct Snapshot {
    pub(crate) records: Option<Arc<Vec<Record>>>,
    pub(crate) failures: u32,
    pub(crate) error: Option<String>,
}

type Key = (String, String);

/// The live subscriptions of one client. Holds weak references only.
#[derive(Default)]
pub(crate) struct Subscriptions {
    live: Mutex<HashMap<Key, Entry>>,
}

struct Entry {
    subscription: Weak<Subscription>,
    /// Held by a subscription's task from before it subscribes until after it
    /// unsubscribes, so a task ending and a new one starting for the same key cannot
    /// interleave their requests (an unsubscribe landing after the new subscribe would
    /// silence it).
    lane: Arc<tokio::sync::Mutex<()>>,
}

/// A discovery's share of one subscription task; the task ends when the last share
/// drops.
pub(crate) struct Subscription {
    rx: watch::Receiver<Snapshot>,
    _task: DropGuard,
}

/// The options of a subscription task.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) resync: Duration,
    pub(crate) backoff: Backoff,
}

// === impl Subscriptions ===

impl Subscriptions {
    /// The live subscription of `service` in `group`, or a new one.
    ///
    /// Must be called within a tokio runtime.
    pub(crate) fn get(
        &self,
        client: &Client,
        group: &str,
        service: &str,
        options: &Options,
    ) -> Arc<Subscription> {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        let key = (group.to_owned(), service.to_owned());
        if let Some(sub) = live.get(&key).and_then(|e| e.subscription.upgrade()) {
            return sub;
        }
        let lane = live
            .get(&key)
            .map_or_else(Default::default, |e| e.lane.clone());
        live.retain(|_, e| e.subscription.strong_count() > 0 || Arc::strong_count(&e.lane) > 1);
        let sub = Arc::new(Subscription::start(
            client,
            group,
            service,
            options,
            lane.clone(),
        ));
        live.insert(
            key,
            Entry {
                subscription: Arc::downgrade(&sub),
                lane,
            },
        );
        sub
    }
}

impl std::fmt::Debug for Subscriptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriptions").finish_non_exhaustive()
    }
}

// === impl Subscription ===

impl Subscription {
    fn start(
        client: &Client,
        group: &str,
        service: &str,
        options: &Options,
        lane: Arc<tokio::sync::Mutex<()>>,
    ) -> Self {
        let (tx, rx) = watch::channel(Snapshot::default());
        let cancel = CancellationToken::new();
        let task = Task {
            naming: client.naming().clone(),
            timeout: client.config().request_timeout,
            group: group.to_owned(),
            service: service.to_owned(),
            options: options.clone(),
            tx,
            cancel: cancel.clone(),
        };
        let span = tracing::info_span!("nacos_subscription", %group, %service);
        tokio::spawn(
            async move {
                // Dropped before its turn came: nothing subscribed, nothing to undo.
                let _lane = tokio::select! {
                    biased;
                    () = task.cancel.cancelled() => return,
                    lane = lane.lock() => lane,
                };
                task.run().await;
            }
            .instrument(span),
        );
        Subscription {
            rx,
            _task: cancel.drop_guard(),
        }
    }

    /// A receiver of the published lists.
    pub(crate) fn receiver(&self) -> watch::Receiver<Snapshot> {
        self.rx.clone()
    }
}

/// Turns SDK events into wake-ups of the task.
struct Wake(Arc<Notify>);

impl NamingEventListener for Wake {
    fn event(&self, _event: Arc<NamingChangeEvent>) {
        self.0.notify_one();
    }
}

struct Task {
    naming: NamingService,
    timeout: Duration,
    group: String,
    service: String,
    options: Options,
    tx: watch::Sender<Snapshot>,
    cancel: CancellationToken,
}

impl Task {
    async fn run(self) {
        let wake = Arc::new(Notify::new());
        let listener: Arc<dyn NamingEventListener> = Arc::new(Wake(wake.clone()));
        // The SDK swallows a failed subscribe and redoes it until it succeeds; the
        // queries below do not depend on it.
        let subscribe = self.naming.subscribe(
            self.service.clone(),
            Some(self.group.clone()),
            Vec::new(),
            listener.clone(),
        );
        tokio::select! {
            () = self.cancel.cancelled() => {}
            r = call(self.timeout, "subscribe", subscribe) => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "subscribe did not finish; the SDK retries it");
                }
                self.follow(&wake).await;
            }
        }
        let unsubscribe = self.naming.unsubscribe(
            self.service.clone(),
            Some(self.group.clone()),
            Vec::new(),
            listener,
        );
        if let Err(e) = call(self.timeout, "unsubscribe", unsubscribe).await {
            tracing::debug!(error = %e, "unsubscribe failed");
        }
    }

    /// Queries on every wake-up and every resync interval until cancelled.
    async fn follow(&self, wake: &Notify) {
        let mut retry = BackoffState::new(self.options.backoff);
        loop {
            let delay = match self.query().await {
                Ok(records) => {
                    retry.reset();
                    self.publish(records);
                    self.options.resync
                }
                // Dropped during the query: not a failure of the server.
                Err(_) if self.cancel.is_cancelled() => return,
                Err(e) => {
                    let mut failures = 0;
                    self.tx.send_modify(|s| {
                        s.failures += 1;
                        s.error = Some(e.to_string());
                        failures = s.failures;
                    });
                    let delay = retry.next_delay();
                    tracing::warn!(error = %e, failures, ?delay, "nacos query failed; keeping the last list");
                    delay
                }
            };
            tokio::select! {
                () = self.cancel.cancelled() => return,
                () = wake.notified() => {}
                () = tokio::time::sleep(delay) => {}
            }
        }
    }

    async fn query(&self) -> crate::Result<Vec<Record>> {
        let query = self.naming.get_all_instances(
            self.service.clone(),
            Some(self.group.clone()),
            Vec::new(),
            false,
        );
        tokio::select! {
            () = self.cancel.cancelled() => Err(crate::Error::closed("discovery dropped")),
            r = call(self.timeout, "query instances", query) => {
                let mut records: Vec<Record> = r?.into_iter().map(Record::from_sdk).collect();
                records.sort_by(|a, b| a.id.cmp(&b.id));
                Ok(records)
            }
        }
    }

    fn publish(&self, records: Vec<Record>) {
        self.tx.send_if_modified(|current| {
            let recovered = current.failures > 0;
            current.failures = 0;
            current.error = None;
            if current.records.as_deref() == Some(&records) {
                return recovered;
            }
            tracing::debug!(instances = records.len(), "nacos service list changed");
            current.records = Some(Arc::new(records));
            true
        });
    }
}
