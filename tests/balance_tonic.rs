//! The adapter that feeds discovery into tonic's own balancer.

mod balance_util;
mod support;

use std::collections::HashSet;
use std::time::Duration;

use balance_util::discovery;
use support::eventually;
use tonic_discovery::balance::tonic_balancer::{balance_channel, http_endpoint};
use tonic_discovery_testkit::TestEchoServer;
use tonic_discovery_testkit::pb::EchoRequest;
use tonic_discovery_testkit::pb::echo_client::EchoClient;

#[tokio::test]
async fn tonic_balancer_follows_discovery() {
    support::trace_init();
    let a = TestEchoServer::start("a").await.expect("a");
    let b = TestEchoServer::start("b").await.expect("b");
    let (feed, disc) = discovery();
    feed.error("ignored");
    feed.insert(&a);
    feed.insert(&b);
    let mut client = EchoClient::new(balance_channel(disc, http_endpoint));

    let seen = std::sync::Mutex::new(HashSet::new());
    eventually(Duration::from_secs(5), "both instances served", || {
        let mut client = client.clone();
        let seen = &seen;
        async move {
            if let Ok(r) = client.echo(EchoRequest::default()).await {
                seen.lock().unwrap().insert(r.into_inner().instance_id);
            }
            seen.lock().unwrap().len() == 2
        }
    })
    .await;

    feed.remove("b");
    // tonic applies changes when a request arrives; after that only a answers.
    eventually(Duration::from_secs(5), "b removed", || {
        let mut client = client.clone();
        async move {
            let r = client.echo(EchoRequest::default()).await;
            r.is_ok_and(|r| r.into_inner().instance_id == "a")
        }
    })
    .await;
    for _ in 0..20 {
        let r = client.echo(EchoRequest::default()).await.expect("call");
        assert_eq!(r.into_inner().instance_id, "a");
    }
}
