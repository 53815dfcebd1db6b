//! A balanced channel's metrics and its endpoints' (labels `service`, `endpoint`), over
//! the crate's metrics handles ([`telemetry`](crate::telemetry)): registered once per
//! channel and endpoint, so the request path only increments atomics.

use std::sync::Arc;
use std::time::Duration;

use tonic::Code;

use super::EndpointState;
use super::attempts::AttemptCounters;
use crate::telemetry::{Counter, Gauge, Histogram, counter, gauge, histogram, names};

/// The label value of an endpoint beyond the cap: its calls are counted together.
const OTHER_ENDPOINTS: &str = "other";

/// The states [`EndpointState`] can take, in [`EndpointState::as_u8`] order, as
/// label values.
const STATES: [&str; 6] = [
    "connecting",
    "ready",
    "backoff",
    "ejected",
    "probing",
    "not_serving",
];

/// How a call that ended is labelled: a gRPC code name, or what happened instead.
fn outcome_label(code: Option<Code>) -> &'static str {
    match code {
        None => "TRANSPORT",
        Some(code) => match code {
            Code::Ok => "OK",
            Code::Cancelled => "CANCELLED",
            Code::Unknown => "UNKNOWN",
            Code::InvalidArgument => "INVALID_ARGUMENT",
            Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
            Code::NotFound => "NOT_FOUND",
            Code::AlreadyExists => "ALREADY_EXISTS",
            Code::PermissionDenied => "PERMISSION_DENIED",
            Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
            Code::FailedPrecondition => "FAILED_PRECONDITION",
            Code::Aborted => "ABORTED",
            Code::OutOfRange => "OUT_OF_RANGE",
            Code::Unimplemented => "UNIMPLEMENTED",
            Code::Internal => "INTERNAL",
            Code::Unavailable => "UNAVAILABLE",
            Code::DataLoss => "DATA_LOSS",
            Code::Unauthenticated => "UNAUTHENTICATED",
        },
    }
}

/// The index of a failure label (17 codes, then transport).
fn outcome_index(code: Option<Code>) -> usize {
    code.map_or(17, |c| (c as usize).min(16))
}

/// A method config's attempts counter, made at its first attempt (the channel's
/// service name is known only then).
#[derive(Debug, Default)]
pub(crate) struct MethodCounter(std::sync::OnceLock<Counter>);

/// A balanced channel's metrics (label `service`).
pub(crate) struct ChannelMetrics {
    service: Arc<str>,
    calls: Counter,
    /// One per gRPC code but OK (index = code), and transport failures (17), made on
    /// first use.
    failures: [std::sync::OnceLock<Counter>; 18],
    duration: Histogram,
    in_flight: Gauge,
    endpoints: [Gauge; 6],
    /// Zone-aware routing's share of the traffic per tier (zone-aware channels only).
    tiers: Option<[Gauge; 3]>,
    changes: Counter,
    errors: Counter,
    too_many_pings: Counter,
    /// What the retry and hedging policies did, for `BalancedChannel::attempt_stats`
    /// (kept whether or not the `metrics` feature is on).
    pub(crate) attempts: AttemptCounters,
    /// The addresses that got a label of their own, and the most allowed. Never
    /// given back: a recorder keeps a series once made, so over a rolling
    /// deployment the cap must count every address labelled, not only the current
    /// ones; an address that returns finds its label again.
    labelled: std::sync::Mutex<std::collections::HashSet<Box<str>>>,
    cap: usize,
    /// The shared set of the endpoints beyond the cap, made when the first one comes.
    other: std::sync::OnceLock<Arc<EndpointMetrics>>,
}

/// One endpoint's metrics (labels `service`, `endpoint`), or the shared set of the
/// endpoints beyond the cap (`endpoint="other"`).
pub(crate) struct EndpointMetrics {
    /// Whether it has a label of its own.
    labelled: bool,
    calls: Counter,
    failures: Counter,
    duration: Histogram,
    in_flight: Gauge,
}

// === impl ChannelMetrics ===

impl ChannelMetrics {
    /// The channel's handles; `cap` endpoints at most get their own labels; the
    /// zone shares are published when `zoned`.
    pub(crate) fn new(service: Arc<str>, cap: usize, zoned: bool) -> Arc<Self> {
        let labels = [("service", &*service)];
        Arc::new(ChannelMetrics {
            calls: counter(names::CALLS, &labels),
            failures: Default::default(),
            duration: histogram(names::DURATION, &labels),
            in_flight: gauge(names::IN_FLIGHT, &labels),
            endpoints: STATES.map(|state| {
                gauge(
                    names::ENDPOINTS,
                    &[("service", &*service), ("state", state)],
                )
            }),
            tiers: zoned.then(|| {
                ["local", "region", "other"]
                    .map(|tier| gauge(names::TIER_SHARE, &[("service", &*service), ("tier", tier)]))
            }),
            changes: counter(names::DISCOVERY_CHANGES, &labels),
            errors: counter(names::DISCOVERY_ERRORS, &labels),
            too_many_pings: counter(names::TOO_MANY_PINGS, &labels),
            attempts: AttemptCounters::default(),
            labelled: std::sync::Mutex::default(),
            cap,
            other: std::sync::OnceLock::new(),
            service,
        })
    }

    /// The handles of a new endpoint at `address`: its own if the address had them
    /// before or fewer than the cap addresses ever had theirs, else the shared
    /// `other` set. O(1); called per endpoint, not per call.
    pub(crate) fn endpoint(self: &Arc<Self>, address: &str) -> Arc<EndpointMetrics> {
        let took = {
            let mut labelled = self
                .labelled
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            labelled.contains(address)
                || (labelled.len() < self.cap && labelled.insert(address.into()))
        };
        if !took {
            let other = self
                .other
                .get_or_init(|| Arc::new(self.handles(OTHER_ENDPOINTS, false)));
            return other.clone();
        }
        Arc::new(self.handles(address, true))
    }

    fn handles(&self, endpoint: &str, labelled: bool) -> EndpointMetrics {
        let labels = [("service", &*self.service), ("endpoint", endpoint)];
        EndpointMetrics {
            labelled,
            calls: counter(names::ENDPOINT_CALLS, &labels),
            failures: counter(names::ENDPOINT_FAILURES, &labels),
            duration: histogram(names::ENDPOINT_DURATION, &labels),
            in_flight: gauge(names::ENDPOINT_IN_FLIGHT, &labels),
        }
    }

    /// A call failed before any endpoint took it (fail-fast: no ready instance).
    pub(crate) fn unavailable(&self) {
        self.calls.increment(1);
        self.failure(Some(Code::Unavailable));
    }

    fn failure(&self, code: Option<Code>) {
        self.failures[outcome_index(code)]
            .get_or_init(|| {
                let labels = [("service", &*self.service), ("code", outcome_label(code))];
                counter(names::FAILURES, &labels)
            })
            .increment(1);
    }

    /// Discovery changes applied (inserts and removes).
    pub(crate) fn discovery_change(&self) {
        self.changes.increment(1);
    }

    /// A server closed a connection with `GOAWAY(ENHANCE_YOUR_CALM)`: too many PINGs.
    pub(crate) fn too_many_pings(&self) {
        self.too_many_pings.increment(1);
    }

    /// What a retry policy decided for a call that failed with a retryable status
    /// (`outcome`: `retried`, or why not), under the label of the method config
    /// that applied (`package.Service/Method`, `package.Service/*` or `*`). Only on
    /// that path, so the handle is looked up then.
    pub(crate) fn retry(&self, method: &str, outcome: &'static str) {
        let labels = [
            ("service", &*self.service),
            ("method", method),
            ("outcome", outcome),
        ];
        counter(names::RETRIES, &labels).increment(1);
        self.attempts.retry(outcome);
    }

    /// A hedged call's event (`outcome`: `sent`, `won`: a hedge answered first, or
    /// why no more were sent: `throttled`, `pushback`, `not_kept`), under the method
    /// config's label.
    pub(crate) fn hedge(&self, method: &str, outcome: &'static str) {
        let labels = [
            ("service", &*self.service),
            ("method", method),
            ("outcome", outcome),
        ];
        counter(names::HEDGES, &labels).increment(1);
        self.attempts.hedge(outcome);
    }

    /// One attempt of a call under a method config (its first, a retry or a hedge),
    /// counted under the config's label; the handle is made at the method's first
    /// attempt and kept in `handle`.
    pub(crate) fn attempt(&self, method: &str, handle: &MethodCounter) {
        handle
            .0
            .get_or_init(|| {
                let labels = [("service", &*self.service), ("method", method)];
                counter(names::ATTEMPTS, &labels)
            })
            .increment(1);
    }

    /// What became of a service config document from a registry (`outcome`:
    /// `applied`, `refused`: it did not parse or broke gRFC A6's rules, `absent`: the
    /// channel's own config is back, `unreadable`: the registry failed).
    pub(crate) fn service_config(&self, outcome: &'static str) {
        let labels = [("service", &*self.service), ("outcome", outcome)];
        counter(names::SERVICE_CONFIG_UPDATES, &labels).increment(1);
    }

    /// The adaptive hedging delay of a method, as last computed.
    pub(crate) fn hedge_delay(&self, method: &str, delay: std::time::Duration) {
        let labels = [("service", &*self.service), ("method", method)];
        gauge(names::HEDGE_DELAY, &labels).set(delay.as_secs_f64());
    }

    /// A discovery error (logged and ignored by the balancer).
    pub(crate) fn discovery_error(&self) {
        self.errors.increment(1);
    }

    /// Zone-aware routing's shares of the traffic: the client's zone, its region,
    /// the rest.
    pub(crate) fn set_tier_shares(&self, shares: [f64; 3]) {
        for (gauge, share) in self.tiers.iter().flatten().zip(shares) {
            gauge.set(share);
        }
    }

    /// The endpoints by state, as counted now.
    pub(crate) fn set_endpoints(&self, by_state: [usize; 6]) {
        for (gauge, n) in self.endpoints.iter().zip(by_state) {
            gauge.set(n as f64);
        }
    }
}

impl std::fmt::Debug for ChannelMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelMetrics")
            .field("service", &self.service)
            .field("cap", &self.cap)
            .finish_non_exhaustive()
    }
}

// === impl EndpointMetrics ===

impl EndpointMetrics {
    /// A call was sent on the endpoint.
    pub(crate) fn started(&self, channel: &ChannelMetrics) {
        self.in_flight.increment(1.0);
        channel.in_flight.increment(1.0);
    }

    /// A call ended: `code` is its gRPC status (`None` for a transport failure);
    /// `counted` is false for calls the instance never processed (they are sent
    /// again, and counted where they end).
    pub(crate) fn finished(
        &self,
        channel: &ChannelMetrics,
        code: Option<Code>,
        duration: Duration,
        counted: bool,
    ) {
        self.in_flight.decrement(1.0);
        channel.in_flight.decrement(1.0);
        if !counted {
            return;
        }
        let secs = duration.as_secs_f64();
        self.calls.increment(1);
        self.duration.record(secs);
        channel.calls.increment(1);
        channel.duration.record(secs);
        if code != Some(Code::Ok) {
            self.failures.increment(1);
            channel.failure(code);
        }
    }
}

impl std::fmt::Debug for EndpointMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointMetrics")
            .field("labelled", &self.labelled)
            .finish_non_exhaustive()
    }
}

/// What one endpoint records into: its channel's handles and its own.
#[derive(Debug, Clone)]
pub(crate) struct Telemetry {
    pub(crate) channel: Arc<ChannelMetrics>,
    pub(crate) endpoint: Arc<EndpointMetrics>,
}

impl Telemetry {
    /// Handles of a channel of their own (endpoints built outside a channel, in tests).
    #[cfg(test)]
    pub(crate) fn detached() -> Self {
        let channel = ChannelMetrics::new("detached".into(), 0, false);
        let endpoint = channel.endpoint("detached");
        Telemetry { channel, endpoint }
    }

    pub(crate) fn started(&self) {
        self.endpoint.started(&self.channel);
    }

    pub(crate) fn finished(&self, code: Option<Code>, duration: Duration, counted: bool) {
        self.endpoint
            .finished(&self.channel, code, duration, counted);
    }
}

/// The index of a state in [`STATES`].
pub(crate) fn state_index(state: EndpointState) -> usize {
    usize::from(state.as_u8()).min(STATES.len() - 1)
}

#[cfg(test)]
mod cap_tests {
    use super::*;

    /// What we want to test: the cap on labelled endpoints bounds the series over a
    /// rolling deployment, where each instance is replaced by one at a new address.
    /// Before, a removed endpoint gave its place back, so every new address got a
    /// series of its own while the recorder kept the old ones.
    #[test]
    fn the_label_cap_counts_every_address_ever_labelled() {
        let channel = ChannelMetrics::new("rolling".into(), 2, false);
        let mut labelled = 0;
        for generation in 0..5 {
            let endpoints: Vec<_> = (0..2)
                .map(|i| channel.endpoint(&format!("10.0.{generation}.{i}:80")))
                .collect();
            labelled += endpoints.iter().filter(|e| e.labelled).count();
            // The deployment replaces them.
            drop(endpoints);
        }
        assert_eq!(labelled, 2, "labelled addresses over the deployment");
        // An address labelled before keeps its label.
        assert!(channel.endpoint("10.0.0.1:80").labelled);
        assert!(!channel.endpoint("10.0.9.9:80").labelled);
    }
}
