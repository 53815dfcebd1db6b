//! Requests and replies as the handlers see them, and Consul's response conventions
//! (plain-text errors, JSON bodies, the query meta headers).
//!
//! The leaf of the HTTP front (it depends on no other module but its own):
//! `decode` (`lib.DecodeJSON`), `schema` (the field lists of Consul's structs) and
//! `b64`. The accept loop and routing are in `server`.

pub(crate) mod b64;
pub(crate) mod decode;
pub(crate) mod schema;

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use serde_json::Value;

/// A request, body read in full, query decoded.
#[derive(Debug)]
pub(crate) struct Req {
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) query: Vec<(String, String)>,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

/// A reply before faults and common headers are applied.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: Vec<(&'static str, String)>,
    pub(crate) body: Bytes,
    pub(crate) content_type: Option<&'static str>,
    /// A streaming answer (`/v1/agent/monitor`): after `body`, the response stays
    /// open until this token is cancelled or the client goes away.
    pub(crate) open_until: Option<tokio_util::sync::CancellationToken>,
}

/// Handlers return errors as replies too.
pub(crate) type HResult = Result<Reply, Reply>;

/// Content type Go's `http.DetectContentType` gives plain-text error bodies.
const TEXT: &str = "text/plain; charset=utf-8";

// === impl Req ===

impl Req {
    /// The first value of a query parameter (`Some("")` when given bare).
    pub(crate) fn param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// A non-empty query parameter.
    pub(crate) fn nonempty(&self, key: &str) -> Option<&str> {
        self.param(key).filter(|v| !v.is_empty())
    }

    pub(crate) fn has(&self, key: &str) -> bool {
        self.param(key).is_some()
    }

    /// Every value of a repeated query parameter.
    pub(crate) fn params<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> {
        self.query
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The ACL token by Consul's precedence: `?token`, `X-Consul-Token`, then
    /// `Authorization: Bearer`.
    pub(crate) fn token(&self) -> Option<String> {
        if let Some(t) = self.nonempty("token") {
            return Some(t.to_owned());
        }
        let header = |name: &str| self.headers.get(name).and_then(|v| v.to_str().ok());
        if let Some(t) = header("x-consul-token").filter(|t| !t.is_empty()) {
            return Some(t.to_owned());
        }
        let auth = header("authorization")?;
        let mut parts = auth.split_whitespace();
        let scheme = parts.next()?;
        let value = parts.next()?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| value.to_owned())
    }
}

// === impl Reply ===

impl Reply {
    pub(crate) fn new(status: StatusCode, body: impl Into<Bytes>) -> Self {
        Reply {
            status,
            headers: Vec::new(),
            body: body.into(),
            content_type: None,
            open_until: None,
        }
    }

    /// `200` with a JSON body.
    pub(crate) fn json(value: &Value) -> Self {
        let mut body = serde_json::to_vec(value).unwrap_or_default();
        body.push(b'\n');
        let mut r = Reply::new(StatusCode::OK, body);
        r.content_type = Some("application/json");
        r
    }

    /// `200` with no body (successful writes).
    pub(crate) fn empty() -> Self {
        Reply::new(StatusCode::OK, Bytes::new())
    }

    /// A plain-text answer with `status`.
    pub(crate) fn text(status: StatusCode, msg: impl Into<String>) -> Self {
        let mut r = Reply::new(status, msg.into());
        if !r.body.is_empty() {
            r.content_type = Some(TEXT);
        }
        r
    }

    pub(crate) fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// Adds the headers of a query answer (`setMeta`); index 0 is sent as 1.
    pub(crate) fn meta(self, index: u64, consistency: &str) -> Self {
        self.header("X-Consul-Index", index.max(1).to_string())
            .header("X-Consul-KnownLeader", "true")
            .header("X-Consul-LastContact", "0")
            .header("X-Consul-Query-Backend", "blocking-query")
            .header("X-Consul-Effective-Consistency", consistency)
    }
}

impl Reply {
    /// Re-indents a JSON body as `?pretty` asks (Go's `json.MarshalIndent`, 4 spaces).
    pub(crate) fn pretty(mut self) -> Self {
        if self.content_type != Some("application/json") {
            return self;
        }
        let Ok(value) = serde_json::from_slice::<Value>(&self.body) else {
            return self;
        };
        let mut out = Vec::new();
        let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
        let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
        if serde::Serialize::serialize(&value, &mut ser).is_ok() {
            out.push(b'\n');
            self.body = out.into();
        }
        self
    }
}

/// Consul's default `kv_max_value_size` and `txn_max_req_len` (512 KiB).
pub(crate) const MAX_VALUE_SIZE: usize = 512 * 1024;

/// The 413 Consul answers when a body's `Content-Length` passes `max`; `setting` is
/// the configuration key the text links to.
pub(crate) fn too_large(req: &Req, max: usize, setting: &str) -> Result<(), Reply> {
    let length = req
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(req.body.len());
    if length <= max {
        return Ok(());
    }
    let msg = format!(
        "Request body({length} bytes) too large, max size: {max} bytes. See \
         https://developer.hashicorp.com/docs/agent/config/config-files#{setting}."
    );
    Err(Reply::text(StatusCode::PAYLOAD_TOO_LARGE, msg))
}

pub(crate) fn bad_request(msg: impl Into<String>) -> Reply {
    Reply::text(StatusCode::BAD_REQUEST, msg)
}

pub(crate) fn not_found(msg: impl Into<String>) -> Reply {
    Reply::text(StatusCode::NOT_FOUND, msg)
}

pub(crate) fn server_error(msg: impl Into<String>) -> Reply {
    Reply::text(StatusCode::INTERNAL_SERVER_ERROR, msg)
}

pub(crate) fn decode_failed(msg: impl std::fmt::Display) -> Reply {
    bad_request(format!("Request decode failed: {msg}"))
}

/// Parses a query string into pairs, percent-decoding both sides.
pub(crate) fn parse_query(q: Option<&str>) -> Vec<(String, String)> {
    let Some(q) = q else { return Vec::new() };
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// Percent-decodes a query component (`+` is a space).
pub(crate) fn percent_decode(s: &str) -> String {
    decode_component(s, true)
}

/// Percent-decodes a path (`+` stays).
pub(crate) fn decode_path(s: &str) -> String {
    decode_component(s, false)
}

fn decode_component(s: &str, plus_is_space: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' if plus_is_space => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A delay to hold a response, as the admin endpoint takes it.
pub(crate) fn parse_delay(v: &Value) -> Option<Duration> {
    match v {
        Value::String(s) => crate::http::decode::parse_go_duration(s),
        Value::Number(n) => n.as_u64().map(Duration::from_millis),
        _ => None,
    }
}
