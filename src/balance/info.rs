//! What the channel publishes about its endpoints, for health pages and tests.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

use tokio::time::Instant;

use super::endpoint::Direct;
use super::stats::{EndpointStats, Mode};
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
/// the request path); endpoints update their own state atomically. Callers read it to
/// send without the worker ([`pick_direct`](Self::pick_direct)).
#[derive(Clone, Default)]
pub(crate) struct Registry {
    inner: Arc<RwLock<Table>>,
}

/// Draws per candidate before [`Registry::pick_direct`] leaves the call to the worker.
const DRAWS: usize = 4;

#[derive(Default)]
struct Table {
    map: BTreeMap<InstanceKey, Arc<EndpointStats>>,
    /// The same endpoints, for sampling by index.
    list: Vec<Arc<EndpointStats>>,
}

impl Registry {
    pub(crate) fn insert(&self, key: InstanceKey, shared: Arc<EndpointStats>) {
        let mut table = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        match table.map.insert(key, shared.clone()) {
            Some(old) => {
                if let Some(slot) = table.list.iter_mut().find(|s| Arc::ptr_eq(s, &old)) {
                    *slot = shared;
                }
            }
            None => table.list.push(shared),
        }
    }

    pub(crate) fn remove(&self, key: &InstanceKey) {
        let mut table = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(old) = table.map.remove(key) {
            table.list.retain(|s| !Arc::ptr_eq(s, &old));
        }
    }

    /// Power of two choices over the endpoints a caller may send on now (see
    /// [`EndpointStats::direct`]), by the same cost the worker compares. Two are drawn
    /// among those ready, as the worker draws from its ready set: an endpoint that is
    /// not (ejected, connecting, at its stream limit) is drawn again, a few times at
    /// most, never taken by default, since an instance the guard keeps in service
    /// despite its failures must still lose its comparison. `None` leaves the call to
    /// the worker: fewer than two ready endpoints found (one, when it is the only
    /// endpoint), or one drawn is due a probe or was never tried (the worker sends
    /// those their one call first).
    pub(crate) fn pick_direct(&self) -> Option<(Arc<EndpointStats>, Direct)> {
        let table = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        let list = &table.list;
        let pick = match list.len() {
            0 => return None,
            1 if list[0].direct_ready() => &list[0],
            1 => return None,
            len => {
                // `a` from every index, `b` from the others: both distinct by
                // construction, each drawn again while it is not ready.
                // `None`: no ready endpoint found, or one the worker must place.
                let draw = |skip: Option<usize>| -> Option<usize> {
                    for _ in 0..DRAWS {
                        let i = match skip {
                            None => rand::random_range(0..len),
                            Some(a) => {
                                let i = rand::random_range(0..len - 1);
                                if i >= a { i + 1 } else { i }
                            }
                        };
                        let s = &list[i];
                        if s.mode() == Mode::ProbeAllowed || s.untried() {
                            return None;
                        }
                        if s.direct_ready() {
                            return Some(i);
                        }
                    }
                    None
                };
                let a = draw(None)?;
                let b = draw(Some(a))?;
                let (sa, sb) = (&list[a], &list[b]);
                if sb.cost() < sa.cost() { sb } else { sa }
            }
        };
        pick.direct().map(|direct| (pick.clone(), direct))
    }

    pub(crate) fn snapshot(&self) -> Vec<EndpointInfo> {
        let table = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        table
            .map
            .iter()
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
