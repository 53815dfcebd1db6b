//! The Echo service of `proto/echo.proto`, and a server to run it on loopback.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_core::Stream;
use tokio::sync::{mpsc, oneshot};
use tonic::{Request, Response, Status};
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use super::pb::echo_server::{Echo, EchoServer as EchoGrpcServer};
use super::pb::{EchoRequest, EchoResponse, EchoStreamRequest};

/// The Echo service: answers with the message and its instance id, after an optional
/// delay and while no [`HoldGuard`] is alive, and counts what it served.
#[derive(Debug, Clone)]
pub struct EchoService {
    state: Arc<EchoState>,
}

#[derive(Debug)]
struct EchoState {
    id: String,
    delay_us: AtomicU64,
    /// How many [`HoldGuard`]s are alive; unary replies wait while it is above 0.
    holds: tokio::sync::watch::Sender<usize>,
    received: AtomicU64,
    served: AtomicU64,
}

/// Keeps every unary request to an [`EchoService`] in flight until dropped, so that a
/// test can decide when they are answered. Returned by [`EchoService::hold`].
#[derive(Debug)]
#[must_use = "requests are held only while the guard lives"]
pub struct HoldGuard {
    state: Arc<EchoState>,
}

// === impl EchoService ===

impl EchoService {
    /// A service that answers as instance `id`.
    pub fn new(id: impl Into<String>) -> Self {
        EchoService {
            state: Arc::new(EchoState {
                id: id.into(),
                delay_us: AtomicU64::new(0),
                holds: tokio::sync::watch::Sender::new(0),
                received: AtomicU64::new(0),
                served: AtomicU64::new(0),
            }),
        }
    }

    /// The instance id it answers with.
    pub fn id(&self) -> &str {
        &self.state.id
    }

    /// Adds `delay` before every reply (0 for none).
    pub fn set_delay(&self, delay: Duration) {
        let us = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
        self.state.delay_us.store(us, Ordering::Relaxed);
    }

    /// Holds every unary request, received now or later, until the returned guard
    /// (and every other guard) is dropped. Count arrivals with
    /// [`received`](Self::received).
    pub fn hold(&self) -> HoldGuard {
        self.state.holds.send_modify(|n| *n += 1);
        HoldGuard {
            state: self.state.clone(),
        }
    }

    /// How many unary requests it has received, answered or not yet.
    pub fn received(&self) -> u64 {
        self.state.received.load(Ordering::Relaxed)
    }

    /// How many unary requests it has answered.
    pub fn served(&self) -> u64 {
        self.state.served.load(Ordering::Relaxed)
    }

    async fn pause(&self) {
        let us = self.state.delay_us.load(Ordering::Relaxed);
        if us > 0 {
            tokio::time::sleep(Duration::from_micros(us)).await;
        }
        let mut holds = self.state.holds.subscribe();
        // The sender lives in `self.state`, so the wait cannot fail.
        let _ = holds.wait_for(|n| *n == 0).await;
    }
}

// === impl HoldGuard ===

impl Drop for HoldGuard {
    fn drop(&mut self) {
        self.state.holds.send_modify(|n| *n -= 1);
    }
}

type EchoStream = Pin<Box<dyn Stream<Item = Result<EchoResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Echo for EchoService {
    async fn echo(&self, request: Request<EchoRequest>) -> Result<Response<EchoResponse>, Status> {
        self.state.received.fetch_add(1, Ordering::Relaxed);
        self.pause().await;
        self.state.served.fetch_add(1, Ordering::Relaxed);
        Ok(Response::new(EchoResponse {
            message: request.into_inner().message,
            instance_id: self.state.id.clone(),
        }))
    }

    type EchoStreamStream = EchoStream;

    async fn echo_stream(
        &self,
        request: Request<EchoStreamRequest>,
    ) -> Result<Response<Self::EchoStreamStream>, Status> {
        let req = request.into_inner();
        let (tx, rx) = mpsc::channel(4);
        let id = self.state.id.clone();
        tokio::spawn(async move {
            for _ in 0..req.count {
                let reply = EchoResponse {
                    message: req.message.clone(),
                    instance_id: id.clone(),
                };
                if tx.send(Ok(reply)).await.is_err() {
                    return;
                }
                if req.interval_ms > 0 {
                    tokio::time::sleep(Duration::from_millis(req.interval_ms.into())).await;
                }
            }
        });
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

/// An Echo server (with `grpc.health.v1`) on a loopback port, running on a runtime of
/// its own so that [`TestEchoServer::kill`] can end every connection at once, as a
/// crashed process would.
#[derive(Debug)]
pub struct TestEchoServer {
    addr: SocketAddr,
    service: EchoService,
    health: HealthReporter,
    serving: tokio::sync::watch::Sender<bool>,
    control: Option<oneshot::Sender<Stop>>,
    thread: Option<std::thread::JoinHandle<()>>,
    connections: Arc<ConnCounter>,
}

/// Counts the connections a server accepted and how many are still open.
#[derive(Debug, Default)]
struct ConnCounter {
    accepted: AtomicU64,
    open: AtomicU64,
}

#[derive(Debug)]
enum Stop {
    Graceful,
    Kill,
}

// === impl TestEchoServer ===

impl TestEchoServer {
    /// Starts a server for instance `id` on `127.0.0.1:0`.
    pub async fn start(id: impl Into<String>) -> std::io::Result<TestEchoServer> {
        Self::start_on("127.0.0.1:0".parse().expect("loopback"), id).await
    }

    /// Starts a server for instance `id` on `addr`.
    pub async fn start_on(
        addr: SocketAddr,
        id: impl Into<String>,
    ) -> std::io::Result<TestEchoServer> {
        let service = EchoService::new(id);
        let (health, health_service) = tonic_health::server::health_reporter();
        health.set_serving::<EchoGrpcServer<EchoService>>().await;
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (control, stop) = oneshot::channel::<Stop>();
        let svc = service.clone();
        let connections = Arc::new(ConnCounter::default());
        let counter = connections.clone();
        let thread = std::thread::Builder::new()
            .name(format!("echo-{}", service.id()))
            .spawn(move || serve(listener, svc, health_service, stop, counter))?;
        Ok(TestEchoServer {
            addr,
            service,
            health,
            serving: tokio::sync::watch::Sender::new(true),
            control: Some(control),
            thread: Some(thread),
            connections,
        })
    }

    /// How many connections the server has accepted since it started.
    pub fn accepted_connections(&self) -> u64 {
        self.connections.accepted.load(Ordering::Relaxed)
    }

    /// How many accepted connections are still open (closed by either side ends
    /// the count once the server has dropped the socket).
    pub fn open_connections(&self) -> u64 {
        self.connections.open.load(Ordering::Relaxed)
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The Echo service it serves (to add delay or read counters).
    pub fn service(&self) -> &EchoService {
        &self.service
    }

    /// Sets what `grpc.health.v1` answers for the Echo service and for `""`.
    pub async fn set_serving(&self, serving: bool) {
        let status = if serving {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        self.health.set_service_status("echo.v1.Echo", status).await;
        self.health.set_service_status("", status).await;
        self.serving.send_replace(serving);
    }

    /// Follows [`set_serving`](Self::set_serving): `true` while serving. Hand it to a
    /// registration (`consul::Registration::health`) so its TTL check follows.
    pub fn health_watch(&self) -> tokio::sync::watch::Receiver<bool> {
        self.serving.subscribe()
    }

    /// Stops accepting, finishes in-flight requests, then returns.
    pub async fn shutdown(mut self) {
        self.stop(Stop::Graceful).await;
    }

    /// Ends the server at once: the listener and every connection close, in-flight
    /// requests fail, as when the process is killed.
    pub async fn kill(mut self) {
        self.stop(Stop::Kill).await;
    }

    async fn stop(&mut self, how: Stop) {
        if let Some(control) = self.control.take() {
            let _ = control.send(how);
        }
        if let Some(thread) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

impl Drop for TestEchoServer {
    fn drop(&mut self) {
        if let Some(control) = self.control.take() {
            let _ = control.send(Stop::Kill);
        }
    }
}

fn serve(
    listener: std::net::TcpListener,
    service: EchoService,
    health: tonic_health::pb::health_server::HealthServer<
        impl tonic_health::pb::health_server::Health,
    >,
    stop: oneshot::Receiver<Stop>,
    counter: Arc<ConnCounter>,
) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("echo server runtime");
    let (graceful_tx, graceful_rx) = oneshot::channel::<()>();
    let kill = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
        let incoming = tokio_stream_incoming(listener, counter);
        let server = tonic::transport::Server::builder()
            .add_service(health)
            .add_service(EchoGrpcServer::new(service))
            .serve_with_incoming_shutdown(incoming, async move {
                let _ = graceful_rx.await;
            });
        tokio::pin!(server);
        tokio::select! {
            res = &mut server => {
                if let Err(e) = res {
                    tracing::warn!(error = %e, "echo server ended");
                }
                false
            }
            how = stop => match how {
                Ok(Stop::Graceful) => {
                    let _ = graceful_tx.send(());
                    let _ = server.await;
                    false
                }
                _ => true,
            },
        }
    });
    if kill {
        // Dropping the runtime without waiting drops every connection task.
        runtime.shutdown_background();
    }
}

fn tokio_stream_incoming(
    listener: tokio::net::TcpListener,
    counter: Arc<ConnCounter>,
) -> impl Stream<Item = std::io::Result<CountedStream>> {
    futures_util::stream::unfold(listener, move |listener| {
        let counter = counter.clone();
        async move {
            let item = listener.accept().await.map(|(stream, _)| {
                let _ = stream.set_nodelay(true);
                CountedStream::new(stream, counter)
            });
            Some((item, listener))
        }
    })
}

pin_project_lite::pin_project! {
    /// An accepted connection that keeps [`ConnCounter::open`] up to date.
    struct CountedStream {
        #[pin]
        inner: tokio::net::TcpStream,
        counter: Arc<ConnCounter>,
    }

    impl PinnedDrop for CountedStream {
        fn drop(this: Pin<&mut Self>) {
            this.counter.open.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl CountedStream {
    fn new(inner: tokio::net::TcpStream, counter: Arc<ConnCounter>) -> Self {
        counter.accepted.fetch_add(1, Ordering::Relaxed);
        counter.open.fetch_add(1, Ordering::Relaxed);
        CountedStream { inner, counter }
    }
}

impl tonic::transport::server::Connected for CountedStream {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

impl tokio::io::AsyncRead for CountedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.project().inner.poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for CountedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.project().inner.poll_write(cx, buf)
    }

    fn poll_flush(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.project().inner.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
