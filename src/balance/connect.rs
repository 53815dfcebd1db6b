//! Opening one instance's connection: TCP, optional TLS, HTTP/2.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use hyper::client::conn::http2::{self, SendRequest};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tonic::body::Body;
use tracing::{Instrument, debug};

use super::call::find_h2;
use super::config::EndpointConfig;
use super::keepalive::KeepAliveConfig;
use super::stats::EndpointStats;
use super::wire::{OnLimit, Wire};
use crate::{BoxError, InstanceKey};

/// Opens a TCP connection, or the custom connector's, (and TLS session, if
/// configured) and an HTTP/2 session
/// within the connect timeout, and spawns the connection's driver. The driver ends
/// when the connection closes: when the server goes away, or after the endpoint (the
/// last `SendRequest`) is dropped and in-flight streams finish. It then tells the
/// worker, which re-checks the endpoint at once so a broken connection leaves the
/// ready set while idle. The server's stream limit is read off the connection into
/// `stats`, and keep-alive PINGs go out by the rule of [`super::keepalive`] (see
/// [`Wire`]).
pub(super) async fn connect(
    target: Arc<str>,
    host: Arc<str>,
    config: Arc<EndpointConfig>,
    keep_alive: Option<KeepAliveConfig>,
    stats: Arc<EndpointStats>,
    closed_tx: mpsc::UnboundedSender<InstanceKey>,
) -> Result<SendRequest<Body>, BoxError> {
    let _ = &host; // Used for TLS only.
    stats.connection_opening();
    let limit_stats = stats.clone();
    let max_streams: OnLimit = Arc::new(move |max| limit_stats.set_max_streams(max));
    let open = async {
        if let Some(connector) = &config.connector {
            let uri = http::Uri::builder()
                .scheme(config.scheme())
                .authority(&*target)
                .path_and_query("/")
                .build()?;
            let io = connector.connect(uri).await?;
            #[cfg(feature = "tls-ring")]
            if let Some(tls) = &config.tls {
                let io = tls.connect(&host, io).await?;
                return handshake(Wire::new(io, max_streams, keep_alive), &config).await;
            }
            return handshake(Wire::new(io, max_streams, keep_alive), &config).await;
        }
        let tcp = TcpStream::connect(&*target).await?;
        tcp.set_nodelay(config.tcp_nodelay)?;
        #[cfg(feature = "tls-ring")]
        if let Some(tls) = &config.tls {
            let io = tls.connect(&host, tcp).await?;
            return handshake(Wire::new(io, max_streams, keep_alive), &config).await;
        }
        handshake(Wire::new(tcp, max_streams, keep_alive), &config).await
    };
    let (send, conn) = tokio::time::timeout(config.connect_timeout, open)
        .await
        .map_err(|_| format!("connect timed out after {:?}", config.connect_timeout))??;
    let driver = async move {
        if let Err(error) = conn.await {
            debug!(%error, "connection ended with an error");
            if is_too_many_pings(&error) {
                stats.too_many_pings.store(true, Ordering::Relaxed);
                stats.telemetry.channel.too_many_pings();
            }
        }
        // The worker re-checks a ready endpoint; one waiting for something else (the
        // server's SETTINGS, a free stream, its health) is woken to see the close,
        // or it would sit connected with nothing to send on.
        stats.waker.wake();
        let _ = closed_tx.send(stats.key.clone());
    };
    tokio::spawn(driver.in_current_span());
    Ok(send)
}

type Driver = Pin<Box<dyn Future<Output = hyper::Result<()>> + Send>>;

/// Whether the server closed the connection for PINGing too often (grpc-go's
/// `GOAWAY(ENHANCE_YOUR_CALM, "too_many_pings")`).
fn is_too_many_pings(error: &hyper::Error) -> bool {
    find_h2(error).is_some_and(|h2| {
        h2.is_go_away() && h2.is_remote() && h2.reason() == Some(h2::Reason::ENHANCE_YOUR_CALM)
    })
}

pub(super) async fn handshake<T>(
    io: T,
    config: &EndpointConfig,
) -> Result<(SendRequest<Body>, Driver), BoxError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (send, conn) = h2_builder(config).handshake(TokioIo::new(io)).await?;
    Ok((send, Box::pin(conn)))
}

/// hyper's HTTP/2 client; its own keep-alive stays off ([`Wire`] PINGs instead).
fn h2_builder(config: &EndpointConfig) -> http2::Builder<TokioExecutor> {
    let mut b = http2::Builder::new(TokioExecutor::new());
    b.timer(TokioTimer::new());
    b.initial_stream_window_size(config.initial_stream_window_size);
    b.initial_connection_window_size(config.initial_connection_window_size);
    b
}
