//! [`WatchState`]: what a shared watch knows; [`WatchObserver`]: a view of it that
//! outlives moving the discovery into a balancer.

use std::fmt;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::instance::Instance;

/// What a watch knows: the last set and how the source is doing. For health pages
/// and tests; read it with [`Discovery::state`](super::Discovery::state) or a
/// [`WatchObserver`].
#[derive(Debug, Clone, Default)]
pub struct WatchState {
    pub(crate) instances: Arc<[Instance]>,
    pub(crate) generation: u64,
    pub(crate) position: u64,
    pub(crate) answers: u64,
    pub(crate) synced: bool,
    pub(crate) last_error: Option<String>,
    pub(crate) last_success: Option<Instant>,
    pub(crate) consecutive_failures: u32,
}

// === impl WatchState ===

impl WatchState {
    /// The last known instances, sorted by key. Kept through registry outages.
    pub fn instances(&self) -> &[Instance] {
        &self.instances
    }

    /// Grows by one each time the instance set changes.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The registry's own cursor for the next read: Consul's `X-Consul-Index`, etcd's
    /// revision; 0 when the source has none, before the first answer, and (Consul)
    /// after an error or an index that went backwards.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// How many successful answers the registry has given this watch. Growing much
    /// faster than the set changes means spurious wake-ups.
    pub fn answers(&self) -> u64 {
        self.answers
    }

    /// Whether the registry has answered at least once. Until then the set is unknown
    /// rather than empty.
    pub fn is_synced(&self) -> bool {
        self.synced
    }

    /// The last error, cleared by the next successful read.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// When the registry last answered.
    pub fn last_success(&self) -> Option<Instant> {
        self.last_success
    }

    /// How many reads failed in a row.
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }
}

/// A read-only view of the watch behind a [`Discovery`](super::Discovery), for health
/// pages and tests. Created by [`Discovery::observer`](super::Discovery::observer);
/// cheap to clone.
///
/// It does not keep the watch alive: once every discovery using the watch has
/// dropped, [`state`](Self::state) returns the last state and
/// [`changed`](Self::changed) returns `false`.
#[derive(Clone)]
pub struct WatchObserver {
    pub(crate) rx: watch::Receiver<WatchState>,
}

// === impl WatchObserver ===

impl WatchObserver {
    /// The watch's current state.
    pub fn state(&self) -> WatchState {
        self.rx.borrow().clone()
    }

    /// Waits until the state changes; `false` when the watch has ended.
    pub async fn changed(&mut self) -> bool {
        self.rx.changed().await.is_ok()
    }
}

impl fmt::Debug for WatchObserver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.rx.borrow();
        f.debug_struct("WatchObserver")
            .field("position", &state.position())
            .field("instances", &state.instances().len())
            .field("consecutive_failures", &state.consecutive_failures())
            .finish()
    }
}
