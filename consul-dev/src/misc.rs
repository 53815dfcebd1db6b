//! Smaller endpoints a dev agent answers: user events, cluster membership
//! no-ops (join, leave, force-leave, reload), coordinates and the raft
//! configuration.

use serde_json::{Value, json};

use super::b64::base64;
use super::http::{HResult, Reply, Req, bad_request};
use super::query::{self, answer};
use super::shared::{Shared, random_uuid};

/// How many events the agent keeps (Consul's user event buffer).
const EVENT_BUFFER: usize = 256;

pub(super) fn fire_event(shared: &Shared, req: &Req, name: &str) -> HResult {
    query::check_dc(shared, req)?;
    if name.is_empty() {
        return Err(bad_request("Missing name"));
    }
    let payload = if req.body.is_empty() {
        Value::Null
    } else {
        json!(base64(&req.body))
    };
    let event = json!({
        "ID": random_uuid(),
        "Name": name,
        "Payload": payload,
        "NodeFilter": req.param("node").unwrap_or(""),
        "ServiceFilter": req.param("service").unwrap_or(""),
        "TagFilter": req.param("tag").unwrap_or(""),
        "Version": 1,
        "LTime": 0,
    });
    shared.write(|s| {
        let ltime = s.events.len() as u64 + 1;
        let mut stored = event.clone();
        stored["LTime"] = json!(ltime);
        s.events.push(stored);
        if s.events.len() > EVENT_BUFFER {
            s.events.remove(0);
        }
        s.bump();
    });
    Ok(Reply::json(&event))
}

pub(super) async fn list_events(shared: &Shared, req: &Req) -> HResult {
    let opts = query::parse(shared, req)?;
    let name = req.nonempty("name");
    let (index, list) = query::block(shared, &opts, |s| {
        let list: Vec<Value> = s
            .events
            .iter()
            .filter(|e| name.is_none_or(|n| e["Name"] == n))
            .cloned()
            .collect();
        // Events carry no raft index; the count stands in, as it only grows.
        (s.events.len() as u64, Value::Array(list))
    })
    .await;
    answer(index, &opts, &list)
}

/// `join`, `leave`, `force-leave`, `reload`: accepted, nothing to do for one node.
pub(super) fn accepted() -> HResult {
    Ok(Reply::empty())
}

fn coord() -> Value {
    json!({ "Vec": [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], "Error": 1.5, "Adjustment": 0.0, "Height": 1e-5 })
}

pub(super) fn coordinate_datacenters(shared: &Shared) -> HResult {
    let cfg = &shared.cfg;
    Ok(Reply::json(&json!([{
        "Datacenter": cfg.datacenter,
        "AreaID": "wan",
        "Coordinates": [{ "Node": format!("{}.{}", cfg.node_name, cfg.datacenter), "Coord": coord() }],
    }])))
}

pub(super) async fn coordinate_nodes(shared: &Shared, req: &Req) -> HResult {
    let opts = query::parse(shared, req)?;
    let (index, list) = query::block(shared, &opts, |s| {
        let list: Vec<Value> = s
            .nodes
            .keys()
            .map(|n| json!({ "Node": n, "Segment": "", "Partition": "", "Coord": coord() }))
            .collect();
        (s.index, Value::Array(list))
    })
    .await;
    answer(index, &opts, &list)
}

/// `GET /v1/coordinate/node/:node`: its coordinate, or 404 with no body for a
/// node without one, as `CoordinateNode` answers.
pub(super) async fn coordinate_node(shared: &Shared, req: &Req, node: &str) -> HResult {
    let opts = query::parse(shared, req)?;
    let (index, list) = query::block(shared, &opts, |s| {
        let list = s
            .nodes
            .contains_key(node)
            .then(|| json!([{ "Node": node, "Segment": "", "Partition": "", "Coord": coord() }]));
        (s.index, list)
    })
    .await;
    match list {
        Some(list) => answer(index, &opts, &list),
        None => Err(Reply::new(http::StatusCode::NOT_FOUND, "").meta(index, opts.consistency)),
    }
}

pub(super) fn raft_configuration(shared: &Shared) -> HResult {
    let cfg = &shared.cfg;
    Ok(Reply::json(&json!({
        "Servers": [{
            "ID": cfg.node_id, "Node": cfg.node_name, "Address": "127.0.0.1:8300",
            "Leader": true, "Voter": true, "ProtocolVersion": "3", "LastIndex": 1,
        }],
        "Index": 1,
    })))
}

pub(super) fn version() -> HResult {
    Ok(Reply::json(&json!({
        "SHA": "consul-dev", "BuildDate": "2023-11-03T00:00:00Z", "HumanVersion": "1.17.0", "FIPS": "",
    })))
}

/// `GET /v1/acl/token/self`: the one configured token as a global-management
/// token, or 401 when ACLs are off. (The router already refused other tokens.)
pub(super) fn token_self(shared: &Shared) -> HResult {
    let Some(secret) = &shared.cfg.acl_token else {
        return Err(Reply::text(
            http::StatusCode::UNAUTHORIZED,
            "ACL support disabled",
        ));
    };
    Ok(Reply::json(&json!({
        "AccessorID": shared.cfg.node_id,
        "SecretID": secret,
        "Description": "consul-dev token",
        "Policies": [{ "ID": "00000000-0000-0000-0000-000000000001", "Name": "global-management" }],
        "Local": false,
        "CreateTime": "2023-11-03T00:00:00Z",
        "Hash": "",
        "CreateIndex": 1,
        "ModifyIndex": 1,
    })))
}
