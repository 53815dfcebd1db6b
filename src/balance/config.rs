//! Settings applied to every endpoint, and the load metric.

use std::sync::Arc;
use std::time::Duration;

use super::buffer::{DEFAULT_PER_CALL, DEFAULT_PER_CHANNEL, ReplayBuffer};
use crate::Backoff;

/// The settings of every endpoint's connection (the "endpoint template").
#[derive(Debug, Clone)]
pub(crate) struct EndpointConfig {
    pub(crate) connect_timeout: Duration,
    pub(crate) tcp_nodelay: bool,
    pub(crate) keep_alive_interval: Option<Duration>,
    pub(crate) keep_alive_timeout: Duration,
    pub(crate) keep_alive_while_idle: bool,
    pub(crate) keep_alive_permit_time: Duration,
    pub(crate) initial_stream_window_size: Option<u32>,
    pub(crate) initial_connection_window_size: Option<u32>,
    pub(crate) concurrency_limit: Option<usize>,
    pub(crate) reconnect_backoff: Backoff,
    /// Where a copy of each request is kept, when calls may be sent again (resends
    /// or retries on); set by the builder, one per channel.
    pub(crate) replay: Option<Arc<ReplayBuffer>>,
    /// The service whose `grpc.health.v1` status each connection watches.
    #[cfg(feature = "health")]
    pub(crate) health_check: Option<std::sync::Arc<str>>,
    #[cfg(feature = "tls-ring")]
    pub(crate) tls: Option<super::tls::TlsConfig>,
    /// Opens connections instead of TCP, when set.
    pub(crate) connector: Option<super::connector::Connector>,
}

impl EndpointConfig {
    /// The keep-alive of a new connection, if on.
    pub(crate) fn keep_alive(&self) -> Option<super::keepalive::KeepAliveConfig> {
        self.keep_alive_interval
            .map(|interval| super::keepalive::KeepAliveConfig {
                interval,
                timeout: self.keep_alive_timeout,
                while_idle: self.keep_alive_while_idle,
                permit_time: self.keep_alive_permit_time,
            })
    }

    pub(crate) fn scheme(&self) -> http::uri::Scheme {
        #[cfg(feature = "tls-ring")]
        if self.tls.is_some() {
            return http::uri::Scheme::HTTPS;
        }
        http::uri::Scheme::HTTP
    }
}

impl Default for EndpointConfig {
    fn default() -> Self {
        EndpointConfig {
            connect_timeout: Duration::from_secs(5),
            tcp_nodelay: true,
            keep_alive_interval: Some(Duration::from_secs(10)),
            keep_alive_timeout: Duration::from_secs(5),
            keep_alive_while_idle: false,
            keep_alive_permit_time: super::keepalive::DEFAULT_PERMIT_TIME,
            initial_stream_window_size: None,
            initial_connection_window_size: None,
            concurrency_limit: None,
            reconnect_backoff: Backoff::default(),
            replay: Some(ReplayBuffer::new(DEFAULT_PER_CALL, DEFAULT_PER_CHANNEL)),
            #[cfg(feature = "health")]
            health_check: None,
            #[cfg(feature = "tls-ring")]
            tls: None,
            connector: None,
        }
    }
}

/// How the balancer estimates the load of an endpoint when it compares two.
///
/// Only Peak-EWMA is offered for now: the cost of an endpoint is its peak-sensitive
/// moving average of response latency (measured to the response headers) times its
/// number of requests in flight plus one, so a slow or busy instance gets a small
/// share of the traffic.
///
/// # Cold start
///
/// A newly inserted instance (a new one, or one back after a removal) starts from
/// the median of the current latency estimates of the ready instances, and from the
/// default RTT only when there is none. It thus competes at once on equal terms;
/// its first responses then set its own estimate (a slower one raises it at once).
/// Starting every newcomer from a fixed default instead would starve it whenever
/// the others answer much faster than that default.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadMetric {
    default_rtt: Duration,
    decay: Duration,
}

// === impl LoadMetric ===

impl LoadMetric {
    /// Peak-EWMA with `default_rtt` as the latency assumed for an instance inserted
    /// while no other is ready (floored at 1 ms; otherwise a newcomer starts from its
    /// peers' median, see [Cold start](Self#cold-start)) and `decay` as the time
    /// constant over which old latencies fade (floored at 1 ms).
    pub fn peak_ewma(default_rtt: Duration, decay: Duration) -> Self {
        const FLOOR: Duration = Duration::from_millis(1);
        LoadMetric {
            default_rtt: default_rtt.max(FLOOR),
            decay: decay.max(FLOOR),
        }
    }

    /// The latency assumed for an instance inserted while no other is ready.
    pub fn default_rtt(&self) -> Duration {
        self.default_rtt
    }

    /// The time over which latencies fade.
    pub fn decay(&self) -> Duration {
        self.decay
    }
}

impl Default for LoadMetric {
    /// Peak-EWMA with a default RTT of 30 ms and a decay of 10 s.
    fn default() -> Self {
        LoadMetric::peak_ewma(Duration::from_millis(30), Duration::from_secs(10))
    }
}
