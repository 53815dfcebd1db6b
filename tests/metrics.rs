//! Metrics through the `metrics` facade: a recorder installed for this test binary
//! reads what a channel, its watch and a registration publish, against `ConsulDev` and
//! real Echo servers on loopback.
#![cfg(feature = "metrics")]

mod balance_util;
mod support;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use consul_dev::ConsulDev;
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_util::registry::{AtomicStorage, Registry};
use support::eventually;
use tonic::Code;
use tonic_discovery::balance::{BalancedChannel, EndpointState};
use tonic_discovery::consul::{Client, Registration};
use tonic_discovery_testkit::TestEchoServer;
use tonic_discovery_testkit::pb::EchoRequest;
use tonic_discovery_testkit::pb::echo_client::EchoClient;

const WAIT: Duration = Duration::from_secs(10);

/// A recorder whose values can be read any number of times (the debugging recorder of
/// `metrics-util` resets them on every read).
struct Reader(Arc<Registry<Key, AtomicStorage>>);

impl Recorder for Reader {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        self.0
            .get_or_create_counter(key, |c| Counter::from_arc(c.clone()))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        self.0
            .get_or_create_gauge(key, |g| Gauge::from_arc(g.clone()))
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        self.0
            .get_or_create_histogram(key, |h| Histogram::from_arc(h.clone()))
    }
}

fn registry() -> &'static Arc<Registry<Key, AtomicStorage>> {
    static REGISTRY: OnceLock<Arc<Registry<Key, AtomicStorage>>> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let registry = Arc::new(Registry::atomic());
        metrics::set_global_recorder(Reader(registry.clone())).expect("one recorder");
        registry
    })
}

/// `name{labels}` as Prometheus shows it, labels sorted.
fn id(key: &Key) -> String {
    let mut labels: Vec<String> = key
        .labels()
        .map(|l| format!("{}={}", l.key(), l.value()))
        .collect();
    labels.sort();
    format!("{}{{{}}}", key.name(), labels.join(","))
}

fn counters() -> BTreeMap<String, u64> {
    let handles = registry().get_counter_handles();
    handles
        .iter()
        .map(|(k, v)| (id(k), v.load(Ordering::Relaxed)))
        .collect()
}

fn gauges() -> BTreeMap<String, f64> {
    let handles = registry().get_gauge_handles();
    handles
        .iter()
        .map(|(k, v)| (id(k), f64::from_bits(v.load(Ordering::Relaxed))))
        .collect()
}

fn histogram_len(name: &str) -> usize {
    let handles = registry().get_histogram_handles();
    handles
        .iter()
        .filter(|(k, _)| id(k) == name)
        .map(|(_, h)| h.data().len())
        .sum()
}

fn counter(name: &str) -> u64 {
    counters().get(name).copied().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_watches_and_registrations_publish_their_metrics() {
    support::trace_init();
    registry();
    let dev = ConsulDev::start().await.expect("registry");
    let client = Client::builder(dev.url()).build().expect("consul client");
    let mut servers = Vec::new();
    let mut handles = Vec::new();
    for id in ["m1", "m2"] {
        let server = TestEchoServer::start(id).await.expect("echo");
        let reg = Registration::new("metered", server.addr())
            .id(id)
            .ttl(Duration::from_secs(2))
            .heartbeat_interval(Duration::from_millis(100));
        handles.push(client.register(reg).await.expect("register"));
        servers.push(server);
    }
    // One endpoint gets labels of its own; the other is counted under `other`.
    let channel = BalancedChannel::builder("metered")
        .metrics_endpoints(1)
        .build(client.discovery("metered").build())
        .expect("channel");
    eventually(WAIT, "two ready endpoints", || async {
        channel
            .endpoints()
            .iter()
            .filter(|e| e.state() == EndpointState::Ready)
            .count()
            == 2
    })
    .await;

    let mut echo = EchoClient::new(channel.clone());
    for _ in 0..40 {
        echo.echo(EchoRequest::default()).await.expect("call");
    }
    for server in &servers {
        server.service().fail_with(Some(Code::Internal));
    }
    for _ in 0..3 {
        let status = echo
            .echo(EchoRequest::default())
            .await
            .expect_err("failing");
        assert_eq!(status.code(), Code::Internal);
    }

    let s = "service=metered";
    assert_eq!(
        counter(&format!("tonic_discovery_balancer_calls_total{{{s}}}")),
        43
    );
    assert_eq!(
        counter(&format!(
            "tonic_discovery_balancer_call_failures_total{{code=INTERNAL,{s}}}"
        )),
        3
    );
    assert_eq!(
        histogram_len(&format!(
            "tonic_discovery_balancer_call_duration_seconds{{{s}}}"
        )),
        43
    );
    let per_endpoint: Vec<(String, u64)> = counters()
        .into_iter()
        .filter(|(k, _)| {
            k.starts_with("tonic_discovery_endpoint_calls_total{")
                && k.ends_with(&format!(",{s}}}"))
        })
        .collect();
    assert_eq!(
        per_endpoint.len(),
        2,
        "one labelled endpoint and `other`: {per_endpoint:?}"
    );
    assert!(
        per_endpoint
            .iter()
            .any(|(k, _)| k.contains("endpoint=other"))
    );
    assert!(
        per_endpoint
            .iter()
            .any(|(k, _)| k.contains("endpoint=127.0.0.1:"))
    );
    assert_eq!(per_endpoint.iter().map(|(_, n)| n).sum::<u64>(), 43);
    assert_eq!(
        gauges()[&format!("tonic_discovery_balancer_calls_in_flight{{{s}}}")],
        0.0
    );
    assert!(counter(&format!("tonic_discovery_discovery_changes_total{{{s}}}")) >= 2);

    // The gauges of endpoints by state settle within their publication interval.
    eventually(WAIT, "two endpoints counted ready", || async {
        gauges().get(&format!(
            "tonic_discovery_balancer_endpoints{{{s},state=ready}}"
        )) == Some(&2.0)
    })
    .await;
    let watch = format!("registry=consul,{s}");
    assert!(counter(&format!("tonic_discovery_watch_answers_total{{{watch}}}")) >= 1);
    assert!(
        gauges()[&format!("tonic_discovery_watch_last_success_timestamp_seconds{{{watch}}}")]
            > 1.7e9
    );
    eventually(WAIT, "heartbeats counted", || async {
        counter(&format!(
            "tonic_discovery_registration_heartbeats_total{{{watch}}}"
        )) >= 4
    })
    .await;
    assert_eq!(
        counter(&format!(
            "tonic_discovery_registration_heartbeat_failures_total{{{watch}}}"
        )),
        0
    );

    // The agent forgets every registration: the heartbeats register again.
    dev.forget_all();
    eventually(WAIT, "re-registrations counted", || async {
        counter(&format!(
            "tonic_discovery_registration_reregistrations_total{{{watch}}}"
        )) >= 2
    })
    .await;

    // A call that finds no instance fails fast, counted as UNAVAILABLE.
    let empty = BalancedChannel::builder("nothing")
        .failfast_timeout(Duration::from_millis(50))
        .build(client.discovery("nothing").build())
        .expect("channel");
    let status = EchoClient::new(empty)
        .echo(EchoRequest::default())
        .await
        .expect_err("no instance");
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(
        counter("tonic_discovery_balancer_call_failures_total{code=UNAVAILABLE,service=nothing}"),
        1
    );
    drop(handles);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_server_closing_for_too_many_pings_is_counted() {
    use tonic_discovery_testkit::{PingPolicy, PolicingServer};
    support::trace_init();
    registry();
    let server = PolicingServer::start("calm-1", PingPolicy::default())
        .await
        .expect("server starts");
    let (feed, disc) = balance_util::discovery();
    feed.insert_at("calm-1", server.addr());
    // Told the servers permit a PING every second; this one permits one per 5 minutes.
    let channel = BalancedChannel::builder("metrics-calm")
        .keep_alive_permit_time(Duration::from_secs(1))
        .build(disc)
        .expect("valid settings");
    balance_util::call(&channel).await.expect("first call");
    server.reply_after(Duration::from_secs(600));
    let status = balance_util::call(&channel)
        .await
        .expect_err("closed for too many pings");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(server.too_many_pings(), 1);
    let name = "tonic_discovery_balancer_too_many_pings_total{service=metrics-calm}";
    support::eventually(WAIT, "the GOAWAY counted", || async {
        counters().get(name) == Some(&1)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_decisions_are_counted_per_method_config() {
    use tonic_discovery::balance::{MethodConfig, MethodName, RetryPolicy, ServiceConfig};
    support::trace_init();
    registry();
    let server = TestEchoServer::start("r1").await.expect("echo");
    server.service().fail_with(Some(Code::Unavailable));
    let (feed, disc) = balance_util::discovery();
    feed.insert(&server);
    let policy = RetryPolicy::new(3, [Code::Unavailable]).backoff(
        Duration::from_millis(1),
        Duration::from_millis(2),
        2.0,
    );
    let config = ServiceConfig::new()
        .method(MethodConfig::new([MethodName::service("echo.v1.Echo")]).retry(policy));
    let channel = BalancedChannel::builder("metrics-retry")
        .failure_accrual(tonic_discovery::balance::FailureAccrual::disabled())
        .service_config(config)
        .build(disc)
        .expect("valid settings");
    for _ in 0..2 {
        let status = balance_util::call(&channel)
            .await
            .expect_err("every attempt fails");
        assert_eq!(status.code(), Code::Unavailable);
    }
    assert_eq!(server.service().received(), 6, "three attempts per call");
    let series = |outcome: &str| {
        format!(
            "tonic_discovery_balancer_retries_total{{method=echo.v1.Echo/*,outcome={outcome},service=metrics-retry}}"
        )
    };
    assert_eq!(counter(&series("retried")), 4, "{:?}", counters());
    assert_eq!(
        counter(&series("attempts_exhausted")),
        2,
        "{:?}",
        counters()
    );
    let attempts =
        "tonic_discovery_balancer_attempts_total{method=echo.v1.Echo/*,service=metrics-retry}";
    assert_eq!(counter(attempts), 6, "{:?}", counters());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hedges_are_counted_per_method_config() {
    use tonic_discovery::balance::{HedgingPolicy, MethodConfig, MethodName, ServiceConfig};
    support::trace_init();
    registry();
    let stuck = TestEchoServer::start("h1").await.expect("echo");
    let fine = TestEchoServer::start("h2").await.expect("echo");
    let (feed, disc) = balance_util::discovery();
    feed.insert(&stuck);
    feed.insert(&fine);
    let policy = HedgingPolicy::new(2, Duration::from_millis(10), []);
    let config = ServiceConfig::new()
        .method(MethodConfig::new([MethodName::method("echo.v1.Echo", "Echo")]).hedge(policy));
    let channel = BalancedChannel::builder("metrics-hedge")
        .timeout(WAIT)
        .service_config(config)
        .build(disc)
        .expect("valid settings");
    eventually(WAIT, "two ready endpoints", || async {
        balance_util::all_ready(&channel, 2)
    })
    .await;
    let _hold = stuck.service().hold();
    for _ in 0..4 {
        let id = balance_util::call(&channel).await.expect("answered");
        assert_eq!(id, "h2");
    }
    let series = |outcome: &str| {
        format!(
            "tonic_discovery_balancer_hedges_total{{method=echo.v1.Echo/Echo,outcome={outcome}}}"
        )
        .replace("}", ",service=metrics-hedge}")
    };
    assert!(counter(&series("sent")) >= 1, "{:?}", counters());
    assert!(counter(&series("won")) >= 1, "{:?}", counters());
    let attempts =
        "tonic_discovery_balancer_attempts_total{method=echo.v1.Echo/Echo,service=metrics-hedge}";
    assert_eq!(
        counter(attempts),
        4 + counter(&series("sent")),
        "each call's first attempt and its hedges: {:?}",
        counters()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_followed_service_config_counts_what_became_of_each_document() {
    use tonic_discovery::source::{ConfigUpdate, ServiceConfigWatch};
    support::trace_init();
    registry();
    let server = TestEchoServer::start("sc1").await.expect("echo");
    server.service().fail_with(Some(Code::Unavailable));
    let (feed, disc) = balance_util::discovery();
    feed.insert(&server);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<ConfigUpdate>();
    let updates = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|update| (update, rx))
    });
    let channel = BalancedChannel::builder("metrics-config")
        .failure_accrual(tonic_discovery::balance::FailureAccrual::disabled())
        .service_config_watch(ServiceConfigWatch::new("test", updates))
        .build(disc)
        .expect("valid settings");
    let series = |outcome: &str| {
        format!(
            "tonic_discovery_balancer_service_config_updates_total{{outcome={outcome},service=metrics-config}}"
        )
    };
    // How many attempts one failing call took.
    let attempts = || async {
        let before = server.service().received();
        balance_util::call(&channel)
            .await
            .expect_err("every attempt fails");
        server.service().received() - before
    };
    assert_eq!(attempts().await, 1, "no policy before a document");

    let retry = r#"{"methodConfig": [{"name": [{"service": "echo.v1.Echo"}],
      "retryPolicy": {"maxAttempts": 3, "initialBackoff": "0.001s", "maxBackoff": "0.002s",
      "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]}}]}"#;
    tx.send(Ok(Some(retry.to_owned()))).expect("follower");
    eventually(WAIT, "the document applied", || async {
        counter(&series("applied")) == 1
    })
    .await;
    assert_eq!(attempts().await, 3, "the followed policy retries");

    // Breaks gRFC A6 (maxAttempts below 2): refused, the last good stays.
    tx.send(Ok(Some(
        retry.replace("\"maxAttempts\": 3", "\"maxAttempts\": 1"),
    )))
    .expect("follower");
    eventually(WAIT, "the bad document refused", || async {
        counter(&series("refused")) == 1
    })
    .await;
    assert_eq!(attempts().await, 3, "the last good policy is kept");

    tx.send(Err("registry down".into())).expect("follower");
    eventually(WAIT, "the failed read counted", || async {
        counter(&series("unreadable")) == 1
    })
    .await;
    assert_eq!(attempts().await, 3, "a failed read changes nothing");

    tx.send(Ok(None)).expect("follower");
    eventually(WAIT, "the absent document counted", || async {
        counter(&series("absent")) == 1
    })
    .await;
    assert_eq!(attempts().await, 1, "back to the channel's own config");
    assert_eq!(counter(&series("applied")), 1, "{:?}", counters());
}
