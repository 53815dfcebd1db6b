//! [`Watches`]: the live watches of one registry client, one per key, shared by every
//! discovery that asks for it and ended when the last of them drops.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::Source;
use super::sink::Sink;
use super::state::WatchState;
use crate::telemetry::WatchMetrics;

type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The live watches of a registry client, keyed by what identifies a watch (a
/// service name and the query options). Holds weak references only: a watch lives
/// as long as a [`Discovery`](super::Discovery) uses it.
pub struct Watches<K> {
    live: Mutex<HashMap<K, Weak<Watch>>>,
}

/// One running watch: its state channel and its task, aborted when the last
/// discovery sharing it drops.
pub(crate) struct Watch {
    rx: watch::Receiver<WatchState>,
    task: Mutex<Task>,
}

enum Task {
    /// Created outside a tokio runtime: spawned on first use inside one.
    NotStarted(BoxFuture),
    Running(JoinHandle<()>),
    Taken,
}

// === impl Watches ===

impl<K: Hash + Eq + Clone> Watches<K> {
    /// No watches.
    pub fn new() -> Self {
        Watches {
            live: Mutex::new(HashMap::new()),
        }
    }

    /// The live watch for `key`, or a new one running `source()`; `span` names the
    /// new watch's task in traces.
    pub(crate) fn subscribe<S: Source>(
        &self,
        key: K,
        service: &str,
        span: tracing::Span,
        source: impl FnOnce() -> S,
    ) -> Arc<Watch> {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.retain(|_, w| w.strong_count() > 0);
        // A watch whose task died with its runtime is replaced, not joined.
        if let Some(watch) = live
            .get(&key)
            .and_then(Weak::upgrade)
            .filter(|w| w.is_alive())
        {
            return watch;
        }
        let watch = Arc::new(Watch::new(source(), service, span));
        live.insert(key, Arc::downgrade(&watch));
        watch.ensure_started();
        watch
    }

    /// How many watches are live.
    pub fn len(&self) -> usize {
        let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.values().filter(|w| w.strong_count() > 0).count()
    }

    /// Whether no watch is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<K: Hash + Eq + Clone> Default for Watches<K> {
    fn default() -> Self {
        Watches::new()
    }
}

impl<K> fmt::Debug for Watches<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        f.debug_struct("Watches")
            .field(
                "live",
                &live.values().filter(|w| w.strong_count() > 0).count(),
            )
            .finish()
    }
}

// === impl Watch ===

impl Watch {
    /// A watch of its own, not shared through [`Watches`].
    pub(crate) fn new<S: Source>(source: S, service: &str, span: tracing::Span) -> Self {
        let (tx, rx) = watch::channel(WatchState::default());
        let metrics = WatchMetrics::new(source.registry(), service);
        let sink = Sink::new(tx, metrics, source.registry(), source.backoff());
        let fut = source.run(sink).instrument(span);
        Watch {
            rx,
            task: Mutex::new(Task::NotStarted(Box::pin(fut))),
        }
    }

    /// Spawns the task if it has not been and a tokio runtime is at hand.
    pub(crate) fn ensure_started(&self) {
        let mut task = self.task.lock().unwrap_or_else(|p| p.into_inner());
        if !matches!(*task, Task::NotStarted(_)) {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if let Task::NotStarted(fut) = std::mem::replace(&mut *task, Task::Taken) {
            *task = Task::Running(rt.spawn(fut));
        }
    }

    /// False once the task has ended (its runtime shut down, or the source returned).
    fn is_alive(&self) -> bool {
        self.rx.has_changed().is_ok()
    }

    /// A receiver of the watch's state.
    pub(crate) fn receiver(&self) -> watch::Receiver<WatchState> {
        self.rx.clone()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let task = self.task.get_mut().unwrap_or_else(|p| p.into_inner());
        if let Task::Running(handle) = task {
            tracing::debug!("watch stopped: no discovery left");
            handle.abort();
        }
    }
}

impl fmt::Debug for Watch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watch").finish_non_exhaustive()
    }
}
