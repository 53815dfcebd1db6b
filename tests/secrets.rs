//! The ACL token never leaks: not in any `tracing` output (every target at TRACE,
//! `log` records included), not in the `Debug` of any public type, not in a URL.
//!
//! What we want to test: a whole run with a token (registration and heartbeats,
//! discovery, calls through the balanced channel, a 403 with a wrong token, errors
//! from a registry that is gone) leaves neither token in the captured output, in the
//! `Debug` and `Display` texts, or in the request targets the registry recorded.
//! This binary holds one test: it installs the global subscriber.

mod support;

use std::time::Duration;

use consul_dev::ConsulDev;
use support::capture::Captured;
use support::eventually;
use tonic_discovery::balance::BalancedChannel;
use tonic_discovery::consul::{Client, Registration};
use tonic_discovery_testkit::TestEchoServer;
use tonic_discovery_testkit::pb::EchoRequest;
use tonic_discovery_testkit::pb::echo_client::EchoClient;

const TOKEN: &str = "d41f2c7e-aaaa-4b1e-9f00-5ec2e7t0ken1";
const WRONG: &str = "0b9e33a1-bbbb-4c2d-8e11-5ec2e7t0ken2";
const T: Duration = Duration::from_secs(10);

fn assert_clean(what: &str, text: &str) {
    for secret in [TOKEN, WRONG] {
        assert!(!text.contains(secret), "{what} shows a token: {text}");
    }
}

async fn echo_once(channel: &BalancedChannel) -> bool {
    let mut client = EchoClient::new(channel.clone());
    client.echo(EchoRequest::default()).await.is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_is_in_no_log_debug_or_url() {
    let logs = Captured::install();
    #[cfg(feature = "tls-ring")]
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut debug = Vec::new();
    let dev_builder = ConsulDev::builder().acl_token(Some(TOKEN.to_owned()));
    debug.push(format!("{dev_builder:?}"));
    let dev = dev_builder.start().await.expect("registry");
    let server = TestEchoServer::start("a").await.expect("echo");

    // Registration with heartbeats, the token from a file.
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).expect("token file");
    let builder = Client::builder(dev.url()).token_file(&token_file);
    debug.push(format!("{builder:?}"));
    let client = builder.build().expect("client");
    let registration = Registration::new("echo", server.addr())
        .id("a")
        .ttl(Duration::from_secs(2))
        .heartbeat_interval(Duration::from_millis(200));
    debug.push(format!("{registration:?}"));
    let handle = client.register(registration).await.expect("register");
    debug.push(format!("{handle:?}"));

    // Discovery and calls, the token given inline.
    let builder = Client::builder(dev.url()).token(TOKEN);
    debug.push(format!("{builder:?}"));
    let client = builder.build().expect("client");
    debug.push(format!("{client:?}"));
    let discovery = client.discovery("echo");
    debug.push(format!("{discovery:?}"));
    let discovery = discovery.build();
    debug.push(format!("{discovery:?}"));
    let observer = discovery.observer();
    let channel_builder = BalancedChannel::builder("echo");
    debug.push(format!("{channel_builder:?}"));
    let channel = channel_builder
        .build(discovery)
        .expect("valid balancer settings");
    eventually(T, "a call succeeds", || echo_once(&channel)).await;
    debug.push(format!("{channel:?} {:?}", channel.endpoints()));
    debug.push(format!("{:?} {observer:?}", observer.state()));
    eventually(T, "heartbeats", || async {
        dev.request_count(&format!("/v1/agent/check/update/{}", handle.check_id())) >= 3
    })
    .await;

    // A 403: a wrong token registering and discovering.
    let wrong = Client::builder(dev.url())
        .token(WRONG)
        .build()
        .expect("client");
    let refused = wrong
        .register(Registration::new("echo", server.addr()).id("b"))
        .await
        .expect_err("a wrong token is refused");
    assert_eq!(refused.status(), Some(403), "{refused}");
    debug.push(format!("{refused:?} {refused}"));
    let denied = wrong.discovery("echo").build();
    eventually(T, "discovery is refused", || async {
        denied
            .state()
            .last_error()
            .is_some_and(|e| e.contains("403"))
    })
    .await;
    debug.push(format!("{denied:?} {:?}", denied.state()));

    // Errors: the registry goes away under the heartbeat, discovery and a call.
    let uris = dev.request_uris();
    let dev_debug = format!("{dev:?} {:?}", dev.faults());
    drop(dev);
    eventually(T, "discovery fails", || async {
        observer.state().consecutive_failures() >= 2
    })
    .await;
    let gone = client
        .register(Registration::new("echo", server.addr()).id("c"))
        .await
        .expect_err("the registry is gone");
    debug.push(format!("{gone:?} {gone}"));
    debug.push(format!("{:?}", observer.state()));
    assert!(echo_once(&channel).await, "the last known instance serves");
    drop(handle);
    drop(channel);

    debug.push(dev_debug);
    for d in &debug {
        assert_clean("a Debug or Display", d);
    }
    assert!(
        uris.iter()
            .any(|u| u.starts_with("/v1/agent/service/register"))
            && uris
                .iter()
                .any(|u| u.starts_with("/v1/health/service/echo")),
        "{uris:?}"
    );
    for uri in &uris {
        assert_clean("a request URI", uri);
    }
    let logs = logs.text();
    assert!(
        logs.contains("TRACE") && logs.contains("registered"),
        "the capture works"
    );
    assert_clean("the trace output", &logs);
}
