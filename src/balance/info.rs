//! What the channel publishes about its endpoints, for health pages and tests.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use tokio::time::Instant;

use super::stats::EndpointStats;
use crate::InstanceKey;

/// The state of one endpoint.
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
    /// Connected, but its calls failed: failure accrual took it out of the ready set
    /// until [`EndpointInfo::ejected_until`].
    Ejected,
    /// Its ejection ran out: one probe call decides whether it returns.
    Probing,
    /// Connected, but the server's `grpc.health.v1` service says `NOT_SERVING` for the
    /// checked service (client-side health checking, when configured).
    NotServing,
}

impl EndpointState {
    pub(crate) fn from_u8(v: u8) -> Self {
        match v {
            1 => EndpointState::Ready,
            2 => EndpointState::Backoff,
            3 => EndpointState::Ejected,
            4 => EndpointState::Probing,
            5 => EndpointState::NotServing,
            _ => EndpointState::Connecting,
        }
    }

    pub(crate) fn as_u8(self) -> u8 {
        match self {
            EndpointState::Connecting => 0,
            EndpointState::Ready => 1,
            EndpointState::Backoff => 2,
            EndpointState::Ejected => 3,
            EndpointState::Probing => 4,
            EndpointState::NotServing => 5,
        }
    }
}

/// A snapshot of one endpoint of a [`BalancedChannel`](super::BalancedChannel).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointInfo {
    key: InstanceKey,
    address: String,
    state: EndpointState,
    ejected_until: Option<Instant>,
    open_streams: usize,
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

    /// The state when the snapshot was taken.
    pub fn state(&self) -> EndpointState {
        self.state
    }

    /// Until when the endpoint is ejected (`None` unless it is [`EndpointState::Ejected`]).
    pub fn ejected_until(&self) -> Option<Instant> {
        self.ejected_until
    }

    /// The HTTP/2 streams open on its connection: calls from dispatch to the end of
    /// their response.
    pub fn open_streams(&self) -> usize {
        self.open_streams
    }
}

/// The current endpoints, updated by the worker on discovery changes only (never on
/// the request path); endpoints update their own state atomically.
#[derive(Clone, Default)]
pub(crate) struct Registry {
    inner: Arc<Mutex<BTreeMap<InstanceKey, Arc<EndpointStats>>>>,
}

impl Registry {
    pub(crate) fn insert(&self, key: InstanceKey, shared: Arc<EndpointStats>) {
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
            .map(|(key, stats)| EndpointInfo {
                key: key.clone(),
                address: stats.address.clone(),
                state: stats.state(),
                ejected_until: stats.ejected_until(),
                open_streams: stats.open_streams(),
            })
            .collect()
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.snapshot()).finish()
    }
}
