//! The KV store: `GET` (with `recurse`, `keys`, `separator`, `raw`, blocking),
//! `PUT` (with `flags`, `cas`) and `DELETE` (with `recurse`, `cas`).
//!
//! `txn` runs `/v1/txn`'s KV operations on the same entries.

pub(crate) mod txn;

use http::StatusCode;
use serde_json::{Value, json};

use crate::http::b64::base64;
use crate::http::{HResult, Reply, Req, bad_request, server_error};
use crate::query::{self, answer};
use crate::shared::Shared;
use crate::store::Store;
use crate::store::records::KvEntry as Entry;

pub(crate) async fn handle(shared: &Shared, req: &Req, key: &str) -> HResult {
    if req.method == http::Method::GET {
        return get(shared, req, key).await;
    }
    // The raft apply every KV write waits for (see `kv_commit_latency`).
    let latency = shared.cfg.kv_commit_latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    match req.method {
        http::Method::PUT => put(shared, req, key),
        _ => delete(shared, req, key),
    }
}

pub(crate) fn entry_json(key: &str, e: &Entry) -> Value {
    let mut v = json!({
        "LockIndex": e.lock_index,
        "Key": key,
        "Flags": e.flags,
        "Value": if e.value.is_empty() { Value::Null } else { json!(base64(&e.value)) },
        "CreateIndex": e.create_index,
        "ModifyIndex": e.modify_index,
    });
    if let (Some(session), Value::Object(m)) = (&e.session, &mut v) {
        m.insert("Session".into(), json!(session));
    }
    v
}

fn list_keys(store: &Store, prefix: &str, sep: Option<&str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for k in store.kv.keys().filter(|k| k.starts_with(prefix)) {
        let rest = &k[prefix.len()..];
        let key = match sep
            .filter(|s| !s.is_empty())
            .and_then(|s| rest.find(s).map(|i| i + s.len()))
        {
            Some(end) => format!("{prefix}{}", &rest[..end]),
            None => k.clone(),
        };
        if out.last() != Some(&key) {
            out.push(key);
        }
    }
    out
}

async fn get(shared: &Shared, req: &Req, key: &str) -> HResult {
    let opts = query::parse(shared, req)?;
    let keys = req.has("keys");
    let recurse = req.has("recurse");
    // `KVSGet`: only a list (`recurse`, `keys`) may name no key.
    if key.is_empty() && !keys && !recurse {
        return Err(bad_request("Missing key name"));
    }
    // Consul still takes its historic misspelling.
    let sep = req.param("separator").or_else(|| req.param("seperator"));
    let (index, found) = query::block(shared, &opts, |s| {
        let found: Vec<Value> = if keys {
            list_keys(s, key, sep)
                .into_iter()
                .map(Value::String)
                .collect()
        } else if recurse {
            s.kv.iter()
                .filter(|(k, _)| k.starts_with(key))
                .map(|(k, e)| entry_json(k, e))
                .collect()
        } else {
            s.kv.get(key)
                .map(|e| entry_json(key, e))
                .into_iter()
                .collect()
        };
        (s.kv_index, found)
    })
    .await;
    // Keys under the root are never "not found", just none.
    if found.is_empty() && !(keys && key.is_empty()) {
        return Err(Reply::new(StatusCode::NOT_FOUND, "").meta(index, opts.consistency));
    }
    if req.has("raw") && !keys && !recurse {
        let value = shared
            .store()
            .kv
            .get(key)
            .map(|e| e.value.clone())
            .unwrap_or_default();
        // As Consul: a fixed type and no sniffing, so stored values can't script.
        let mut r = Reply::new(StatusCode::OK, value)
            .meta(index, opts.consistency)
            .header("X-Content-Type-Options", "nosniff")
            .header("Content-Security-Policy", "sandbox");
        r.content_type = Some("text/plain");
        return Ok(r);
    }
    answer(index, &opts, &Value::Array(found))
}

/// A `flags` or `cas` parameter: present (even empty) means parsed with Go's
/// `strconv.ParseUint`, whose error Consul returns as is (a 500).
fn uint_param(req: &Req, name: &str) -> Result<Option<u64>, Reply> {
    if !req.has(name) {
        return Ok(None);
    }
    let v = req.param(name).unwrap_or("");
    match v.parse::<u64>() {
        Ok(n) => Ok(Some(n)),
        Err(_) => {
            let why = if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
                "value out of range"
            } else {
                "invalid syntax"
            };
            Err(server_error(format!(
                "strconv.ParseUint: parsing {v:?}: {why}"
            )))
        }
    }
}

/// `conflictingFlags`: at most one of `flags` may be given; otherwise 400 with the
/// whole query, encoded as Go's `url.Values.Encode` (keys sorted).
fn conflicting(req: &Req, flags: &[&str]) -> Result<(), Reply> {
    if flags.iter().filter(|f| req.has(f)).count() < 2 {
        return Ok(());
    }
    let mut pairs: Vec<&(String, String)> = req.query.iter().collect();
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    let encoded: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}={}", go_query_escape(k), go_query_escape(v)))
        .collect();
    Err(bad_request(format!(
        "Conflicting flags: {}\n",
        encoded.join("&")
    )))
}

/// Go's `url.QueryEscape`.
fn go_query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// What a `PUT` does besides writing the value.
pub(crate) enum Lock<'a> {
    None,
    Acquire(&'a str),
    Release(&'a str),
}

fn put(shared: &Shared, req: &Req, key: &str) -> HResult {
    query::check_dc(shared, req)?;
    if key.is_empty() {
        return Err(bad_request("Missing key name"));
    }
    conflicting(req, &["cas", "acquire", "release"])?;
    let flags = uint_param(req, "flags")?.unwrap_or(0);
    let cas = uint_param(req, "cas")?;
    crate::http::too_large(req, crate::http::MAX_VALUE_SIZE, "kv_max_value_size")?;
    let lock = match (req.nonempty("acquire"), req.nonempty("release")) {
        (Some(id), _) => Lock::Acquire(id),
        (None, Some(id)) => Lock::Release(id),
        (None, None) => Lock::None,
    };
    let ok = shared.write(|s| write_entry(s, key, req.body.to_vec(), flags, cas, &lock))?;
    Ok(Reply::json(&json!(ok)))
}

/// One KV write with Consul's CAS and lock rules; `Ok(false)` when refused.
pub(crate) fn write_entry(
    s: &mut Store,
    key: &str,
    value: Vec<u8>,
    flags: u64,
    cas: Option<u64>,
    lock: &Lock<'_>,
) -> Result<bool, Reply> {
    let old = s.kv.get(key).cloned();
    if cas.is_some_and(|c| c != old.as_ref().map_or(0, |e| e.modify_index)) {
        return Ok(false);
    }
    let held_by = old.as_ref().and_then(|e| e.session.clone());
    let (session, lock_index) = match lock {
        Lock::None => (held_by, old.as_ref().map_or(0, |e| e.lock_index)),
        Lock::Acquire(id) => {
            if !s.sessions.contains_key(*id) {
                return Err(crate::http::server_error(format!("invalid session {id:?}")));
            }
            match held_by.as_deref() {
                Some(h) if h == *id => (held_by.clone(), old.as_ref().map_or(0, |e| e.lock_index)),
                Some(_) => return Ok(false),
                None => (
                    Some((*id).to_owned()),
                    old.as_ref().map_or(0, |e| e.lock_index) + 1,
                ),
            }
        }
        Lock::Release(id) => match held_by.as_deref() {
            Some(h) if h == *id => (None, old.as_ref().map_or(0, |e| e.lock_index)),
            _ => return Ok(false),
        },
    };
    let idx = s.bump();
    let create_index = old.as_ref().map_or(idx, |e| e.create_index);
    let entry = Entry {
        value,
        flags,
        lock_index,
        session,
        create_index,
        modify_index: idx,
    };
    s.kv.insert(key.to_owned(), entry);
    s.kv_index = idx;
    Ok(true)
}

fn delete(shared: &Shared, req: &Req, key: &str) -> HResult {
    query::check_dc(shared, req)?;
    conflicting(req, &["recurse", "cas"])?;
    let recurse = req.has("recurse");
    if key.is_empty() && !recurse {
        return Err(bad_request("Missing key name"));
    }
    let cas = uint_param(req, "cas")?;
    let ok = shared.write(|s| {
        // A CAS delete of a missing key succeeds, as `kvsDeleteCASTxn` answers.
        let current = s.kv.get(key).map(|e| e.modify_index);
        if cas.is_some_and(|c| current.is_some_and(|m| m != c)) {
            return false;
        }
        let idx = s.bump();
        if recurse {
            s.kv.retain(|k, _| !k.starts_with(key));
        } else {
            s.kv.remove(key);
        }
        s.kv_index = idx;
        true
    });
    Ok(Reply::json(&json!(ok)))
}
