//! Smaller endpoints a dev agent answers: user events, cluster membership
//! no-ops (join, reload), coordinates (read and update) and the raft
//! configuration.

use serde_json::{Value, json};

use crate::http::b64::base64;
use crate::http::decode::{body_json, fields, kind_of};
use crate::http::{HResult, Reply, Req, bad_request, decode_failed, server_error};
use crate::query::{self, answer};
use crate::shared::{Shared, random_uuid};
use crate::store::Store;

/// How many events the agent keeps (Consul's user event buffer).
const EVENT_BUFFER: usize = 256;

pub(crate) fn fire_event(shared: &Shared, req: &Req, name: &str) -> HResult {
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

pub(crate) async fn list_events(shared: &Shared, req: &Req) -> HResult {
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
pub(crate) fn accepted() -> HResult {
    Ok(Reply::empty())
}

fn coord() -> Value {
    json!({ "Vec": [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], "Error": 1.5, "Adjustment": 0.0, "Height": 1e-5 })
}

pub(crate) fn coordinate_datacenters(shared: &Shared) -> HResult {
    let cfg = &shared.cfg;
    Ok(Reply::json(&json!([{
        "Datacenter": cfg.datacenter,
        "AreaID": "wan",
        "Coordinates": [{ "Node": format!("{}.{}", cfg.node_name, cfg.datacenter), "Coord": coord() }],
    }])))
}

pub(crate) async fn coordinate_nodes(shared: &Shared, req: &Req) -> HResult {
    let opts = query::parse(shared, req)?;
    let (index, list) = query::block(shared, &opts, |s| {
        let list: Vec<Value> = s.nodes.keys().flat_map(|n| node_coords(s, n)).collect();
        (s.index, Value::Array(list))
    })
    .await;
    answer(index, &opts, &list)
}

/// A node's coordinates, one per segment it sent one for; the origin for a node that
/// sent none (the dev agent's own node reports its coordinate at once).
fn node_coords(s: &Store, node: &str) -> Vec<Value> {
    let sent: Vec<Value> = s
        .coordinates
        .range((node.to_owned(), String::new())..)
        .take_while(|((n, _), _)| n == node)
        .map(|((n, seg), c)| json!({ "Node": n, "Segment": seg, "Partition": "", "Coord": c }))
        .collect();
    if !sent.is_empty() {
        return sent;
    }
    vec![json!({ "Node": node, "Segment": "", "Partition": "", "Coord": coord() })]
}

/// `GET /v1/coordinate/node/:node`: its coordinates, or 404 with no body for a
/// node without one, as `CoordinateNode` answers.
pub(crate) async fn coordinate_node(shared: &Shared, req: &Req, node: &str) -> HResult {
    let opts = query::parse(shared, req)?;
    let (index, list) = query::block(shared, &opts, |s| {
        let list = s
            .nodes
            .contains_key(node)
            .then(|| Value::Array(node_coords(s, node)));
        (s.index, list)
    })
    .await;
    match list {
        Some(list) => answer(index, &opts, &list),
        None => Err(Reply::new(http::StatusCode::NOT_FOUND, "").meta(index, opts.consistency)),
    }
}

/// `PUT /v1/coordinate/update`: `Coordinate.Update` stores a node's coordinate
/// (a dev agent flushes its batch every 100 ms; here it is stored at once).
/// Updates for nodes not in the catalog are dropped, as `CoordinateBatchUpdate`
/// does; a coordinate of another dimensionality is `incompatible coordinate`.
pub(crate) fn coordinate_update(shared: &Shared, req: &Req) -> HResult {
    let body = body_json(&req.body).map_err(decode_failed)?;
    let names = [
        "Datacenter",
        "Node",
        "Segment",
        "Coord",
        "Partition",
        "Token",
    ];
    let f = fields(&body, "CoordinateUpdateRequest", &names).map_err(decode_failed)?;
    let dc = f.string("Datacenter").map_err(decode_failed)?;
    if dc.is_empty() {
        query::check_dc(shared, req)?;
    } else if dc != shared.cfg.datacenter {
        return Err(server_error("No path to datacenter"));
    }
    let node = f.string("Node").map_err(decode_failed)?;
    let segment = f.string("Segment").map_err(decode_failed)?;
    let coord = decode_coord(f.raw("Coord"))?;
    shared.write(|s| {
        if s.nodes.contains_key(&node) {
            s.bump();
            s.coordinates.insert((node, segment), coord);
        }
    });
    Ok(Reply::empty())
}

/// A `coordinate.Coordinate`: eight dimensions, as Serf's default configuration.
fn decode_coord(raw: Option<&Value>) -> Result<Value, Reply> {
    let Some(raw) = raw else {
        return Err(server_error("invalid coordinate"));
    };
    let names = ["Vec", "Error", "Adjustment", "Height"];
    let f = fields(raw, "Coordinate", &names).map_err(decode_failed)?;
    let number = |name: &str| match f.raw(name) {
        None => Ok(0.0),
        Some(Value::Number(n)) => Ok(n.as_f64().unwrap_or(0.0)),
        Some(other) => Err(decode_failed(format!(
            "json: cannot unmarshal {} into Go struct field Coordinate.Coord.{name} of type float64",
            kind_of(other)
        ))),
    };
    let vec: Vec<f64> = match f.raw("Vec") {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_f64())
            .collect::<Option<_>>()
            .ok_or_else(|| {
                decode_failed("json: cannot unmarshal into Go struct field Coordinate.Coord.Vec of type float64")
            })?,
        Some(other) => {
            return Err(decode_failed(format!(
                "json: cannot unmarshal {} into Go struct field Coordinate.Coord.Vec of type []float64",
                kind_of(other)
            )));
        }
    };
    if vec.len() != COORD_DIMENSIONS {
        return Err(server_error("incompatible coordinate"));
    }
    Ok(json!({
        "Vec": vec,
        "Error": number("Error")?,
        "Adjustment": number("Adjustment")?,
        "Height": number("Height")?,
    }))
}

/// Serf's `coordinate.DefaultConfig().Dimensionality`.
const COORD_DIMENSIONS: usize = 8;

pub(crate) fn raft_configuration(shared: &Shared) -> HResult {
    let cfg = &shared.cfg;
    Ok(Reply::json(&json!({
        "Servers": [{
            "ID": cfg.node_id, "Node": cfg.node_name, "Address": "127.0.0.1:8300",
            "Leader": true, "Voter": true, "ProtocolVersion": "3", "LastIndex": 1,
        }],
        "Index": 1,
    })))
}

pub(crate) fn version() -> HResult {
    Ok(Reply::json(&json!({
        "SHA": "consul-dev", "BuildDate": "2023-11-03T00:00:00Z", "HumanVersion": "1.17.0", "FIPS": "",
    })))
}

/// `GET /v1/acl/token/self`: the one configured token as a global-management
/// token, or 401 when ACLs are off. (The router already refused other tokens.)
pub(crate) fn token_self(shared: &Shared) -> HResult {
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
