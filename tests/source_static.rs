//! A `StaticList` changed from code, followed by a balanced channel over real Echo
//! servers: calls reach an inserted instance and stop reaching a removed one.

mod balance_util;
mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use balance_util::call;
use support::eventually;
use tonic_discovery::balance::BalancedChannel;
use tonic_discovery::source::StaticList;
use tonic_discovery::{Instance, InstanceKey};
use tonic_discovery_testkit::TestEchoServer;

const WAIT: Duration = Duration::from_secs(10);

/// The instance of `server` in a list, keyed by its Echo id.
fn instance(server: &TestEchoServer) -> Instance {
    let addr = server.addr();
    let key = InstanceKey::new("", server.service().id());
    Instance::new(key, addr.ip().to_string(), addr.port())
}

async fn start(id: &str) -> TestEchoServer {
    TestEchoServer::start(id).await.expect("echo server")
}

/// Waits until the channel's endpoints are the instances keyed `keys`, then checks
/// that calls are all answered by `ids`.
async fn only_reach(channel: &BalancedChannel, keys: &[&str], ids: &[&str]) {
    let want: BTreeSet<&str> = keys.iter().copied().collect();
    eventually(WAIT, &format!("endpoints {keys:?}"), || async {
        let endpoints = channel.endpoints();
        let have: BTreeSet<&str> = endpoints.iter().map(|e| e.key().id()).collect();
        have == want
    })
    .await;
    for _ in 0..30 {
        let id = call(channel).await.expect("call");
        assert!(
            ids.contains(&id.as_str()),
            "{id} answered, not one of {ids:?}"
        );
    }
}

#[tokio::test]
async fn calls_follow_insert_and_remove() {
    support::trace_init();
    let (a, b) = (start("a").await, start("b").await);
    let list = StaticList::new([instance(&a)]);
    let channel = BalancedChannel::builder("echo")
        .build(list.discovery("echo"))
        .expect("channel");
    only_reach(&channel, &["a"], &["a"]).await;

    list.insert(instance(&b));
    support::calls_reach(WAIT, &channel, &["a", "b"]).await;

    list.remove(&InstanceKey::new("", "a"));
    let served = a.service().served();
    only_reach(&channel, &["b"], &["b"]).await;
    assert_eq!(
        a.service().served(),
        served,
        "a was called after its removal"
    );
}

#[tokio::test]
async fn calls_follow_replace() {
    support::trace_init();
    let (a, b, c) = (start("a").await, start("b").await, start("c").await);
    let list = StaticList::new([instance(&a), instance(&b)]);
    let channel = BalancedChannel::builder("echo")
        .build(list.discovery("echo"))
        .expect("channel");
    support::calls_reach(WAIT, &channel, &["a", "b"]).await;

    list.replace([instance(&c)]);
    let served = (a.service().served(), b.service().served());
    only_reach(&channel, &["c"], &["c"]).await;
    let after = (a.service().served(), b.service().served());
    assert_eq!(after, served, "a or b was called after the replace");
}

#[tokio::test]
async fn addresses_are_keys_and_a_second_discovery_follows_too() {
    support::trace_init();
    let (a, b) = (start("a").await, start("b").await);
    let (addr_a, addr_b) = (a.addr().to_string(), b.addr().to_string());
    let list = StaticList::from_addrs([&addr_a]).expect("addresses");
    let first = BalancedChannel::builder("echo")
        .build(list.discovery("echo"))
        .expect("channel");
    let second = BalancedChannel::builder("echo")
        .build(list.discovery("echo"))
        .expect("channel");
    only_reach(&first, &[&addr_a], &["a"]).await;

    list.insert(Instance::new(
        StaticList::key(&addr_b),
        "127.0.0.1",
        b.addr().port(),
    ));
    list.remove(&StaticList::key(&addr_a));
    only_reach(&first, &[&addr_b], &["b"]).await;
    only_reach(&second, &[&addr_b], &["b"]).await;
}
