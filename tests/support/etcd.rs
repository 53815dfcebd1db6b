//! Helpers for the etcd integration tests.
#![allow(dead_code, unreachable_pub)]

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::task::JoinHandle;
use tonic_discovery::etcd::{Client, Discovery};
use tonic_discovery::testkit::EtcdServer;
use tonic_discovery::{Instance, InstanceKey};
use tower::discover::Change;

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

/// What a consumer of a discovery has been told, applied like a balancer would.
pub struct Seen {
    set: Arc<Mutex<HashMap<InstanceKey, Instance>>>,
    failures: Arc<AtomicU32>,
    faults: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl Seen {
    pub fn follow(mut discovery: Discovery) -> Seen {
        let set = Arc::new(Mutex::new(HashMap::new()));
        let faults = Arc::new(Mutex::new(Vec::new()));
        let failures = Arc::new(AtomicU32::new(0));
        let (s, f, failed) = (set.clone(), faults.clone(), failures.clone());
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(5));
            loop {
                let item = tokio::select! {
                    item = discovery.next() => item,
                    _ = tick.tick() => {
                        failed.store(discovery.failures(), Ordering::Relaxed);
                        continue;
                    }
                };
                let Some(item) = item else { break };
                match item {
                    Ok(Change::Insert(k, i)) => {
                        s.lock().unwrap().insert(k, i);
                    }
                    Ok(Change::Remove(k)) => {
                        if s.lock().unwrap().remove(&k).is_none() {
                            f.lock().unwrap().push(format!("redundant remove of {k}"));
                        }
                    }
                    Err(e) => f.lock().unwrap().push(format!("error item: {e}")),
                }
            }
            f.lock().unwrap().push("discovery ended".to_owned());
        });
        Seen {
            set,
            failures,
            faults,
            task,
        }
    }

    /// The discovery's consecutive failures, as last sampled.
    pub fn failures(&self) -> u32 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Key → `host:port`.
    pub fn addrs(&self) -> BTreeMap<String, String> {
        self.set
            .lock()
            .unwrap()
            .iter()
            .map(|(k, i)| (k.id().to_owned(), i.authority()))
            .collect()
    }

    pub fn keys(&self) -> Vec<String> {
        self.addrs().into_keys().collect()
    }

    /// Errors, redundant removes or an end of the stream: none may happen.
    pub fn assert_clean(&self) {
        let faults = self.faults.lock().unwrap();
        assert!(faults.is_empty(), "discovery misbehaved: {faults:?}");
    }
}

impl Drop for Seen {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A Go `naming/endpoints` value.
pub fn go_value(addr: &str) -> String {
    format!(r#"{{"Op":0,"Addr":"{addr}","Metadata":null}}"#)
}
