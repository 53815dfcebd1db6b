//! The request log: every request as the registry received it (method, target,
//! headers, body), so tests can check what a client put on the wire.

use std::collections::VecDeque;
use std::fmt;

use bytes::Bytes;
use http::{HeaderMap, Method, Uri};

/// How many requests the log keeps (the oldest are dropped first).
pub(crate) const RECORDED_REQUESTS: usize = 4096;
/// Bodies are kept up to this size, so a busy registry's log stays small.
pub(crate) const RECORDED_BODY: usize = 64 * 1024;

/// Header names whose values [`RecordedRequest`]'s `Debug` hides.
const SECRET_HEADERS: &[&str] = &["x-consul-token", "authorization"];

/// One request as the registry received it, from
/// [`ConsulDev::requests`](crate::ConsulDev::requests).
///
/// Faulty answers are recorded too: the log is what clients sent, not what was
/// served. `Debug` hides the ACL token (headers and `?token=`).
#[derive(Clone)]
pub struct RecordedRequest {
    method: Method,
    uri: Uri,
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

/// The last [`RECORDED_REQUESTS`] requests, oldest first.
#[derive(Debug, Default)]
pub(crate) struct RequestLog {
    requests: VecDeque<RecordedRequest>,
}

// === impl RecordedRequest ===

impl RecordedRequest {
    /// `path` is the percent-decoded path the router saw; bodies over
    /// [`RECORDED_BODY`] are cut (copied, so the request's buffer is not kept).
    pub(crate) fn new(
        method: Method,
        uri: Uri,
        path: String,
        headers: HeaderMap,
        body: &Bytes,
    ) -> Self {
        let body = if body.len() > RECORDED_BODY {
            Bytes::copy_from_slice(&body[..RECORDED_BODY])
        } else {
            body.clone()
        };
        RecordedRequest {
            method,
            uri,
            path,
            headers,
            body,
        }
    }

    /// The request method.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The request target as sent: path and query string, still percent-encoded.
    pub fn uri(&self) -> &Uri {
        &self.uri
    }

    /// The percent-decoded path (no query string), as Consul routes it:
    /// `/v1/agent/check/update/service:web-1` however the `:` was sent.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The request headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// One header's value; `None` when absent or not visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The request body (the first 64 KiB of longer ones).
    pub fn body(&self) -> &[u8] {
        &self.body
    }
}

impl fmt::Debug for RecordedRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(name, value)| {
                let shown = if SECRET_HEADERS.contains(&name.as_str()) {
                    "<redacted>"
                } else {
                    value.to_str().unwrap_or("<binary>")
                };
                (name.as_str(), shown)
            })
            .collect();
        f.debug_struct("RecordedRequest")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("query", &redacted_query(self.uri.query()))
            .field("headers", &headers)
            .field("body", &String::from_utf8_lossy(&self.body))
            .finish()
    }
}

/// The query string with the value of `token` replaced.
fn redacted_query(query: Option<&str>) -> Option<String> {
    let pairs = query?.split('&').map(|pair| match pair.split_once('=') {
        Some(("token", _)) => "token=<redacted>",
        _ => pair,
    });
    Some(pairs.collect::<Vec<_>>().join("&"))
}

// === impl RequestLog ===

impl RequestLog {
    /// Appends a request, dropping the oldest past [`RECORDED_REQUESTS`].
    pub(crate) fn push(&mut self, request: RecordedRequest) {
        if self.requests.len() == RECORDED_REQUESTS {
            self.requests.pop_front();
        }
        self.requests.push_back(request);
    }

    /// Every recorded request, oldest first.
    pub(crate) fn to_vec(&self) -> Vec<RecordedRequest> {
        self.requests.iter().cloned().collect()
    }

    /// The targets (path and query, as sent), oldest first.
    pub(crate) fn uris(&self) -> Vec<String> {
        self.requests.iter().map(|r| r.uri.to_string()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(uri: &str, body: &[u8]) -> RecordedRequest {
        let mut headers = HeaderMap::new();
        headers.insert("x-consul-token", "s3cr3t".parse().unwrap());
        headers.insert("accept", "*/*".parse().unwrap());
        let uri: Uri = uri.parse().unwrap();
        let path = uri.path().to_owned();
        RecordedRequest::new(
            Method::GET,
            uri,
            path,
            headers,
            &Bytes::copy_from_slice(body),
        )
    }

    #[test]
    fn debug_hides_the_token() {
        let shown = format!("{:?}", request("/v1/kv/a?token=s3cr3t&recurse", b"{}"));
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(
            shown.contains("recurse") && shown.contains("*/*"),
            "{shown}"
        );
    }

    #[test]
    fn keeps_the_last_requests_and_cuts_long_bodies() {
        let mut log = RequestLog::default();
        for i in 0..RECORDED_REQUESTS + 2 {
            log.push(request(&format!("/v1/kv/{i}"), b""));
        }
        let uris = log.uris();
        assert_eq!(uris.len(), RECORDED_REQUESTS);
        assert_eq!(uris[0], "/v1/kv/2");
        let long = request("/v1/kv/big", &vec![b'x'; RECORDED_BODY + 1]);
        assert_eq!(long.body().len(), RECORDED_BODY);
        assert_eq!(long.header("accept"), Some("*/*"));
    }
}
