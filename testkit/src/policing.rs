//! An Echo server that polices HTTP/2 PINGs exactly as grpc-go's server does by
//! default, for keep-alive tests that must hold against real gRPC servers.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::echo_conn::Freeze;
use crate::frames::{
    ACK, CLIENT_PREFACE, DATA, FrameCursor, GOAWAY, HEADERS, Header, Injector, PING, RST_STREAM,
};

/// grpc-go's `maxPingStrikes`.
const MAX_PING_STRIKES: u32 = 2;
/// grpc-go's `defaultPingTimeout`: the least time between PINGs without streams
/// when `PermitWithoutStream` is off.
const IDLE_PING_TIME: Duration = Duration::from_secs(2 * 60 * 60);
/// HTTP/2's `ENHANCE_YOUR_CALM` error code.
const ENHANCE_YOUR_CALM: u32 = 0xb;

/// grpc-go's `keepalive.EnforcementPolicy`.
#[derive(Debug, Clone, Copy)]
pub struct PingPolicy {
    /// The least time between two PINGs (grpc-go's `MinTime`; default 5 minutes).
    pub min_time: Duration,
    /// Whether PINGs without open streams are held to `min_time` rather than 2
    /// hours (grpc-go's `PermitWithoutStream`; default false).
    pub permit_without_stream: bool,
}

impl Default for PingPolicy {
    fn default() -> Self {
        PingPolicy {
            min_time: Duration::from_secs(5 * 60),
            permit_without_stream: false,
        }
    }
}

/// An HTTP/2 Echo server on a loopback port that enforces a [`PingPolicy`] the way
/// grpc-go's `http2Server.handlePing` does: a PING sooner than `min_time` after the
/// previous one is a strike, unless the server sent headers or data since then (that
/// PING clears the count); the strike after the second is answered with
/// `GOAWAY(ENHANCE_YOUR_CALM, "too_many_pings")` naming the highest stream the
/// client opened, and the connection closes.
///
/// It answers unary `/echo.v1.Echo/Echo` after [`reply_after`](Self::reply_after)
/// (sending nothing before) and `/echo.v1.Echo/EchoStream` with `count` messages,
/// one every `interval_ms`. It runs on the runtime that starts it, so a test's
/// paused clock applies to it. Dropping it ends it and its connections.
#[derive(Debug)]
pub struct PolicingServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    tasks: JoinSet<()>,
}

#[derive(Debug)]
struct Shared {
    id: String,
    policy: PingPolicy,
    reply_after: Mutex<Duration>,
    pings: AtomicU64,
    goaways: AtomicU64,
    accepted: AtomicU64,
    frozen: Freeze,
}

// === impl PolicingServer ===

impl PolicingServer {
    /// Starts a server for instance `id` on `127.0.0.1:0` that enforces `policy`.
    ///
    /// # Errors
    ///
    /// When no port can be bound.
    pub async fn start(id: impl Into<String>, policy: PingPolicy) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            id: id.into(),
            policy,
            reply_after: Mutex::new(Duration::ZERO),
            pings: AtomicU64::new(0),
            goaways: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            frozen: Freeze::default(),
        });
        let mut tasks = JoinSet::new();
        let state = shared.clone();
        tasks.spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((tcp, _)) => {
                            let _ = tcp.set_nodelay(true);
                            state.accepted.fetch_add(1, Ordering::Relaxed);
                            conns.spawn(serve(Policed::new(tcp, state.clone()), state.clone()));
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "policing server: accept failed");
                            return;
                        }
                    },
                    Some(_) = conns.join_next() => {}
                }
            }
        });
        Ok(PolicingServer {
            addr,
            shared,
            tasks,
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Unary calls are answered this long after they arrive, with nothing sent
    /// before. Default: at once.
    pub fn reply_after(&self, delay: Duration) {
        *self
            .shared
            .reply_after
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = delay;
    }

    /// Stops reading and writing on every connection, as a stopped process: PINGs
    /// go unanswered.
    pub fn freeze(&self) {
        self.shared.frozen.freeze();
    }

    /// PINGs received (answers to its own excluded).
    pub fn pings(&self) -> u64 {
        self.shared.pings.load(Ordering::Relaxed)
    }

    /// Connections it closed with `GOAWAY(ENHANCE_YOUR_CALM, "too_many_pings")`.
    pub fn too_many_pings(&self) -> u64 {
        self.shared.goaways.load(Ordering::Relaxed)
    }

    /// Connections accepted.
    pub fn accepted_connections(&self) -> u64 {
        self.shared.accepted.load(Ordering::Relaxed)
    }

    /// Ends the listener and every connection.
    pub fn stop(&mut self) {
        self.tasks.abort_all();
    }
}

async fn serve(io: Policed<tokio::net::TcpStream>, shared: Arc<Shared>) {
    let mut conn = match h2::server::handshake(io).await {
        Ok(conn) => conn,
        Err(e) => {
            tracing::debug!(error = %e, "policing server: handshake failed");
            return;
        }
    };
    let mut answers = JoinSet::new();
    loop {
        tokio::select! {
            accepted = conn.accept() => match accepted {
                Some(Ok((request, respond))) => {
                    let id = shared.id.clone();
                    let delay = *shared.reply_after.lock().unwrap_or_else(|e| e.into_inner());
                    answers.spawn(async move {
                        super::h2_fault::answer_after(request, respond, &id, delay).await;
                    });
                }
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "policing server: connection ended");
                    return;
                }
                None => return,
            },
            Some(_) = answers.join_next() => {}
        }
    }
}

/// grpc-go's PING accounting of one connection.
#[derive(Debug)]
struct Policy {
    policy: PingPolicy,
    last_ping: Option<Instant>,
    /// The server sent headers or data since the last PING (`resetPingStrikes`).
    reset: bool,
    strikes: u32,
    /// Client streams open, and the highest opened.
    open: Vec<u32>,
    highest: u32,
}

impl Policy {
    /// Whether the connection survives this PING (`handlePing`).
    fn ping(&mut self, now: Instant) -> bool {
        let last = self.last_ping.replace(now);
        if std::mem::take(&mut self.reset) {
            self.strikes = 0;
            return true;
        }
        let min = if self.open.is_empty() && !self.policy.permit_without_stream {
            IDLE_PING_TIME
        } else {
            self.policy.min_time
        };
        if last.is_some_and(|last| last + min > now) {
            self.strikes += 1;
        }
        self.strikes <= MAX_PING_STRIKES
    }

    fn close(&mut self, stream: u32) {
        if let Some(i) = self.open.iter().position(|s| *s == stream) {
            self.open.swap_remove(i);
        }
    }
}

pin_project_lite::pin_project! {
    /// A server connection that follows the frames both ways and enforces the
    /// policy: its GOAWAY goes between the server's frames, then the connection ends.
    struct Policed<T> {
        #[pin]
        io: T,
        shared: Arc<Shared>,
        incoming: FrameCursor,
        outgoing: Injector,
        policy: Policy,
        // The GOAWAY is queued: the connection ends once it is written.
        closing: bool,
    }
}

impl<T> Policed<T> {
    fn new(io: T, shared: Arc<Shared>) -> Self {
        let policy = shared.policy;
        Policed {
            io,
            shared,
            incoming: FrameCursor::new(CLIENT_PREFACE),
            outgoing: Injector::new(0),
            policy: Policy {
                policy,
                last_ping: None,
                reset: false,
                strikes: 0,
                open: Vec::new(),
                highest: 0,
            },
            closing: false,
        }
    }
}

impl<T: AsyncRead + AsyncWrite> AsyncRead for Policed<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let mut this = self.project();
        std::task::ready!(this.shared.frozen.poll_thawed(cx));
        if *this.closing {
            std::task::ready!(this.outgoing.poll_inject(this.io.as_mut(), cx))?;
            if !this.outgoing.pending() {
                // grpc-go closes the connection after its GOAWAY.
                return Poll::Ready(Ok(()));
            }
            return Poll::Pending;
        }
        let before = buf.filled().len();
        std::task::ready!(this.io.as_mut().poll_read(cx, buf))?;
        let policy = &mut *this.policy;
        let shared = &*this.shared;
        let mut violated = false;
        let mut ping_header: Option<Header> = None;
        this.incoming.feed(
            &buf.filled()[before..],
            |h| match h.kind {
                PING if h.flags & ACK == 0 => {
                    shared.pings.fetch_add(1, Ordering::Relaxed);
                    if !policy.ping(Instant::now()) {
                        violated = true;
                    }
                    ping_header = Some(h);
                }
                HEADERS if h.stream % 2 == 1 && h.stream > policy.highest => {
                    policy.highest = h.stream;
                    policy.open.push(h.stream);
                }
                RST_STREAM => policy.close(h.stream),
                _ => {}
            },
            |_| {},
        );
        if violated {
            let mut payload = policy.highest.to_be_bytes().to_vec();
            payload.extend_from_slice(&ENHANCE_YOUR_CALM.to_be_bytes());
            payload.extend_from_slice(b"too_many_pings");
            this.outgoing.queue(Header::frame(GOAWAY, 0, 0, &payload));
            *this.closing = true;
            shared.goaways.fetch_add(1, Ordering::Relaxed);
            tracing::debug!("policing server: too many pings, sending GOAWAY");
            // The server stack reads nothing more; the GOAWAY goes out at the next
            // frame boundary.
            buf.set_filled(before);
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite> AsyncWrite for Policed<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let mut this = self.project();
        std::task::ready!(this.shared.frozen.poll_thawed(cx));
        std::task::ready!(this.outgoing.poll_inject(this.io.as_mut(), cx))?;
        if *this.closing && !this.outgoing.pending() {
            return Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into()));
        }
        let allowed = this.outgoing.allowance(buf.len());
        let n = std::task::ready!(this.io.as_mut().poll_write(cx, &buf[..allowed]))?;
        let policy = &mut *this.policy;
        this.outgoing.wrote(&buf[..n], |h| match h.kind {
            DATA | HEADERS => {
                policy.reset = true;
                if h.flags & 0x1 != 0 {
                    policy.close(h.stream);
                }
            }
            RST_STREAM => policy.close(h.stream),
            _ => {}
        });
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let mut this = self.project();
        std::task::ready!(this.shared.frozen.poll_thawed(cx));
        std::task::ready!(this.outgoing.poll_inject(this.io.as_mut(), cx))?;
        this.io.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.project();
        std::task::ready!(this.shared.frozen.poll_thawed(cx));
        this.io.poll_shutdown(cx)
    }
}
