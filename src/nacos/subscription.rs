//! [`Subscription`]: the [`Source`] of one (group, service), shared through the
//! client's [`Watches`](crate::source::Watches) by every discovery of it, whatever its
//! clusters and filters (each discovery applies its own).
//!
//! It subscribes once, and the watch's end unsubscribes. The SDK keeps one server-side
//! subscription per (group, service) and connection: an `unsubscribe` ends it for every
//! listener. So a subscription holds its [`Lanes`] entry from before it subscribes until
//! after it unsubscribes, and a watch ending and a new one starting for the same service
//! cannot interleave their requests (an unsubscribe landing after the new subscribe
//! would silence it).
//!
//! It does not trust the order of the SDK's events (the SDK hands each event to a task
//! of its own, so two quick pushes can arrive swapped): an event only wakes it; it then
//! asks the server for the current list and reports that. It also asks every `resync`
//! interval, so a lost push is repaired; a failed query is reported and retried after
//! the sink's backoff, the last list staying meanwhile.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use nacos_sdk::api::naming::{NamingChangeEvent, NamingEventListener, NamingService};
use tokio::sync::{Notify, OwnedMutexGuard};
use tracing::Instrument;

use super::client::{Client, call};
use super::select::select;
use crate::backoff::Backoff;
use crate::source::{Sink, Source};

type Key = (String, String);
type Lane = Arc<tokio::sync::Mutex<()>>;

/// Per (group, service): who may subscribe or unsubscribe now. Weak references only.
#[derive(Default)]
pub(crate) struct Lanes(Mutex<HashMap<Key, Weak<tokio::sync::Mutex<()>>>>);

/// The watch of one (group, service): what the server lists, as a [`Source`].
pub(crate) struct Subscription {
    naming: NamingService,
    timeout: Duration,
    group: String,
    service: String,
    resync: Duration,
    backoff: Backoff,
    lane: Lane,
}

/// Subscribed on the server; dropped with the watch's task (aborted when its last
/// discovery drops), it unsubscribes on a task of its own, holding the lane until done.
struct Subscribed {
    naming: NamingService,
    timeout: Duration,
    group: String,
    service: String,
    listener: Arc<dyn NamingEventListener>,
    lane: Option<OwnedMutexGuard<()>>,
}

/// Turns SDK events into wake-ups of the watch.
struct Wake(Arc<Notify>);

// === impl Lanes ===

impl Lanes {
    /// The lane of `service` in `group`, shared with a subscription still ending.
    fn get(&self, group: &str, service: &str) -> Lane {
        let mut live = self.0.lock().unwrap_or_else(|p| p.into_inner());
        live.retain(|_, lane| lane.strong_count() > 0);
        let key = (group.to_owned(), service.to_owned());
        if let Some(lane) = live.get(&key).and_then(Weak::upgrade) {
            return lane;
        }
        let lane = Lane::default();
        live.insert(key, Arc::downgrade(&lane));
        lane
    }
}

// === impl Subscription ===

impl Subscription {
    pub(crate) fn new(
        client: &Client,
        group: &str,
        service: &str,
        resync: Duration,
        backoff: Backoff,
    ) -> Self {
        Subscription {
            naming: client.naming().clone(),
            timeout: client.config().request_timeout,
            group: group.to_owned(),
            service: service.to_owned(),
            resync,
            backoff,
            lane: client.lanes().get(group, service),
        }
    }

    /// Subscribes (after any previous subscription of the service has unsubscribed).
    async fn subscribe(&self, wake: Arc<Notify>) -> Subscribed {
        let lane = self.lane.clone().lock_owned().await;
        let listener: Arc<dyn NamingEventListener> = Arc::new(Wake(wake));
        let subscribed = Subscribed {
            naming: self.naming.clone(),
            timeout: self.timeout,
            group: self.group.clone(),
            service: self.service.clone(),
            listener: listener.clone(),
            lane: Some(lane),
        };
        // The SDK swallows a failed subscribe and redoes it until it succeeds; the
        // queries do not depend on it.
        let subscribe = self.naming.subscribe(
            self.service.clone(),
            Some(self.group.clone()),
            Vec::new(),
            listener,
        );
        if let Err(e) = call(self.timeout, "subscribe", subscribe).await {
            tracing::debug!(error = %e, "subscribe did not finish; the SDK retries it");
        }
        subscribed
    }

    /// The server's list of every cluster, unfiltered.
    async fn query(&self) -> crate::Result<Vec<nacos_sdk::api::naming::ServiceInstance>> {
        let query = self.naming.get_all_instances(
            self.service.clone(),
            Some(self.group.clone()),
            Vec::new(),
            false,
        );
        call(self.timeout, "query instances", query).await
    }
}

impl Source for Subscription {
    fn registry(&self) -> &'static str {
        "nacos"
    }

    fn backoff(&self) -> Backoff {
        self.backoff
    }

    /// Queries on every push and every resync interval, until the task is aborted.
    async fn run(self, sink: Sink) {
        let wake = Arc::new(Notify::new());
        let _subscribed = self.subscribe(wake.clone()).await;
        loop {
            let delay = match self.query().await {
                Ok(list) => {
                    sink.snapshot(select(&self.service, list));
                    self.resync
                }
                Err(e) => sink.retry_later(e),
            };
            tokio::select! {
                () = wake.notified() => {}
                () = tokio::time::sleep(delay) => {}
            }
        }
    }
}

// === impl Subscribed ===

impl Drop for Subscribed {
    fn drop(&mut self) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let lane = self.lane.take();
        let (naming, timeout) = (self.naming.clone(), self.timeout);
        let (group, service) = (self.group.clone(), self.service.clone());
        let listener = self.listener.clone();
        let span = tracing::debug_span!("nacos_unsubscribe", %group, %service);
        rt.spawn(
            async move {
                let unsubscribe = naming.unsubscribe(service, Some(group), Vec::new(), listener);
                if let Err(e) = call(timeout, "unsubscribe", unsubscribe).await {
                    tracing::debug!(error = %e, "unsubscribe failed");
                }
                drop(lane);
            }
            .instrument(span),
        );
    }
}

impl NamingEventListener for Wake {
    fn event(&self, _event: Arc<NamingChangeEvent>) {
        self.0.notify_one();
    }
}
