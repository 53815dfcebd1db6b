//! The handle of an endpoint's open connection that callers send on.

use std::sync::Arc;

use http::uri::{Authority, Scheme};
use hyper::client::conn::http2::SendRequest;
use tonic::body::Body;

use super::buffer::ReplayBuffer;

/// What it takes to send a call on an endpoint's current connection: kept in its
/// [`EndpointStats`](super::stats::EndpointStats) while connected, so that a caller can send without the worker
/// (see [`BalancedChannel`](super::BalancedChannel)).
#[derive(Clone)]
pub(crate) struct Direct {
    pub(crate) send: SendRequest<Body>,
    pub(crate) scheme: Scheme,
    pub(crate) authority: Authority,
    /// Where a copy of each request is kept for a resend, if one is.
    pub(crate) replay: Option<Arc<ReplayBuffer>>,
}

impl Direct {
    /// Whether the connection takes a request now (not closed).
    pub(crate) fn is_ready(&self) -> bool {
        self.send.is_ready()
    }
}
