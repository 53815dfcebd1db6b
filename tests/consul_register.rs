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
