//! What a watch asks Consul, and the transport that asks it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::Method;

use super::client::{ApiRequest, Client};
use super::types::{AddressKind, HealthFilter};
use crate::error::Error;

/// The consistency mode of discovery reads.
///
/// See Consul's "Consistency Modes": `Default` reads from the leader, `Stale` from
/// any server (faster, works without quorum, usually within 50 ms of the leader),
/// `Consistent` makes the leader confirm it still leads (one more round trip).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Consistency {
    /// The leader answers (Consul's default).
    #[default]
    Default,
    /// Any server answers (`?stale`).
    Stale,
    /// The leader answers after confirming its leadership (`?consistent`).
    Consistent,
}

/// Everything that identifies one watch: two discoveries with equal options share
/// one blocking-query loop.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct QueryOptions {
    pub(crate) service: String,
    pub(crate) tags: Vec<String>,
    pub(crate) dc: Option<String>,
    pub(crate) namespace: Option<String>,
    pub(crate) partition: Option<String>,
    pub(crate) filter: Option<String>,
    pub(crate) near: Option<String>,
    pub(crate) node_meta: Vec<(String, String)>,
    pub(crate) consistency: Consistency,
    pub(crate) cached: bool,
    pub(crate) health: HealthFilter,
    pub(crate) wait: Duration,
    pub(crate) address: AddressKind,
}

impl QueryOptions {
    pub(crate) fn new(service: impl Into<String>) -> Self {
        QueryOptions {
            service: service.into(),
            tags: Vec::new(),
            dc: None,
            namespace: None,
            partition: None,
            filter: None,
            near: None,
            node_meta: Vec::new(),
            consistency: Consistency::Default,
            cached: false,
            health: HealthFilter::Passing,
            wait: Duration::from_secs(300),
            address: AddressKind::Service,
        }
    }

    /// The query string of one read; `index` makes it a blocking read.
    pub(crate) fn query_pairs(&self, index: Option<u64>) -> Vec<(&'static str, String)> {
        let mut q: Vec<(&'static str, String)> = Vec::new();
        if self.health == HealthFilter::Passing {
            q.push(("passing", "true".to_owned()));
        }
        q.extend(self.tags.iter().map(|t| ("tag", t.clone())));
        let optional = [
            ("dc", &self.dc),
            ("ns", &self.namespace),
            ("partition", &self.partition),
            ("filter", &self.filter),
            ("near", &self.near),
        ];
        for (key, value) in optional {
            if let Some(v) = value {
                q.push((key, v.clone()));
            }
        }
        q.extend(
            self.node_meta
                .iter()
                .map(|(k, v)| ("node-meta", format!("{k}:{v}"))),
        );
        match self.consistency {
            Consistency::Default => {}
            Consistency::Stale => q.push(("stale", String::new())),
            Consistency::Consistent => q.push(("consistent", String::new())),
        }
        // Consul rejects `cached` together with `consistent`.
        if self.cached && self.consistency != Consistency::Consistent {
            q.push(("cached", String::new()));
        }
        if let Some(index) = index {
            q.push(("index", index.to_string()));
            q.push(("wait", format!("{}ms", self.wait.as_millis().max(1))));
        }
        q
    }
}

/// One read of a watch: blocking when `index` is set.
#[derive(Debug, Clone)]
pub(crate) struct WatchRequest {
    pub(crate) query: Arc<QueryOptions>,
    /// `None` for a fresh, non-blocking read; never `Some(0)`.
    pub(crate) index: Option<u64>,
    /// How long the transport may take before the read counts as failed.
    pub(crate) timeout: Duration,
}

/// A successful answer to a [`WatchRequest`].
#[derive(Debug, Clone, Default)]
pub(crate) struct WatchResponse {
    /// `X-Consul-Index`, when present and numeric.
    pub(crate) index: Option<u64>,
    pub(crate) body: Bytes,
}

/// The production transport: `GET /v1/health/service/:name` through the client's pool.
#[derive(Debug, Clone)]
pub(crate) struct HttpTransport {
    pub(crate) client: Client,
}

impl tower::Service<WatchRequest> for HttpTransport {
    type Response = WatchResponse;
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<WatchResponse, Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: WatchRequest) -> Self::Future {
        let client = self.client.clone();
        Box::pin(async move {
            let segments = ["v1", "health", "service", req.query.service.as_str()];
            let api = ApiRequest::new(Method::GET, &segments).timeout(req.timeout);
            let api = (req.query.query_pairs(req.index).into_iter())
                .fold(api, |api, (k, v)| api.query(k, v));
            let response = client.call(api).await?;
            Ok(WatchResponse {
                index: response.index(),
                body: response.body,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_carries_every_option() {
        let mut q = QueryOptions::new("echo");
        q.tags = vec!["a".into(), "b".into()];
        q.dc = Some("dc2".into());
        q.namespace = Some("team".into());
        q.partition = Some("p".into());
        q.filter = Some("Service.Meta.v == \"2\"".into());
        q.near = Some("_agent".into());
        q.node_meta = vec![("rack".into(), "r1".into())];
        q.consistency = Consistency::Stale;
        q.cached = true;
        q.wait = Duration::from_secs(60);
        let pairs = q.query_pairs(Some(42));
        let s: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(
            s,
            [
                "passing=true",
                "tag=a",
                "tag=b",
                "dc=dc2",
                "ns=team",
                "partition=p",
                "filter=Service.Meta.v == \"2\"",
                "near=_agent",
                "node-meta=rack:r1",
                "stale=",
                "cached=",
                "index=42",
                "wait=60000ms",
            ]
        );
    }

    #[test]
    fn fresh_read_has_no_index_or_wait_and_cached_yields_to_consistent() {
        let mut q = QueryOptions::new("echo");
        q.consistency = Consistency::Consistent;
        q.cached = true;
        let keys: Vec<&str> = q.query_pairs(None).iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, ["passing", "consistent"]);
    }
}
