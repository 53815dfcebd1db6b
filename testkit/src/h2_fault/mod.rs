//! An Echo server written on the `h2` crate, for HTTP/2 behaviour tonic's server does
//! not produce: refused streams and a GOAWAY that refuses streams in flight.

mod conn;
mod gate;
mod grpc;

pub(super) use grpc::answer_after;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::oneshot;

/// An HTTP/2 server on a loopback port that answers unary `/echo.v1.Echo/Echo` calls
/// as [`EchoService`](super::EchoService) does (the message back, with its instance
/// id), and misbehaves at the HTTP/2 level on request. Other methods are answered
/// with `UNIMPLEMENTED`; compressed messages are not supported.
///
/// # Faults
///
/// Both are settable at any time and apply to every connection.
///
/// - [`refuse_next(n)`](Self::refuse_next): the next `n` streams get
///   `RST_STREAM(REFUSED_STREAM)` and nothing else. HTTP/2 says such a stream was not
///   processed, so a client may retry it anywhere.
/// - [`goaway_after(Some(n))`](Self::goaway_after): a connection takes up its first
///   `n` streams and no more. The HEADERS of a later stream, and every frame of it and
///   of higher streams, are dropped before the HTTP/2 stack reads them. Once the first
///   such stream has arrived and the `n` are answered, the server writes, in this
///   order: the `n`-th stream's answer, one `GOAWAY` frame with error code `NO_ERROR`
///   and last-stream-id the id of the `n`-th stream (the highest it took up), then
///   FIN. No RST_STREAM goes out for the dropped streams: the GOAWAY refuses them,
///   so the client fails them (in `h2`: an error with `is_go_away()` and reason
///   `NO_ERROR`) as never processed. The server then reads and discards until the
///   client closes, for at most a second, and closes. A connection that never gets
///   an `n+1`-th stream gets no GOAWAY. Refused streams count towards `n`.
///
/// # Drop
///
/// Dropping it ends the listener and every connection at once, as
/// [`kill`](Self::kill) does, without waiting for its thread.
#[derive(Debug)]
pub struct H2FaultServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// What the server's connections share: the faults and the counters.
#[derive(Debug)]
struct Shared {
    id: String,
    refuse: AtomicU64,
    /// Streams a connection takes up before its GOAWAY; `u64::MAX` for no limit.
    goaway_after: AtomicU64,
    processed: AtomicU64,
    refused: AtomicU64,
    accepted: AtomicU64,
    goaways: AtomicU64,
}

// === impl Shared ===

impl Shared {
    fn new(id: String) -> Self {
        Shared {
            id,
            refuse: AtomicU64::new(0),
            goaway_after: AtomicU64::new(u64::MAX),
            processed: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            goaways: AtomicU64::new(0),
        }
    }

    fn goaway_after(&self) -> u64 {
        self.goaway_after.load(Ordering::Relaxed)
    }

    fn set_goaway_after(&self, n: Option<u64>) {
        self.goaway_after
            .store(n.unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Uses up one of [`H2FaultServer::refuse_next`]'s refusals, if any is left.
    fn take_refusal(&self) -> bool {
        self.refuse
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok()
    }

    fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

// === impl H2FaultServer ===

impl H2FaultServer {
    /// Starts a server for instance `id` on `127.0.0.1:0`, on a thread of its own,
    /// without faults.
    ///
    /// # Errors
    ///
    /// When no port can be bound or the thread cannot be spawned.
    pub fn start(id: impl Into<String>) -> std::io::Result<H2FaultServer> {
        let listener = std::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(id.into()));
        let (stop, stopped) = oneshot::channel();
        let state = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("h2-fault-{}", shared.id))
            .spawn(move || run(listener, state, stopped))?;
        Ok(H2FaultServer {
            addr,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The instance id it answers with.
    pub fn id(&self) -> &str {
        &self.shared.id
    }

    /// Refuses the next `n` streams, on any connection, with `RST_STREAM(REFUSED_STREAM)`
    /// (replacing what is left of an earlier call; 0 stops refusing).
    pub fn refuse_next(&self, n: u64) {
        self.shared.refuse.store(n, Ordering::Relaxed);
    }

    /// With `Some(n)`, each connection takes up `n` streams, then refuses the rest with
    /// a GOAWAY as described under [Faults](Self#faults); `None` (the default) turns it
    /// off for streams that arrive afterwards.
    pub fn goaway_after(&self, requests: Option<u64>) {
        self.shared.set_goaway_after(requests);
    }

    /// How many streams it has taken up (answered, or being answered): neither
    /// refused nor held back.
    pub fn processed(&self) -> u64 {
        self.shared.processed.load(Ordering::Relaxed)
    }

    /// How many streams it has refused with `RST_STREAM(REFUSED_STREAM)`.
    pub fn refused(&self) -> u64 {
        self.shared.refused.load(Ordering::Relaxed)
    }

    /// How many GOAWAY frames `goaway_after` has sent.
    pub fn goaways(&self) -> u64 {
        self.shared.goaways.load(Ordering::Relaxed)
    }

    /// How many connections it has accepted.
    pub fn accepted_connections(&self) -> u64 {
        self.shared.accepted.load(Ordering::Relaxed)
    }

    /// Ends the listener and every connection at once (no GOAWAY), and waits for the
    /// server's thread.
    pub async fn kill(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

impl Drop for H2FaultServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn run(listener: std::net::TcpListener, shared: Arc<Shared>, stop: oneshot::Receiver<()>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("h2 fault server runtime");
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
        tokio::select! {
            () = accept(listener, shared) => {}
            _ = stop => {}
        }
    });
    // Dropping the runtime without waiting drops every connection task.
    runtime.shutdown_background();
}

async fn accept(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    loop {
        match listener.accept().await {
            Ok((tcp, _)) => {
                let _ = tcp.set_nodelay(true);
                Shared::count(&shared.accepted);
                tokio::spawn(conn::serve(tcp, shared.clone()));
            }
            Err(e) => {
                // Out of file descriptors, say: try again shortly.
                tracing::warn!(error = %e, "h2 fault server: accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}
