//! `Connect.SidecarService`: the registration sugar that makes the agent register
//! a `connect-proxy` next to a service (`sidecarServiceFromNodeService`), with
//! Consul's defaults: ID `<id>-sidecar-proxy`, name `<name>-sidecar-proxy`, the
//! parent's tags and meta when it sets none, a port from the sidecar range, the
//! proxy's destination and local port, and two default checks.

use serde_json::{Map, Value, json};

use crate::http::{Reply, bad_request};
use crate::store::Store;

/// `connect.sidecar_min_port` and `sidecar_max_port` defaults.
const SIDECAR_PORTS: std::ops::RangeInclusive<u64> = 21000..=21255;

/// Takes the nested `Connect.SidecarService` definition out of a parent's
/// `Connect` (the agent does not store it with the parent); `None` without one.
pub(crate) fn take_definition(connect: &mut Option<Value>) -> Option<Value> {
    let obj = connect.as_mut()?.as_object_mut()?;
    let key = obj
        .keys()
        .find(|k| k.replace('_', "").eq_ignore_ascii_case("sidecarservice"))?
        .clone();
    obj.remove(&key).filter(|v| !v.is_null())
}

/// The parent's facts the sidecar's defaults come from.
#[derive(Debug)]
pub(crate) struct Parent<'a> {
    pub(crate) id: &'a str,
    pub(crate) name: &'a str,
    pub(crate) port: u64,
    pub(crate) tags: &'a [String],
    pub(crate) meta: &'a std::collections::BTreeMap<String, String>,
    pub(crate) node: &'a str,
}

/// A definition kept as sent, its keys matched as `lib.DecodeJSON` matches them.
#[derive(Debug)]
struct Def(Map<String, Value>);

impl Def {
    fn key_is(key: &str, name: &str) -> bool {
        key.replace('_', "").eq_ignore_ascii_case(name)
    }

    fn get(&self, name: &str) -> Option<&Value> {
        self.0
            .iter()
            .find(|(k, _)| Def::key_is(k, name))
            .map(|(_, v)| v)
    }

    /// Whether `name` holds something other than a zero value.
    fn has(&self, name: &str) -> bool {
        self.get(name).is_some_and(|v| !is_zero(v))
    }

    fn set(&mut self, name: &str, value: Value) {
        self.0.retain(|k, _| !Def::key_is(k, name));
        self.0.insert(name.to_owned(), value);
    }

    /// Sets `name` unless it holds something already.
    fn default(&mut self, name: &str, value: Value) {
        if !self.has(name) {
            self.set(name, value);
        }
    }
}

/// Fills the sidecar definition's defaults; the result decodes as any service
/// definition. 400s with the agent's texts for what it refuses.
pub(crate) fn definition(def: Value, parent: &Parent<'_>, store: &Store) -> Result<Value, Reply> {
    let Value::Object(def) = def else {
        return Err(crate::http::decode_failed(
            "json: cannot unmarshal into Go struct field ServiceConnect.Connect.SidecarService of type structs.ServiceDefinition",
        ));
    };
    let mut def = Def(def);
    identity(&mut def, parent);
    let local_address = proxy(&mut def, parent);
    let port = port(&mut def, parent, store)?;
    if !def.has("Check") && !def.has("Checks") {
        let address = def
            .get("Address")
            .and_then(Value::as_str)
            .filter(|a| !a.is_empty())
            .unwrap_or(&local_address)
            .to_owned();
        def.set("Checks", default_checks(parent.id, &address, port));
    }
    Ok(Value::Object(def.0))
}

/// The ID the agent owns, and the name, kind, tags and meta it defaults.
fn identity(def: &mut Def, parent: &Parent<'_>) {
    def.set("ID", json!(format!("{}-sidecar-proxy", parent.id)));
    def.default("Name", json!(format!("{}-sidecar-proxy", parent.name)));
    def.default("Kind", json!("connect-proxy"));
    if !parent.tags.is_empty() {
        def.default("Tags", json!(parent.tags));
    }
    if !parent.meta.is_empty() {
        def.default("Meta", json!(parent.meta));
    }
}

/// The proxy's destination and local service; returns the local address.
fn proxy(def: &mut Def, parent: &Parent<'_>) -> String {
    let given = def.get("Proxy").and_then(Value::as_object).cloned();
    let mut proxy = Def(given.unwrap_or_default());
    proxy.default("DestinationServiceName", json!(parent.name));
    proxy.default("DestinationServiceID", json!(parent.id));
    proxy.default("LocalServiceAddress", json!("127.0.0.1"));
    if parent.port > 0 {
        proxy.default("LocalServicePort", json!(parent.port));
    }
    let local = proxy
        .get("LocalServiceAddress")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    def.set("Proxy", Value::Object(proxy.0));
    local
}

/// The sidecar's port: as given, else the first free one of the sidecar range.
fn port(def: &mut Def, parent: &Parent<'_>, store: &Store) -> Result<u64, Reply> {
    if let Some(port) = def.get("Port").and_then(Value::as_u64).filter(|p| *p > 0) {
        return Ok(port);
    }
    let port = free_port(store, parent.node).ok_or_else(|| {
        bad_request(format!(
            "Invalid SidecarService: no port provided for sidecar_service and none left in the configured range [{}, {}]",
            SIDECAR_PORTS.start(),
            SIDECAR_PORTS.end()
        ))
    })?;
    def.set("Port", json!(port));
    Ok(port)
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

/// Go's zero values, and empty lists and maps (left out, as `omitempty` would).
fn is_zero(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::Bool(_) => false,
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
