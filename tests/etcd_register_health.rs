//! Health-following of an etcd registration, against a real etcd: the key leaves
//! while the instance does not serve and comes back on the current lease.
#![cfg(feature = "etcd")]

#[path = "support/etcd.rs"]
mod etcd_support;
mod support;

use std::time::Duration;

use etcd_support::{Seen, client, key_lease, lease_ttl, raw};
use support::{eventually, trace_init};
use tokio::sync::watch;
use tonic_discovery::etcd::Registration;
use tonic_discovery_testkit::EtcdServer;

const WAIT: Duration = Duration::from_secs(10);
const ADDR: &str = "127.0.0.1:50051";
const KEY: &str = "echo/127.0.0.1:50051";

fn registration(health: watch::Receiver<bool>) -> Registration {
    Registration::new("echo", ADDR.parse().unwrap())
        .ttl(Duration::from_secs(3))
        .health(health)
}

/// etcd's store revision: it moves with every write of a key.
async fn revision(raw: &etcd_client::Client) -> i64 {
    let mut raw = raw.clone();
    let resp = raw.get(KEY, None).await.expect("etcd answers");
    resp.header().expect("a response header").revision()
}

/// What we want to test: not serving deletes the key (a discovery sees the instance
/// go) and keeps the lease; serving again puts the key back on that lease.
#[tokio::test]
async fn the_key_follows_the_health_source() {
    trace_init();
    let etcd = EtcdServer::start().await.unwrap();
    let raw = raw(&etcd).await;
    let client = client(&etcd).await;
    let seen = Seen::follow(client.discovery("echo").build());
    let (tx, rx) = watch::channel(true);
    let handle = client.register(registration(rx)).await.unwrap();
    let lease = handle.lease_id().unwrap();
    eventually(WAIT, "the instance discovered", || async {
        seen.authorities() == [ADDR]
    })
    .await;

    tx.send_replace(false);
    eventually(WAIT, "the key gone and the instance with it", || async {
        key_lease(&raw, KEY).await.is_none() && seen.authorities().is_empty()
    })
    .await;
    assert_eq!(handle.lease_id(), Some(lease), "the lease changed");
    assert!(lease_ttl(&raw, lease).await > 0, "the lease went");

    tx.send_replace(true);
    eventually(
        WAIT,
        "the key back on the lease, and discovered",
        || async { key_lease(&raw, KEY).await == Some(lease) && seen.authorities() == [ADDR] },
    )
    .await;
    seen.assert_clean();
    handle.deregister().await.unwrap();
    assert_eq!(key_lease(&raw, KEY).await, None);
}

#[tokio::test]
async fn an_instance_not_serving_at_registration_puts_no_key_until_it_serves() {
    trace_init();
    let etcd = EtcdServer::start().await.unwrap();
    let raw = raw(&etcd).await;
    let client = client(&etcd).await;
    let (tx, rx) = watch::channel(false);
    let before = revision(&raw).await;
    let handle = client.register(registration(rx)).await.unwrap();
    let lease = handle.lease_id().expect("a lease is granted");
    assert!(lease_ttl(&raw, lease).await > 0);
    // A lease grant leaves the store's revision alone; a put (even one deleted at
    // once) moves it.
    assert_eq!(revision(&raw).await, before, "a key was written");
    assert_eq!(key_lease(&raw, KEY).await, None, "put while not serving");

    tx.send_replace(true);
    eventually(WAIT, "the key put on the lease", || async {
        key_lease(&raw, KEY).await == Some(lease)
    })
    .await;
    handle.deregister().await.unwrap();
}

/// What we want to test: a lease lost while the instance does not serve is replaced
/// without the key; serving again puts the key on the new lease.
#[tokio::test]
async fn a_lease_replaced_while_not_serving_leaves_the_key_out() {
    trace_init();
    let etcd = EtcdServer::start().await.unwrap();
    let raw = raw(&etcd).await;
    let (tx, rx) = watch::channel(true);
    let handle = client(&etcd)
        .await
        .register(registration(rx))
        .await
        .unwrap();
    let old = handle.lease_id().unwrap();
    tx.send_replace(false);
    eventually(WAIT, "the key gone", || async {
        key_lease(&raw, KEY).await.is_none()
    })
    .await;

    etcd.etcdctl(&["lease", "revoke", &format!("{old:x}")])
        .await
        .unwrap();
    eventually(WAIT, "a new lease", || async {
        handle.lease_id().is_some_and(|l| l != old)
    })
    .await;
    let new = handle.lease_id().unwrap();
    assert!(lease_ttl(&raw, new).await > 0);
    assert_eq!(key_lease(&raw, KEY).await, None, "put on the new lease");

    tx.send_replace(true);
    eventually(WAIT, "the key on the new lease", || async {
        key_lease(&raw, KEY).await == Some(new)
    })
    .await;
    handle.deregister().await.unwrap();
}
