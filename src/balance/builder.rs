//! The builder of [`BalancedChannel`].

use std::future::Future;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use std::time::Duration;

use futures_core::Stream;
use tokio::sync::mpsc;
use tokio_util::sync::PollSender;
use tower::discover::Change;
use tracing::Instrument;

use super::accrual::FailureAccrual;
use super::buffer::{DEFAULT_PER_CALL, DEFAULT_PER_CHANNEL, ReplayBuffer};
use super::channel::BalancedChannel;
use super::config::{EndpointConfig, LoadMetric};
use super::failfast::FailFast;
use super::metrics::ChannelMetrics;
use super::policies::{self, Follower, Live, Policies};
use super::policy::{Policy, TrafficPolicy};
use super::retry::RetryBudget;
use super::service_config::{Methods, ServiceConfig};
use super::shared::Shared;
use super::subset::Subset;
use super::table::Registry;
use super::worker::{self, Worker, WorkerParts};
use crate::source::ServiceConfigWatch;
use crate::{Backoff, BoxError, Error, Instance, InstanceKey};

const DEFAULT_FAILFAST: Duration = Duration::from_secs(3);
const DEFAULT_BUFFER: usize = 1024;
const DEFAULT_MAX_RESENDS: u32 = 3;
const DEFAULT_METRICS_ENDPOINTS: usize = 32;

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
    accrual: FailureAccrual,
    budget: RetryBudget,
    max_resends: u32,
    /// The replay buffer's limits: per call, per channel.
    buffer: (usize, usize),
    service_config: ServiceConfig,
    /// Taken by the first channel built (a clone of the builder shares it).
    config_watch: Option<Arc<Mutex<Option<ServiceConfigWatch>>>>,
    traffic: TrafficPolicy,
    metrics_endpoints: usize,
    subset: Option<Subset>,
}

// === impl BalancedChannel ===

impl BalancedChannel {
    /// A builder for a channel to the instances of `service`, named in errors and logs.
    pub fn builder(service: impl Into<String>) -> BalancedChannelBuilder {
        BalancedChannelBuilder::new(service.into())
    }
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
            accrual: FailureAccrual::default(),
            budget: RetryBudget::default(),
            max_resends: DEFAULT_MAX_RESENDS,
            buffer: (DEFAULT_PER_CALL, DEFAULT_PER_CHANNEL),
            service_config: ServiceConfig::new(),
            config_watch: None,
            traffic: TrafficPolicy::new(),
            metrics_endpoints: DEFAULT_METRICS_ENDPOINTS,
            subset: None,
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

    /// Sends an HTTP/2 PING when calls are open on a connection but nothing has been
    /// received on it for this long, within the servers' PING policies (below);
    /// `None` turns keep-alive off. Default: 10 s.
    ///
    /// A crashed or restarted server closes its connections and leaves the ready set at
    /// once. PINGs are for the silent failures: a frozen process or a partition that
    /// sends no FIN or RST. Without an answer within [`Self::keep_alive_timeout`] the
    /// connection is declared dead, its calls fail (`Unavailable`) and the endpoint
    /// leaves the ready set and reconnects: a call sent to a server that no longer
    /// answers fails at most interval + timeout (15 s by default) after it was sent.
    ///
    /// # The servers' PING policies
    ///
    /// gRPC servers count a PING that comes less than 5 minutes after the previous
    /// one, while they send no headers or data, as a strike, and close the connection
    /// on the third with `GOAWAY(ENHANCE_YOUR_CALM, "too_many_pings")`, failing every
    /// call on it: grpc-go (`keepalive.EnforcementPolicy.MinTime`), gRPC C-core and
    /// the languages on it (`grpc.http2.min_ping_interval_without_data_ms`,
    /// `grpc.http2.max_ping_strikes`) and grpc-java (`permitKeepAliveTime`, counted
    /// from the connection's start too). A PING on a connection without calls counts
    /// against 2 hours. The channel keeps that count as the strictest of them would and
    /// never sends a third strike:
    ///
    /// - a PING that no server would count goes out after the interval of silence;
    /// - one that some server would count goes out only while it is at most the
    ///   second strike and a call was opened since the server last proved it is alive
    ///   (a PING answer, headers or data): so a call sent to a frozen server is found
    ///   out within interval + timeout;
    /// - otherwise the next PING waits until no server counts it:
    ///   [`Self::keep_alive_permit_time`] (5 minutes) and a tenth after the last.
    ///
    /// So a call silent for 10 minutes sees PINGs at 10 s and 5 min 40 s, a server
    /// stream with a message every 4 minutes one PING after each message, and a
    /// connection busy with answers a PING after each silence of the interval.
    ///
    /// A server configured stricter than the default that still closes a connection
    /// with `GOAWAY(ENHANCE_YOUR_CALM)`: the calls it names as not processed are sent
    /// again elsewhere, the endpoint doubles its interval and permitted time for its
    /// next connection (as grpc-go's client doubles its interval), the event is logged
    /// as a warning and counted in `tonic_discovery_balancer_too_many_pings_total`.
    pub fn http2_keep_alive_interval(mut self, interval: impl Into<Option<Duration>>) -> Self {
        self.endpoint.keep_alive_interval = interval.into();
        self
    }

    /// How long to wait for a PING's answer before closing the connection.
    /// Default: 5 s.
    pub fn keep_alive_timeout(mut self, timeout: Duration) -> Self {
        self.endpoint.keep_alive_timeout = timeout;
        self
    }

    /// Sends PINGs also while no call is open. Default: false.
    ///
    /// Turn it on only for servers that permit PINGs without calls (grpc-go's
    /// `PermitWithoutStream`, C-core's `grpc.keepalive_permit_without_calls`,
    /// grpc-java's `permitKeepAliveWithoutCalls`): by default they allow one per 2
    /// hours, and the channel then PINGs idle connections within
    /// [`Self::keep_alive_permit_time`] the same way as busy ones.
    pub fn keep_alive_while_idle(mut self, enabled: bool) -> Self {
        self.endpoint.keep_alive_while_idle = enabled;
        self
    }

    /// The least time between PINGs, without data from the server, that the servers
    /// permit without counting a strike (see [`Self::http2_keep_alive_interval`]).
    /// Default: 5 minutes, the default of grpc-go, gRPC C-core and grpc-java.
    ///
    /// Lower it only when every server is configured to permit more (for example
    /// grpc-go's `EnforcementPolicy{MinTime: 10 * time.Second}`): PINGs then go out as
    /// often as that permits, and a long call is checked more often.
    pub fn keep_alive_permit_time(mut self, permitted: Duration) -> Self {
        self.endpoint.keep_alive_permit_time = permitted;
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

    /// Client-side health checking (gRFC A17). Default: off.
    ///
    /// Each connection opens a `grpc.health.v1.Health/Watch` stream for `service`
    /// (the name the server's health service knows; `""` for the whole server). While
    /// the server says anything but `SERVING` (or answers `NOT_FOUND`: it does not
    /// know the service), the endpoint is out of the ready set, ahead of the
    /// registry; `SERVING` brings it back at once. A server without the
    /// health service (`UNIMPLEMENTED`) is taken as serving, and a broken stream is
    /// retried with the reconnect backoff and never holds the endpoint out by itself.
    ///
    /// The stream stays open, so the connection counts as busy for keep-alive: PINGs go
    /// out within the servers' PING policies (see
    /// [`Self::http2_keep_alive_interval`]).
    #[cfg(feature = "health")]
    #[cfg_attr(docsrs, doc(cfg(feature = "health")))]
    pub fn health_check(mut self, service: impl Into<String>) -> Self {
        self.endpoint.health_check = Some(service.into().into());
        self
    }

    /// Opens every instance's connection with `connector` instead of TCP, as tonic's
    /// `Endpoint::connect_with_connector` does: a `tower::Service<Uri>` returning the
    /// connection's byte stream (Unix sockets, a proxy's tunnel, an in-memory transport
    /// in tests). It is called with `http://host:port` of the instance (`https://…`
    /// with [`Self::tls`], whose handshake then runs over the stream it returns), within
    /// the connect timeout; [`Self::tcp_nodelay`] does not apply. Default: TCP.
    ///
    /// ```no_run
    /// # use tonic_discovery::balance::BalancedChannel;
    /// # use tonic_discovery::{Instance, InstanceKey};
    /// # use tower::discover::Change;
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// // Every instance is reached through one Unix socket (a local proxy, say).
    /// let connector = tower::service_fn(|_uri: http::Uri| {
    ///     tokio::net::UnixStream::connect("/run/echo.sock")
    /// });
    /// let key = InstanceKey::new("node-1", "echo-1");
    /// let discovery = futures_util::stream::iter([Ok::<_, std::convert::Infallible>(
    ///     Change::Insert(key.clone(), Instance::new(key, "localhost", 50051)),
    /// )]);
    /// let channel = BalancedChannel::builder("echo")
    ///     .connector(connector)
    ///     .build(discovery)?;
    /// # Ok(()) }
    /// ```
    pub fn connector<C>(mut self, connector: C) -> Self
    where
        C: tower::Service<http::Uri> + Clone + Send + Sync + 'static,
        C::Response: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
        C::Error: Into<crate::BoxError>,
        C::Future: Send + 'static,
    {
        self.endpoint.connector = Some(super::connector::Connector::new(connector));
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
    ///
    /// The timer runs only while no instance could take a call at all (none
    /// connected, in service and serving): a request that waits because every
    /// instance is at its stream or concurrency limit waits for a stream to free
    /// up, within the request timeout ([`timeout`](Self::timeout)).
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

    /// When an endpoint whose calls fail leaves the ready set. Default:
    /// [`FailureAccrual::default`] (5 consecutive failures, or 50% of at least 20 calls
    /// over 10 s; at most half the endpoints ejected). [`FailureAccrual::disabled`]
    /// turns it off.
    pub fn failure_accrual(mut self, accrual: FailureAccrual) -> Self {
        self.accrual = accrual;
        self
    }

    /// How many times one call may be resent to another endpoint after an endpoint
    /// did not process it (0 turns resends off). Default: 3.
    ///
    /// Only calls the server cannot have processed are resent: the connection was
    /// found closed before the request was written, the server refused the stream
    /// (`REFUSED_STREAM`) or its GOAWAY's last stream id is below the call's (the
    /// `MAX_CONNECTION_AGE` of grpc-go, grpc-java and Envoy). A refused request is
    /// rebuilt from a copy of its body, kept within [`retry_buffer`](Self::retry_buffer). This is gRFC A6's
    /// "transparent retry"; no call the server may have seen is ever resent.
    pub fn max_resends(mut self, resends: u32) -> Self {
        self.max_resends = resends;
        self
    }

    /// How traffic is placed: instance weights and zone-aware routing (see
    /// [`TrafficPolicy`]). Default: [`TrafficPolicy::new`] (weights on, the client's
    /// zone unknown).
    pub fn traffic_policy(mut self, policy: TrafficPolicy) -> Self {
        self.traffic = policy;
        self
    }

    /// Connects to a subset of the instances only, chosen by `subset` (opt-in; see
    /// [`Subset`] for the choice of deterministic aperture): with many clients of a
    /// service of many instances, each client holds `k` connections instead of one
    /// per instance, and the connections spread evenly over the instances. The
    /// subset refills: while a member of it is failing (backing off, ejected, not
    /// serving) the next instance on the ring takes its place, and gives it back
    /// when it recovers; a removed member is replaced the same way. Default: every
    /// instance is connected.
    ///
    /// ```
    /// use tonic_discovery::balance::{BalancedChannel, Coordinate, Subset};
    /// # fn main() -> tonic_discovery::Result<()> {
    /// // Replica 3 of 100 clients, 16 connections each.
    /// let builder = BalancedChannel::builder("echo")
    ///     .subset(Subset::new(Coordinate::new(3, 100)?, 16));
    /// # let _ = builder; Ok(()) }
    /// ```
    pub fn subset(mut self, subset: Subset) -> Self {
        self.subset = Some(subset);
        self
    }

    /// How many endpoints get metrics of their own (label `endpoint` = `host:port`,
    /// feature `metrics`); the calls of the others are counted together under
    /// `endpoint="other"`, so a service of 10,000 instances does not make 10,000
    /// series per metric. The cap counts every address labelled over the channel's
    /// life, since a metrics recorder keeps a series once made: over a rolling
    /// deployment, the new addresses beyond the cap go under `other` (an address that
    /// returns keeps its label). Default: 32; 0
    /// counts every call under `other` (the channel's own metrics are always there).
    pub fn metrics_endpoints(mut self, max: usize) -> Self {
        self.metrics_endpoints = max;
        self
    }

    /// Per-method call policies (gRFC A6): retries of calls that failed with a
    /// retryable status, a default deadline per method, and retry throttling. Built
    /// in code or parsed from a gRPC service config document with
    /// [`ServiceConfig::from_json`]; see [`RetryPolicy`](super::RetryPolicy) for what
    /// is retried. Default: none, every call is tried once (resends of calls no
    /// server processed aside, see [`max_resends`](Self::max_resends)). A config that
    /// breaks gRFC A6's rules is a configuration error at `build()`.
    ///
    /// A retried call's body is kept while it is in flight, within
    /// [`retry_buffer`](Self::retry_buffer) (larger calls are not retried).
    pub fn service_config(mut self, config: ServiceConfig) -> Self {
        self.service_config = config;
        self
    }

    /// Follows a service config delivered by a registry, live: a Consul KV key
    /// ([`consul::Client::service_config`](crate::consul::Client::service_config)),
    /// an etcd key, a DNS TXT record, or a stream of your own
    /// ([`ServiceConfigWatch::new`]). Default: none (opt-in).
    ///
    /// - Each document that parses and follows gRFC A6's rules replaces the
    ///   channel's policies at once, for the calls that start after it (calls in
    ///   flight keep theirs); a throttle whose settings did not change keeps its
    ///   tokens, while adaptive hedging delays learn anew.
    /// - A document that does not is refused: the last good config stays, a `WARN`
    ///   log names the field and `service_config_updates_total{outcome="refused"}`
    ///   counts it. It never fails a call.
    /// - No document (the key is absent or was deleted) brings back the config set
    ///   with [`service_config`](Self::service_config) (none by default), as gRPC's
    ///   default service config.
    /// - A registry that cannot be read changes nothing (the watch retries with its
    ///   backoff).
    ///
    /// Calls go out with the config set in code until the first document arrives;
    /// request bodies are kept for retries from the start. The watch runs inside the
    /// channel's worker and ends with it.
    ///
    /// A watch serves one channel: building a second channel from a clone of this
    /// builder is a configuration error (give each its own watch).
    pub fn service_config_watch(mut self, watch: ServiceConfigWatch) -> Self {
        self.config_watch = Some(Arc::new(Mutex::new(Some(watch))));
        self
    }

    /// How much of the request bodies is kept to send calls again (transparent
    /// resends, retries, hedges): at most `per_call` bytes of one call, and
    /// `per_channel` bytes over all the channel's calls in flight. A call whose body
    /// passes either is sent once: it is committed, as gRFC A6 says, and a resend,
    /// retry or hedge it would have had is counted under `not_kept`. The kept bytes
    /// are the frames as sent (shared, not copied), held until the call ends.
    /// Default: 256 KiB per call, 16 MiB per channel (gRFC A6's suggestion and
    /// grpc-java's default).
    pub fn retry_buffer(mut self, per_call: usize, per_channel: usize) -> Self {
        self.buffer = (per_call, per_channel);
        self
    }

    /// The budget that bounds resends across all calls of the channel. Default:
    /// [`RetryBudget::default`] (20% of the calls plus 10 per second).
    pub fn retry_budget(mut self, budget: RetryBudget) -> Self {
        self.budget = budget;
        self
    }

    /// Builds the channel and spawns its worker on the current tokio runtime.
    ///
    /// `discovery` yields `Insert`/`Remove` changes keyed by instance. Its errors are
    /// logged and ignored; when it ends the current set is kept.
    ///
    /// # Errors
    ///
    /// A configuration error ([`Error::is_config`]) naming the setting that is out of
    /// range (failure accrual, retry budget).
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, as `tokio::spawn` does.
    pub fn build<D, E>(self, discovery: D) -> Result<BalancedChannel, Error>
    where
        D: Stream<Item = Result<Change<InstanceKey, Instance>, E>> + Send + Unpin + 'static,
        E: Into<BoxError> + 'static,
    {
        let (channel, worker) = self.build_with_worker(discovery)?;
        tokio::spawn(worker);
        Ok(channel)
    }

    /// Builds the channel and returns its worker for you to spawn (it needs a tokio
    /// runtime for its timers and sockets). Calls wait until the worker runs; the
    /// worker ends when the last channel clone is dropped.
    ///
    /// # Errors
    ///
    /// As [`build`](Self::build).
    pub fn build_with_worker<D, E>(
        self,
        discovery: D,
    ) -> Result<(BalancedChannel, impl Future<Output = ()> + Send + 'static), Error>
    where
        D: Stream<Item = Result<Change<InstanceKey, Instance>, E>> + Send + Unpin + 'static,
        E: Into<BoxError> + 'static,
    {
        self.accrual.validate().map_err(Error::config)?;
        self.budget.validate().map_err(Error::config)?;
        self.service_config.validate()?;
        let watch = match &self.config_watch {
            None => None,
            Some(slot) => Some(slot.lock().ok().and_then(|mut w| w.take()).ok_or_else(|| {
                Error::config(
                    "this service config watch already serves a channel built from a clone \
                     of this builder; give each channel its own watch",
                )
            })?),
        };
        let live = Live::new(&self.service_config, None);
        let retries = watch.is_some() || (live.methods.as_ref()).is_some_and(Methods::any_retry);
        let name: Arc<str> = self.name.into();
        let (tx, requests) = mpsc::channel(self.buffer_size);
        let (resend, resends) = mpsc::unbounded_channel();
        let registry = Registry::new(Policy::from(&self.traffic));
        let metrics = ChannelMetrics::new(
            name.clone(),
            self.metrics_endpoints,
            registry.policy().zoned(),
        );
        let buffer = ReplayBuffer::new(self.buffer.0, self.buffer.1);
        let mut endpoint = self.endpoint;
        endpoint.replay = (self.max_resends > 0 || retries).then(|| buffer.clone());
        let parts = WorkerParts {
            name: name.clone(),
            requests,
            resends,
            failfast: FailFast::new(self.failfast),
            registry: registry.clone(),
            config: Arc::new(endpoint),
            accrual: Arc::new(self.accrual),
            load: self.load,
            subset: self.subset,
            metrics: metrics.clone(),
        };
        let (policies, follower) = match watch {
            None => (Policies::Fixed(live), None),
            Some(watch) => {
                let swap = Arc::new(ArcSwap::from_pointee(live));
                let follower = Follower {
                    watch,
                    policies: Arc::downgrade(&swap),
                    base: self.service_config,
                    service: name.clone(),
                    metrics: metrics.clone(),
                };
                (Policies::Followed(swap), Some(follower))
            }
        };
        let span = tracing::info_span!("balance", service = %name);
        let worker = worker::run(Worker::new(discovery, parts));
        // The follower lives inside the worker: it ends with it, and the worker
        // goes on alone if the watch ever ends.
        let worker = async move {
            let Some(follower) = follower else {
                return worker.await;
            };
            let mut worker = std::pin::pin!(worker);
            tokio::select! {
                () = &mut worker => {}
                () = policies::follow(follower) => worker.await,
            }
        }
        .instrument(span);
        let shared = Arc::new(Shared {
            name,
            registry,
            timeout: self.timeout,
            resend,
            budget: self.budget.build(),
            max_resends: self.max_resends,
            policies,
            buffer,
            metrics,
        });
        Ok((BalancedChannel::new(PollSender::new(tx), shared), worker))
    }
}
