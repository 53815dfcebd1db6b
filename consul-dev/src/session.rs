//! Sessions (`/v1/session/*`) as KV locks need them: create, destroy, info,
//! list, node, renew. Destroying a session releases (or, with behavior
//! `delete`, deletes) the keys it holds, as does a TTL running out without
//! a renewal.

use std::time::Duration;

use tokio::time::Instant;

use http::StatusCode;
use serde_json::{Value, json};

use crate::http::decode::{Fields, body_json, fields, parse_go_duration};
use crate::http::{HResult, Reply, Req, bad_request, decode_failed, server_error};
use crate::query::{self, answer};
use crate::shared::{Shared, random_uuid};
use crate::store::Store;
use crate::store::model::CheckStatus;
use crate::store::records::Session;

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

#[rustfmt::skip]
const FIELDS: &[&str] = &[
    "ID", "Name", "Node", "LockDelay", "Behavior", "TTL", "Checks", "NodeChecks",
    "ServiceChecks", "Namespace", "Partition", "CreateIndex", "ModifyIndex",
];

pub(crate) fn create(shared: &Shared, req: &Req) -> HResult {
    query::check_dc(shared, req)?;
    let body = body_json(&req.body).map_err(decode_failed)?;
    let f = fields(&body, "Session", FIELDS).map_err(decode_failed)?;
    let mut session = decode(&f, &shared.cfg.node_name)?;
    let id = random_uuid();
    session.id = id.clone();
    validate(&shared.store(), &session)?;
    shared.write(|s| {
        let idx = s.bump();
        s.session_index = idx;
        (session.create_index, session.modify_index) = (idx, idx);
        s.sessions.insert(id.clone(), session);
    });
    Ok(Reply::json(&json!({ "ID": id })))
}

/// The session's node must exist and its checks exist and not be critical.
fn validate(s: &Store, session: &Session) -> Result<(), Reply> {
    if !s.nodes.contains_key(&session.node) {
        return Err(server_error("Missing node registration"));
    }
    for id in &session.node_checks {
        let Some(check) = s.checks.get(&(session.node.clone(), id.clone())) else {
            return Err(server_error(format!("Missing check '{id}' registration")));
        };
        if check.status == CheckStatus::Critical {
            return Err(server_error(format!("Check '{id}' is in critical state")));
        }
    }
    Ok(())
}

/// A session from a create body, with Consul's defaults (release, 15 s lock
/// delay, `serfHealth`, the agent's node).
fn decode(f: &Fields, agent_node: &str) -> Result<Session, Reply> {
    let text = |k: &str| f.string(k).map_err(decode_failed);
    let behavior = Some(text("Behavior")?)
        .filter(|b| !b.is_empty())
        .unwrap_or("release".into());
    if behavior != "release" && behavior != "delete" {
        return Err(bad_request(format!(
            "Invalid Behavior setting '{behavior}'"
        )));
    }
    let mut node_checks = f.strings("NodeChecks").map_err(decode_failed)?;
    node_checks.extend(f.strings("Checks").map_err(decode_failed)?);
    if f.raw("NodeChecks").is_none() && f.raw("Checks").is_none() {
        node_checks.push("serfHealth".into());
    }
    let ttl = text("TTL")?;
    let ttl_len = match ttl.as_str() {
        "" => None,
        t => Some(
            parse_go_duration(t)
                .ok_or_else(|| bad_request(format!("Invalid Session TTL '{t}'")))?,
        ),
    };
    Ok(Session {
        id: String::new(),
        name: text("Name")?,
        node: Some(text("Node")?)
            .filter(|n| !n.is_empty())
            .unwrap_or(agent_node.to_owned()),
        lock_delay: lock_delay(f)?,
        behavior,
        ttl,
        node_checks,
        expires: ttl_len.map(|d| Instant::now() + d),
        create_index: 0,
        modify_index: 0,
    })
}

/// Small numbers are seconds, as Consul's `FixupLockDelay` reads them.
fn lock_delay(f: &Fields) -> Result<Duration, Reply> {
    if let Some(Value::Number(n)) = f.raw("LockDelay") {
        let x = n.as_f64().unwrap_or(0.0).max(0.0);
        if x < 1000.0 {
            return Ok(Duration::from_secs_f64(x));
        }
    }
    let d = f.duration("LockDelay").map_err(decode_failed)?;
    Ok(d.unwrap_or(Duration::from_secs(15)))
}

pub(crate) fn destroy(shared: &Shared, req: &Req, id: &str) -> HResult {
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

pub(crate) async fn info(shared: &Shared, req: &Req, id: &str) -> HResult {
    if id.is_empty() {
        return Err(bad_request("Missing session"));
    }
    list_where(shared, req, |s| s.id == id).await
}

pub(crate) async fn node(shared: &Shared, req: &Req, node: &str) -> HResult {
    if node.is_empty() {
        return Err(bad_request("Missing node name"));
    }
    list_where(shared, req, |s| s.node == node).await
}

pub(crate) async fn list(shared: &Shared, req: &Req) -> HResult {
    list_where(shared, req, |_| true).await
}

pub(crate) fn renew(shared: &Shared, req: &Req, id: &str) -> HResult {
    query::check_dc(shared, req)?;
    if id.is_empty() {
        return Err(bad_request("Missing session"));
    }
    let found = shared.write(|s| {
        let session = s.sessions.get_mut(id)?;
        let ttl = parse_go_duration(&session.ttl).filter(|d| !d.is_zero());
        session.expires = ttl.map(|d| Instant::now() + d);
        Some(session.to_json())
    });
    match found {
        Some(s) => Ok(Reply::json(&json!([s]))),
        None => Err(Reply::text(
            StatusCode::NOT_FOUND,
            format!("Session id '{id}' not found"),
        )),
    }
}

/// Restarts every session's TTL from `now`, as Consul does when a leader takes
/// over (a snapshot restore included).
pub(crate) fn restart_ttls(s: &mut Store, now: Instant) {
    for session in s.sessions.values_mut() {
        let ttl = parse_go_duration(&session.ttl).filter(|d| !d.is_zero());
        session.expires = ttl.map(|d| now + d);
    }
}

/// Invalidates sessions whose TTL ran out; returns whether any did and the next
/// expiry.
pub(crate) fn expire(s: &mut Store, now: Instant) -> (bool, Option<Instant>) {
    let due: Vec<String> = s
        .sessions
        .values()
        .filter(|x| x.expires.is_some_and(|e| e <= now))
        .map(|x| x.id.clone())
        .collect();
    for id in &due {
        tracing::debug!(session = %id, "consul-dev: session TTL expired");
        invalidate(s, id);
    }
    (
        !due.is_empty(),
        s.sessions.values().filter_map(|x| x.expires).min(),
    )
}
