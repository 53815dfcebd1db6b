//! Health endpoints: service entries (with `passing`, `tag`, `node-meta`,
//! `filter`, blocking), and the check lists by service, node and state.

use serde_json::{Value, json};

use crate::http::{HResult, Req, bad_request};
use crate::query::filter;
use crate::query::{self, answer};
use crate::shared::Shared;
use crate::store::Store;
use crate::store::model::{Check, CheckStatus, Service};
use crate::store::render::ServiceView;

const FILTER_ERR: &str = "Failed to create boolean expression evaluator";

/// Parses `?filter` up front so a bad one is a 400 before any blocking.
fn filter_param(req: &Req) -> Result<Option<&str>, crate::http::Reply> {
    let src = req.param("filter").filter(|f| !f.trim().is_empty());
    if let Some(src) = src {
        filter::parse(src).map_err(|e| bad_request(format!("{FILTER_ERR}: {e}")))?;
    }
    Ok(src)
}

/// Whether a node passes the `node-meta` filters.
pub(crate) fn node_meta_ok(store: &Store, node: &str, meta: &[(String, String)]) -> bool {
    let Some(n) = store.nodes.get(node) else {
        return false;
    };
    meta.iter().all(|(k, v)| n.meta.get(k) == Some(v))
}

fn entries<'a>(
    store: &'a Store,
    instances: impl Iterator<Item = &'a Service>,
    tags: &[String],
    meta: &[(String, String)],
) -> Vec<Value> {
    instances
        .filter(|s| {
            tags.iter()
                .all(|t| s.tags.iter().any(|have| have.to_lowercase() == *t))
        })
        .filter(|s| node_meta_ok(store, &s.node, meta))
        .filter_map(|s| {
            let node = store.nodes.get(&s.node)?;
            let checks = store.checks_for(s);
            Some(json!({
                "Node": node.to_json(),
                "Service": s.to_json(ServiceView::Node),
                "Checks": store.render_checks(&checks),
            }))
        })
        .collect()
}

fn all_passing(entry: &Value) -> bool {
    entry["Checks"]
        .as_array()
        .is_none_or(|cs| cs.iter().all(|c| c["Status"] == "passing"))
}

/// Which instances a service-entry query lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Entries {
    /// `/v1/health/service/:s`: the instances of the service.
    Service,
    /// `/v1/health/connect/:s`: its Connect-capable instances (proxies to it and
    /// Connect-native instances).
    Connect,
    /// `/v1/health/ingress/:s`: ingress gateways routing to it (the dev agent has
    /// no ingress config entries, so none).
    Ingress,
}

/// `GET /v1/health/service/:service` and its `connect` and `ingress` variants.
pub(crate) async fn service(shared: &Shared, req: &Req, name: &str, which: Entries) -> HResult {
    if name.is_empty() {
        return Err(bad_request("Missing service name"));
    }
    let opts = query::parse(shared, req)?;
    let passing = query::passing(req)?;
    let filter_src = filter_param(req)?;
    if query::peer(req) {
        return query::peer_view(shared, &opts, json!([])).await;
    }
    let tags: Vec<String> = req.params("tag").map(str::to_lowercase).collect();
    let meta = query::node_meta(req);
    let index = |s: &Store| match which {
        Entries::Service => s.index_for_service(name),
        // Proxies carry their own names: any change may concern them.
        Entries::Connect | Entries::Ingress => s.index,
    };
    let (index, list) = query::block_indexed(shared, &opts, index, |s| match which {
        Entries::Service => entries(s, s.instances(name), &tags, &meta),
        Entries::Connect => entries(s, s.connect_instances(name), &tags, &meta),
        Entries::Ingress => Vec::new(),
    })
    .await;
    let mut list = filter::apply(filter_src, list, FILTER_ERR).map_err(bad_request)?;
    if passing {
        list.retain(all_passing);
    }
    query::answer_cacheable(index, &opts, &Value::Array(list))
}

/// Runs a check-list query with the global index as its index.
async fn check_list(
    shared: &Shared,
    req: &Req,
    select: impl Fn(&Store, &Check) -> bool,
) -> HResult {
    let opts = query::parse(shared, req)?;
    let filter_src = filter_param(req)?;
    if query::peer(req) {
        return query::peer_view(shared, &opts, json!([])).await;
    }
    let meta = query::node_meta(req);
    let (index, list) = query::block(shared, &opts, |s| {
        let checks: Vec<&Check> = s
            .checks
            .values()
            .filter(|c| select(s, c) && node_meta_ok(s, &c.node, &meta))
            .collect();
        (s.index, s.render_checks(&checks))
    })
    .await;
    let items = list.as_array().cloned().unwrap_or_default();
    let items = filter::apply(filter_src, items, FILTER_ERR).map_err(bad_request)?;
    answer(index, &opts, &Value::Array(items))
}

/// `GET /v1/health/checks/:service`.
pub(crate) async fn checks(shared: &Shared, req: &Req, name: &str) -> HResult {
    if name.is_empty() {
        return Err(bad_request("Missing service name"));
    }
    check_list(shared, req, |_, c| c.service_name == name).await
}

/// `GET /v1/health/node/:node`.
pub(crate) async fn node(shared: &Shared, req: &Req, node: &str) -> HResult {
    if node.is_empty() {
        return Err(bad_request("Missing node name"));
    }
    check_list(shared, req, |_, c| c.node == node).await
}

/// `GET /v1/health/state/:state` (`any`, `passing`, `warning`, `critical`).
pub(crate) async fn state(shared: &Shared, req: &Req, state: &str) -> HResult {
    if state.is_empty() {
        return Err(bad_request("Missing check state"));
    }
    let wanted = match state {
        "any" => None,
        s => Some(CheckStatus::parse(s).ok_or_else(|| bad_request("Invalid check state"))?),
    };
    check_list(shared, req, |_, c| wanted.is_none_or(|w| c.status == w)).await
}
