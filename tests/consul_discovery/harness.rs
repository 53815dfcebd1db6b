//! `ConsulDev` driven as the discovery tests need it: services registered through
//! the agent API with TTL checks, health flipped by check status, and waits on
//! what the watch has seen.

use consul_dev::{ConsulDev, ConsulDevBuilder, RecordedRequest};
use serde_json::json;
use tonic_discovery::consul::Client;

use super::T;
use crate::support::eventually;

/// The registry's node name; instance keys carry it.
pub(crate) const NODE: &str = "node1";

pub(crate) struct Dev {
    pub(crate) dev: ConsulDev,
    http: reqwest::Client,
}

impl Dev {
    pub(crate) async fn start() -> Self {
        Self::with(ConsulDev::builder()).await
    }

    pub(crate) async fn with_token(token: Option<&str>) -> Self {
        Self::with(ConsulDev::builder().acl_token(token.map(str::to_owned))).await
    }

    async fn with(builder: ConsulDevBuilder) -> Self {
        #[cfg(feature = "tls-ring")]
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dev = builder.node_name(NODE).start().await.unwrap();
        Dev {
            dev,
            http: reqwest::Client::new(),
        }
    }

    pub(crate) fn client(&self, token: Option<&str>) -> Client {
        let b = Client::builder(self.dev.url());
        let b = match token {
            Some(t) => b.token(t),
            None => b,
        };
        b.build().unwrap()
    }

    async fn put(&self, path: &str, body: Option<serde_json::Value>, token: Option<&str>) {
        let mut req = self.http.put(format!("{}{path}", self.dev.url()));
        if let Some(t) = token {
            req = req.header("X-Consul-Token", t);
        }
        if let Some(body) = body {
            req = req.body(body.to_string());
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 200, "PUT {path}");
    }

    /// Registers (or re-registers) `id` of `echo` with a passing TTL check `ttl-<id>`.
    pub(crate) async fn register(&self, id: &str, port: u16, tags: &[&str]) {
        self.register_in("echo", id, port, tags).await;
    }

    /// Registers `id` of `service` with a passing TTL check `ttl-<id>`.
    pub(crate) async fn register_in(&self, service: &str, id: &str, port: u16, tags: &[&str]) {
        self.register_as(service, id, port, tags, None).await;
    }

    pub(crate) async fn register_as(
        &self,
        service: &str,
        id: &str,
        port: u16,
        tags: &[&str],
        token: Option<&str>,
    ) {
        let body = json!({
            "Name": service, "ID": id, "Address": "127.0.0.1", "Port": port, "Tags": tags,
            "Check": {"CheckID": format!("ttl-{id}"), "TTL": "60s", "Status": "passing"}
        });
        self.put("/v1/agent/service/register", Some(body), token)
            .await;
    }

    pub(crate) async fn deregister(&self, id: &str) {
        self.put(&format!("/v1/agent/service/deregister/{id}"), None, None)
            .await;
    }

    /// Sets the TTL check of `id` to `status`.
    pub(crate) fn check(&self, id: &str, status: &str) {
        assert!(self.dev.set_check_status(&format!("ttl-{id}"), status, ""));
    }

    /// The reads of `echo` that reached the registry with `index=<index>`: sent
    /// by watches that had an answer with that index.
    pub(crate) fn reads_on(&self, index: u64) -> Vec<RecordedRequest> {
        let wanted = format!("index={index}");
        self.dev
            .requests()
            .into_iter()
            .filter(|r| r.path() == "/v1/health/service/echo")
            .filter(|r| {
                r.uri()
                    .query()
                    .is_some_and(|q| q.split('&').any(|p| p == wanted))
            })
            .collect()
    }

    /// Waits until the single watch on `echo` has had the answer with the
    /// registry's current index and its next read is parked in the registry on
    /// that index: the answer is processed, and from then on a restore or an index
    /// reset ends that wait.
    pub(crate) async fn parked(&self) {
        eventually(T, "the watch blocks on the current index", || async {
            self.dev.blocked_queries() == 1 && !self.reads_on(self.dev.index()).is_empty()
        })
        .await;
    }
}
