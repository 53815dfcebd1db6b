//! Sending a call on an endpoint's connection: the stream slot a caller reserves, and
//! the one send path of the worker's calls and the callers' own.

use std::sync::Arc;

use http::Uri;
use http::header::{HeaderValue, USER_AGENT};
use http::uri::{Authority, PathAndQuery, Scheme};
use hyper::client::conn::http2::SendRequest;
use tokio::sync::OwnedSemaphorePermit;
use tonic::body::Body;

use super::buffer::ReplayBuffer;
use super::call::Call;
use super::direct::Direct;
use super::dispatch::{EndpointFuture, Replay};
use super::stats::EndpointStats;

const DEFAULT_USER_AGENT: HeaderValue =
    HeaderValue::from_static(concat!("tonic-discovery/", env!("CARGO_PKG_VERSION")));

/// A stream slot reserved on an endpoint's open connection for a caller that sends
/// without the worker (see [`Table::pick_direct`](super::table::Registry::pick_direct)): given back if dropped unsent.
pub(crate) struct Reserved {
    stats: Arc<EndpointStats>,
    direct: Option<Direct>,
}

// === impl Reserved ===

impl Reserved {
    /// Reserves a slot on `stats`'s current connection, if it is open and a stream
    /// fits under the server's limit.
    pub(crate) fn new(stats: Arc<EndpointStats>) -> Option<Self> {
        if !stats.try_reserve_stream() {
            return None;
        }
        // Checked after the reservation, which sees a lost connection's mark made
        // before the slot was freed.
        let direct = stats.direct().filter(|_| !stats.current_lost());
        let Some(direct) = direct else {
            stats.stream_ended();
            return None;
        };
        Some(Reserved {
            stats,
            direct: Some(direct),
        })
    }

    /// Sends `req` on the slot, tracked as a call of the endpoint.
    pub(crate) fn send(mut self, req: http::Request<Body>) -> EndpointFuture {
        let Some(mut direct) = self.direct.take() else {
            // Not reachable: the connection is only taken here.
            return EndpointFuture::failed("a stream slot sent twice".into());
        };
        let origin = (&direct.scheme, &direct.authority);
        send_on(
            &mut direct.send,
            origin,
            direct.replay.as_ref(),
            &self.stats,
            req,
            false,
            None,
        )
    }
}

impl Drop for Reserved {
    fn drop(&mut self) {
        if self.direct.is_some() {
            self.stats.stream_ended();
        }
    }
}

/// Sends `req` on a connection, tracked as a call of `stats`'s endpoint, on the
/// stream slot reserved for it: the one dispatch of the worker's calls and of those a
/// caller sends itself.
pub(crate) fn send_on(
    send: &mut SendRequest<Body>,
    (scheme, authority): (&Scheme, &Authority),
    replay: Option<&Arc<ReplayBuffer>>,
    stats: &Arc<EndpointStats>,
    mut req: http::Request<Body>,
    probe: bool,
    permit: Option<OwnedSemaphorePermit>,
) -> EndpointFuture {
    set_origin(req.uri_mut(), scheme, authority);
    if !req.headers().contains_key(USER_AGENT) {
        req.headers_mut().insert(USER_AGENT, DEFAULT_USER_AGENT);
    }
    let call = Call::start_reserved(stats.clone(), probe).holding(permit);
    let (req, replay) = match replay {
        Some(buffer) => {
            let (req, replay) = Replay::record(req, buffer);
            (req, Some(replay))
        }
        None => (req, None),
    };
    let fut = Box::pin(send.try_send_request(req));
    EndpointFuture::new(fut, call, replay)
}

/// Points `uri` at the instance, keeping its path and query.
pub(crate) fn set_origin(uri: &mut Uri, scheme: &Scheme, authority: &Authority) {
    let mut parts = std::mem::take(uri).into_parts();
    parts.scheme = Some(scheme.clone());
    parts.authority = Some(authority.clone());
    if parts.path_and_query.is_none() {
        parts.path_and_query = Some(PathAndQuery::from_static("/"));
    }
    if let Ok(new) = Uri::from_parts(parts) {
        *uri = new;
    }
}
