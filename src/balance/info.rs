//! What the channel publishes about its endpoints, for health pages and tests.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use crate::InstanceKey;

/// The connection state of one endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EndpointState {
    /// A TCP connection and HTTP/2 handshake are under way.
    Connecting,
    /// The connection is up; the endpoint takes requests.
    Ready,
    /// The last connect failed or the connection broke soon after it opened; the
    /// endpoint waits before it tries again.
    Backoff,
}

impl EndpointState {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => EndpointState::Ready,
            2 => EndpointState::Backoff,
            _ => EndpointState::Connecting,
        }
    }

    fn as_u8(self) -> u8 {
        match self {
            EndpointState::Connecting => 0,
            EndpointState::Ready => 1,
            EndpointState::Backoff => 2,
        }
    }
}

/// A snapshot of one endpoint of a [`BalancedChannel`](super::BalancedChannel).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointInfo {
    key: InstanceKey,
    address: String,
    state: EndpointState,
}

// === impl EndpointInfo ===

impl EndpointInfo {
    /// The instance's key, as discovery reported it.
    pub fn key(&self) -> &InstanceKey {
        &self.key
    }

    /// The `host:port` the endpoint connects to.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The connection state when the snapshot was taken.
    pub fn state(&self) -> EndpointState {
        self.state
    }
}

/// The state one endpoint shares with the registry; written by the endpoint only.
#[derive(Debug)]
pub(crate) struct EndpointShared {
    address: String,
    state: AtomicU8,
}

impl EndpointShared {
    pub(crate) fn new(address: String) -> Arc<Self> {
        Arc::new(EndpointShared {
            address,
            state: AtomicU8::new(EndpointState::Connecting.as_u8()),
        })
    }

    pub(crate) fn set(&self, state: EndpointState) {
        self.state.store(state.as_u8(), Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> EndpointState {
        EndpointState::from_u8(self.state.load(Ordering::Relaxed))
    }
}

/// The current endpoints, updated by the worker on discovery changes only (never on
/// the request path); endpoints update their own state atomically.
#[derive(Clone, Default)]
pub(crate) struct Registry {
    inner: Arc<Mutex<BTreeMap<InstanceKey, Arc<EndpointShared>>>>,
}

impl Registry {
    pub(crate) fn insert(&self, key: InstanceKey, shared: Arc<EndpointShared>) {
        if let Ok(mut map) = self.inner.lock() {
            map.insert(key, shared);
        }
    }

    pub(crate) fn remove(&self, key: &InstanceKey) {
        if let Ok(mut map) = self.inner.lock() {
            map.remove(key);
        }
    }

    pub(crate) fn snapshot(&self) -> Vec<EndpointInfo> {
        let Ok(map) = self.inner.lock() else {
            return Vec::new();
        };
        map.iter()
            .map(|(key, shared)| EndpointInfo {
                key: key.clone(),
                address: shared.address.clone(),
                state: shared.get(),
            })
            .collect()
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.snapshot()).finish()
    }
}
