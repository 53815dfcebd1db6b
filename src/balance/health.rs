//! Client-side health checking (gRFC A17): a `grpc.health.v1.Health/Watch` stream per
//! connection, whose `NOT_SERVING` takes the endpoint out of the ready set at once.
//!
//! The stream never fails the endpoint by itself: while it is down (broken, being
//! retried with backoff) the endpoint counts as serving, and a server that answers
//! `UNIMPLEMENTED` has no health service, so checking stops and the endpoint serves,
//! as the gRFC says. Only the health service's own word holds the endpoint out: a
//! status other than `SERVING`, or `NOT_FOUND` for a service it does not know.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::uri::{Authority, Scheme, Uri};
use hyper::client::conn::http2::SendRequest;
use tonic::Code;
use tonic::body::Body;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use tracing::{debug, info, warn};

use super::send::set_origin;
use super::stats::EndpointStats;
use crate::Backoff;
use crate::backoff::BackoffState;

/// Watches `service`'s health on the connection `send` until the connection closes.
pub(crate) async fn watch(
    send: SendRequest<Body>,
    scheme: Scheme,
    authority: Authority,
    service: Arc<str>,
    stats: Arc<EndpointStats>,
    backoff: Backoff,
) {
    let origin = Uri::builder()
        .scheme(scheme.clone())
        .authority(authority.clone())
        .path_and_query("/")
        .build();
    let Ok(origin) = origin else {
        return;
    };
    let mut backoff = BackoffState::new(backoff);
    let mut client = HealthClient::with_origin(
        Connection {
            send: send.clone(),
            scheme,
            authority,
        },
        origin,
    );
    let request = || HealthCheckRequest {
        service: service.to_string(),
    };
    while !send.is_closed() {
        match client.watch(request()).await {
            Ok(response) => {
                // The watch takes one of the server's streams.
                let _held = HeldStream::new(&stats);
                let mut stream = response.into_inner();
                loop {
                    match stream.message().await {
                        Ok(Some(update)) => {
                            backoff.reset();
                            let serving = update.status == ServingStatus::Serving as i32;
                            stats.set_serving(serving);
                        }
                        Ok(None) => break,
                        Err(status) => {
                            debug!(instance = %stats.key, %status, "health watch ended");
                            break;
                        }
                    }
                }
            }
            Err(status) if status.code() == Code::Unimplemented => {
                info!(instance = %stats.key, "no grpc.health.v1 service; health checking off for this connection");
                stats.set_serving(true);
                return;
            }
            Err(status) if status.code() == Code::NotFound => {
                // The health service answered: it does not know the service (what
                // tonic's says instead of streaming SERVICE_UNKNOWN). That is the
                // server's word, not a broken watch.
                debug!(instance = %stats.key, %status, "health: service unknown to the server");
                stats.set_serving(false);
                let delay = backoff.next_delay();
                tokio::time::sleep(delay).await;
                continue;
            }
            Err(status) => debug!(instance = %stats.key, %status, "health watch failed"),
        }
        // Never held out by a broken watch: only the server's word does that.
        stats.set_serving(true);
        let delay = backoff.next_delay();
        if !send.is_closed() {
            warn!(instance = %stats.key, ?delay, "health watch broken; retrying");
        }
        tokio::time::sleep(delay).await;
    }
}

/// Counts the watch's stream among the connection's open streams while it lives.
struct HeldStream<'a>(&'a EndpointStats);

impl<'a> HeldStream<'a> {
    fn new(stats: &'a EndpointStats) -> Self {
        stats.stream_started();
        HeldStream(stats)
    }
}

impl Drop for HeldStream<'_> {
    fn drop(&mut self) {
        self.0.stream_ended();
    }
}

/// The connection as a tonic transport for the health client.
#[derive(Debug)]
struct Connection {
    send: SendRequest<Body>,
    scheme: Scheme,
    authority: Authority,
}

impl tower::Service<http::Request<Body>> for Connection {
    type Response = http::Response<hyper::body::Incoming>;
    type Error = hyper::Error;
    type Future = Pin<
        Box<
            dyn Future<Output = Result<http::Response<hyper::body::Incoming>, hyper::Error>> + Send,
        >,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), hyper::Error>> {
        self.send.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<Body>) -> Self::Future {
        set_origin(req.uri_mut(), &self.scheme, &self.authority);
        Box::pin(self.send.send_request(req))
    }
}
