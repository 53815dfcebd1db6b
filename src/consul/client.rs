//! The Consul HTTP client: configuration, the shared connection pool, and the one
//! function every endpoint call goes through.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method};
use reqwest::Url;

use crate::error::{Error, Result};

/// Default address of the local agent, as the official clients use it.
pub(crate) const DEFAULT_ADDR: &str = "http://127.0.0.1:8500";

/// A client of one Consul agent's HTTP API.
///
/// Cheap to clone: clones share one connection pool. Build one per agent and reuse it
/// for registration and every discovery.
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<ClientInner>,
}

pub(crate) struct ClientInner {
    pub(crate) http: reqwest::Client,
    pub(crate) base: Url,
    pub(crate) token: Option<Token>,
    /// Timeout of requests that do not block (everything but watches).
    pub(crate) request_timeout: Duration,
    /// The live discovery watches, shared by equal queries followed alike.
    pub(crate) watches: crate::source::Watches<super::watch::WatchKey>,
    /// The cap on blocking reads in flight ([`ClientBuilder::max_concurrent_watches`](super::ClientBuilder::max_concurrent_watches)).
    pub(crate) watch_permits: Option<Arc<tokio::sync::Semaphore>>,
}

/// An ACL token, kept as the ready `X-Consul-Token` header value (marked sensitive,
/// so HTTP layers never log it). Its `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Token(http::HeaderValue);

impl Token {
    /// `None` for an empty token; a configuration error (that does not echo the
    /// token) for one that cannot travel in a header.
    pub(crate) fn new(secret: &str) -> Result<Option<Self>> {
        let secret = secret.trim();
        if secret.is_empty() {
            return Ok(None);
        }
        let mut value = http::HeaderValue::from_str(secret).map_err(|_| {
            Error::config(
                "the Consul ACL token holds characters an HTTP header cannot carry \
                 (control characters or a line break)",
            )
        })?;
        value.set_sensitive(true);
        Ok(Some(Token(value)))
    }

    pub(crate) fn header(&self) -> &http::HeaderValue {
        &self.0
    }

    #[cfg(test)]
    pub(crate) fn expose(&self) -> &str {
        self.0.to_str().unwrap_or_default()
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// One request to the Consul API.
#[derive(Debug)]
pub(crate) struct ApiRequest {
    pub(crate) method: Method,
    /// Path segments after the base, e.g. `["v1", "health", "service", name]`;
    /// each is percent-encoded when the URL is built.
    pub(crate) segments: Vec<String>,
    pub(crate) query: Vec<(&'static str, String)>,
    pub(crate) body: Option<Bytes>,
    /// Overrides the client's request timeout (blocking queries need more).
    pub(crate) timeout: Option<Duration>,
    /// A 404 is an answer (a KV key that is absent), not an error.
    pub(crate) not_found_ok: bool,
}

impl ApiRequest {
    pub(crate) fn new(method: Method, segments: &[&str]) -> Self {
        ApiRequest {
            method,
            segments: segments.iter().map(|s| (*s).to_owned()).collect(),
            query: Vec::new(),
            body: None,
            timeout: None,
            not_found_ok: false,
        }
    }

    pub(crate) fn query(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.query.push((key, value.into()));
        self
    }

    pub(crate) fn json_body(mut self, body: Vec<u8>) -> Self {
        self.body = Some(Bytes::from(body));
        self
    }

    pub(crate) fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Takes a 404 as an answer (with its `X-Consul-Index`), not as an error.
    pub(crate) fn not_found_ok(mut self) -> Self {
        self.not_found_ok = true;
        self
    }
}

/// A successful (2xx) answer, or a 404 the request takes as one.
#[derive(Debug)]
pub(crate) struct ApiResponse {
    pub(crate) status: http::StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl ApiResponse {
    /// `X-Consul-Index`, when present and numeric.
    pub(crate) fn index(&self) -> Option<u64> {
        self.headers
            .get("x-consul-index")?
            .to_str()
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

// === impl Client ===

impl Client {
    /// Sends one request: adds the token header, applies the timeout, and turns
    /// non-2xx answers into [`Error`]s carrying Consul's plain-text reason.
    pub(crate) async fn call(&self, req: ApiRequest) -> Result<ApiResponse> {
        let inner = &*self.inner;
        let url = self.url(&req)?;
        let mut builder = inner
            .http
            .request(req.method.clone(), url)
            .timeout(req.timeout.unwrap_or(inner.request_timeout));
        if let Some(token) = &inner.token {
            builder = builder.header("X-Consul-Token", token.header().clone());
        }
        if let Some(body) = req.body {
            builder = builder
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        let what = describe(&req.method, &req.segments);
        let response = builder.send().await.map_err(|e| send_error(&what, e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = read_limited(response, MAX_BODY, &what).await?;
        let not_found = req.not_found_ok && status == http::StatusCode::NOT_FOUND;
        if !status.is_success() && !not_found {
            let reason = reason(&body);
            return Err(Error::http_status(
                status.as_u16(),
                format!("{what}: {reason}"),
            ));
        }
        Ok(ApiResponse {
            status,
            headers,
            body,
        })
    }

    fn url(&self, req: &ApiRequest) -> Result<Url> {
        let mut url = self.inner.base.clone();
        {
            let mut path = url
                .path_segments_mut()
                .map_err(|()| Error::config("Consul address cannot be a base URL"))?;
            path.pop_if_empty();
            path.extend(req.segments.iter().map(String::as_str));
        }
        if !req.query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in &req.query {
                if v.is_empty() {
                    pairs.append_key_only(k);
                } else {
                    pairs.append_pair(k, v);
                }
            }
        }
        Ok(url)
    }

    /// The agent's base URL.
    pub fn address(&self) -> &str {
        self.inner.base.as_str()
    }
}

/// The largest answer body read: a health answer for thousands of instances is a few
/// MiB; anything past this is a misbehaving agent or proxy, not data.
const MAX_BODY: usize = 64 << 20;

/// How much of an error body goes into an error message (and so into logs).
const MAX_REASON: usize = 512;

async fn read_limited(mut response: reqwest::Response, limit: usize, what: &str) -> Result<Bytes> {
    let mut body = bytes::BytesMut::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| send_error(what, e))? {
        if body.len() + chunk.len() > limit {
            return Err(Error::decode(
                format!("{what}: answer larger than {limit} bytes"),
                "body too large",
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Consul's plain-text error reason, cut to [`MAX_REASON`] bytes.
fn reason(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.len() <= MAX_REASON {
        return text.to_owned();
    }
    let mut end = MAX_REASON;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &text[..end], text.len())
}

fn describe(method: &Method, segments: &[String]) -> String {
    format!("{method} /{}", segments.join("/"))
}

fn send_error(what: &str, e: reqwest::Error) -> Error {
    // reqwest's Display includes the URL; ours never carries secrets, but keep the
    // message to what was attempted plus the cause chain.
    let e = e.without_url();
    if e.is_timeout() {
        Error::timeout(format!("{what}: no answer in time")).with_source(e)
    } else if e.is_decode() || e.is_body() {
        Error::transport(format!("{what}: reading the answer failed"), e)
    } else {
        Error::transport(format!("{what}: request failed"), e)
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("consul::Client")
            .field("address", &self.inner.base.as_str())
            .field("token", &self.inner.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_error_reasons_are_cut_on_a_char_boundary() {
        let body = "é".repeat(1000);
        let cut = reason(body.as_bytes());
        assert!(cut.len() < MAX_REASON + 32, "{}", cut.len());
        assert!(cut.ends_with("… (2000 bytes)"), "{cut}");
        assert_eq!(reason(b"  No cluster leader\n"), "No cluster leader");
    }
}
