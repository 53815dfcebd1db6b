//! Registration with the Consul agent API: input rules, and (against the in-process
//! registry) the heartbeat, re-registration and drain.
#![cfg(feature = "consul")]

mod support;

use std::net::SocketAddr;
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

/// What we want to test: an invalid registration fails before anything is sent, so
/// the agent never sees a connection.
#[tokio::test]
async fn invalid_registration_sends_nothing() {
    support::trace_init();
    install_crypto_provider();
    let agent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    agent.set_nonblocking(true).unwrap();
    let address: SocketAddr = agent.local_addr().unwrap();
    let client = Client::builder(address.to_string()).build().unwrap();

    let e = client.register(reg("user_service")).await.unwrap_err();
    assert!(e.is_config(), "{e}");
    let e = client
        .register(reg("echo").ttl(Duration::from_millis(10)))
        .await
        .unwrap_err();
    assert!(e.is_config(), "{e}");

    let accept = agent.accept().map(|_| ()).unwrap_err();
    assert_eq!(
        accept.kind(),
        std::io::ErrorKind::WouldBlock,
        "a connection reached the agent"
    );
}

// === the wire, against a recording stand-in for the agent ===

#[path = "consul_register/fake_agent.rs"]
mod fake_agent;

use fake_agent::{FakeAgent, Seen};

const TOKEN: &str = "s3cret-token";

async fn agent_and_client() -> (FakeAgent, Client) {
    support::trace_init();
    install_crypto_provider();
    let agent = FakeAgent::start().await;
    let client = Client::builder(agent.addr().to_string())
        .token(TOKEN)
        .build()
        .unwrap();
    (agent, client)
}

fn count(agent: &FakeAgent, pred: impl Fn(&Seen) -> bool) -> usize {
    agent.seen().iter().filter(|s| pred(s)).count()
}

fn is_update(s: &Seen) -> bool {
    s.method == "PUT" && s.uri == "/v1/agent/check/update/service:echo-1"
}

fn is_register(s: &Seen) -> bool {
    s.method == "PUT" && s.uri == "/v1/agent/service/register"
}

fn status_of(s: &Seen) -> String {
    let body: serde_json::Value = serde_json::from_str(&s.body).unwrap();
    body["Status"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn registers_beats_and_deregisters_over_http() {
    let (agent, client) = agent_and_client().await;
    let registration = reg("echo")
        .id("echo-1")
        .tag("blue")
        .ttl(Duration::from_secs(1));
    let handle = client.register(registration).await.unwrap();
    assert_eq!(handle.check_id(), "service:echo-1");
    assert_eq!(handle.address(), ADDR.parse().unwrap());

    let seen = agent.seen();
    assert!(is_register(&seen[0]), "{seen:?}");
    let body: serde_json::Value = serde_json::from_str(&seen[0].body).unwrap();
    assert_eq!(body["ID"], "echo-1");
    assert_eq!(body["Name"], "echo");
    assert_eq!(body["Tags"], serde_json::json!(["blue"]));
    assert_eq!(body["Check"]["CheckID"], "service:echo-1");
    assert_eq!(body["Check"]["TTL"], "1s");
    assert!(is_update(&seen[1]), "{seen:?}");
    assert_eq!(status_of(&seen[1]), "passing");

    // The heartbeat keeps going on its own (interval TTL/3).
    let wait = Duration::from_secs(5);
    support::eventually(wait, "three more heartbeats", || async {
        count(&agent, is_update) >= 4
    })
    .await;

    handle.deregister().await.unwrap();
    let seen = agent.seen();
    let last = seen.last().unwrap();
    assert_eq!(
        (last.method.as_str(), last.uri.as_str()),
        ("PUT", "/v1/agent/service/deregister/echo-1")
    );
    for s in &seen {
        assert_eq!(s.token.as_deref(), Some(TOKEN), "token header on {}", s.uri);
        assert!(!s.uri.contains(TOKEN), "token in the URL {}", s.uri);
    }
    assert!(!format!("{client:?}").contains(TOKEN));
}

#[tokio::test]
async fn registers_again_when_the_agent_forgot_the_check() {
    let (agent, client) = agent_and_client().await;
    let handle = client
        .register(reg("echo").id("echo-1").ttl(Duration::from_secs(1)))
        .await
        .unwrap();
    agent.refuse_next_update(404, "Unknown check ID \"service:echo-1\". Ensure that the check ID is passed, not the check name.");
    let wait = Duration::from_secs(5);
    support::eventually(wait, "a second registration", || async {
        count(&agent, is_register) == 2
    })
    .await;
    agent.refuse_next_update(
        500,
        "CheckID \"service:echo-1\" does not have associated TTL",
    );
    support::eventually(wait, "a third registration", || async {
        count(&agent, is_register) == 3
    })
    .await;
    // Each re-registration is followed at once by a passing update.
    let seen = agent.seen();
    for (i, s) in seen.iter().enumerate().skip(1) {
        if is_register(s) {
            let next = seen.get(i + 1).expect("an update after re-registering");
            assert!(is_update(next) && status_of(next) == "passing", "{seen:?}");
        }
    }
    drop(handle);
}

#[tokio::test]
async fn drain_reports_critical_then_deregisters() {
    let (agent, client) = agent_and_client().await;
    let handle = client
        .register(reg("echo").id("echo-1").ttl(Duration::from_secs(1)))
        .await
        .unwrap();
    handle.drain(Duration::from_millis(200)).await.unwrap();
    let seen = agent.seen();
    let n = seen.len();
    assert!(
        is_update(&seen[n - 2]) && status_of(&seen[n - 2]) == "critical",
        "{seen:?}"
    );
    assert_eq!(seen[n - 1].uri, "/v1/agent/service/deregister/echo-1");
}

#[tokio::test]
async fn dropping_the_handle_deregisters() {
    let (agent, client) = agent_and_client().await;
    let handle = client.register(reg("echo").id("echo-1")).await.unwrap();
    drop(handle);
    support::eventually(Duration::from_secs(5), "a deregistration", || async {
        count(&agent, |s| s.uri == "/v1/agent/service/deregister/echo-1") == 1
    })
    .await;
}
