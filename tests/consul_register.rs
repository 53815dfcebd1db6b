//! Registration with the Consul agent API: input rules, and (against the in-process
//! registry `ConsulDev`) the heartbeat, re-registration, health following and drain.

#[path = "support/same_rules.rs"]
mod same_rules;
mod support;

use std::time::Duration;

use tonic_discovery::consul::{Client, Registration};

const ADDR: &str = "127.0.0.1:7001";

/// With `tls-ring`, reqwest is built without a default crypto provider and its client
/// builder panics unless one is installed (the client builder does not install one yet).
fn install_crypto_provider() {
    #[cfg(feature = "tls-ring")]
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn reg(name: &str) -> Registration {
    Registration::new(name, ADDR.parse().unwrap())
}

fn check(what: &str, registration: Registration, accepted: bool) {
    match registration.validate() {
        Ok(_) => assert!(accepted, "{what} should be refused"),
        Err(e) => {
            assert!(!accepted, "{what} should be accepted, got: {e}");
            assert!(e.is_config(), "{what}: {e}");
        }
    }
}

#[test]
fn service_name_rules() {
    let longest = "a".repeat(63);
    let too_long = "a".repeat(64);
    let table: &[(&str, bool)] = &[
        ("echo", true),
        ("echo-v2", true),
        ("Echo2", true),
        ("a", true),
        (&longest, true),
        ("", false),
        ("user_service", false),
        ("-echo", false),
        ("echo-", false),
        ("echo.v1", false),
        ("echo v1", false),
        ("écho", false),
        ("echo/v1", false),
        (&too_long, false),
    ];
    for (name, accepted) in table {
        check(&format!("name {name:?}"), reg(name), *accepted);
    }
}

#[test]
fn underscore_is_refused_with_the_reason_and_the_dashed_form() {
    let e = reg("user_service").validate().unwrap_err().to_string();
    assert!(e.contains("underscore") && e.contains("DNS"), "{e}");
    assert!(e.contains("`user-service`"), "{e}");
}

#[test]
fn id_rules() {
    let too_long = "a".repeat(129);
    let table: &[(&str, bool)] = &[
        ("echo-host-7001", true),
        ("redis1", true),
        ("a_b", true),
        ("svc:1", true),
        ("v1.2", true),
        ("", false),
        ("a/b", false),
        ("a b", false),
        ("a?b", false),
        ("ü", false),
        (&too_long, false),
    ];
    for (id, accepted) in table {
        check(&format!("id {id:?}"), reg("echo").id(*id), *accepted);
    }
}

#[test]
fn answers_bad_names_and_addresses_as_every_registry() {
    same_rules::assert_same_answers(
        Registration::new,
        Registration::advertise,
        Registration::validate,
    );
}

#[test]
fn port_ttl_and_check_rules() {
    let s = Duration::from_secs;
    let ms = Duration::from_millis;
    let zero_port = Registration::new("echo", "127.0.0.1:0".parse().unwrap());
    let table: Vec<(&str, Registration, bool)> = vec![
        ("port 0", zero_port, false),
        (
            "port 1",
            Registration::new("echo", "[::1]:1".parse().unwrap()),
            true,
        ),
        ("ttl 999ms", reg("echo").ttl(ms(999)), false),
        ("ttl 1s", reg("echo").ttl(s(1)), true),
        ("ttl 300s", reg("echo").ttl(s(300)), true),
        (
            "interval = ttl",
            reg("echo").ttl(s(2)).heartbeat_interval(s(2)),
            false,
        ),
        (
            "interval 0",
            reg("echo").heartbeat_interval(Duration::ZERO),
            false,
        ),
        (
            "interval < ttl",
            reg("echo").ttl(s(2)).heartbeat_interval(ms(500)),
            true,
        ),
        (
            "deregister after 30s",
            reg("echo").deregister_critical_after(s(30)),
            false,
        ),
        (
            "deregister after 1m",
            reg("echo").deregister_critical_after(s(60)),
            true,
        ),
        (
            "advertise 0.0.0.0",
            reg("echo").advertise("0.0.0.0".parse().unwrap()),
            false,
        ),
        (
            "advertise 10.0.0.1",
            reg("echo").advertise("10.0.0.1".parse().unwrap()),
            true,
        ),
        ("weights 0", reg("echo").weights(0, 1), false),
        ("weights 10/1", reg("echo").weights(10, 1), true),
        ("empty tag", reg("echo").tag(""), false),
        ("meta consul-", reg("echo").meta("consul-x", "1"), false),
        ("meta key a.b", reg("echo").meta("a.b", "1"), false),
        ("meta ok", reg("echo").meta("zone_a", "eu-1"), true),
        (
            "http check ftp",
            reg("echo").http_check("ftp://x", s(5)),
            false,
        ),
        (
            "http check",
            reg("echo").http_check("http://127.0.0.1:1/h", s(5)),
            true,
        ),
        (
            "grpc check 0s",
            reg("echo").grpc_check("", Duration::ZERO),
            false,
        ),
        (
            "grpc check",
            reg("echo").grpc_check("echo.v1.Echo", s(5)),
            true,
        ),
    ];
    for (what, registration, accepted) in table {
        check(what, registration, accepted);
    }
}

// === against the in-process registry ===

use consul_dev::ConsulDev;
use serde_json::Value;
use tokio::sync::watch;
use tonic_discovery::consul::{HealthSource, RegistrationHandle};
use tonic_discovery_testkit::TestEchoServer;

const WAIT: Duration = Duration::from_secs(5);

struct Dev {
    consul: ConsulDev,
    client: Client,
    http: reqwest::Client,
}

impl Dev {
    async fn start() -> Dev {
        support::trace_init();
        install_crypto_provider();
        let consul = ConsulDev::start().await.unwrap();
        let client = Client::builder(consul.url()).build().unwrap();
        Dev {
            consul,
            client,
            http: reqwest::Client::new(),
        }
    }

    async fn register(&self, registration: Registration) -> RegistrationHandle {
        self.client.register(registration).await.unwrap()
    }

    async fn get(&self, path: &str) -> Value {
        let url = format!("{}{path}", self.consul.url());
        let body = self
            .http
            .get(url)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        serde_json::from_slice(&body).unwrap()
    }

    /// The status of an agent check, `None` when the agent does not know it.
    async fn status(&self, check_id: &str) -> Option<String> {
        let checks = self.get("/v1/agent/checks").await;
        checks[check_id]["Status"].as_str().map(str::to_owned)
    }

    /// The agent's view of a service, `None` when not registered.
    async fn service(&self, id: &str) -> Option<Value> {
        let services = self.get("/v1/agent/services").await;
        services.get(id).cloned()
    }

    async fn wait_status(&self, check_id: &str, status: &str) {
        let what = format!("check {check_id} {status}");
        support::eventually(WAIT, &what, || async {
            self.status(check_id).await.as_deref() == Some(status)
        })
        .await;
    }
}

fn local(name: &str) -> Registration {
    // A free port is not needed: nothing connects to it for TTL checks.
    Registration::new(name, ADDR.parse().unwrap())
}

/// What we want to test: the check is passing when `register` returns and never
/// leaves passing over ten TTLs. Sampled every 50 ms; a flip between samples would
/// still move the registry's index (only status changes are writes).
#[tokio::test]
async fn check_is_passing_on_return_and_stays_passing_across_ten_ttls() {
    let dev = Dev::start().await;
    let ttl = Duration::from_secs(1);
    let handle = dev.register(local("echo").id("echo-1").ttl(ttl)).await;
    let check = handle.check_id().to_owned();
    assert_eq!(dev.status(&check).await.as_deref(), Some("passing"));
    let index = dev.consul.index();

    let mut samples = 0;
    let end = tokio::time::Instant::now() + 10 * ttl;
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    while tokio::time::Instant::now() < end {
        tick.tick().await;
        let status = dev.status(&check).await;
        assert_eq!(status.as_deref(), Some("passing"), "sample {samples}");
        samples += 1;
    }
    assert_eq!(dev.consul.index(), index, "the check changed status");
    let beats: u64 = (dev.consul.request_counts().iter())
        .filter(|(path, _)| path.starts_with("/v1/agent/check/update/"))
        .map(|(_, n)| n)
        .sum();
    eprintln!(
        "{samples} samples, {beats} check updates over {:?}",
        10 * ttl
    );
    handle.deregister().await.unwrap();
    assert!(dev.service("echo-1").await.is_none());
    assert_eq!(dev.status(&check).await, None);
}

#[tokio::test]
async fn registers_again_after_the_registry_forgets() {
    let dev = Dev::start().await;
    let interval = Duration::from_secs(1);
    let reg = (local("echo").id("echo-1"))
        .ttl(Duration::from_secs(3))
        .heartbeat_interval(interval);
    let handle = dev.register(reg).await;
    dev.consul.forget_all();
    let forgot = tokio::time::Instant::now();
    assert!(dev.service("echo-1").await.is_none());

    support::eventually(WAIT, "service registered again", || async {
        dev.service("echo-1").await.is_some()
    })
    .await;
    eprintln!(
        "registered again {:?} after the registry forgot (heartbeat interval {interval:?})",
        forgot.elapsed()
    );
    dev.wait_status(handle.check_id(), "passing").await;
    assert_eq!(dev.consul.request_count("/v1/agent/service/register"), 2);
    let service = dev.service("echo-1").await.unwrap();
    assert_eq!(service["Service"], "echo");
    assert_eq!(service["Port"], 7001);
}

/// A TTL of 60 s puts the next scheduled beat 20 s after registration, far past WAIT:
/// a status change seen within WAIT was reported by the change itself.
const LONG_TTL: Duration = Duration::from_secs(60);
const _: () = assert!(WAIT.as_secs() < LONG_TTL.as_secs() / 3);

/// Waits for `check` to reach `status` and prints how long that took.
async fn wait_reported(dev: &Dev, check: &str, status: &str) {
    let changed = tokio::time::Instant::now();
    dev.wait_status(check, status).await;
    eprintln!("{check} {status} {:?} after the change", changed.elapsed());
}

#[tokio::test]
async fn status_follows_a_watch_channel() {
    let dev = Dev::start().await;
    let (tx, rx) = watch::channel(true);
    let reg = local("echo").id("echo-1").ttl(LONG_TTL);
    let handle = dev.register(reg.health(HealthSource::watch(rx))).await;
    let check = handle.check_id();
    assert_eq!(dev.status(check).await.as_deref(), Some("passing"));
    tx.send(false).unwrap();
    wait_reported(&dev, check, "critical").await;
    tx.send(true).unwrap();
    wait_reported(&dev, check, "passing").await;
}

#[tokio::test]
async fn status_follows_tonic_health() {
    let dev = Dev::start().await;
    let reporter = tonic_health::server::HealthReporter::new();
    let serving = tonic_health::ServingStatus::Serving;
    reporter.set_service_status("echo.v1.Echo", serving).await;
    let health = HealthSource::tonic_health(&reporter, "echo.v1.Echo")
        .await
        .unwrap();
    let reg = local("echo").id("echo-1").ttl(LONG_TTL);
    let handle = dev.register(reg.health(health)).await;
    let check = handle.check_id();
    assert_eq!(dev.status(check).await.as_deref(), Some("passing"));

    let not_serving = tonic_health::ServingStatus::NotServing;
    reporter
        .set_service_status("echo.v1.Echo", not_serving)
        .await;
    wait_reported(&dev, check, "critical").await;
    reporter.set_service_status("echo.v1.Echo", serving).await;
    wait_reported(&dev, check, "passing").await;
}

#[tokio::test]
async fn drain_turns_the_check_critical_then_deregisters() {
    let dev = Dev::start().await;
    let handle = dev.register(local("echo").id("echo-1")).await;
    let check = handle.check_id().to_owned();
    let (signal_tx, signal_rx) = tokio::sync::oneshot::channel::<()>();
    let drained = tokio::spawn(handle.drain_on(
        async {
            let _ = signal_rx.await;
        },
        Duration::from_secs(1),
    ));
    assert_eq!(dev.status(&check).await.as_deref(), Some("passing"));
    signal_tx.send(()).unwrap();
    dev.wait_status(&check, "critical").await;
    assert!(
        dev.service("echo-1").await.is_some(),
        "still registered during grace"
    );
    drained.await.unwrap();
    assert!(dev.service("echo-1").await.is_none());
}

#[tokio::test]
async fn dropping_the_handle_deregisters() {
    let dev = Dev::start().await;
    drop(dev.register(local("echo").id("echo-1")).await);
    support::eventually(WAIT, "service deregistered", || async {
        dev.service("echo-1").await.is_none()
    })
    .await;
}

#[tokio::test]
async fn wildcard_bind_advertises_the_interface_towards_the_agent() {
    let dev = Dev::start().await;
    let reg = Registration::new("echo", "0.0.0.0:7002".parse().unwrap());
    let handle = dev.register(reg).await;
    let service = dev.service(handle.id()).await.unwrap();
    assert_eq!(service["Address"], "127.0.0.1");
    assert_eq!(service["Port"], 7002);
    assert!(handle.id().starts_with("echo-") && handle.id().ends_with("-7002"));
}

#[tokio::test]
async fn agent_runs_the_grpc_health_check() {
    let dev = Dev::start().await;
    let server = TestEchoServer::start("e1").await.unwrap();
    let reg = Registration::new("echo", server.addr())
        .id("echo-1")
        .grpc_check("echo.v1.Echo", Duration::from_secs(1));
    let _handle = dev.register(reg).await;
    dev.wait_status("service:echo-1:grpc", "passing").await;
    server.set_serving(false).await;
    dev.wait_status("service:echo-1:grpc", "critical").await;
    assert_eq!(
        dev.status("service:echo-1").await.as_deref(),
        Some("passing")
    );
}
