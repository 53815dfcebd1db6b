//! A server for the Echo service on loopback, with faults a real process can show.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_core::Stream;
use tokio::sync::oneshot;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use super::echo::EchoService;
use super::echo_conn::{Conns, CountedStream};
use super::pb::echo_server::EchoServer as EchoGrpcServer;

/// An Echo server (with `grpc.health.v1`) on a loopback port, running on a runtime of
/// its own so that [`TestEchoServer::kill`] can end every connection at once, as a
/// crashed process would, and [`TestEchoServer::freeze`] can stop answering, as a
/// stopped process would.
///
/// # Drop
///
/// Dropping it kills it (see [`kill`](Self::kill)) without waiting for its thread.
#[derive(Debug)]
pub struct TestEchoServer {
    addr: SocketAddr,
    service: EchoService,
    health: HealthReporter,
    serving: tokio::sync::watch::Sender<bool>,
    control: Option<oneshot::Sender<Stop>>,
    thread: Option<std::thread::JoinHandle<()>>,
    conns: Arc<Conns>,
}

/// Configures a [`TestEchoServer`]. Made by [`TestEchoServer::builder`].
#[derive(Debug)]
#[must_use = "a builder does nothing until `start`ed"]
pub struct TestEchoServerBuilder {
    id: String,
    addr: SocketAddr,
    max_connection_age: Option<Duration>,
    max_concurrent_streams: Option<u32>,
}

#[derive(Debug)]
enum Stop {
    Graceful,
    Kill,
}

// === impl TestEchoServerBuilder ===

impl TestEchoServerBuilder {
    /// The address to listen on. Default: `127.0.0.1:0` (a free loopback port).
    pub fn addr(mut self, addr: SocketAddr) -> Self {
        self.addr = addr;
        self
    }

    /// Closes every connection gracefully once it is `age` old: an HTTP/2 GOAWAY, then
    /// the close when its streams are done, as grpc-go's `MaxConnectionAge` does
    /// (tonic's `Server::max_connection_age`). Default: connections live for ever.
    pub fn max_connection_age(mut self, age: Duration) -> Self {
        self.max_connection_age = Some(age);
        self
    }

    /// Advertises `SETTINGS_MAX_CONCURRENT_STREAMS = max` on every connection
    /// (tonic's `Server::max_concurrent_streams`). Default: no limit advertised.
    pub fn max_concurrent_streams(mut self, max: u32) -> Self {
        self.max_concurrent_streams = Some(max);
        self
    }

    /// Binds the address and starts serving on a thread of its own.
    ///
    /// # Errors
    ///
    /// When the address cannot be bound or the thread cannot be spawned.
    pub async fn start(self) -> std::io::Result<TestEchoServer> {
        let service = EchoService::new(self.id.clone());
        let (health, health_service) = tonic_health::server::health_reporter();
        health.set_serving::<EchoGrpcServer<EchoService>>().await;
        let listener = std::net::TcpListener::bind(self.addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (control, stop) = oneshot::channel::<Stop>();
        let conns = Arc::new(Conns::default());
        let server = self.tonic_server();
        let (svc, shared) = (service.clone(), conns.clone());
        let thread = std::thread::Builder::new()
            .name(format!("echo-{}", service.id()))
            .spawn(move || serve(server, listener, svc, health_service, stop, shared))?;
        Ok(TestEchoServer {
            addr,
            service,
            health,
            serving: tokio::sync::watch::Sender::new(true),
            control: Some(control),
            thread: Some(thread),
            conns,
        })
    }

    fn tonic_server(&self) -> tonic::transport::Server {
        let mut server =
            tonic::transport::Server::builder().max_concurrent_streams(self.max_concurrent_streams);
        if let Some(age) = self.max_connection_age {
            server = server.max_connection_age(age);
        }
        server
    }
}

// === impl TestEchoServer ===

impl TestEchoServer {
    /// A builder for a server that answers as instance `id`.
    pub fn builder(id: impl Into<String>) -> TestEchoServerBuilder {
        TestEchoServerBuilder {
            id: id.into(),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            max_connection_age: None,
            max_concurrent_streams: None,
        }
    }

    /// Starts a server for instance `id` on `127.0.0.1:0`, with the builder's defaults.
    pub async fn start(id: impl Into<String>) -> std::io::Result<TestEchoServer> {
        Self::builder(id).start().await
    }

    /// Starts a server for instance `id` on `addr`, with the builder's defaults.
    pub async fn start_on(
        addr: SocketAddr,
        id: impl Into<String>,
    ) -> std::io::Result<TestEchoServer> {
        Self::builder(id).addr(addr).start().await
    }

    /// How many connections the server has accepted since it started.
    pub fn accepted_connections(&self) -> u64 {
        self.conns.accepted()
    }

    /// How many accepted connections are still open (closed by either side ends
    /// the count once the server has dropped the socket).
    pub fn open_connections(&self) -> u64 {
        self.conns.open()
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The Echo service it serves (to add delay, hold or fail requests, or read counters).
    pub fn service(&self) -> &EchoService {
        &self.service
    }

    /// Stops the server as `SIGSTOP` would: every connection, open or accepted later,
    /// neither reads nor writes (no answers, no PING acks, no GOAWAY, no FIN) until
    /// [`thaw`](Self::thaw). The kernel still accepts new connections, so clients
    /// connect and then wait. [`kill`](Self::kill) and drop still end it at once.
    pub fn freeze(&self) {
        self.conns.freeze();
    }

    /// Ends [`freeze`](Self::freeze): connections go on with what the kernel buffered.
    pub fn thaw(&self) {
        self.conns.thaw();
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

    /// Stops accepting, finishes in-flight requests, then returns. Thaws a frozen
    /// server first, or its connections would never finish.
    pub async fn shutdown(mut self) {
        self.thaw();
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
    mut server: tonic::transport::Server,
    listener: std::net::TcpListener,
    service: EchoService,
    health: tonic_health::pb::health_server::HealthServer<
        impl tonic_health::pb::health_server::Health,
    >,
    stop: oneshot::Receiver<Stop>,
    conns: Arc<Conns>,
) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("echo server runtime");
    let (graceful_tx, graceful_rx) = oneshot::channel::<()>();
    let kill = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
        let server = server
            .add_service(health)
            .add_service(EchoGrpcServer::new(service))
            .serve_with_incoming_shutdown(incoming(listener, conns), async move {
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

fn incoming(
    listener: tokio::net::TcpListener,
    conns: Arc<Conns>,
) -> impl Stream<Item = std::io::Result<CountedStream>> {
    futures_util::stream::unfold(listener, move |listener| {
        let conns = conns.clone();
        async move {
            let item = listener.accept().await.map(|(stream, _)| {
                let _ = stream.set_nodelay(true);
                CountedStream::new(stream, conns)
            });
            Some((item, listener))
        }
    })
}
