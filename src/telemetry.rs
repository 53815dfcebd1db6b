//! Metrics through the [`metrics`](https://docs.rs/metrics) facade (feature `metrics`;
//! the library installs no recorder). Without the feature every handle here is a
//! zero-sized no-op, so the call sites need no `cfg`. The watches' and registrations'
//! metrics are here; the balancer's are in `balance/metrics.rs`, over the same
//! handles and names.
//!
//! Handles are registered once (per channel, endpoint or registration) and kept, so
//! the request path never formats a label or looks a metric up: it increments atomics
//! behind the recorder's handles. The names and labels are documented in the README's
//! metrics table.

/// Every metric name, with the prefix.
#[cfg_attr(not(any(feature = "consul", feature = "etcd")), allow(dead_code))]
pub(crate) mod names {
    pub(crate) const CALLS: &str = "tonic_discovery_balancer_calls_total";
    pub(crate) const FAILURES: &str = "tonic_discovery_balancer_call_failures_total";
    pub(crate) const DURATION: &str = "tonic_discovery_balancer_call_duration_seconds";
    pub(crate) const IN_FLIGHT: &str = "tonic_discovery_balancer_calls_in_flight";
    pub(crate) const ENDPOINTS: &str = "tonic_discovery_balancer_endpoints";
    pub(crate) const TIER_SHARE: &str = "tonic_discovery_balancer_zone_traffic_ratio";
    pub(crate) const TOO_MANY_PINGS: &str = "tonic_discovery_balancer_too_many_pings_total";
    pub(crate) const RETRIES: &str = "tonic_discovery_balancer_retries_total";
    pub(crate) const HEDGES: &str = "tonic_discovery_balancer_hedges_total";
    pub(crate) const HEDGE_DELAY: &str = "tonic_discovery_balancer_hedge_delay_seconds";
    pub(crate) const ATTEMPTS: &str = "tonic_discovery_balancer_attempts_total";
    pub(crate) const SERVICE_CONFIG_UPDATES: &str =
        "tonic_discovery_balancer_service_config_updates_total";
    pub(crate) const ENDPOINT_CALLS: &str = "tonic_discovery_endpoint_calls_total";
    pub(crate) const ENDPOINT_FAILURES: &str = "tonic_discovery_endpoint_call_failures_total";
    pub(crate) const ENDPOINT_DURATION: &str = "tonic_discovery_endpoint_call_duration_seconds";
    pub(crate) const ENDPOINT_IN_FLIGHT: &str = "tonic_discovery_endpoint_calls_in_flight";
    pub(crate) const DISCOVERY_CHANGES: &str = "tonic_discovery_discovery_changes_total";
    pub(crate) const DISCOVERY_ERRORS: &str = "tonic_discovery_discovery_errors_total";
    pub(crate) const WATCH_SUCCESS: &str = "tonic_discovery_watch_last_success_timestamp_seconds";
    pub(crate) const WATCH_ANSWERS: &str = "tonic_discovery_watch_answers_total";
    pub(crate) const WATCH_FAILURES: &str = "tonic_discovery_watch_failures_total";
    pub(crate) const HEARTBEATS: &str = "tonic_discovery_registration_heartbeats_total";
    pub(crate) const HEARTBEAT_FAILURES: &str =
        "tonic_discovery_registration_heartbeat_failures_total";
    pub(crate) const REREGISTRATIONS: &str = "tonic_discovery_registration_reregistrations_total";
}

#[cfg(feature = "metrics")]
mod imp {
    pub(crate) use metrics::{Counter, Gauge, Histogram, Label};

    pub(crate) fn counter(name: &'static str, labels: &[(&'static str, &str)]) -> Counter {
        metrics::counter!(name, labels_of(labels))
    }

    pub(crate) fn gauge(name: &'static str, labels: &[(&'static str, &str)]) -> Gauge {
        metrics::gauge!(name, labels_of(labels))
    }

    pub(crate) fn histogram(name: &'static str, labels: &[(&'static str, &str)]) -> Histogram {
        metrics::histogram!(name, labels_of(labels))
    }

    fn labels_of(labels: &[(&'static str, &str)]) -> Vec<Label> {
        labels
            .iter()
            .map(|(k, v)| Label::new(*k, (*v).to_owned()))
            .collect()
    }
}

#[cfg(not(feature = "metrics"))]
mod imp {
    //! No-op stand-ins with the same methods.

    #[derive(Clone, Debug, Default)]
    pub(crate) struct Counter;
    #[derive(Clone, Debug, Default)]
    pub(crate) struct Gauge;
    #[derive(Clone, Debug, Default)]
    pub(crate) struct Histogram;

    impl Counter {
        pub(crate) fn increment(&self, _: u64) {}
    }

    impl Gauge {
        pub(crate) fn increment(&self, _: f64) {}
        pub(crate) fn decrement(&self, _: f64) {}
        pub(crate) fn set(&self, _: f64) {}
    }

    impl Histogram {
        pub(crate) fn record(&self, _: f64) {}
    }

    pub(crate) fn counter(_: &'static str, _: &[(&'static str, &str)]) -> Counter {
        Counter
    }

    pub(crate) fn gauge(_: &'static str, _: &[(&'static str, &str)]) -> Gauge {
        Gauge
    }

    pub(crate) fn histogram(_: &'static str, _: &[(&'static str, &str)]) -> Histogram {
        Histogram
    }
}

pub(crate) use imp::{Counter, Gauge, Histogram, counter, gauge, histogram};
/// A watch's metrics (labels `service`, `registry`).
#[derive(Debug, Clone)]
pub(crate) struct WatchMetrics {
    success: Gauge,
    answers: Counter,
    failures: Counter,
}

impl WatchMetrics {
    pub(crate) fn new(registry: &str, service: &str) -> Self {
        let labels = [("service", service), ("registry", registry)];
        WatchMetrics {
            success: gauge(names::WATCH_SUCCESS, &labels),
            answers: counter(names::WATCH_ANSWERS, &labels),
            failures: counter(names::WATCH_FAILURES, &labels),
        }
    }

    /// An answer arrived (changed or not): the watch is current as of now.
    pub(crate) fn answered(&self) {
        self.answers.increment(1);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        self.success.set(now.as_secs_f64());
    }

    pub(crate) fn failed(&self) {
        self.failures.increment(1);
    }
}

/// A registration's metrics (labels `service`, `registry`): Consul's and etcd's
/// (Nacos's SDK keeps its registrations out of sight).
#[derive(Debug, Clone)]
#[cfg_attr(not(any(feature = "consul", feature = "etcd")), allow(dead_code))]
pub(crate) struct RegistrationMetrics {
    heartbeats: Counter,
    failures: Counter,
    reregistrations: Counter,
}

#[cfg_attr(not(any(feature = "consul", feature = "etcd")), allow(dead_code))]
impl RegistrationMetrics {
    pub(crate) fn new(registry: &str, service: &str) -> Self {
        let labels = [("service", service), ("registry", registry)];
        RegistrationMetrics {
            heartbeats: counter(names::HEARTBEATS, &labels),
            failures: counter(names::HEARTBEAT_FAILURES, &labels),
            reregistrations: counter(names::REREGISTRATIONS, &labels),
        }
    }

    /// A heartbeat (Consul TTL update, etcd lease renewal) the registry accepted.
    pub(crate) fn heartbeat(&self) {
        self.heartbeats.increment(1);
    }

    pub(crate) fn heartbeat_failed(&self) {
        self.failures.increment(1);
    }

    /// The registry had lost the registration and it was made again.
    pub(crate) fn reregistered(&self) {
        self.reregistrations.increment(1);
    }
}
