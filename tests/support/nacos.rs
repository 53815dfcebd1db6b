//! Helpers for the Nacos integration tests.
#![allow(dead_code, unreachable_pub)]

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::task::JoinHandle;
use tonic_discovery::nacos::{Client, Discovery};
use tonic_discovery::testkit::NacosServer;
use tonic_discovery::{Instance, InstanceKey};
use tower::discover::Change;

/// A client of `server` whose SDK cache lives in the server's temporary directory.
pub async fn client(server: &NacosServer) -> Client {
    client_at(server, &server.url()).await
}

/// A client of `url` (the server's, with a namespace or group, say).
pub async fn client_at(server: &NacosServer, url: &str) -> Client {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = server.scratch_dir(&format!("cache-{}", N.fetch_add(1, Ordering::Relaxed)));
    Client::builder(url)
        .cache_dir(dir)
        .request_timeout(Duration::from_secs(2))
        .connect()
        .await
        .expect("nacos client")
}

/// Registers an instance through the open API, as a Java or Go service without the
/// gRPC client does.
pub async fn http_register(
    server: &NacosServer,
    service: &str,
    addr: &str,
    extra: &[(&str, &str)],
) {
    let (ip, port) = addr.rsplit_once(':').unwrap();
    let mut params = vec![("serviceName", service), ("ip", ip), ("port", port)];
    params.extend_from_slice(extra);
    let (status, body) = server
        .open_api("POST", "/nacos/v1/ns/instance", &params)
        .await
        .unwrap();
    assert_eq!((status, body.as_str()), (200, "ok"), "open API register");
}

/// `ip:port` of the instances the server lists for `service` that can serve (healthy,
/// enabled, weight above 0), read through the open API.
pub async fn server_serving(
    server: &NacosServer,
    service: &str,
    extra: &[(&str, &str)],
) -> Option<Vec<String>> {
    let mut params = vec![("serviceName", service)];
    params.extend_from_slice(extra);
    let (status, body) = server
        .open_api("GET", "/nacos/v1/ns/instance/list", &params)
        .await
        .ok()?;
    if status != 200 {
        return None;
    }
    let list: serde_json::Value = serde_json::from_str(&body).ok()?;
    let mut out: Vec<String> = list["hosts"]
        .as_array()?
        .iter()
        .filter(|h| {
            h["healthy"].as_bool() == Some(true)
                && h["enabled"].as_bool() == Some(true)
                && h["weight"].as_f64().is_some_and(|w| w > 0.0)
        })
        .map(|h| format!("{}:{}", h["ip"].as_str().unwrap_or("?"), h["port"]))
        .collect();
    out.sort();
    Some(out)
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

    /// The discovery's consecutive failed queries, as last sampled.
    pub fn failures(&self) -> u32 {
        self.failures.load(Ordering::Relaxed)
    }

    /// `ip:port` of every instance, sorted.
    pub fn addrs(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .set
            .lock()
            .unwrap()
            .values()
            .map(Instance::authority)
            .collect();
        out.sort();
        out
    }

    /// The instance at `addr`, if seen.
    pub fn at(&self, addr: &str) -> Option<Instance> {
        self.set
            .lock()
            .unwrap()
            .values()
            .find(|i| i.authority() == addr)
            .cloned()
    }

    /// Metadata of the instance at `addr`.
    pub fn meta(&self, addr: &str) -> BTreeMap<String, String> {
        self.at(addr).map(|i| i.meta().clone()).unwrap_or_default()
    }

    /// Panics if the stream misbehaved: an error item, a redundant remove, or an end.
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
