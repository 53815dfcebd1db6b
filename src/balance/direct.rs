//! The handle of an endpoint's open connection that callers send on.

use http::uri::{Authority, Scheme};
use hyper::client::conn::http2::SendRequest;
use tonic::body::Body;

/// What it takes to send a call on an endpoint's current connection: kept in its
/// [`EndpointStats`](super::stats::EndpointStats) while connected, so that a caller can send without the worker
/// (see [`BalancedChannel`](super::BalancedChannel)).
#[derive(Clone)]
pub(crate) struct Direct {
    pub(crate) send: SendRequest<Body>,
    pub(crate) scheme: Scheme,
    pub(crate) authority: Authority,
    /// Whether a copy of each request is kept for a resend.
    pub(crate) resends: bool,
}

impl Direct {
    /// Whether the connection takes a request now (not closed).
    pub(crate) fn is_ready(&self) -> bool {
        self.send.is_ready()
    }
}
