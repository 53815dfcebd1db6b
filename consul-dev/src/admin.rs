//! Admin endpoints under `/_consul_dev/` (a path Consul does not use), so a
//! `consul-dev` process can be driven from outside, and the state helpers they
//! share with [`ConsulDev`](crate::ConsulDev), and its fault-injection handle.

use std::fmt;
use std::sync::Arc;

use http::{Method, StatusCode};
use serde_json::json;

use crate::http::decode::body_json;
use crate::http::{HResult, Reply, Req, bad_request, decode_failed};
use crate::shared::Shared;
use crate::shared::faults::{FaultId, FaultRule, parse_fault};
use crate::store::model::CheckStatus;

/// The fault-injection handle of a running registry, from
/// [`ConsulDev::faults`](crate::ConsulDev::faults).
#[derive(Clone)]
pub struct Faults {
    pub(crate) shared: Arc<Shared>,
}

/// Where the admin endpoints live.
pub(crate) const PREFIX: &str = "/_consul_dev/";

/// Routes an admin request.
pub(crate) fn handle(shared: &Shared, req: &Req) -> HResult {
    let rest = &req.path[PREFIX.len()..];
    match (&req.method, rest) {
        (&Method::PUT, "faults") => add_fault(shared, req),
        (&Method::DELETE, "faults") => {
            shared.faults.clear();
            Ok(Reply::json(&json!(true)))
        }
        (&Method::DELETE, id) if id.starts_with("faults/") => {
            let id = id["faults/".len()..]
                .parse()
                .map_err(|_| bad_request("Invalid fault id"))?;
            Ok(Reply::json(&json!(shared.faults.remove(id))))
        }
        (&Method::PUT, "index") => {
            let to = req.param("reset").unwrap_or("0");
            let to: u64 = to.parse().map_err(|_| bad_request("Invalid index"))?;
            shared.write(|s| s.reset_index(to));
            Ok(Reply::json(&json!(true)))
        }
        (&Method::PUT, "wakeup") => {
            spurious_wakeup(shared);
            Ok(Reply::json(&json!(true)))
        }
        (&Method::GET, "requests") => Ok(Reply::json(&json!(shared.counts()))),
        (&Method::PUT, "forget") => {
            forget_all(shared);
            Ok(Reply::json(&json!(true)))
        }
        (&Method::PUT, id) if id.starts_with("check/") => {
            let status = req.param("status").unwrap_or("");
            let status = CheckStatus::parse(status)
                .ok_or_else(|| bad_request(format!("Invalid check status: '{status}'")))?;
            let output = req.param("output").unwrap_or("");
            if set_check_status(shared, &id["check/".len()..], status, output) {
                Ok(Reply::json(&json!(true)))
            } else {
                Err(Reply::text(StatusCode::NOT_FOUND, "Unknown check ID"))
            }
        }
        _ => Err(Reply::text(
            StatusCode::NOT_FOUND,
            "Invalid URL path: not a recognized consul-dev admin endpoint",
        )),
    }
}

fn add_fault(shared: &Shared, req: &Req) -> HResult {
    let body = body_json(&req.body).map_err(decode_failed)?;
    let fault = parse_fault(&body).ok_or_else(|| {
        let name = body["Fault"].as_str().unwrap_or("");
        bad_request(format!(
            "Invalid fault {name:?}: want no-leader, too-many-connections, delay (with Delay), \
             malformed-json, wrong-content-type, not-json, drop-connection, zero-index or \
             answer (with Status 200-999 and Body)"
        ))
    })?;
    let mut rule = FaultRule::new(fault);
    if let Some(p) = body["PathPrefix"].as_str() {
        rule = rule.path_prefix(p);
    }
    if let Some(n) = body["Times"].as_u64() {
        rule = rule.times(n);
    }
    let id = shared.faults.add(rule);
    Ok(Reply::json(&json!({ "ID": id.get() })))
}

/// Moves every index forward without changing data (see `Faults::spurious_wakeup`).
pub(crate) fn spurious_wakeup(shared: &Shared) {
    shared.write(|s| {
        let idx = s.bump();
        for v in s.service_index.values_mut() {
            *v = idx;
        }
        s.extinction = idx;
        s.kv_index = idx;
    });
}

/// Removes the agent's services and checks, as an agent restarted without state.
pub(crate) fn forget_all(shared: &Shared) {
    let node = shared.cfg.node_name.clone();
    shared.write(|s| {
        let services: Vec<String> = s
            .services
            .values()
            .filter(|v| v.node == node && v.id != crate::store::model::CONSUL_SERVICE)
            .map(|v| v.id.clone())
            .collect();
        for id in &services {
            s.remove_service(&node, id);
        }
        let checks: Vec<String> = s
            .checks
            .values()
            .filter(|c| c.node == node && c.id != "serfHealth")
            .map(|c| c.id.clone())
            .collect();
        for id in &checks {
            s.remove_check(&node, id);
        }
    });
    shared.abort_runners();
}

/// Sets a check of the agent's node; returns whether it exists.
pub(crate) fn set_check_status(
    shared: &Shared,
    id: &str,
    status: CheckStatus,
    output: &str,
) -> bool {
    let node = shared.cfg.node_name.clone();
    shared.write(|s| s.set_check_status(&node, id, status, output))
}

// === impl Faults ===

impl Faults {
    /// Switches a fault rule on; returns its id.
    pub fn add(&self, rule: FaultRule) -> FaultId {
        self.shared.faults.add(rule)
    }

    /// Switches a rule off; returns whether it was still active.
    pub fn remove(&self, id: FaultId) -> bool {
        self.shared.faults.remove(id.get())
    }

    /// Switches every rule off.
    pub fn clear(&self) {
        self.shared.faults.clear();
    }

    /// Sets the raft index to `to` (e.g. 0 or a value below the current one), as after
    /// a restart from an older snapshot. Pending blocking queries return at once
    /// with the lower index.
    pub fn reset_index(&self, to: u64) {
        self.shared.write(|s| s.reset_index(to));
    }

    /// Wakes every blocking query with unchanged data: all indexes move forward
    /// without any change in content, as after an idempotent write.
    pub fn spurious_wakeup(&self) {
        spurious_wakeup(&self.shared);
    }
}

impl fmt::Debug for Faults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Faults").finish_non_exhaustive()
    }
}
