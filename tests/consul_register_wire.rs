//! Registration over the wire, against `ConsulDev` and its request log: the exact
//! requests, the token header, re-registration after refused check updates, and
//! what happens before anything is sent.
#![cfg(feature = "consul")]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use tonic_discovery::consul::{Client, Registration};

const ADDR: &str = "127.0.0.1:7001";

fn reg(name: &str) -> Registration {
    Registration::new(name, ADDR.parse().unwrap())
}

/// With `tls-ring`, reqwest is built without a default crypto provider and its client
/// builder panics unless one is installed (the client builder does not install one yet).
fn install_crypto_provider() {
    #[cfg(feature = "tls-ring")]
    let _ = rustls::crypto::ring::default_provider().install_default();
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

use consul_dev::{ConsulDev, Fault, FaultRule, RecordedRequest};
use http::Method;

const TOKEN: &str = "s3cret-token";

/// A registry that requires `TOKEN`, and a client that carries it.
async fn agent_and_client() -> (ConsulDev, Client) {
    support::trace_init();
    install_crypto_provider();
    let agent = ConsulDev::builder()
        .acl_token(Some(TOKEN.to_owned()))
        .start()
        .await
        .unwrap();
    let client = Client::builder(agent.addr().to_string())
        .token(TOKEN)
        .build()
        .unwrap();
    (agent, client)
}

fn count(agent: &ConsulDev, pred: impl Fn(&RecordedRequest) -> bool) -> usize {
    agent.requests().iter().filter(|s| pred(s)).count()
}

/// A `PUT` to exactly `path` (percent-decoded), without a query string.
fn is_put(s: &RecordedRequest, path: &str) -> bool {
    s.method() == Method::PUT && s.path() == path && s.uri().query().is_none()
}

fn is_update(s: &RecordedRequest) -> bool {
    is_put(s, "/v1/agent/check/update/service:echo-1")
}

fn is_register(s: &RecordedRequest) -> bool {
    is_put(s, "/v1/agent/service/register")
}

fn is_deregister(s: &RecordedRequest) -> bool {
    is_put(s, "/v1/agent/service/deregister/echo-1")
}

fn status_of(s: &RecordedRequest) -> String {
    let body: serde_json::Value = serde_json::from_slice(s.body()).unwrap();
    body["Status"].as_str().unwrap_or_default().to_owned()
}

/// The next check update is answered `status` with `body` instead of being applied,
/// as by an agent that lost the check.
fn refuse_next_update(agent: &ConsulDev, status: u16, body: &str) {
    let answer = Fault::Answer {
        status,
        body: body.to_owned(),
    };
    agent.faults().add(
        FaultRule::new(answer)
            .path_prefix("/v1/agent/check/update/")
            .times(1),
    );
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

    let seen = agent.requests();
    assert!(is_register(&seen[0]), "{seen:?}");
    let body: serde_json::Value = serde_json::from_slice(seen[0].body()).unwrap();
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
    let seen = agent.requests();
    let last = seen.last().unwrap();
    assert!(is_deregister(last), "{last:?}");
    for s in &seen {
        let uri = s.uri().to_string();
        assert_eq!(
            s.header("x-consul-token"),
            Some(TOKEN),
            "token header on {uri}"
        );
        assert!(!uri.contains(TOKEN), "token in the URL {uri}");
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
    // Compare with the count before each refusal: on a loaded machine a timed-out
    // update may add a registration of its own.
    let before = count(&agent, is_register);
    refuse_next_update(
        &agent,
        404,
        "Unknown check ID \"service:echo-1\". Ensure that the check ID is passed, not the check name.",
    );
    let wait = Duration::from_secs(5);
    support::eventually(wait, "a registration after the 404", || async {
        count(&agent, is_register) > before
    })
    .await;
    // The update that follows that registration must not meet the next refusal.
    support::eventually(wait, "an update after the registration", || async {
        let seen = agent.requests();
        seen.iter()
            .rposition(is_register)
            .is_some_and(|i| i + 1 < seen.len())
    })
    .await;
    let before = count(&agent, is_register);
    refuse_next_update(
        &agent,
        500,
        "CheckID \"service:echo-1\" does not have associated TTL",
    );
    support::eventually(wait, "a registration after the 500", || async {
        count(&agent, is_register) > before
    })
    .await;
    // Each re-registration is followed at once by a passing update (wait for the
    // last one's to arrive before reading the log).
    support::eventually(wait, "an update after the last registration", || async {
        let seen = agent.requests();
        seen.iter()
            .rposition(is_register)
            .is_some_and(|i| i + 1 < seen.len())
    })
    .await;
    let seen = agent.requests();
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
    let seen = agent.requests();
    let n = seen.len();
    assert!(
        is_update(&seen[n - 2]) && status_of(&seen[n - 2]) == "critical",
        "{seen:?}"
    );
    assert!(is_deregister(&seen[n - 1]), "{seen:?}");
}

#[tokio::test]
async fn dropping_the_handle_deregisters() {
    let (agent, client) = agent_and_client().await;
    let handle = client.register(reg("echo").id("echo-1")).await.unwrap();
    drop(handle);
    support::eventually(Duration::from_secs(5), "a deregistration", || async {
        count(&agent, is_deregister) == 1
    })
    .await;
}
