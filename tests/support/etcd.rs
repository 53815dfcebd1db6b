//! Helpers for the etcd integration tests.
#![allow(dead_code, unreachable_pub, unused_imports)]

use std::collections::BTreeMap;
use std::time::Duration;

use tonic_discovery::etcd::{Client, Discovery};
use tonic_discovery_testkit::EtcdServer;

/// A client with the fast failure detection the partition tests need.
pub async fn client(server: &EtcdServer) -> Client {
    Client::builder(server.endpoint())
        .keep_alive(Duration::from_secs(5), Duration::from_secs(2))
        .request_timeout(Duration::from_secs(2))
        .connect()
        .await
        .expect("etcd client")
}

/// A raw etcd-client connection, to look at etcd itself.
pub async fn raw(server: &EtcdServer) -> etcd_client::Client {
    raw_at(&server.endpoint()).await
}

/// A raw etcd-client connection to comma-separated endpoints.
pub async fn raw_at(endpoints: &str) -> etcd_client::Client {
    let endpoints: Vec<&str> = endpoints.split(',').collect();
    etcd_client::Client::connect(endpoints, None)
        .await
        .expect("raw etcd client")
}

/// Whether the discovered key → address map equals what etcd holds under `prefix`
/// (values in the Go endpoints format).
pub async fn matches_etcd(seen: &Seen, raw: &etcd_client::Client, prefix: &str) -> bool {
    let expected: BTreeMap<String, String> = etcd_keys(raw, prefix)
        .await
        .into_iter()
        .map(|(k, v)| {
            let value: serde_json::Value = serde_json::from_str(&v).unwrap_or_default();
            (k, value["Addr"].as_str().unwrap_or("?").to_owned())
        })
        .collect();
    let ok = seen.addrs() == expected;
    // ETCD_TEST_DEBUG=1 prints both sides while a wait has not converged yet.
    if !ok && std::env::var_os("ETCD_TEST_DEBUG").is_some() {
        eprintln!("seen {:?}\netcd {expected:?}", seen.addrs());
    }
    ok
}

/// The keys under `prefix` and their values, straight from etcd.
pub async fn etcd_keys(raw: &etcd_client::Client, prefix: &str) -> BTreeMap<String, String> {
    let mut raw = raw.clone();
    let options = etcd_client::GetOptions::new().with_prefix();
    match raw.get(prefix, Some(options)).await {
        Ok(resp) => resp
            .kvs()
            .iter()
            .map(|kv| {
                let k = String::from_utf8_lossy(kv.key()).into_owned();
                (k, String::from_utf8_lossy(kv.value()).into_owned())
            })
            .collect(),
        Err(_) => BTreeMap::from([("<etcd unreachable>".to_owned(), String::new())]),
    }
}

/// The lease the key is attached to, if the key exists.
pub async fn key_lease(raw: &etcd_client::Client, key: &str) -> Option<i64> {
    let mut raw = raw.clone();
    let resp = raw.get(key, None).await.ok()?;
    resp.kvs().first().map(|kv| kv.lease())
}

/// The remaining TTL of a lease in seconds; -1 once it is gone.
pub async fn lease_ttl(raw: &etcd_client::Client, lease: i64) -> i64 {
    let mut raw = raw.clone();
    raw.lease_time_to_live(lease, None)
        .await
        .map_or(-2, |r| r.ttl())
}

pub use crate::support::seen::Seen;

/// A Go `naming/endpoints` value.
pub fn go_value(addr: &str) -> String {
    format!(r#"{{"Op":0,"Addr":"{addr}","Metadata":null}}"#)
}

/// Compacts etcd's history up to its current revision (physically), so a watch from an
/// older revision is cancelled as compacted.
pub async fn compact_now(etcd: &EtcdServer) {
    let status = etcd
        .etcdctl(&["endpoint", "status", "-w", "json"])
        .await
        .expect("etcdctl endpoint status");
    let status: serde_json::Value = serde_json::from_str(&status).expect("status JSON");
    let revision = status[0]["Status"]["header"]["revision"]
        .as_i64()
        .expect("a revision");
    etcd.etcdctl(&["compact", &revision.to_string(), "--physical"])
        .await
        .expect("etcdctl compact");
}
