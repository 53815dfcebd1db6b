//! Prepared queries (`/v1/query`): create, list, get, update, delete, explain and
//! execute (by ID or name) over the health of one service, with `OnlyPassing`
//! and `Tags` (a `!tag` excludes). Failover, templates and `Near` are accepted
//! and ignored.

use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::http::decode::body_json;
use crate::http::{HResult, Reply, Req, bad_request, decode_failed};
use crate::query::{self, answer};
use crate::shared::{Shared, random_uuid};
use crate::store::Store;
use crate::store::render::ServiceView;

/// `POST /v1/query` and `GET /v1/query`.
pub(crate) async fn collection(shared: &Shared, req: &Req) -> HResult {
    query::check_dc(shared, req)?;
    if req.method == Method::POST {
        let mut def = definition(req)?;
        let id = random_uuid();
        def["ID"] = json!(id);
        shared.write(|s| {
            let idx = s.bump();
            (def["CreateIndex"], def["ModifyIndex"]) = (json!(idx), json!(idx));
            s.queries.push(def);
        });
        return Ok(Reply::json(&json!({ "ID": id })));
    }
    let opts = query::parse(shared, req)?;
    let (index, list) = query::block(shared, &opts, |s| (s.index, json!(s.queries))).await;
    answer(index, &opts, &list)
}

/// `/v1/query/:id[/explain|/execute]`.
pub(crate) async fn item(shared: &Shared, req: &Req, rest: &str) -> HResult {
    query::check_dc(shared, req)?;
    let (id, action) = rest.split_once('/').unwrap_or((rest, ""));
    if id.is_empty() {
        return Err(bad_request("Missing query ID"));
    }
    match (&req.method, action) {
        (&Method::GET, "") => {
            let found = find(&shared.store(), id, false).ok_or_else(not_found)?;
            Ok(Reply::json(&json!([found])).meta(shared.store().index, "leader"))
        }
        (&Method::GET, "explain") => {
            let found = find(&shared.store(), id, true).ok_or_else(not_found)?;
            Ok(Reply::json(&json!({ "Query": found })))
        }
        (&Method::GET, "execute") => execute(shared, id),
        (&Method::PUT, "") => update(shared, req, id),
        (&Method::DELETE, "") => {
            let removed = shared.write(|s| {
                let before = s.queries.len();
                s.queries.retain(|q| q["ID"] != id);
                s.bump();
                before != s.queries.len()
            });
            if removed {
                Ok(Reply::empty())
            } else {
                Err(not_found())
            }
        }
        _ => Err(Reply::text(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("method {} not allowed", req.method),
        )),
    }
}

fn not_found() -> Reply {
    Reply::text(StatusCode::NOT_FOUND, "Query not found")
}

/// A query by ID, or (when `by_name`) by name too.
fn find(s: &Store, id: &str, by_name: bool) -> Option<Value> {
    s.queries
        .iter()
        .find(|q| q["ID"] == id || (by_name && q["Name"] == id))
        .cloned()
}

/// The body of a create or update, with the service name required.
fn definition(req: &Req) -> Result<Value, Reply> {
    let mut def = body_json(&req.body).map_err(decode_failed)?;
    if !def.is_object() {
        return Err(decode_failed(
            "json: cannot unmarshal into Go value of type structs.PreparedQuery",
        ));
    }
    if def["Service"]["Service"].as_str().is_none_or(str::is_empty) {
        return Err(invalid("Must provide a Service name to query"));
    }
    for (k, v) in [
        ("Name", json!("")),
        ("Session", json!("")),
        ("Token", json!("")),
        ("DNS", json!({"TTL": ""})),
    ] {
        if def.get(k).is_none() {
            def[k] = v;
        }
    }
    Ok(def)
}

fn invalid(msg: &str) -> Reply {
    Reply::text(
        StatusCode::BAD_REQUEST,
        format!("Invalid prepared query: {msg}"),
    )
}

fn update(shared: &Shared, req: &Req, id: &str) -> HResult {
    let mut def = definition(req)?;
    let updated = shared.write(|s| {
        let idx = s.bump();
        let q = s.queries.iter_mut().find(|q| q["ID"] == id)?;
        def["ID"] = json!(id);
        def["CreateIndex"] = q["CreateIndex"].clone();
        def["ModifyIndex"] = json!(idx);
        *q = def;
        Some(())
    });
    updated.map(|()| Reply::empty()).ok_or_else(not_found)
}

fn execute(shared: &Shared, id: &str) -> HResult {
    let store = shared.store();
    let q = find(&store, id, true).ok_or_else(not_found)?;
    let svc = &q["Service"];
    let name = svc["Service"].as_str().unwrap_or_default();
    let only_passing = svc["OnlyPassing"].as_bool().unwrap_or(false);
    let tags: Vec<&str> = svc["Tags"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let nodes: Vec<Value> = store
        .instances(name)
        .filter(|s| tags_match(&s.tags, &tags))
        .filter_map(|s| {
            let node = store.nodes.get(&s.node)?;
            let checks = store.checks_for(s);
            let passing = checks.iter().all(|c| c.status != crate::store::model::CheckStatus::Critical);
            let ok = passing && (!only_passing || checks.iter().all(|c| c.status == crate::store::model::CheckStatus::Passing));
            ok.then(|| json!({ "Node": node.to_json(), "Service": s.to_json(ServiceView::Node), "Checks": store.render_checks(&checks) }))
        })
        .collect();
    Ok(Reply::json(&json!({
        "Service": name,
        "Nodes": nodes,
        "DNS": q["DNS"],
        "Datacenter": shared.cfg.datacenter,
        "Failovers": 0,
    }))
    .meta(store.index, "leader"))
}

/// Prepared-query tags: all plain tags present, no `!tag` present (case-insensitive).
fn tags_match(have: &[String], want: &[&str]) -> bool {
    let has = |t: &str| have.iter().any(|h| h.eq_ignore_ascii_case(t));
    want.iter().all(|t| match t.strip_prefix('!') {
        Some(t) => !has(t),
        None => has(t),
    })
}
