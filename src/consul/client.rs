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
    /// The live discovery watches, shared by equal queries.
    pub(crate) watches: super::shared::Watches,
}

/// An ACL token. Its `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Token(Arc<str>);

impl Token {
    pub(crate) fn new(secret: &str) -> Option<Self> {
        let secret = secret.trim();
        (!secret.is_empty()).then(|| Token(secret.into()))
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
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
}

impl ApiRequest {
    pub(crate) fn new(method: Method, segments: &[&str]) -> Self {
        ApiRequest {
            method,
            segments: segments.iter().map(|s| (*s).to_owned()).collect(),
            query: Vec::new(),
            body: None,
            timeout: None,
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
}

/// A successful (2xx) answer.
#[derive(Debug)]
pub(crate) struct ApiResponse {
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
            builder = builder.header("X-Consul-Token", token.expose());
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
        let body = response.bytes().await.map_err(|e| send_error(&what, e))?;
        if !status.is_success() {
            let reason = String::from_utf8_lossy(&body).trim().to_owned();
            return Err(Error::http_status(
                status.as_u16(),
                format!("{what}: {reason}"),
            ));
        }
        Ok(ApiResponse { headers, body })
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
