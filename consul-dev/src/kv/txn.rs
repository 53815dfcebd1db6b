//! `PUT /v1/txn` for KV operations: all ops apply atomically or none does
//! (409 with per-op errors), with Consul's verbs and error texts.

use http::StatusCode;
use serde_json::{Value, json};

use crate::http::b64;
use crate::http::decode::{body_json, fields};
use crate::http::{HResult, Reply, Req, bad_request};
use crate::kv::{Lock, entry_json, write_entry};
use crate::query;
use crate::shared::Shared;
use crate::store::Store;

/// Consul's `maxTxnOps`.
const MAX_OPS: usize = 128;

#[rustfmt::skip]
const KV_FIELDS: &[&str] = &[
    "Verb", "Key", "Value", "Flags", "Index", "Session", "Namespace", "Partition",
];

/// One decoded KV operation.
#[derive(Debug)]
struct KvOp {
    verb: String,
    key: String,
    value: Vec<u8>,
    flags: u64,
    index: u64,
    session: String,
}

pub(crate) fn handle(shared: &Shared, req: &Req) -> HResult {
    query::check_dc(shared, req)?;
    crate::http::too_large(req, crate::http::MAX_VALUE_SIZE, "txn_max_req_len")?;
    let body =
        body_json(&req.body).map_err(|e| bad_request(format!("Failed to parse body: {e}")))?;
    let Value::Array(raw_ops) = body else {
        return Err(bad_request(
            "Failed to parse body: expected a JSON array of operations",
        ));
    };
    if raw_ops.len() > MAX_OPS {
        let msg = format!(
            "Transaction contains too many operations ({} > {MAX_OPS})",
            raw_ops.len()
        );
        return Err(Reply::text(StatusCode::PAYLOAD_TOO_LARGE, msg));
    }
    let ops = raw_ops
        .iter()
        .map(decode_op)
        .collect::<Result<Vec<_>, String>>();
    let ops = ops.map_err(|e| bad_request(format!("Failed to parse body: {e}")))?;
    let outcome = shared.write(|s| run(s, &ops));
    match outcome {
        Ok(results) => Ok(Reply::json(&json!({ "Results": results, "Errors": null }))),
        Err(errors) => {
            let mut r = Reply::json(&json!({ "Results": null, "Errors": errors }));
            r.status = StatusCode::CONFLICT;
            Err(r)
        }
    }
}

fn decode_op(v: &Value) -> Result<KvOp, String> {
    let op = fields(v, "TxnOp", &["KV", "Node", "Service", "Check", "Session"])?;
    let Some(kv) = op.raw("KV") else {
        return Err("only KV operations are supported".to_owned());
    };
    let f = fields(kv, "TxnKVOp", KV_FIELDS)?;
    let value = f.string("Value")?;
    let value = b64::decode(&value).ok_or_else(|| "illegal base64 data in Value".to_owned())?;
    Ok(KvOp {
        verb: f.string("Verb")?,
        key: f.string("Key")?,
        value,
        flags: f.int("Flags")?.max(0) as u64,
        index: f.int("Index")?.max(0) as u64,
        session: f.string("Session")?,
    })
}

/// Runs every op; on the first failures restores the KV state and reports them.
fn run(s: &mut Store, ops: &[KvOp]) -> Result<Vec<Value>, Vec<Value>> {
    let (kv, kv_index, index) = (s.kv.clone(), s.kv_index, s.index);
    let mut results = Vec::new();
    let mut errors = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        match apply(s, op) {
            Ok(out) => results.extend(out),
            Err(what) => errors.push(json!({ "OpIndex": i, "What": what })),
        }
    }
    if errors.is_empty() {
        return Ok(results);
    }
    (s.kv, s.kv_index, s.index) = (kv, kv_index, index);
    Err(errors)
}

/// The entry after a write, value blanked as Consul returns it.
fn written(s: &Store, key: &str) -> Vec<Value> {
    let mut v =
        s.kv.get(key)
            .map(|e| entry_json(key, e))
            .unwrap_or(Value::Null);
    v["Value"] = Value::Null;
    vec![json!({ "KV": v })]
}

fn apply(s: &mut Store, op: &KvOp) -> Result<Vec<Value>, String> {
    let key = op.key.as_str();
    match op.verb.as_str() {
        "set" => write(s, op, None, Lock::None, ""),
        "cas" => write(s, op, Some(op.index), Lock::None, "index is stale"),
        "lock" => write(
            s,
            op,
            None,
            Lock::Acquire(&op.session),
            "lock is already held",
        ),
        "unlock" => write(
            s,
            op,
            None,
            Lock::Release(&op.session),
            "lock isn't held, or is held by another session",
        ),
        "get" => match s.kv.get(key) {
            Some(e) => Ok(vec![json!({ "KV": entry_json(key, e) })]),
            None => Err(format!("key {key:?} doesn't exist")),
        },
        "get-tree" => Ok(s
            .kv
            .iter()
            .filter(|(k, _)| k.starts_with(key))
            .map(|(k, e)| json!({ "KV": entry_json(k, e) }))
            .collect()),
        "check-index" | "check-session" | "check-not-exists" => check(s, op),
        "delete" | "delete-tree" | "delete-cas" => delete(s, op),
        other => Err(format!("unknown KV verb {other:?}")),
    }
}

/// A write verb; `refused` completes Consul's `failed to <verb> key` text.
fn write(
    s: &mut Store,
    op: &KvOp,
    cas: Option<u64>,
    lock: Lock<'_>,
    refused: &str,
) -> Result<Vec<Value>, String> {
    let key = op.key.as_str();
    match write_entry(s, key, op.value.clone(), op.flags, cas, &lock) {
        Ok(true) => Ok(written(s, key)),
        Ok(false) => {
            let verb = if op.verb == "cas" {
                "set"
            } else {
                op.verb.as_str()
            };
            Err(format!("failed to {verb} key {key:?}, {refused}"))
        }
        Err(_) => Err(format!("invalid session {:?}", op.session)),
    }
}

fn check(s: &Store, op: &KvOp) -> Result<Vec<Value>, String> {
    let key = op.key.as_str();
    let entry = s.kv.get(key);
    match (op.verb.as_str(), entry) {
        ("check-not-exists", None) => Ok(Vec::new()),
        ("check-not-exists", Some(_)) => Err(format!("key {key:?} exists")),
        (_, None) => Err(format!("key {key:?} doesn't exist")),
        ("check-index", Some(e)) if e.modify_index != op.index => Err(format!(
            "current modify index {} != {}",
            e.modify_index, op.index
        )),
        ("check-session", Some(e)) if e.session.as_deref() != Some(op.session.as_str()) => {
            let held = e.session.clone().unwrap_or_default();
            Err(format!("current session {held:?} != {:?}", op.session))
        }
        _ => Ok(written(s, key)),
    }
}

fn delete(s: &mut Store, op: &KvOp) -> Result<Vec<Value>, String> {
    let current = s.kv.get(&op.key).map(|e| e.modify_index);
    if op.verb == "delete-cas" && current.unwrap_or(0) != op.index {
        return Err(format!("failed to delete key {:?}, index is stale", op.key));
    }
    let idx = s.bump();
    if op.verb == "delete-tree" {
        s.kv.retain(|k, _| !k.starts_with(op.key.as_str()));
    } else {
        s.kv.remove(&op.key);
    }
    s.kv_index = idx;
    Ok(Vec::new())
}
