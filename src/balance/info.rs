//! What the channel publishes about its endpoints, for health pages and tests.

use tokio::time::Instant;

use crate::InstanceKey;

/// The state of one endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EndpointState {
    /// A TCP connection and HTTP/2 handshake are under way.
    Connecting,
    /// The connection is up and the balancer picks the endpoint for calls.
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
    pub(crate) key: InstanceKey,
    pub(crate) address: String,
    pub(crate) state: EndpointState,
    pub(crate) ejected_until: Option<Instant>,
    pub(crate) open_streams: usize,
    pub(crate) weight: u32,
    pub(crate) tier: usize,
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

    /// The weight the balancer gives the endpoint (1 unless the registry gives
    /// instances weights, see [`Instance::weight`](crate::Instance::weight)).
    pub fn weight(&self) -> u32 {
        self.weight
    }

    /// Where the endpoint is from the client's point of view, under zone-aware
    /// routing: 0 in the client's zone, 1 in another zone of its region, 2 elsewhere
    /// or unknown. Always 0 without zone-aware routing.
    pub fn tier(&self) -> usize {
        self.tier
    }
}
