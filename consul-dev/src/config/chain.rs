//! `GET`/`POST /v1/discovery-chain/:service`: the compiled discovery chain
//! (`DiscoveryChain.Get`) of a service without routers or splitters: one resolver
//! node and its target, with the protocol and meta of `service-defaults` (or the
//! `proxy-defaults` protocol), a `service-resolver`'s timeouts, and the `POST`
//! overrides.

use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::http::decode::{body_json, field_of, fields};
use crate::http::{HResult, Reply, Req, bad_request};
use crate::query::{self, answer};
use crate::shared::Shared;
use crate::store::Store;
use crate::store::render::go_duration;

/// `discoverychain`'s default connect timeout.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What a `POST` overrides.
#[derive(Debug, Default)]
struct Overrides {
    protocol: String,
    connect_timeout: Option<Duration>,
    mesh_gateway_mode: String,
}

pub(crate) async fn read(shared: &Shared, req: &Req, name: &str) -> HResult {
    let opts = query::parse(shared, req)?;
    if name.is_empty() {
        return Err(bad_request("Missing chain name"));
    }
    let overrides = match req.method {
        http::Method::POST => overrides(req)?,
        _ => Overrides::default(),
    };
    let dc = req
        .nonempty("compile-dc")
        .unwrap_or(&shared.cfg.datacenter)
        .to_owned();
    let trust_domain = format!("{}.consul", shared.cfg.cluster_id);
    let (index, chain) = query::block(shared, &opts, |s| {
        let chain = compile(s, name, &dc, &trust_domain, &overrides);
        (s.config_index, chain)
    })
    .await;
    answer(index, &opts, &json!({ "Chain": chain }))
}

/// `discoveryChainReadRequest`: 400 `Request decoding failed: …`, and the text
/// Consul writes for a mesh gateway mode it does not know.
fn overrides(req: &Req) -> Result<Overrides, Reply> {
    let failed = |e: String| bad_request(format!("Request decoding failed: {e}"));
    let body = body_json(&req.body).map_err(failed)?;
    let names = [
        "OverrideMeshGateway",
        "OverrideProtocol",
        "OverrideConnectTimeout",
    ];
    let f = fields(&body, "discoveryChainReadRequest", &names).map_err(failed)?;
    let mode = match f.raw("OverrideMeshGateway") {
        Some(gw) => fields(gw, "MeshGatewayConfig", &["Mode"])
            .and_then(|g| g.string("Mode"))
            .map_err(failed)?,
        None => String::new(),
    };
    if !matches!(mode.as_str(), "" | "none" | "local" | "remote") {
        return Err(bad_request("Invalid OverrideMeshGateway.Mode parameter"));
    }
    Ok(Overrides {
        protocol: f.string("OverrideProtocol").map_err(failed)?,
        connect_timeout: f
            .duration("OverrideConnectTimeout")
            .map_err(failed)?
            .filter(|d| !d.is_zero()),
        mesh_gateway_mode: mode,
    })
}

/// A config entry's field, its key matched case-insensitively.
fn entry_field<'a>(s: &'a Store, kind: &str, name: &str, field: &str) -> Option<&'a Value> {
    s.config
        .get(&(kind.to_owned(), name.to_owned()))
        .and_then(|e| e.field(field))
}

fn duration_of(v: Option<&Value>) -> Option<Duration> {
    match v? {
        Value::String(s) => crate::http::decode::parse_go_duration(s),
        Value::Number(n) => n.as_u64().map(Duration::from_nanos),
        _ => None,
    }
    .filter(|d| !d.is_zero())
}

/// The chain's protocol: the override, else `service-defaults`, else the global
/// `proxy-defaults`, else `tcp`.
fn protocol(s: &Store, name: &str, o: &Overrides) -> String {
    if !o.protocol.is_empty() {
        return o.protocol.clone();
    }
    entry_field(s, "service-defaults", name, "Protocol")
        .and_then(Value::as_str)
        .filter(|p| !p.is_empty())
        .or_else(|| {
            entry_field(s, "proxy-defaults", "global", "Config")
                .and_then(|c| field_of(c, "protocol"))
                .and_then(Value::as_str)
        })
        .unwrap_or("tcp")
        .to_owned()
}

/// The resolver node's `Resolver`: synthesized (`Default`) without a
/// `service-resolver` entry, with the entry's timeouts otherwise.
fn resolver(s: &Store, name: &str, target_id: &str, connect_timeout: Duration) -> Value {
    let entry = s
        .config
        .contains_key(&("service-resolver".to_owned(), name.to_owned()));
    let mut node = Map::new();
    if !entry {
        node.insert("Default".into(), json!(true));
    }
    node.insert("ConnectTimeout".into(), json!(go_duration(connect_timeout)));
    let request_timeout = duration_of(entry_field(s, "service-resolver", name, "RequestTimeout"));
    if let Some(t) = request_timeout {
        node.insert("RequestTimeout".into(), json!(t.as_nanos() as u64));
    }
    node.insert("Target".into(), json!(target_id));
    Value::Object(node)
}

/// The one target: the service in the datacenter, named by its SNI.
fn target(name: &str, dc: &str, trust_domain: &str, timeout: Duration, o: &Overrides) -> Value {
    let sni = format!("{name}.default.{dc}.internal.{trust_domain}");
    let mesh_gateway = match o.mesh_gateway_mode.as_str() {
        "" => json!({}),
        mode => json!({ "Mode": mode }),
    };
    json!({
        "ID": format!("{name}.default.default.{dc}"), "Service": name, "Namespace": "default",
        "Partition": "default", "Datacenter": dc, "MeshGateway": mesh_gateway, "Subset": {},
        "TransparentProxy": {}, "ConnectTimeout": go_duration(timeout), "SNI": sni, "Name": sni,
    })
}

fn compile(s: &Store, name: &str, dc: &str, trust_domain: &str, o: &Overrides) -> Value {
    let connect_timeout = o
        .connect_timeout
        .or_else(|| duration_of(entry_field(s, "service-resolver", name, "ConnectTimeout")))
        .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
    let target_id = format!("{name}.default.default.{dc}");
    let resolver = resolver(s, name, &target_id, connect_timeout);
    let mut chain = Map::new();
    chain.insert("ServiceName".into(), json!(name));
    chain.insert("Namespace".into(), json!("default"));
    chain.insert("Partition".into(), json!("default"));
    chain.insert("Datacenter".into(), json!(dc));
    if let Some(hash) = customization_hash(o) {
        chain.insert("CustomizationHash".into(), json!(hash));
    }
    if resolver["Default"] == json!(true) {
        chain.insert("Default".into(), json!(true));
    }
    chain.insert("Protocol".into(), json!(protocol(s, name, o)));
    if let Some(meta) = entry_field(s, "service-defaults", name, "Meta")
        .filter(|m| m.as_object().is_some_and(|m| !m.is_empty()))
    {
        chain.insert("ServiceMeta".into(), meta.clone());
    }
    let node_key = format!("resolver:{target_id}");
    chain.insert("StartNode".into(), json!(node_key));
    let node = json!({ "Type": "resolver", "Name": target_id, "Resolver": resolver });
    chain.insert("Nodes".into(), json!({ node_key: node }));
    let target = target(name, dc, trust_domain, connect_timeout, o);
    chain.insert("Targets".into(), json!({ target_id: target }));
    chain.insert("AutoVirtualIPs".into(), Value::Null);
    chain.insert("ManualVirtualIPs".into(), Value::Null);
    Value::Object(chain)
}

/// Set when a `POST` overrides anything: an opaque 8-hex-digit hash of the
/// overrides (Consul hashes them with hashstructure; the value differs).
fn customization_hash(o: &Overrides) -> Option<String> {
    if o.protocol.is_empty() && o.connect_timeout.is_none() && o.mesh_gateway_mode.is_empty() {
        return None;
    }
    let text = format!(
        "{}|{:?}|{}",
        o.protocol, o.connect_timeout, o.mesh_gateway_mode
    );
    let mut h: u32 = 0x811c_9dc5;
    for b in text.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    Some(format!("{h:08x}"))
}
