//! Helpers shared by the consul-dev tests: a reqwest client and short-hand
//! requests against a running `ConsulDev`.
#![allow(dead_code, unreachable_pub)]

use consul_dev::ConsulDev;
use reqwest::{Client, Method, Response};
use serde_json::Value;

/// The fixtures copied from Consul's API docs (see tests/fixtures/consul/README.md).
pub fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/consul/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).expect("fixture readable");
    serde_json::from_str(&text).expect("fixture is JSON")
}

/// A plain-HTTP reqwest client.
pub fn client() -> Client {
    Client::new()
}

/// A client bound to one registry.
#[derive(Clone)]
pub struct Api {
    pub http: Client,
    pub base: String,
}

impl Api {
    pub fn new(dev: &ConsulDev) -> Self {
        Api {
            http: client(),
            base: dev.url(),
        }
    }

    /// Starts a blocking GET of `path` (e.g. `…?index=N&wait=30s`) on a task and
    /// returns once the registry has received it: the `nth` request to `path` without
    /// its query.
    pub async fn spawn_blocking_get(
        &self,
        dev: &ConsulDev,
        path: &str,
        nth: u64,
    ) -> tokio::task::JoinHandle<(Value, u64)> {
        let (api, url) = (self.clone(), path.to_owned());
        let waiter = tokio::spawn(async move { api.get_json(&url).await });
        let plain = path.split('?').next().unwrap_or(path);
        crate::support::eventually(
            std::time::Duration::from_secs(5),
            "the blocking query arrives",
            || async { dev.request_count(plain) >= nth },
        )
        .await;
        waiter
    }

    pub async fn send(&self, method: Method, path: &str, body: Option<Value>) -> Response {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.body(b.to_string());
        }
        req.send().await.expect("request sent")
    }

    pub async fn get(&self, path: &str) -> Response {
        self.send(Method::GET, path, None).await
    }

    pub async fn put(&self, path: &str, body: Option<Value>) -> Response {
        self.send(Method::PUT, path, body).await
    }

    /// GETs `path` expecting 200 JSON; returns the body and `X-Consul-Index`.
    pub async fn get_json(&self, path: &str) -> (Value, u64) {
        let resp = self.get(path).await;
        assert_eq!(resp.status(), 200, "GET {path}");
        let index = index_of(&resp);
        (
            serde_json::from_slice(&resp.bytes().await.expect("body")).expect("JSON body"),
            index,
        )
    }

    /// PUTs `body` expecting 200.
    pub async fn put_ok(&self, path: &str, body: Option<Value>) {
        let resp = self.put(path, body).await;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        assert_eq!(status, 200, "PUT {path}: {text}");
    }

    /// Registers a service with the agent.
    pub async fn register(&self, body: Value) {
        self.put_ok("/v1/agent/service/register", Some(body)).await;
    }

    /// Sends a request expecting an error; returns its status and text body.
    pub async fn error(&self, method: Method, path: &str, body: Option<Value>) -> (u16, String) {
        let resp = self.send(method, path, body).await;
        (
            resp.status().as_u16(),
            resp.text().await.unwrap_or_default(),
        )
    }
}

/// The `X-Consul-Index` of a response (0 when absent).
pub fn index_of(resp: &Response) -> u64 {
    resp.headers()
        .get("x-consul-index")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The service IDs in a `/v1/health/service` answer, sorted.
pub fn ids(entries: &Value) -> Vec<String> {
    let mut out: Vec<String> = entries
        .as_array()
        .expect("array")
        .iter()
        .map(|e| e["Service"]["ID"].as_str().unwrap_or_default().to_owned())
        .collect();
    out.sort();
    out
}
