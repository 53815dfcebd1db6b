//! A service config followed live from an etcd key, against a real etcd: changes,
//! compaction and restarts.
#![cfg(feature = "etcd")]

#[path = "support/etcd.rs"]
mod etcd_support;
mod support;

use std::time::Duration;

use etcd_support::{client, compact_now, raw};
use futures_util::StreamExt;
use support::trace_init;
use tonic_discovery::source::{ConfigUpdate, ServiceConfigWatch};
use tonic_discovery::{Backoff, BoxError};
use tonic_discovery_testkit::EtcdServer;

const WAIT: Duration = Duration::from_secs(10);
const KEY: &str = "service-config/echo";

/// The config watch of `echo` at its default key, with fast retries so a restart is
/// noticed quickly.
async fn watch_echo(etcd: &EtcdServer) -> ServiceConfigWatch {
    let backoff = Backoff::new(Duration::from_millis(50), Duration::from_millis(200));
    let client = client(etcd).await;
    client.service_config("echo").backoff(backoff).build()
}

/// The next update, within [`WAIT`].
async fn next(watch: &mut ServiceConfigWatch) -> ConfigUpdate {
    match tokio::time::timeout(WAIT, watch.next()).await {
        Ok(Some(update)) => update,
        Ok(None) => panic!("the config watch ended"),
        Err(_) => panic!("no config update within {WAIT:?}"),
    }
}

/// The next update, which must be a document (`Some`) or no document (`None`).
async fn next_doc(watch: &mut ServiceConfigWatch) -> Option<String> {
    next(watch).await.expect("a document, not an error")
}

/// Whether an update's error is the crate's decode error.
fn is_decode(e: &BoxError) -> bool {
    let e = e.downcast_ref::<tonic_discovery::Error>();
    e.expect("the crate's Error").is_decode()
}

fn doc(n: u32) -> String {
    format!(r#"{{"methodConfig":[{{"name":[{{"service":"echo"}}],"timeout":"{n}s"}}]}}"#)
}

async fn put(etcd: &EtcdServer, value: &str) {
    etcd.etcdctl(&["put", KEY, value]).await.unwrap();
}

#[tokio::test]
async fn follows_puts_and_deletes_of_the_key() {
    trace_init();
    let etcd = EtcdServer::start().await.unwrap();
    let mut watch = watch_echo(&etcd).await;
    assert_eq!(watch.origin(), "etcd service-config/echo");
    assert_eq!(next_doc(&mut watch).await, None, "absent key first");

    put(&etcd, &doc(1)).await;
    assert_eq!(next_doc(&mut watch).await, Some(doc(1)));
    // The same value again yields nothing: the next update is the next change.
    put(&etcd, &doc(1)).await;
    put(&etcd, &doc(2)).await;
    assert_eq!(next_doc(&mut watch).await, Some(doc(2)));

    etcd.etcdctl(&["del", KEY]).await.unwrap();
    assert_eq!(next_doc(&mut watch).await, None, "deleted");

    let mut raw = raw(&etcd).await;
    raw.put(KEY, vec![b'{', 0xff, b'}'], None).await.unwrap();
    let e = next(&mut watch)
        .await
        .expect_err("a value that is not UTF-8");
    assert!(is_decode(&e), "{e}");
    put(&etcd, &doc(3)).await;
    assert_eq!(next_doc(&mut watch).await, Some(doc(3)));
}

#[tokio::test]
async fn a_custom_key_is_followed_and_instances_keys_are_not() {
    trace_init();
    let etcd = EtcdServer::start().await.unwrap();
    let key = "/configs/hello";
    let mut watch = client(&etcd).await.service_config("hello").key(key).build();
    assert_eq!(watch.origin(), "etcd /configs/hello");
    assert_eq!(next_doc(&mut watch).await, None);
    // Neither the default key nor keys under the custom one are the config.
    etcd.etcdctl(&["put", "service-config/hello", &doc(1)])
        .await
        .unwrap();
    etcd.etcdctl(&["put", "/configs/hello/x", &doc(2)])
        .await
        .unwrap();
    etcd.etcdctl(&["put", key, &doc(3)]).await.unwrap();
    assert_eq!(next_doc(&mut watch).await, Some(doc(3)));
}

/// What we want to test: a watch opened from a revision compacted since the read
/// reads the key again and yields its latest value, with no error in between.
#[tokio::test]
async fn a_compacted_start_revision_reads_the_key_again() {
    trace_init();
    let etcd = EtcdServer::start().await.unwrap();
    let mut watch = watch_echo(&etcd).await;
    // The stream only works while polled: after its first item it has read the key
    // and not opened its watch yet.
    assert_eq!(next_doc(&mut watch).await, None);
    put(&etcd, &doc(1)).await;
    put(&etcd, &doc(2)).await;
    compact_now(&etcd).await;
    assert_eq!(next_doc(&mut watch).await, Some(doc(2)));
    put(&etcd, &doc(3)).await;
    assert_eq!(next_doc(&mut watch).await, Some(doc(3)));
}

/// What we want to test: while etcd is down each failed attempt yields one error and
/// the watch keeps trying; once etcd is back (same ports, same data), the watch reads
/// again (the unchanged value is not yielded again) and sees a put made after the
/// restart.
#[tokio::test]
async fn recovers_after_etcd_restarts() {
    trace_init();
    let mut etcd = EtcdServer::start().await.unwrap();
    put(&etcd, &doc(1)).await;
    let mut watch = watch_echo(&etcd).await;
    assert_eq!(next_doc(&mut watch).await, Some(doc(1)));
    // A change through the open watch.
    put(&etcd, &doc(2)).await;
    assert_eq!(next_doc(&mut watch).await, Some(doc(2)));

    etcd.kill().await;
    for _ in 0..2 {
        let e = next(&mut watch).await.expect_err("etcd is down");
        assert!(!is_decode(&e), "{e}");
    }
    etcd.restart().await.unwrap();
    put(&etcd, &doc(3)).await;
    loop {
        match next(&mut watch).await {
            // Attempts that failed before etcd answered again.
            Err(e) => assert!(!is_decode(&e), "{e}"),
            Ok(update) => {
                assert_eq!(update, Some(doc(3)));
                break;
            }
        }
    }
    put(&etcd, &doc(4)).await;
    assert_eq!(next_doc(&mut watch).await, Some(doc(4)));
}
