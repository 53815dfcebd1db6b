//! Service names DNS cannot carry (underscores, dots): refused by default with the rule
//! and the dashed name; registered with `allow_non_dns_name(true)`, which logs one
//! warning; discovered with no opt-in at all.
//!
//! This binary installs the global subscriber: the warning is read from it.

mod support;

use std::time::Duration;

use consul_dev::ConsulDev;
use futures_util::StreamExt;
use tonic_discovery::consul::{Client, Registration};
use tower::discover::Change;

const WAIT: Duration = Duration::from_secs(10);
const NAME: &str = "billing_api.v1";
const WARNING: &str = "registering a service name DNS cannot carry";

/// With `tls-ring`, reqwest is built without a default crypto provider and its client
/// builder panics unless one is installed.
fn install_crypto_provider() {
    #[cfg(feature = "tls-ring")]
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[tokio::test]
async fn non_dns_names_need_the_opt_in_to_register_and_none_to_be_discovered() {
    let captured = support::capture::Captured::install();
    install_crypto_provider();
    let dev = ConsulDev::start().await.unwrap();
    let consul = Client::builder(dev.url()).build().unwrap();
    let addr = "127.0.0.1:7001".parse().unwrap();
    const REGISTER: &str = "/v1/agent/service/register";

    // By default: refused before anything is sent, naming the rule, the dashed name
    // and the opt-in.
    let refused = consul.register(Registration::new(NAME, addr)).await;
    let e = refused.expect_err("a name with an underscore and a dot is refused");
    assert!(e.is_config(), "{e}");
    let text = e.to_string();
    assert!(text.contains("a service name is a DNS label"), "{text}");
    assert!(text.contains("`billing-api-v1`"), "{text}");
    assert!(text.contains("allow_non_dns_name(true)"), "{text}");
    assert_eq!(dev.request_count(REGISTER), 0);
    assert!(!captured.text().contains(WARNING));

    // With the opt-in: registered, with one warning.
    let registration = Registration::new(NAME, addr)
        .id("billing-1")
        .ttl(Duration::from_secs(3))
        .heartbeat_interval(Duration::from_secs(1))
        .allow_non_dns_name(true);
    let handle = consul.register(registration).await.expect("registered");
    assert_eq!(dev.request_count(REGISTER), 1);

    // Discovered under that name, with no opt-in.
    let mut discovery = consul.discovery(NAME).build();
    let change = tokio::time::timeout(WAIT, discovery.next())
        .await
        .expect("the instance is discovered in time")
        .expect("the discovery never ends")
        .expect("the discovery never errs");
    match change {
        Change::Insert(key, instance) => {
            assert_eq!(key.id(), "billing-1");
            assert_eq!((instance.host(), instance.port()), ("127.0.0.1", 7001));
        }
        Change::Remove(key) => panic!("removed {key:?} before any insert"),
    }

    // The heartbeat registers it again after the agent forgot it: no second warning.
    dev.forget_all();
    support::eventually(WAIT, "registered again by the heartbeat", || async {
        dev.request_count(REGISTER) == 2
    })
    .await;
    let text = captured.text();
    assert_eq!(text.matches(WARNING).count(), 1, "{text}");
    let line = text.lines().find(|l| l.contains(WARNING)).unwrap();
    assert!(line.contains(NAME) && line.contains("WARN"), "{line}");
    handle.deregister().await.expect("deregistered");
}
