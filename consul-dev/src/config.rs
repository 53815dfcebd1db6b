//! Config entries (`/v1/config`): apply, get, list and delete of the kinds a dev
//! agent with Connect disabled accepts, kept as their JSON with `Kind`, `Name` and
//! raft indexes. Entries are stored as sent (no per-kind defaults or validation
//! beyond the kind and name); `service-intentions` needs Connect and is refused.
//!
//! `chain` compiles a discovery chain from the stored entries.

pub(crate) mod chain;

use serde_json::{Map, Value, json};

use crate::http::decode::body_json;
use crate::http::{HResult, Reply, Req, bad_request, server_error};
use crate::query::{self, answer};
use crate::shared::Shared;
use crate::store::records::ConfigEntry as Entry;

/// The kinds `structs.ValidateConfigEntryKind` accepts.
const KINDS: &[&str] = &[
    "service-defaults",
    "proxy-defaults",
    "service-router",
    "service-splitter",
    "service-resolver",
    "ingress-gateway",
    "terminating-gateway",
    "service-intentions",
    "mesh",
    "exported-services",
    "sameness-group",
    "api-gateway",
    "bound-api-gateway",
    "inline-certificate",
    "file-system-certificate",
    "http-route",
    "tcp-route",
    "jwt-provider",
    "control-plane-request-limit",
];

impl Entry {
    /// A field of the entry as sent, its key matched as `lib.DecodeJSON` does.
    pub(crate) fn field(&self, name: &str) -> Option<&Value> {
        self.body
            .iter()
            .find(|(k, _)| k.replace('_', "").eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
            .filter(|v| !v.is_null())
    }

    /// When the entry was last written.
    pub(crate) fn modify_index(&self) -> u64 {
        self.modify_index
    }

    fn to_json(&self) -> Value {
        let mut m = self.body.clone();
        m.insert("CreateIndex".into(), json!(self.create_index));
        m.insert("ModifyIndex".into(), json!(self.modify_index));
        Value::Object(m)
    }
}

fn invalid_kind(kind: &str) -> Reply {
    server_error(format!("invalid config entry kind: {kind}"))
}

/// `GET` and `DELETE /v1/config/:kind[/:name]`.
pub(crate) async fn handle(shared: &Shared, req: &Req, rest: &str) -> HResult {
    let (kind, name) = match rest.split_once('/') {
        Some((k, n)) => (k, Some(n)),
        None => (rest, None),
    };
    if req.method == http::Method::DELETE {
        return delete(shared, req, kind, name);
    }
    let opts = query::parse(shared, req)?;
    if !KINDS.contains(&kind) {
        return Err(invalid_kind(kind));
    }
    let (index, out) = query::block(shared, &opts, |s| {
        let out = match name {
            Some(n) => s
                .config
                .get(&(kind.to_owned(), n.to_owned()))
                .map(Entry::to_json),
            None => Some(Value::Array(
                s.config
                    .iter()
                    .filter(|((k, _), _)| k == kind)
                    .map(|(_, e)| e.to_json())
                    .collect(),
            )),
        };
        (s.config_index, out)
    })
    .await;
    match (out, name) {
        (Some(v), _) => answer(index, &opts, &v),
        (None, Some(n)) => Err(Reply::text(
            http::StatusCode::NOT_FOUND,
            format!("Config entry not found for {kind:?} / {n:?}"),
        )
        .meta(index, opts.consistency)),
        (None, None) => answer(index, &opts, &json!([])),
    }
}

fn delete(shared: &Shared, req: &Req, kind: &str, name: Option<&str>) -> HResult {
    query::check_dc(shared, req)?;
    let Some(name) = name else {
        return Err(Reply::text(
            http::StatusCode::NOT_FOUND,
            "Must provide both a kind and name to delete",
        ));
    };
    if !KINDS.contains(&kind) {
        return Err(bad_request(format!("invalid config entry kind: {kind}")));
    }
    let cas = match req.nonempty("cas") {
        None => None,
        Some(v) => Some(v.parse::<u64>().map_err(|e| server_error(e.to_string()))?),
    };
    let key = (kind.to_owned(), name.to_owned());
    let deleted = shared.write(|s| {
        let current = s.config.get(&key).map(|e| e.modify_index);
        if cas.is_some_and(|c| current != Some(c)) {
            return false;
        }
        if s.config.remove(&key).is_some() {
            s.config_index = s.bump();
        }
        true
    });
    // A plain delete answers `{}`; a CAS delete whether it happened.
    Ok(match cas {
        Some(_) => Reply::json(&json!(deleted)),
        None => Reply::json(&json!({})),
    })
}

/// `PUT /v1/config` (`?cas=`): stores the entry; answers `true` (or `false` on a
/// CAS mismatch).
pub(crate) fn apply(shared: &Shared, req: &Req) -> HResult {
    query::check_dc(shared, req)?;
    let failed = |e: &str| bad_request(format!("Request decoding failed: {e}"));
    let body = body_json(&req.body).map_err(|e| failed(&e))?;
    let Value::Object(mut body) = body else {
        return Err(failed(
            "Payload does not contain a kind/Kind key at the top level",
        ));
    };
    let kind = take_string(&mut body, "Kind");
    let Some(kind) = kind else {
        return Err(failed(
            "Payload does not contain a kind/Kind key at the top level",
        ));
    };
    if !KINDS.contains(&kind.as_str()) {
        return Err(failed(&format!("invalid config entry kind: {kind}")));
    }
    if kind == "service-intentions" {
        return Err(server_error(
            "Connect must be enabled in order to use this endpoint",
        ));
    }
    let name = take_string(&mut body, "Name").unwrap_or_default();
    if name.is_empty() {
        return Err(server_error(format!(
            "Name is required for {kind} config entries"
        )));
    }
    let cas = match req.nonempty("cas") {
        None => None,
        Some(v) => Some(v.parse::<u64>().map_err(|e| server_error(e.to_string()))?),
    };
    body.remove("CreateIndex");
    body.remove("ModifyIndex");
    let mut ordered = Map::new();
    ordered.insert("Kind".into(), json!(kind));
    ordered.insert("Name".into(), json!(name));
    ordered.extend(body);
    let key = (kind, name);
    let ok = shared.write(|s| {
        let current = s.config.get(&key).map(|e| (e.create_index, e.modify_index));
        let allowed = match cas {
            None => true,
            Some(0) => current.is_none(),
            Some(c) => current.is_some_and(|(_, m)| m == c),
        };
        if !allowed {
            return false;
        }
        let index = s.bump();
        s.config_index = index;
        let create_index = current.map_or(index, |(c, _)| c);
        let entry = Entry {
            body: ordered,
            create_index,
            modify_index: index,
        };
        s.config.insert(key, entry);
        true
    });
    Ok(Reply::json(&json!(ok)))
}

/// Removes `field` (any case) from `body` and returns it when it is a string.
fn take_string(body: &mut Map<String, Value>, field: &str) -> Option<String> {
    let key = body
        .keys()
        .find(|k| k.eq_ignore_ascii_case(field))
        .cloned()?;
    match body.remove(&key) {
        Some(Value::String(s)) => Some(s),
        _ => None,
    }
}
