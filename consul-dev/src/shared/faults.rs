//! Fault injection: rules that make the registry misbehave as a real Consul
//! sometimes does, for all paths or a path prefix, forever or for the next N requests.

use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;

use crate::http::parse_delay;

/// One way to misbehave.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Answer `500` with the body `No cluster leader`, as Consul without quorum does.
    NoLeader,
    /// Answer the raw `429 Too Many Requests` Consul sends when a client IP holds
    /// too many connections, then close the connection. Without a path prefix it
    /// is sent on new connections before any request is read, as Consul does.
    TooManyConnections,
    /// Hold each response back for the given time before answering.
    Delay(Duration),
    /// Send the JSON body cut in half (still `Content-Type: application/json`).
    MalformedJson,
    /// Send the body with `Content-Type: text/html`.
    WrongContentType,
    /// Replace a successful body with an HTML page (headers unchanged), as a proxy
    /// in front of Consul might answer: not JSON at all.
    NotJson,
    /// Send the headers and half the body, then drop the connection.
    DropConnection,
    /// Send `X-Consul-Index: 0`, which real Consul never does but clients must
    /// survive (they should treat it as 1).
    ZeroIndex,
    /// Answer `status` with `body` as plain text instead of handling the request
    /// (the registry does not change), as Consul answers a request it refuses. For
    /// answers the registry's state cannot produce, e.g. the `500 CheckID "…" does
    /// not have associated TTL` older agents send for a check they lost. A status
    /// that is no final status (200–999) is sent as 500.
    Answer {
        /// The HTTP status code.
        status: u16,
        /// The body, sent as `text/plain; charset=utf-8` unless empty.
        body: String,
    },
}

/// A fault and where it applies. Built with [`FaultRule::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct FaultRule {
    fault: Fault,
    path_prefix: Option<String>,
    times: Option<u64>,
}

/// Identifies an injected rule, to switch it off with [`Faults::remove`](crate::Faults::remove).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FaultId(u64);

/// The active rules.
#[derive(Debug, Default)]
pub(crate) struct FaultSet {
    rules: Mutex<Vec<(u64, FaultRule)>>,
    next_id: Mutex<u64>,
}

// === impl FaultRule ===

impl FaultRule {
    /// A rule applying `fault` to every request until removed.
    pub fn new(fault: Fault) -> Self {
        FaultRule {
            fault,
            path_prefix: None,
            times: None,
        }
    }

    /// Applies the fault only to request paths starting with `prefix`
    /// (e.g. `/v1/health/`). Default: every path.
    pub fn path_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.path_prefix = Some(prefix.into());
        self
    }

    /// Applies the fault to the next `n` matching requests only, then drops the rule.
    /// Default: until removed.
    pub fn times(mut self, n: u64) -> Self {
        self.times = Some(n);
        self
    }

    fn matches(&self, path: Option<&str>) -> bool {
        match (&self.path_prefix, path) {
            (None, _) => true,
            (Some(p), Some(path)) => path.starts_with(p.as_str()),
            (Some(_), None) => false,
        }
    }
}

// === impl FaultId ===

impl FaultId {
    pub(crate) fn get(self) -> u64 {
        self.0
    }
}

// === impl FaultSet ===

impl FaultSet {
    pub(crate) fn add(&self, rule: FaultRule) -> FaultId {
        let mut next = self.next_id.lock().unwrap_or_else(|p| p.into_inner());
        *next += 1;
        let id = *next;
        self.lock().push((id, rule));
        FaultId(id)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(u64, FaultRule)>> {
        self.rules.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn remove(&self, id: u64) -> bool {
        let mut rules = self.lock();
        let before = rules.len();
        rules.retain(|(i, _)| *i != id);
        rules.len() != before
    }

    pub(crate) fn clear(&self) {
        self.lock().clear();
    }

    /// Takes the faults applying to one request on `path` (`None`: a new
    /// connection, before any request is read), using up counted rules.
    pub(crate) fn take(&self, path: Option<&str>, filter: impl Fn(&Fault) -> bool) -> Vec<Fault> {
        let mut rules = self.lock();
        let mut out = Vec::new();
        for (_, rule) in rules.iter_mut() {
            if rule.matches(path) && filter(&rule.fault) && rule.times != Some(0) {
                out.push(rule.fault.clone());
                if let Some(n) = rule.times.as_mut() {
                    *n -= 1;
                }
            }
        }
        rules.retain(|(_, r)| r.times != Some(0));
        out
    }
}

/// The bytes Consul writes on a connection over the per-client limit (go-connlimit).
pub(crate) const TOO_MANY_CONNECTIONS: &[u8] = b"HTTP/1.1 429 Too Many Requests\r\n\
Content-Type: text/plain\r\nConnection: close\r\n\r\n\
Your IP is issuing too many concurrent connections, please rate limit your calls\n";

/// The body of the 429 answer.
pub(crate) const TOO_MANY_CONNECTIONS_BODY: &str =
    "Your IP is issuing too many concurrent connections, please rate limit your calls\n";

/// Parses a fault as the admin endpoint takes it: `Fault` names it, `Delay` and
/// `Status`/`Body` carry the arguments of `delay` and `answer`.
pub(crate) fn parse_fault(spec: &Value) -> Option<Fault> {
    let name = spec["Fault"].as_str().unwrap_or("");
    Some(match name {
        "no-leader" => Fault::NoLeader,
        "too-many-connections" => Fault::TooManyConnections,
        "delay" => Fault::Delay(parse_delay(&spec["Delay"])?),
        "answer" => Fault::Answer {
            status: spec["Status"]
                .as_u64()
                .and_then(|s| u16::try_from(s).ok())
                .filter(|s| (200..=999).contains(s))?,
            body: spec["Body"].as_str().unwrap_or("").to_owned(),
        },
        "malformed-json" => Fault::MalformedJson,
        "wrong-content-type" => Fault::WrongContentType,
        "not-json" => Fault::NotJson,
        "drop-connection" => Fault::DropConnection,
        "zero-index" => Fault::ZeroIndex,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn admin_answer_needs_a_real_status() {
        let spec = json!({"Fault": "answer", "Status": 404, "Body": "Unknown check ID"});
        let want = Fault::Answer {
            status: 404,
            body: "Unknown check ID".to_owned(),
        };
        assert_eq!(parse_fault(&spec), Some(want));
        for status in [json!(101), json!(1000), json!("404"), json!(null)] {
            assert_eq!(
                parse_fault(&json!({"Fault": "answer", "Status": status})),
                None
            );
        }
        let delay = json!({"Fault": "delay", "Delay": "200ms"});
        assert_eq!(
            parse_fault(&delay),
            Some(Fault::Delay(Duration::from_millis(200)))
        );
    }

    #[test]
    fn counted_answers_run_out() {
        let set = FaultSet::default();
        let answer = Fault::Answer {
            status: 500,
            body: String::new(),
        };
        set.add(
            FaultRule::new(answer.clone())
                .path_prefix("/v1/agent/")
                .times(1),
        );
        assert!(set.take(Some("/v1/health/service/a"), |_| true).is_empty());
        assert_eq!(
            set.take(Some("/v1/agent/check/update/x"), |_| true),
            [answer]
        );
        assert!(
            set.take(Some("/v1/agent/check/update/x"), |_| true)
                .is_empty()
        );
    }
}
