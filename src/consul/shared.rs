//! The live watches of one client: one per (service, options), shared by every
//! discovery that asks for it, ended when the last of them drops.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tower::Service;
use tracing::Instrument;

use super::query::{QueryOptions, WatchRequest, WatchResponse};
use super::watch::{WatchConfig, WatchState, run};
use crate::error::BoxError;

type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The map of live watches, keyed by their options. Holds weak references only.
#[derive(Debug, Default)]
pub(crate) struct Watches {
    live: Mutex<HashMap<Arc<QueryOptions>, Weak<WatchHandle>>>,
}

/// A subscription's share of one watch task. The task is aborted when the last
/// share drops.
pub(crate) struct WatchHandle {
    rx: watch::Receiver<WatchState>,
    task: Mutex<Task>,
}

enum Task {
    /// Created outside a tokio runtime: spawned on first use inside one.
    NotStarted(BoxFuture),
    Running(JoinHandle<()>),
    Taken,
}

impl Watches {
    /// The live watch for `query`, or a new one reading through `transport()`.
    pub(crate) fn subscribe<S, F>(
        &self,
        query: QueryOptions,
        config: WatchConfig,
        transport: F,
    ) -> Arc<WatchHandle>
    where
        F: FnOnce() -> S,
        S: Service<WatchRequest, Response = WatchResponse> + Send + 'static,
        S::Error: Into<BoxError> + Send,
        S::Future: Send,
    {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.retain(|_, w| w.strong_count() > 0);
        // A watch whose task died with its runtime is replaced, not joined.
        if let Some(handle) = live
            .get(&query)
            .and_then(Weak::upgrade)
            .filter(|h| h.is_alive())
        {
            return handle;
        }
        let query = Arc::new(query);
        let handle = Arc::new(WatchHandle::new(query.clone(), config, transport()));
        live.insert(query, Arc::downgrade(&handle));
        handle.ensure_started();
        handle
    }

    /// How many watches are live (for tests).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.values().filter(|w| w.strong_count() > 0).count()
    }
}

// === impl WatchHandle ===

impl WatchHandle {
    fn new<S>(query: Arc<QueryOptions>, config: WatchConfig, transport: S) -> Self
    where
        S: Service<WatchRequest, Response = WatchResponse> + Send + 'static,
        S::Error: Into<BoxError> + Send,
        S::Future: Send,
    {
        let (tx, rx) = watch::channel(WatchState::default());
        let span = tracing::info_span!("consul_watch", service = %query.service);
        let fut = run(transport, query, config, tx).instrument(span);
        WatchHandle {
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

    /// False once the task has ended (its runtime shut down).
    fn is_alive(&self) -> bool {
        self.rx.has_changed().is_ok()
    }

    /// A receiver of the watch's state.
    pub(crate) fn receiver(&self) -> watch::Receiver<WatchState> {
        self.rx.clone()
    }
}

impl Drop for WatchHandle {
    fn drop(&mut self) {
        let task = self.task.get_mut().unwrap_or_else(|p| p.into_inner());
        if let Task::Running(handle) = task {
            tracing::debug!("Consul watch stopped: no subscriber left");
            handle.abort();
        }
    }
}

impl std::fmt::Debug for WatchHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchHandle").finish_non_exhaustive()
    }
}
