//! [`WatchObserver`]: reads a watch's state after its [`Discovery`] moved into a
//! balancer.

use std::fmt;

use tokio::sync::watch;

use super::discovery::Discovery;
use super::watch::WatchState;

/// A read-only view of the watch behind a [`Discovery`], for health pages and tests.
/// Created by [`Discovery::observer`]; cheap to clone.
///
/// It does not keep the watch alive: once every discovery using the watch has
/// dropped, [`state`](Self::state) returns the last state and
/// [`changed`](Self::changed) returns `false`.
#[derive(Clone)]
pub struct WatchObserver {
    rx: watch::Receiver<WatchState>,
}

// === impl Discovery ===

impl Discovery {
    /// An observer of this discovery's watch that outlives moving the discovery
    /// into a balancer.
    pub fn observer(&self) -> WatchObserver {
        WatchObserver {
            rx: self.receiver(),
        }
    }
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
        f.debug_struct("consul::WatchObserver")
            .field("index", &state.index())
            .field("instances", &state.instances().len())
            .field("consecutive_failures", &state.consecutive_failures())
            .finish()
    }
}
