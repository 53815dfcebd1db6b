//! Catalog endpoints: services, service/:s, nodes, node/:n, register, deregister.
//!
//! `gateway` answers `/v1/catalog/gateway-services/:g` from the gateways' config
//! entries.

pub(crate) mod gateway;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use crate::health::node_meta_ok;
use crate::http::decode::{DecodeResult, Fields, body_json, fields};
use crate::http::schema::{HEALTH_CHECK_FIELDS, NODE_SERVICE_FIELDS, REGISTER_FIELDS};
use crate::http::{HResult, Reply, Req, bad_request, decode_failed, server_error};
use crate::query::filter;
use crate::query::{self, answer};
use crate::shared::Shared;
use crate::store::model::{Check, CheckKind, CheckStatus, Node, Service};
use crate::store::render::ServiceView;

const FILTER_ERR: &str = "Failed to create boolean expression evaluator";

pub(crate) async fn services(shared: &Shared, req: &Req) -> HResult {
    let opts = query::parse(shared, req)?;
    let meta = query::node_meta(req);
    let filter = match req.param("filter").filter(|f| !f.trim().is_empty()) {
        Some(src) => {
            Some(filter::parse(src).map_err(|e| bad_request(format!("{FILTER_ERR}: {e}")))?)
        }
        None => None,
    };
    if query::peer(req) {
        return query::peer_view(shared, &opts, json!({})).await;
    }
    let (index, out) = query::block(shared, &opts, |s| {
        let mut map: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for svc in s
            .services
            .values()
            .filter(|v| node_meta_ok(s, &v.node, &meta))
        {
            let keep = match (&filter, s.nodes.get(&svc.node)) {
                (None, _) => true,
                (Some(f), Some(node)) => f.eval(&svc.to_catalog_json(node)),
                (Some(_), None) => false,
            };
            if keep {
                map.entry(svc.name.clone())
                    .or_default()
                    .extend(svc.tags.iter().cloned());
            }
        }
        (s.index, json!(map))
    })
    .await;
    query::answer_cacheable(index, &opts, &out)
}

/// `GET /v1/catalog/service/:service`.
pub(crate) async fn service(shared: &Shared, req: &Req, name: &str) -> HResult {
    service_nodes(shared, req, name, false).await
}

/// `GET /v1/catalog/connect/:service`: its Connect-capable instances.
pub(crate) async fn connect(shared: &Shared, req: &Req, name: &str) -> HResult {
    service_nodes(shared, req, name, true).await
}

async fn service_nodes(shared: &Shared, req: &Req, name: &str, connect: bool) -> HResult {
    if name.is_empty() {
        return Err(bad_request("Missing service name"));
    }
    let opts = query::parse(shared, req)?;
    if query::peer(req) {
        return query::peer_view(shared, &opts, json!([])).await;
    }
    let tags: Vec<String> = req.params("tag").map(str::to_lowercase).collect();
    let meta = query::node_meta(req);
    let index = |s: &crate::store::Store| match connect {
        true => s.index,
        false => s.index_for_service(name),
    };
    let (index, list) = query::block_indexed(shared, &opts, index, |s| {
        let instances: Box<dyn Iterator<Item = &Service>> = match connect {
            true => Box::new(s.connect_instances(name)),
            false => Box::new(s.instances(name)),
        };
        let list: Vec<Value> = instances
            .filter(|v| {
                tags.iter()
                    .all(|t| v.tags.iter().any(|h| h.to_lowercase() == *t))
            })
            .filter(|v| node_meta_ok(s, &v.node, &meta))
            .filter_map(|v| Some(v.to_catalog_json(s.nodes.get(&v.node)?)))
            .collect();
        list
    })
    .await;
    let list = filter::apply(req.param("filter"), list, FILTER_ERR).map_err(bad_request)?;
    query::answer_cacheable(index, &opts, &Value::Array(list))
}

pub(crate) async fn nodes(shared: &Shared, req: &Req) -> HResult {
    let opts = query::parse(shared, req)?;
    if query::peer(req) {
        return query::peer_view(shared, &opts, json!([])).await;
    }
    let meta = query::node_meta(req);
    let (index, list) = query::block(shared, &opts, |s| {
        let list: Vec<Value> = s
            .nodes
            .values()
            .filter(|n| node_meta_ok(s, &n.name, &meta))
            .map(Node::to_json)
            .collect();
        (s.index, list)
    })
    .await;
    let list = filter::apply(req.param("filter"), list, FILTER_ERR).map_err(bad_request)?;
    answer(index, &opts, &Value::Array(list))
}

/// `GET /v1/catalog/node/:node` (services keyed by ID) and, with `as_list`,
/// `/v1/catalog/node-services/:node` (services as a list; an unknown node is
/// `{"Node": null, "Services": []}` rather than `null`).
pub(crate) async fn node(shared: &Shared, req: &Req, name: &str, as_list: bool) -> HResult {
    if name.is_empty() {
        return Err(bad_request("Missing node name"));
    }
    let opts = query::parse(shared, req)?;
    // The filter applies to each of the node's services (`NodeServices.Services`).
    let filter = match req.param("filter").filter(|f| !f.trim().is_empty()) {
        Some(src) => {
            Some(filter::parse(src).map_err(|e| bad_request(format!("{FILTER_ERR}: {e}")))?)
        }
        None => None,
    };
    let missing = match as_list {
        true => json!({ "Node": null, "Services": [] }),
        false => Value::Null,
    };
    if query::peer(req) {
        return query::peer_view(shared, &opts, missing).await;
    }
    let (index, out) = query::block(shared, &opts, |s| {
        let Some(node) = s.nodes.get(name) else {
            return (s.index, missing.clone());
        };
        let services = s
            .services
            .range((name.to_owned(), String::new())..)
            .take_while(|((n, _), _)| n == name)
            .map(|(_, v)| (v.id.clone(), v.to_json(ServiceView::Node)))
            .filter(|(_, v)| filter.as_ref().is_none_or(|f| f.eval(v)));
        let services = match as_list {
            true => Value::Array(services.map(|(_, v)| v).collect()),
            false => Value::Object(services.collect::<Map<String, Value>>()),
        };
        (
            s.index,
            json!({ "Node": node.to_json(), "Services": services }),
        )
    })
    .await;
    answer(index, &opts, &out)
}

fn decode_node_service(v: &Value, node: &str) -> DecodeResult<Service> {
    let f = fields(v, "NodeService", NODE_SERVICE_FIELDS)?;
    let weights = match f.raw("Weights") {
        None => (1, 1),
        Some(w) => {
            let w = fields(w, "Weights", &["Passing", "Warning"])?;
            (w.int("Passing")?, w.int("Warning")?)
        }
    };
    let name = f.string("Service")?;
    let id = Some(f.string("ID")?)
        .filter(|i| !i.is_empty())
        .unwrap_or_else(|| name.clone());
    Ok(Service {
        node: node.to_owned(),
        kind: f.string("Kind")?,
        id,
        name,
        tags: f.strings("Tags")?,
        address: f.string("Address")?,
        tagged_addresses: f
            .raw("TaggedAddresses")
            .and_then(|t| t.as_object().cloned())
            .unwrap_or_default(),
        meta: f.string_map("Meta")?,
        port: f.int("Port")?.max(0) as u64,
        socket_path: f.string("SocketPath")?,
        weights,
        enable_tag_override: f.boolean("EnableTagOverride")?,
        proxy: f.raw("Proxy").cloned(),
        connect: f.raw("Connect").cloned(),
        locality: crate::agent::register::locality(f.raw("Locality"))?,
        ..Service::default()
    })
}

fn decode_health_check(v: &Value, node: &str) -> DecodeResult<Check> {
    let f = fields(v, "HealthCheck", HEALTH_CHECK_FIELDS)?;
    let status = f.string("Status")?;
    Ok(Check {
        node: node.to_owned(),
        id: f.string("CheckID")?,
        name: f.string("Name")?,
        status: CheckStatus::parse(&status).unwrap_or(CheckStatus::Critical),
        notes: f.string("Notes")?,
        output: f.string("Output")?,
        service_id: f.string("ServiceID")?,
        kind: CheckKind::Manual,
        ..Check::default()
    })
}

/// `Check` then `Checks` of a register body; an empty check ID defaults to the name.
fn health_checks(f: &Fields, node: &str) -> Result<Vec<Check>, Reply> {
    let list = f
        .raw("Checks")
        .and_then(Value::as_array)
        .into_iter()
        .flatten();
    f.raw("Check")
        .into_iter()
        .chain(list)
        .map(|c| {
            let mut check = decode_health_check(c, node).map_err(decode_failed)?;
            if check.id.is_empty() {
                check.id = check.name.clone();
            }
            Ok(check)
        })
        .collect()
}

fn register_node(f: &Fields, dc: &str) -> DecodeResult<Node> {
    Ok(Node {
        id: f.string("ID")?,
        name: f.string("Node")?,
        address: f.string("Address")?,
        datacenter: dc.to_owned(),
        tagged_addresses: f.string_map("TaggedAddresses")?,
        meta: f.string_map("NodeMeta")?,
        ..Node::default()
    })
}

/// go-uuid's `ParseUUID` complaint about `id`, if any.
fn uuid_error(id: &str) -> Option<&'static str> {
    if id.len() != 36 {
        return Some("uuid string is wrong length");
    }
    let well_formed = id.char_indices().all(|(i, c)| match i {
        8 | 13 | 18 | 23 => c == '-',
        _ => c.is_ascii_hexdigit(),
    });
    (!well_formed).then_some("uuid is improperly formatted")
}

pub(crate) fn register(shared: &Shared, req: &Req) -> HResult {
    let body = body_json(&req.body).map_err(decode_failed)?;
    let f = fields(&body, "RegisterRequest", REGISTER_FIELDS).map_err(decode_failed)?;
    body_dc(shared, req, &f)?;
    let node = register_node(&f, &shared.cfg.datacenter).map_err(decode_failed)?;
    let svc = match f.raw("Service") {
        Some(v) => Some(decode_node_service(v, &node.name).map_err(decode_failed)?),
        None => None,
    };
    // `Catalog.Register` checks these on the server: plain errors, so 500s.
    if node.name.is_empty() {
        return Err(server_error("Must provide node"));
    }
    if let Some(why) = Some(&node.id)
        .filter(|id| !id.is_empty())
        .and_then(|id| uuid_error(id))
    {
        return Err(server_error(format!("Bad node ID: {why}")));
    }
    if node.address.is_empty() && !f.boolean("SkipNodeUpdate").unwrap_or(false) {
        return Err(server_error(
            "Must provide address if SkipNodeUpdate is not set",
        ));
    }
    if let Some(svc) = &svc {
        if let Some(text) =
            crate::agent::validate::multierror(&crate::agent::validate::node_service(svc))
        {
            return Err(server_error(text));
        }
        if svc.name.is_empty() {
            return Err(server_error("Must provide service name with ID"));
        }
        if matches!(svc.address.as_str(), "0.0.0.0" | "::" | "[::]") {
            return Err(server_error("Invalid service address"));
        }
    }
    let checks = health_checks(&f, &node.name)?;
    shared.write(|s| {
        let skip = f.boolean("SkipNodeUpdate").unwrap_or(false) && s.nodes.contains_key(&node.name);
        if !skip {
            s.upsert_node(node);
        }
        if let Some(svc) = svc {
            s.upsert_service(svc);
        }
        for mut c in checks {
            if let Some(svc) = s.services.get(&(c.node.clone(), c.service_id.clone())) {
                c.service_name = svc.name.clone();
            }
            s.upsert_check(c, false);
        }
    });
    Ok(Reply::json(&json!(true)))
}

/// The datacenter a catalog write goes to: the body's `Datacenter`, else `?dc`, else
/// the agent's own (`CatalogRegister`). Another one cannot be reached from a lone
/// agent: the RPC forward fails with `structs.ErrNoDCPath`, a 500.
fn body_dc(shared: &Shared, req: &Req, f: &Fields) -> Result<(), Reply> {
    let dc = f.string("Datacenter").map_err(decode_failed)?;
    if dc.is_empty() {
        return query::check_dc(shared, req);
    }
    if dc != shared.cfg.datacenter {
        return Err(server_error("No path to datacenter"));
    }
    Ok(())
}

pub(crate) fn deregister(shared: &Shared, req: &Req) -> HResult {
    let body = body_json(&req.body).map_err(decode_failed)?;
    let names = [
        "Node",
        "Datacenter",
        "ServiceID",
        "CheckID",
        "Token",
        "Namespace",
        "Partition",
        "PeerName",
    ];
    let f = fields(&body, "DeregisterRequest", &names).map_err(decode_failed)?;
    body_dc(shared, req, &f)?;
    let node = f.string("Node").map_err(decode_failed)?;
    if node.is_empty() {
        return Err(bad_request("Missing node name"));
    }
    let sid = f.string("ServiceID").map_err(decode_failed)?;
    let cid = f.string("CheckID").map_err(decode_failed)?;
    shared.write(|s| match (sid.is_empty(), cid.is_empty()) {
        (true, true) => drop(s.remove_node(&node)),
        (false, _) => drop(s.remove_service(&node, &sid)),
        (true, false) => drop(s.remove_check(&node, &cid)),
    });
    Ok(Reply::json(&json!(true)))
}
