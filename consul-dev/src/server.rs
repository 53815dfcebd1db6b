//! The accept loop and the per-request pipeline: count, faults, ACL, route,
//! common headers, body faults.
//!
//! Connections are served from any `AsyncRead + AsyncWrite` stream: plain TCP, or
//! TLS when the builder has a server configuration (`tls-ring`).
//!
//! `router` holds Consul's path table and dispatches to the endpoint families.

pub(crate) mod router;

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt as _;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::http::{Reply, Req, decode_path, parse_query};
use crate::shared::Shared;
use crate::shared::faults::{Fault, TOO_MANY_CONNECTIONS, TOO_MANY_CONNECTIONS_BODY};
use crate::shared::request_log::RecordedRequest;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

type Body = BoxBody<Bytes, BoxError>;

/// The most of a request body the agent reads (64 MiB).
const MAX_BODY: usize = 64 * 1024 * 1024;

/// How accepted connections are wrapped: a TLS acceptor, or nothing.
#[cfg(feature = "tls-ring")]
pub(crate) type Tls = Option<tokio_rustls::TlsAcceptor>;
/// How accepted connections are wrapped: nothing without the `tls-ring` feature.
#[cfg(not(feature = "tls-ring"))]
pub(crate) type Tls = NoTls;

/// Plain TCP.
#[cfg(not(feature = "tls-ring"))]
#[derive(Debug, Clone)]
pub(crate) struct NoTls;

pub(crate) fn is_tls(tls: &Tls) -> bool {
    #[cfg(feature = "tls-ring")]
    return tls.is_some();
    #[cfg(not(feature = "tls-ring"))]
    {
        let NoTls = tls;
        false
    }
}

/// A running accept loop and its connections; from [`Listening::start`].
#[derive(Debug)]
pub(crate) struct Listening {
    task: JoinHandle<()>,
    stop: CancellationToken,
}

// === impl Listening ===

impl Listening {
    /// Serves `listener` on a task.
    pub(crate) fn start(listener: TcpListener, shared: Arc<Shared>, tls: Tls) -> Self {
        let stop = CancellationToken::new();
        let left = shared.serving();
        let task = tokio::spawn(serve(listener, shared, tls, stop.clone(), left));
        Listening { task, stop }
    }

    /// Closes the listener and every connection, and waits until they are closed.
    pub(crate) async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }

    /// Waits until the accept loop has returned by itself (after a leave, once its
    /// connections have closed).
    pub(crate) async fn finished(&mut self) {
        let _ = (&mut self.task).await;
    }

    /// Stops at once without waiting (dropping the registry).
    pub(crate) fn abort(&self) {
        self.task.abort();
    }
}

/// Binds a listener with `SO_REUSEADDR` (as tokio's `bind` does on Unix), so a
/// restarted registry gets its port back while connections of its previous life
/// linger in `TIME_WAIT`.
pub(crate) fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    #[cfg(not(windows))]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Accepts connections until `stop`; then closes the listener and every
/// connection before returning. Aborting the task drops every connection too (the
/// `JoinSet` aborts them). When the agent leaves (`left`), the listener closes at
/// once and the task returns when the connections have closed gracefully.
async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    tls: Tls,
    stop: CancellationToken,
    left: CancellationToken,
) {
    let mut conns = JoinSet::new();
    let mut listener = Some(listener);
    loop {
        if listener.is_none() && conns.is_empty() {
            return;
        }
        tokio::select! {
            () = stop.cancelled() => break,
            () = left.cancelled(), if listener.is_some() => listener = None,
            accepted = accept(listener.as_ref()) => match accepted {
                Ok((stream, _peer)) => {
                    let _ = stream.set_nodelay(true);
                    conns.spawn(accept_conn(stream, shared.clone(), tls.clone(), left.clone()));
                }
                Err(e) => {
                    tracing::debug!(error = %e, "consul-dev accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(listener);
    conns.shutdown().await;
}

/// Accepts on `listener`; pends forever without one (after a leave).
async fn accept(listener: Option<&TcpListener>) -> io::Result<(tokio::net::TcpStream, SocketAddr)> {
    match listener {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

/// Runs the TLS handshake when configured, then serves the connection.
async fn accept_conn(
    stream: tokio::net::TcpStream,
    shared: Arc<Shared>,
    tls: Tls,
    left: CancellationToken,
) {
    #[cfg(feature = "tls-ring")]
    if let Some(acceptor) = tls {
        match acceptor.accept(stream).await {
            // Consul serves HTTP/2 over TLS when ALPN picks it.
            Ok(stream) if stream.get_ref().1.alpn_protocol() == Some(b"h2") => {
                serve_h2(stream, shared, left).await;
            }
            Ok(stream) => serve_conn(stream, shared, left).await,
            Err(e) => tracing::debug!(error = %e, "consul-dev TLS handshake failed"),
        }
        return;
    }
    let _ = tls;
    serve_conn(stream, shared, left).await;
}

/// Serves one HTTP/2 connection (over TLS, as Consul does).
#[cfg(feature = "tls-ring")]
async fn serve_h2<S>(stream: S, shared: Arc<Shared>, left: CancellationToken)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(move |req| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(handle(shared, req).await) }
    });
    let conn = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
        .serve_connection(TokioIo::new(stream), svc);
    let mut conn = std::pin::pin!(conn);
    let ended = tokio::select! {
        ended = conn.as_mut() => ended,
        () = left.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = ended {
        tracing::trace!(error = %e, "consul-dev connection ended");
    }
}

/// Serves one HTTP/1.1 connection over any stream (TCP or TLS).
pub(crate) async fn serve_conn<S>(mut stream: S, shared: Arc<Shared>, left: CancellationToken)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let limited = shared
        .faults
        .take(None, |f| *f == Fault::TooManyConnections);
    if !limited.is_empty() {
        // go-connlimit answers before reading the request, then closes.
        let _ = stream.write_all(TOO_MANY_CONNECTIONS).await;
        let _ = stream.shutdown().await;
        return;
    }
    let svc = service_fn(move |req| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(handle(shared, req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), svc);
    let mut conn = std::pin::pin!(conn);
    // After a leave, the answer in flight is written, then the connection closes.
    let ended = tokio::select! {
        ended = conn.as_mut() => ended,
        () = left.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = ended {
        tracing::trace!(error = %e, "consul-dev connection ended");
    }
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let path = decode_path(parts.uri.path());
    shared.count(&path);
    // The body is read before any fault applies, so the log holds whole requests.
    // Consul sets no general limit; this one only keeps a runaway client from
    // exhausting memory, far above what any endpoint accepts (KV and txn: 512 KiB).
    let body = match http_body_util::Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            let reply = Reply::text(
                StatusCode::PAYLOAD_TOO_LARGE,
                "http: request body too large",
            );
            return finish(&shared, reply, &[]);
        }
        Err(e) => return finish(&shared, crate::http::bad_request(e.to_string()), &[]),
    };
    shared.record(RecordedRequest::new(
        parts.method.clone(),
        parts.uri.clone(),
        path.clone(),
        parts.headers.clone(),
        &body,
    ));
    let faults = shared.faults.take(Some(&path), |_| true);
    if let Some(resp) = refuse(&shared, &faults).await {
        return resp;
    }
    let req = Req {
        method: parts.method,
        path,
        query: parse_query(parts.uri.query()),
        headers: parts.headers,
        body,
    };
    let reply = router::route(&shared, req).await;
    finish(&shared, reply, &faults)
}

/// Applies the faults that replace the answer (after any delay): the 429 of a
/// connection limit, no leader, or a given answer.
async fn refuse(shared: &Shared, faults: &[Fault]) -> Option<Response<Body>> {
    for f in faults {
        if let Fault::Delay(d) = f {
            tokio::time::sleep(*d).await;
        }
    }
    if faults.contains(&Fault::TooManyConnections) {
        let reply = Reply::text(StatusCode::TOO_MANY_REQUESTS, TOO_MANY_CONNECTIONS_BODY);
        let mut resp = finish(shared, reply, &[]);
        resp.headers_mut()
            .insert("connection", HeaderValue::from_static("close"));
        return Some(resp);
    }
    if faults.contains(&Fault::NoLeader) {
        let reply = crate::http::server_error("No cluster leader");
        return Some(finish(shared, reply, &[]));
    }
    let (status, body) = faults.iter().find_map(|f| match f {
        Fault::Answer { status, body } => Some((status, body)),
        _ => None,
    })?;
    let status = StatusCode::from_u16(*status)
        .ok()
        .filter(|s| !s.is_informational())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    Some(finish(shared, Reply::text(status, body.clone()), &[]))
}

/// The page [`Fault::NotJson`] sends.
const NOT_JSON: &[u8] = b"<html><body><h1>502 Bad Gateway</h1></body></html>\n";

/// Builds the response: common headers, then the body faults.
fn finish(shared: &Shared, mut reply: Reply, faults: &[Fault]) -> Response<Body> {
    let policy = if shared.cfg.acl_token.is_some() {
        "deny"
    } else {
        "allow"
    };
    reply
        .headers
        .push(("X-Consul-Default-ACL-Policy", policy.to_owned()));
    let mut content_type = reply.content_type;
    let mut body = reply.body;
    if faults.contains(&Fault::WrongContentType) {
        content_type = Some("text/html");
    }
    if faults.contains(&Fault::MalformedJson) {
        body = body.slice(..body.len() / 2);
    }
    if faults.contains(&Fault::NotJson) {
        body = Bytes::from_static(NOT_JSON);
    }
    let mut builder = Response::builder().status(reply.status);
    if let Some(ct) = content_type {
        builder = builder.header("content-type", ct);
    }
    let zero_index = faults.contains(&Fault::ZeroIndex);
    for (name, value) in &reply.headers {
        let value = match *name {
            "X-Consul-Index" if zero_index => "0",
            _ => value.as_str(),
        };
        builder = builder.header(*name, value);
    }
    let out = if let Some(until) = reply.open_until {
        builder.body(open_stream(body, until))
    } else if faults.contains(&Fault::DropConnection) {
        builder = builder.header("content-length", body.len().to_string());
        builder.body(truncated_stream(body))
    } else {
        builder.body(Full::new(body).map_err(|never| match never {}).boxed())
    };
    out.unwrap_or_else(|e| {
        let msg = Bytes::from(e.to_string());
        let mut resp = Response::new(Full::new(msg).map_err(|never| match never {}).boxed());
        *resp.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        resp
    })
}

/// `body`, then nothing until `until` is cancelled: a streaming answer with
/// nothing more to stream.
fn open_stream(body: Bytes, until: CancellationToken) -> Body {
    let first = (!body.is_empty()).then(|| Ok(Frame::data(body)));
    let head = futures_util::stream::iter(first);
    let rest = futures_util::stream::once(async move {
        until.cancelled().await;
        None::<Result<Frame<Bytes>, BoxError>>
    })
    .filter_map(std::future::ready);
    BodyExt::boxed(StreamBody::new(futures_util::StreamExt::chain(head, rest)))
}

/// Half the body, then an error: hyper closes the connection mid-body. The pause
/// between the two lets hyper flush the headers and the first half.
fn truncated_stream(body: Bytes) -> Body {
    let half = body.slice(..body.len() / 2);
    let steps = futures_util::stream::unfold(Some(half), |state| async move {
        match state {
            Some(half) => Some((Ok(Frame::data(half)), None)),
            None => {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                let err: BoxError = "consul-dev: connection dropped by fault injection".into();
                Some((Err(err), None))
            }
        }
    });
    BodyExt::boxed(StreamBody::new(steps))
}
