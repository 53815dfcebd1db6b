//! Sessions (`/v1/session/*`) as KV locks need them: create, destroy, info,
//! list, node, renew. Destroying a session releases (or, with behavior
//! `delete`, deletes) the keys it holds. Session TTLs are recorded but not
//! enforced.

use std::time::Duration;

use http::StatusCode;
use serde_json::{Value, json};

use super::decode::{body_json, fields};
use super::http::{HResult, Reply, Req, bad_request, decode_failed};
use super::query::{self, answer};
use super::shared::{Shared, random_uuid};
use super::store::Store;

/// One session.
#[derive(Debug, Clone)]
pub(super) struct Session {
    id: String,
    name: String,
    node: String,
    lock_delay: Duration,
    behavior: String,
    ttl: String,
    node_checks: Vec<String>,
    create_index: u64,
    modify_index: u64,
}

impl Session {
    fn to_json(&self) -> Value {
        json!({
            "ID": self.id,
            "Name": self.name,
            "Node": self.node,
            "LockDelay": self.lock_delay.as_nanos() as u64,
            "Behavior": self.behavior,
            "TTL": self.ttl,
            "Checks": self.node_checks,
            "NodeChecks": self.node_checks,
            "ServiceChecks": null,
            "CreateIndex": self.create_index,
            "ModifyIndex": self.modify_index,
        })
    }
}

const FIELDS: &[&str] = &[
    "ID",
    "Name",
    "Node",
    "LockDelay",
    "Behavior",
    "TTL",
    "Checks",
    "NodeChecks",
    "ServiceChecks",
    "Namespace",
    "Partition",
];

pub(super) fn create(shared: &Shared, req: &Req) -> HResult {
    query::check_dc(shared, req)?;
    let body = body_json(&req.body).map_err(decode_failed)?;
    let f = fields(&body, "Session", FIELDS).map_err(decode_failed)?;
    let text = |k: &str| f.string(k).map_err(decode_failed);
    let behavior = Some(text("Behavior")?)
        .filter(|b| !b.is_empty())
        .unwrap_or("release".into());
    if behavior != "release" && behavior != "delete" {
        return Err(bad_request(format!(
            "Invalid Behavior setting '{behavior}'"
        )));
    }
    // Small numbers are seconds, as Consul's FixupLockDelay reads them.
    let lock_delay = match f.raw("LockDelay") {
        Some(Value::Number(n)) if n.as_f64().is_some_and(|x| x < 1000.0) => {
            Duration::from_secs_f64(n.as_f64().unwrap_or(0.0).max(0.0))
        }
        _ => f
            .duration("LockDelay")
            .map_err(decode_failed)?
            .unwrap_or(Duration::from_secs(15)),
    };
    let mut node_checks = f.strings("NodeChecks").map_err(decode_failed)?;
    node_checks.extend(f.strings("Checks").map_err(decode_failed)?);
    if f.raw("NodeChecks").is_none() && f.raw("Checks").is_none() {
        node_checks.push("serfHealth".into());
    }
    let node = Some(text("Node")?)
        .filter(|n| !n.is_empty())
        .unwrap_or(shared.cfg.node_name.clone());
    let id = random_uuid();
    let session = Session {
        id: id.clone(),
        name: text("Name")?,
        node,
        lock_delay,
        behavior,
        ttl: text("TTL")?,
        node_checks,
        create_index: 0,
        modify_index: 0,
    };
    shared.write(|s| {
        let idx = s.bump();
        s.session_index = idx;
        s.sessions.insert(
            id.clone(),
            Session {
                create_index: idx,
                modify_index: idx,
                ..session
            },
        );
    });
    Ok(Reply::json(&json!({ "ID": id })))
}

pub(super) fn destroy(shared: &Shared, req: &Req, id: &str) -> HResult {
    query::check_dc(shared, req)?;
    if id.is_empty() {
        return Err(bad_request("Missing session"));
    }
    shared.write(|s| invalidate(s, id));
    Ok(Reply::json(&json!(true)))
}

/// Removes a session and releases or deletes its keys.
fn invalidate(s: &mut Store, id: &str) {
    let Some(session) = s.sessions.remove(id) else {
        return;
    };
    let idx = s.bump();
    s.session_index = idx;
    let held: Vec<String> =
        s.kv.iter()
            .filter(|(_, e)| e.session.as_deref() == Some(id))
            .map(|(k, _)| k.clone())
            .collect();
    for key in held {
        if session.behavior == "delete" {
            s.kv.remove(&key);
        } else if let Some(e) = s.kv.get_mut(&key) {
            e.session = None;
            e.modify_index = idx;
        }
        s.kv_index = idx;
    }
}

async fn list_where(shared: &Shared, req: &Req, keep: impl Fn(&Session) -> bool) -> HResult {
    let opts = query::parse(shared, req)?;
    let (index, list) = query::block(shared, &opts, |s| {
        let list: Vec<Value> = s
            .sessions
            .values()
            .filter(|x| keep(x))
            .map(Session::to_json)
            .collect();
        (s.session_index, Value::Array(list))
    })
    .await;
    answer(index, &opts, &list)
}

pub(super) async fn info(shared: &Shared, req: &Req, id: &str) -> HResult {
    if id.is_empty() {
        return Err(bad_request("Missing session"));
    }
    list_where(shared, req, |s| s.id == id).await
}

pub(super) async fn node(shared: &Shared, req: &Req, node: &str) -> HResult {
    if node.is_empty() {
        return Err(bad_request("Missing node name"));
    }
    list_where(shared, req, |s| s.node == node).await
}

pub(super) async fn list(shared: &Shared, req: &Req) -> HResult {
    list_where(shared, req, |_| true).await
}

pub(super) fn renew(shared: &Shared, req: &Req, id: &str) -> HResult {
    query::check_dc(shared, req)?;
    if id.is_empty() {
        return Err(bad_request("Missing session"));
    }
    let found = shared.store().sessions.get(id).map(Session::to_json);
    match found {
        Some(s) => Ok(Reply::json(&json!([s]))),
        None => Err(Reply::text(
            StatusCode::NOT_FOUND,
            format!("Session id '{id}' not found"),
        )),
    }
}
