//! The builder of [`BalancedChannel`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_core::Stream;
use tokio::sync::mpsc;
use tokio_util::sync::PollSender;
use tower::discover::Change;
use tracing::Instrument;

use super::channel::{BalancedChannel, Shared};
use super::config::{EndpointConfig, LoadMetric};
use super::failfast::FailFast;
use super::info::Registry;
use super::worker::{self, Worker, WorkerParts};
use crate::{Backoff, BoxError, Instance, InstanceKey};

const DEFAULT_FAILFAST: Duration = Duration::from_secs(3);
const DEFAULT_BUFFER: usize = 1024;

/// Configures a [`BalancedChannel`]: the endpoint template applied to every
/// instance, the queue, fail-fast and the load metric.
#[derive(Debug, Clone)]
#[must_use]
pub struct BalancedChannelBuilder {
    name: String,
    endpoint: EndpointConfig,
    timeout: Option<Duration>,
    failfast: Duration,
    buffer_size: usize,
    load: LoadMetric,
}

// === impl BalancedChannelBuilder ===

impl BalancedChannelBuilder {
    pub(crate) fn new(name: String) -> Self {
        BalancedChannelBuilder {
            name,
            endpoint: EndpointConfig::default(),
            timeout: None,
            failfast: DEFAULT_FAILFAST,
            buffer_size: DEFAULT_BUFFER,
            load: LoadMetric::default(),
        }
    }

    /// The longest a TCP connect plus HTTP/2 handshake may take. Default: 5 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.endpoint.connect_timeout = timeout;
        self
    }

    /// A deadline on every call, counted from `call` (so time spent queued for a
    /// ready instance counts) to the response headers. A call past it fails with
    /// `DeadlineExceeded`. A shorter `grpc-timeout` on the request (from
    /// `tonic::Request::set_timeout`) wins. Default: none.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sets `TCP_NODELAY` on every connection. Default: true.
    pub fn tcp_nodelay(mut self, enabled: bool) -> Self {
        self.endpoint.tcp_nodelay = enabled;
        self
    }

    /// Sends HTTP/2 PINGs at this interval to detect dead connections. Default: off.
    ///
    /// A crashed or restarted server closes its connections and leaves the ready set at
    /// once without this. PINGs are for the silent failures: a partition or a frozen
    /// host that sends no FIN or RST, where an instance would otherwise stay ready
    /// until requests time out (set [`Self::timeout`] too). Off by default because
    /// servers police PINGs: grpc-go answers PINGs sent more often than its enforcement
    /// policy allows (5 min by default) with `GOAWAY too_many_pings`. 20–60 s with
    /// [`Self::keep_alive_while_idle`] off suits most servers.
    pub fn http2_keep_alive_interval(mut self, interval: Duration) -> Self {
        self.endpoint.keep_alive_interval = Some(interval);
        self
    }

    /// How long to wait for a PING's answer before closing the connection.
    /// Default: 20 s. Needs [`Self::http2_keep_alive_interval`].
    pub fn keep_alive_timeout(mut self, timeout: Duration) -> Self {
        self.endpoint.keep_alive_timeout = timeout;
        self
    }

    /// Sends PINGs also while no request is open. Default: false.
    pub fn keep_alive_while_idle(mut self, enabled: bool) -> Self {
        self.endpoint.keep_alive_while_idle = enabled;
        self
    }

    /// The HTTP/2 stream-level flow-control window. Default: hyper's (5 MiB).
    pub fn initial_stream_window_size(mut self, size: impl Into<Option<u32>>) -> Self {
        self.endpoint.initial_stream_window_size = size.into();
        self
    }

    /// The HTTP/2 connection-level flow-control window. Default: hyper's (5 MiB).
    pub fn initial_connection_window_size(mut self, size: impl Into<Option<u32>>) -> Self {
        self.endpoint.initial_connection_window_size = size.into();
        self
    }

    /// At most `limit` requests in flight per instance (at least 1); an instance at
    /// its limit is not ready and gets no more. When every instance is at its limit
    /// for longer than the fail-fast timeout, requests fail with `Unavailable`.
    /// Default: no limit.
    pub fn concurrency_limit(mut self, limit: usize) -> Self {
        self.endpoint.concurrency_limit = Some(limit);
        self
    }

    /// The backoff between reconnect attempts to an instance whose connect failed.
    /// Default: [`Backoff::default`] (100 ms to 10 s, jitter 0.2).
    pub fn reconnect_backoff(mut self, backoff: Backoff) -> Self {
        self.endpoint.reconnect_backoff = backoff;
        self
    }

    /// Connects to every instance over TLS (with `https` URIs). Default: plaintext.
    #[cfg(feature = "tls-ring")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls-ring")))]
    pub fn tls(mut self, tls: super::TlsConfig) -> Self {
        self.endpoint.tls = Some(tls);
        self
    }

    /// How long a request may wait for a ready instance before it fails with
    /// `Unavailable` (and the requests after it fail at once, until an instance is
    /// ready). Default: 3 s, as linkerd's outbound default: long enough to ride out
    /// a reconnect, short enough that callers see an outage rather than a hang.
    pub fn failfast_timeout(mut self, timeout: Duration) -> Self {
        self.failfast = timeout;
        self
    }

    /// How many requests may wait for the worker (at least 1); callers' `poll_ready`
    /// waits for a free slot. Default: 1024.
    pub fn buffer_size(mut self, size: usize) -> Self {
        self.buffer_size = size.max(1);
        self
    }

    /// The load metric the balancer compares. Default: [`LoadMetric::default`]
    /// (Peak-EWMA, 30 ms default RTT, 10 s decay).
    pub fn load(mut self, load: LoadMetric) -> Self {
        self.load = load;
        self
    }

    /// Builds the channel and spawns its worker on the current tokio runtime.
    ///
    /// `discovery` yields `Insert`/`Remove` changes keyed by instance. Its errors are
    /// logged and ignored; when it ends the current set is kept.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, as `tokio::spawn` does.
    pub fn build<D, E>(self, discovery: D) -> BalancedChannel
    where
        D: Stream<Item = Result<Change<InstanceKey, Instance>, E>> + Send + Unpin + 'static,
        E: Into<BoxError> + 'static,
    {
        let (channel, worker) = self.build_with_worker(discovery);
        tokio::spawn(worker);
        channel
    }

    /// Builds the channel and returns its worker for you to spawn (it needs a tokio
    /// runtime for its timers and sockets). Calls wait until the worker runs; the
    /// worker ends when the last channel clone is dropped.
    pub fn build_with_worker<D, E>(
        self,
        discovery: D,
    ) -> (BalancedChannel, impl Future<Output = ()> + Send + 'static)
    where
        D: Stream<Item = Result<Change<InstanceKey, Instance>, E>> + Send + Unpin + 'static,
        E: Into<BoxError> + 'static,
    {
        let name: Arc<str> = self.name.into();
        let (tx, requests) = mpsc::channel(self.buffer_size);
        let registry = Registry::default();
        let parts = WorkerParts {
            name: name.clone(),
            requests,
            failfast: FailFast::new(self.failfast),
            registry: registry.clone(),
            config: Arc::new(self.endpoint),
            load: self.load,
        };
        let span = tracing::info_span!("balance", service = %name);
        let worker = worker::run(Worker::new(discovery, parts)).instrument(span);
        let shared = Arc::new(Shared {
            name,
            registry,
            timeout: self.timeout,
        });
        (BalancedChannel::new(PollSender::new(tx), shared), worker)
    }
}
