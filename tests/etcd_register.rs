//! Registration against a real etcd: keep-alive, lease loss, deregistration, drain.
#![cfg(feature = "etcd")]

#[path = "support/etcd.rs"]
mod etcd_support;
#[path = "support/same_rules.rs"]
mod same_rules;
mod support;

use std::time::Duration;

use etcd_support::{client, etcd_keys, key_lease, lease_ttl, raw};
use support::{eventually, trace_init};
use tokio::time::Instant;
use tonic_discovery::etcd::{KeyLayout, Registration};
use tonic_discovery_testkit::EtcdServer;

const WAIT: Duration = Duration::from_secs(10);

fn registration(ttl: u64) -> Registration {
    Registration::new("echo", "127.0.0.1:50051".parse().unwrap()).ttl(Duration::from_secs(ttl))
}

const KEY: &str = "echo/127.0.0.1:50051";

/// What we want to test: over ten TTLs the key stays on the lease granted at
/// registration (a lapse would expire the lease and take the key with it; a new
/// lease would change its id). Sampled four times per TTL.
#[tokio::test]
async fn registration_survives_ten_ttls() {
    trace_init();
    let etcd = EtcdServer::start().await.unwrap();
    let raw = raw(&etcd).await;
    let reg = registration(2);
    let ttl = reg.lease_ttl();
    let handle = client(&etcd).await.register(reg).await.unwrap();
    let lease = handle.lease_id().unwrap();
    let mut tick = tokio::time::interval(ttl / 4);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for sample in 0..40 {
        tick.tick().await;
        let on = key_lease(&raw, KEY).await;
        assert_eq!(on, Some(lease), "the key's lease at sample {sample}");
        assert_eq!(handle.lease_id(), Some(lease), "sample {sample}");
    }
    assert!(lease_ttl(&raw, lease).await > 0, "the lease ran out");
}

/// What we want to test: etcd is killed and restarted; the registration notices the
/// broken keep-alive, and once etcd is back puts the key on a new lease and revokes
/// the old one. (etcd 3.4 restores leases on restart with a full TTL, so the old
/// lease would otherwise keep living, with nothing on it, until it expires.)
#[tokio::test]
async fn registration_returns_on_a_new_lease_after_etcd_restarts() {
    trace_init();
    let mut etcd = EtcdServer::start().await.unwrap();
    let reg = registration(3);
    let interval = reg.keep_alive_interval();
    let handle = client(&etcd).await.register(reg).await.unwrap();
    let old = handle.lease_id().unwrap();

    etcd.kill().await;
    eventually(WAIT, "the registration to notice", || async {
        handle.lease_id().is_none()
    })
    .await;

    etcd.restart().await.unwrap();
    let restarted = Instant::now();
    let raw = raw(&etcd).await;
    eventually(WAIT, "the key on a new lease", || async {
        let lease = key_lease(&raw, KEY).await;
        lease.is_some() && lease != Some(old) && handle.lease_id() == lease
    })
    .await;
    eprintln!(
        "registered again {:?} after the restart (keep-alive interval {interval:?})",
        restarted.elapsed()
    );
    let new = handle.lease_id().unwrap();
    assert_eq!(
        lease_ttl(&raw, old).await,
        -1,
        "the old lease is still granted"
    );
    let leases = etcd.etcdctl(&["lease", "list"]).await.unwrap();
    assert!(!leases.contains(&format!("{old:x}")), "{leases}");
    assert!(leases.contains(&format!("{new:x}")), "{leases}");
    assert_eq!(key_lease(&raw, KEY).await, Some(new));
}

#[tokio::test]
async fn registration_returns_after_its_lease_is_revoked() {
    trace_init();
    let etcd = EtcdServer::start().await.unwrap();
    let raw = raw(&etcd).await;
    let handle = client(&etcd).await.register(registration(3)).await.unwrap();
    let old = handle.lease_id().unwrap();
    etcd.etcdctl(&["lease", "revoke", &format!("{old:x}")])
        .await
        .unwrap();
    eventually(WAIT, "the key back on a new lease", || async {
        let lease = key_lease(&raw, KEY).await;
        lease.is_some() && lease != Some(old)
    })
    .await;
}

#[tokio::test]
async fn deregister_revokes_the_lease_and_deletes_the_key() {
    trace_init();
    let etcd = EtcdServer::start().await.unwrap();
    let raw = raw(&etcd).await;
    let handle = client(&etcd)
        .await
        .register(registration(10))
        .await
        .unwrap();
    let lease = handle.lease_id().unwrap();
    assert_eq!(key_lease(&raw, KEY).await, Some(lease));
    handle.deregister().await.unwrap();
    assert_eq!(key_lease(&raw, KEY).await, None);
    assert_eq!(lease_ttl(&raw, lease).await, -1);
}

#[tokio::test]
async fn drain_deletes_the_key_first_and_revokes_after_the_grace() {
    trace_init();
    let etcd = EtcdServer::start().await.unwrap();
    let raw = raw(&etcd).await;
    let reg = Registration::new("echo", "127.0.0.1:50051".parse().unwrap())
        .layout(KeyLayout::Kratos)
        .id("e1");
    let handle = client(&etcd).await.register(reg).await.unwrap();
    let key = handle.key().to_owned();
    assert_eq!(key, "/microservices/echo/e1");
    let lease = handle.lease_id().unwrap();
    let drain = tokio::spawn(handle.drain(Duration::from_secs(2)));
    eventually(WAIT, "the key to go at the start of the drain", || async {
        key_lease(&raw, &key).await.is_none()
    })
    .await;
    assert!(
        lease_ttl(&raw, lease).await > 0,
        "lease revoked before the grace"
    );
    drain.await.unwrap().unwrap();
    assert_eq!(lease_ttl(&raw, lease).await, -1);
}

#[tokio::test]
async fn dropping_the_handle_revokes_the_lease_best_effort() {
    trace_init();
    let etcd = EtcdServer::start().await.unwrap();
    let raw = raw(&etcd).await;
    let handle = client(&etcd)
        .await
        .register(registration(30))
        .await
        .unwrap();
    let lease = handle.lease_id().unwrap();
    drop(handle);
    // Far sooner than the 30 s TTL.
    eventually(WAIT, "the key to go with its revoked lease", || async {
        key_lease(&raw, KEY).await.is_none() && lease_ttl(&raw, lease).await == -1
    })
    .await;
}

#[tokio::test]
async fn an_invalid_registration_writes_nothing() {
    trace_init();
    let etcd = EtcdServer::start().await.unwrap();
    let raw = raw(&etcd).await;
    let reg = Registration::new("bad name", "0.0.0.0:1".parse().unwrap());
    let e = client(&etcd).await.register(reg).await.unwrap_err();
    assert!(e.is_config(), "{e}");
    assert!(etcd_keys(&raw, "").await.is_empty());
}

#[test]
fn answers_bad_names_and_addresses_as_every_registry() {
    same_rules::assert_same_answers(
        Registration::new,
        Registration::advertise,
        Registration::validate,
    );
}

/// What we want to test: a wildcard bind is published at the interface that routes
/// towards etcd (here loopback), as every registry does, not refused.
#[tokio::test]
async fn a_wildcard_bind_is_published_at_the_route_towards_etcd() {
    trace_init();
    let etcd = EtcdServer::start().await.unwrap();
    let raw = raw(&etcd).await;
    let reg = Registration::new("echo", "0.0.0.0:50052".parse().unwrap());
    let handle = client(&etcd).await.register(reg).await.unwrap();
    assert_eq!(handle.key(), "echo/127.0.0.1:50052");
    assert!(key_lease(&raw, "echo/127.0.0.1:50052").await.is_some());
}

#[tokio::test]
async fn first_registration_fails_when_etcd_is_down() {
    trace_init();
    let mut etcd = EtcdServer::start().await.unwrap();
    let client = client(&etcd).await;
    etcd.kill().await;
    let e = client.register(registration(2)).await.unwrap_err();
    assert!(e.is_transport() || e.is_timeout(), "{e}");
}
