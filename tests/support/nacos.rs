//! Helpers for the Nacos integration tests.
#![allow(dead_code, unreachable_pub, unused_imports)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tonic_discovery::nacos::{Client, Discovery};
use tonic_discovery_testkit::NacosServer;

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

pub use crate::support::seen::Seen;
