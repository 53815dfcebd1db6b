//! A service config kept in Consul's KV store: the watch against `ConsulDev` (absent,
//! set, unchanged, changed, deleted, a failing registry), and a balanced channel
//! that follows it while calls flow (a retry policy applied without a restart, the
//! key deleted). A bad document refused is in `metrics.rs`, where its counter is
//! the sign it was read.

mod balance_util;
mod support;

use std::time::Duration;

use balance_util::{Scripted, discovery};
use consul_dev::{ConsulDev, Fault, FaultRule};
use futures_util::StreamExt;
use tonic::Code;
use tonic_discovery::Backoff;
use tonic_discovery::balance::{BalancedChannel, FailureAccrual};
use tonic_discovery::consul::Client;
use tonic_discovery::source::{ConfigUpdate, ServiceConfigWatch};
use tonic_discovery_testkit::pb::EchoRequest;
use tonic_discovery_testkit::pb::echo_client::EchoClient;

const T: Duration = Duration::from_secs(10);

const RETRY: &str = r#"{"methodConfig": [{"name": [{"service": "echo.v1.Echo"}],
  "retryPolicy": {"maxAttempts": 2, "initialBackoff": "0.001s", "maxBackoff": "0.005s",
  "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]}}]}"#;

fn client(dev: &ConsulDev) -> Client {
    Client::builder(dev.url()).build().expect("consul client")
}

fn watch(dev: &ConsulDev, service: &str) -> ServiceConfigWatch {
    client(dev)
        .service_config(service)
        .wait(Duration::from_secs(30))
        .backoff(Backoff::new(
            Duration::from_millis(10),
            Duration::from_millis(50),
        ))
        .build()
}

async fn kv(dev: &ConsulDev, method: reqwest::Method, key: &str, value: &str) {
    // With `tls-ring`, reqwest is built without a default crypto provider.
    #[cfg(feature = "tls-ring")]
    let _ = rustls::crypto::ring::default_provider().install_default();
    let url = format!("{}/v1/kv/{key}", dev.url());
    let response = reqwest::Client::new()
        .request(method, url)
        .body(value.to_owned())
        .send()
        .await
        .expect("KV request");
    assert!(response.status().is_success(), "{}", response.status());
}

async fn next(watch: &mut ServiceConfigWatch) -> ConfigUpdate {
    tokio::time::timeout(T, watch.next())
        .await
        .expect("an update in time")
        .expect("the watch never ends")
}

#[tokio::test]
async fn the_watch_yields_each_change_of_the_key() {
    let dev = ConsulDev::start().await.expect("registry");
    let mut watch = watch(&dev, "echo");
    assert_eq!(watch.origin(), "consul kv service-config/echo");
    assert!(matches!(next(&mut watch).await, Ok(None)), "absent first");

    kv(&dev, reqwest::Method::PUT, "service-config/echo", RETRY).await;
    assert_eq!(
        next(&mut watch).await.expect("read"),
        Some(RETRY.to_owned())
    );

    // Another key moves the index but not the document: nothing is yielded, so the
    // next item is the change that follows.
    kv(&dev, reqwest::Method::PUT, "service-config/other", "{}").await;
    kv(&dev, reqwest::Method::PUT, "service-config/echo", RETRY).await;
    kv(&dev, reqwest::Method::PUT, "service-config/echo", "{}").await;
    assert_eq!(next(&mut watch).await.expect("read"), Some("{}".to_owned()));

    kv(&dev, reqwest::Method::DELETE, "service-config/echo", "").await;
    assert!(matches!(next(&mut watch).await, Ok(None)), "deleted");
}

#[tokio::test]
async fn a_failing_registry_is_reported_and_the_watch_recovers() {
    let dev = ConsulDev::start().await.expect("registry");
    let mut watch = watch(&dev, "echo");
    assert!(matches!(next(&mut watch).await, Ok(None)));
    let fault = dev
        .faults()
        .add(FaultRule::new(Fault::NoLeader).path_prefix("/v1/kv/service-config/echo"));
    // The blocking read in flight answers when the KV index moves; the fault
    // answers the reads after it.
    kv(&dev, reqwest::Method::PUT, "wake", "{}").await;
    let failed = next(&mut watch).await;
    let error = failed.expect_err("a failed read");
    assert!(error.to_string().contains("No cluster leader"), "{error}");
    dev.faults().remove(fault);
    kv(&dev, reqwest::Method::PUT, "service-config/echo", RETRY).await;
    // Failed reads may still be reported while the backoff runs; the document comes.
    loop {
        match next(&mut watch).await {
            Err(_) => continue,
            Ok(document) => {
                assert_eq!(document, Some(RETRY.to_owned()));
                break;
            }
        }
    }
}

/// One call that meets a server which fails it once with UNAVAILABLE: whether it
/// was answered (it was, if the channel retried it).
async fn answered_after_one_failure(channel: &BalancedChannel, server: &Scripted) -> bool {
    server.then_fail(Code::Unavailable, None);
    let mut client = EchoClient::new(channel.clone());
    // Either way the failure is used up: by the only attempt or by the first.
    client.echo(EchoRequest::default()).await.is_ok()
}

#[tokio::test]
async fn a_channel_follows_the_kv_config_while_calls_flow() {
    let dev = ConsulDev::start().await.expect("registry");
    let server = Scripted::default();
    let addr = server.serve().await;
    let (feeder, discovery) = discovery();
    feeder.insert_at("a", addr);
    let channel = BalancedChannel::builder("echo")
        .failure_accrual(FailureAccrual::disabled())
        .service_config_watch(watch(&dev, "echo"))
        .build(discovery)
        .expect("channel");
    // No document, no policy: the failure reaches the caller.
    let first = EchoClient::new(channel.clone())
        .echo(EchoRequest::default())
        .await;
    assert!(first.is_ok(), "the instance answers");
    assert!(!answered_after_one_failure(&channel, &server).await);

    kv(&dev, reqwest::Method::PUT, "service-config/echo", RETRY).await;
    support::eventually(T, "the retry policy applies", || {
        answered_after_one_failure(&channel, &server)
    })
    .await;
    let previous = server.take_previous();
    assert_eq!(previous.last(), Some(&Some("1".to_owned())), "{previous:?}");

    // Deleted: back to the channel's own config (none).
    kv(&dev, reqwest::Method::DELETE, "service-config/echo", "").await;
    support::eventually(T, "the policy is gone", || async {
        !answered_after_one_failure(&channel, &server).await
    })
    .await;
}
