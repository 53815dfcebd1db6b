//! `Connect.SidecarService`: the registration sugar that makes the agent register
//! a `connect-proxy` next to a service (`sidecarServiceFromNodeService`), with
//! Consul's defaults: ID `<id>-sidecar-proxy`, name `<name>-sidecar-proxy`, the
//! parent's tags and meta when it sets none, a port from the sidecar range, the
//! proxy's destination and local port, and two default checks.

use serde_json::{Map, Value, json};

use super::http::{Reply, bad_request};
use super::store::Store;

/// `connect.sidecar_min_port` and `sidecar_max_port` defaults.
const SIDECAR_PORTS: std::ops::RangeInclusive<u64> = 21000..=21255;

/// Takes the nested `Connect.SidecarService` definition out of a parent's
/// `Connect` (the agent does not store it with the parent); `None` without one.
pub(super) fn take_definition(connect: &mut Option<Value>) -> Option<Value> {
    let obj = connect.as_mut()?.as_object_mut()?;
    let key = obj
        .keys()
        .find(|k| k.replace('_', "").eq_ignore_ascii_case("sidecarservice"))?
        .clone();
    obj.remove(&key).filter(|v| !v.is_null())
}

/// The parent's facts the sidecar's defaults come from.
#[derive(Debug)]
pub(super) struct Parent<'a> {
    pub(super) id: &'a str,
    pub(super) name: &'a str,
    pub(super) port: u64,
    pub(super) tags: &'a [String],
    pub(super) meta: &'a std::collections::BTreeMap<String, String>,
    pub(super) node: &'a str,
}

/// Fills the sidecar definition's defaults; the result decodes as any service
/// definition. 400s with the agent's texts for what it refuses.
pub(super) fn definition(def: Value, parent: &Parent<'_>, store: &Store) -> Result<Value, Reply> {
    let Value::Object(mut def) = def else {
        return Err(super::http::decode_failed(
            "json: cannot unmarshal into Go struct field ServiceConnect.Connect.SidecarService of type structs.ServiceDefinition",
        ));
    };
    let get = |def: &Map<String, Value>, name: &str| -> Option<Value> {
        def.iter()
            .find(|(k, _)| k.replace('_', "").eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_null())
    };
    let set = |def: &mut Map<String, Value>, name: &str, value: Value| {
        def.retain(|k, _| !k.replace('_', "").eq_ignore_ascii_case(name));
        def.insert(name.to_owned(), value);
    };
    set(
        &mut def,
        "ID",
        json!(format!("{}-sidecar-proxy", parent.id)),
    );
    let name_given = get(&def, "Name").and_then(|v| v.as_str().map(|s| !s.is_empty()));
    if name_given != Some(true) {
        set(
            &mut def,
            "Name",
            json!(format!("{}-sidecar-proxy", parent.name)),
        );
    }
    if get(&def, "Kind").and_then(|v| v.as_str().map(|s| !s.is_empty())) != Some(true) {
        set(&mut def, "Kind", json!("connect-proxy"));
    }
    let no_tags = get(&def, "Tags").is_none_or(|t| t.as_array().is_some_and(Vec::is_empty));
    if no_tags && !parent.tags.is_empty() {
        set(&mut def, "Tags", json!(parent.tags));
    }
    let no_meta = get(&def, "Meta").is_none_or(|m| m.as_object().is_some_and(Map::is_empty));
    if no_meta && !parent.meta.is_empty() {
        set(&mut def, "Meta", json!(parent.meta));
    }
    let mut proxy = get(&def, "Proxy")
        .and_then(|p| p.as_object().cloned())
        .unwrap_or_default();
    let mut fill = |name: &str, value: Value| {
        let has = proxy
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case(name) && !is_zero(v));
        if !has {
            proxy.retain(|k, _| !k.eq_ignore_ascii_case(name));
            proxy.insert(name.to_owned(), value);
        }
    };
    fill("DestinationServiceName", json!(parent.name));
    fill("DestinationServiceID", json!(parent.id));
    fill("LocalServiceAddress", json!("127.0.0.1"));
    if parent.port > 0 {
        fill("LocalServicePort", json!(parent.port));
    }
    let local_address = proxy
        .get("LocalServiceAddress")
        .cloned()
        .unwrap_or_default();
    set(&mut def, "Proxy", Value::Object(proxy));
    let port = match get(&def, "Port")
        .and_then(|p| p.as_u64())
        .filter(|p| *p > 0)
    {
        Some(p) => p,
        None => {
            let port = free_port(store, parent.node).ok_or_else(|| {
                bad_request(format!(
                    "Invalid SidecarService: no port provided for sidecar_service and none left in the configured range [{}, {}]",
                    SIDECAR_PORTS.start(),
                    SIDECAR_PORTS.end()
                ))
            })?;
            set(&mut def, "Port", json!(port));
            port
        }
    };
    let has_checks = get(&def, "Check")
        .is_some_and(|c| c.as_object().is_some_and(|o| !o.is_empty()))
        || get(&def, "Checks").is_some_and(|c| c.as_array().is_some_and(|a| !a.is_empty()));
    if !has_checks {
        let address = get(&def, "Address")
            .and_then(|a| a.as_str().map(str::to_owned))
            .filter(|a| !a.is_empty())
            .or_else(|| local_address.as_str().map(str::to_owned))
            .unwrap_or_default();
        set(
            &mut def,
            "Checks",
            default_checks(parent.id, &address, port),
        );
    }
    Ok(Value::Object(def))
}

/// `sidecarDefaultChecks`: the proxy's port listens, and the parent is healthy.
fn default_checks(parent_id: &str, address: &str, port: u64) -> Value {
    let target = if address.contains(':') {
        format!("[{address}]:{port}")
    } else {
        format!("{address}:{port}")
    };
    json!([
        { "Name": "Connect Sidecar Listening", "TCP": target, "Interval": "10s" },
        { "Name": format!("Connect Sidecar Aliasing {parent_id}"), "AliasService": parent_id },
    ])
}

fn is_zero(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Number(n) => n.as_u64() == Some(0),
        _ => false,
    }
}

/// The first port of the sidecar range no service of the agent uses. (Consul
/// draws one at random; the lowest free one is as valid and repeatable.)
fn free_port(store: &Store, node: &str) -> Option<u64> {
    let used: std::collections::BTreeSet<u64> = store
        .services
        .values()
        .filter(|s| s.node == node)
        .map(|s| s.port)
        .collect();
    SIDECAR_PORTS.into_iter().find(|p| !used.contains(p))
}
