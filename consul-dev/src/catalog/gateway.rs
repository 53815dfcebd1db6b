//! `GET /v1/catalog/gateway-services/:gateway`: the services a terminating or
//! ingress gateway's config entry links (`Catalog.GatewayServices`), `*`
//! expanded to every typical service in the catalog.

use serde_json::{Map, Value, json};

use crate::http::decode::field_of as field;
use crate::http::{HResult, Req, bad_request};
use crate::query::{self, answer};
use crate::shared::Shared;
use crate::store::Store;
use crate::store::records::ConfigEntry as Entry;

pub(crate) async fn services(shared: &Shared, req: &Req, gateway: &str) -> HResult {
    let opts = query::parse(shared, req)?;
    if gateway.is_empty() {
        return Err(bad_request("Missing gateway name"));
    }
    let (index, list) = query::block(shared, &opts, |s| (s.index, linked(s, gateway))).await;
    // `structs.GatewayServices` left nil when nothing is linked: JSON `null`.
    let body = if list.is_empty() {
        Value::Null
    } else {
        Value::Array(list)
    };
    answer(index, &opts, &body)
}

fn text<'a>(v: &'a Value, name: &str) -> &'a str {
    field(v, name).and_then(Value::as_str).unwrap_or_default()
}

fn linked(s: &Store, gateway: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let key = |kind: &str| (kind.to_owned(), gateway.to_owned());
    if let Some(entry) = s.config.get(&key("terminating-gateway")) {
        for svc in list(entry.field("Services")) {
            let extra = ["CAFile", "CertFile", "KeyFile", "SNI"]
                .iter()
                .filter(|k| !text(svc, k).is_empty())
                .map(|k| ((*k).to_owned(), json!(text(svc, k))))
                .collect::<Map<_, _>>();
            link(
                s,
                &mut out,
                gateway,
                "terminating-gateway",
                svc,
                extra,
                entry,
            );
        }
    }
    if let Some(entry) = s.config.get(&key("ingress-gateway")) {
        for listener in list(entry.field("Listeners")) {
            let port = field(listener, "Port").and_then(Value::as_u64).unwrap_or(0);
            let protocol = match text(listener, "Protocol") {
                "" => "tcp",
                p => p,
            };
            for svc in list(field(listener, "Services")) {
                let mut extra = Map::new();
                extra.insert("Port".into(), json!(port));
                extra.insert("Protocol".into(), json!(protocol));
                if let Some(hosts) =
                    field(svc, "Hosts").filter(|h| h.as_array().is_some_and(|a| !a.is_empty()))
                {
                    extra.insert("Hosts".into(), hosts.clone());
                }
                link(s, &mut out, gateway, "ingress-gateway", svc, extra, entry);
            }
        }
    }
    out.sort_by(|a, b| {
        a["Service"]["Name"]
            .as_str()
            .cmp(&b["Service"]["Name"].as_str())
    });
    out
}

fn list(v: Option<&Value>) -> &[Value] {
    v.and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

/// Adds the gateway's link to `svc`, or to every typical service for `*`.
fn link(
    s: &Store,
    out: &mut Vec<Value>,
    gateway: &str,
    kind: &str,
    svc: &Value,
    extra: Map<String, Value>,
    entry: &Entry,
) {
    let name = text(svc, "Name");
    let (names, wildcard): (Vec<String>, bool) = if name == "*" {
        let typical: std::collections::BTreeSet<String> = s
            .services
            .values()
            .filter(|svc| svc.kind.is_empty())
            .map(|svc| svc.name.clone())
            .collect();
        (typical.into_iter().collect(), true)
    } else {
        (vec![name.to_owned()], false)
    };
    for service in names.into_iter().filter(|n| !n.is_empty()) {
        let mut m = Map::new();
        m.insert("Gateway".into(), json!({ "Name": gateway }));
        m.insert("Service".into(), json!({ "Name": service }));
        m.insert("GatewayKind".into(), json!(kind));
        m.extend(extra.clone());
        if wildcard {
            m.insert("FromWildcard".into(), json!(true));
        }
        m.insert("CreateIndex".into(), json!(entry.modify_index()));
        m.insert("ModifyIndex".into(), json!(entry.modify_index()));
        out.push(Value::Object(m));
    }
}
