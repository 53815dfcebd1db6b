//! Read endpoints of the agent and operator APIs a dev agent answers with fixed,
//! well-formed values: autopilot health, state and configuration, agent metrics
//! and host information; and the answers of what a dev agent with ACLs or Connect
//! disabled refuses.
//!
//! `ops` holds the operator writes and reports (raft peers, leadership transfer,
//! autopilot configuration, keyring, usage).

pub(crate) mod ops;

use std::time::{SystemTime, UNIX_EPOCH};

use http::StatusCode;
use serde_json::{Value, json};

use crate::agent::info::{LEADER_ADDR, VERSION};
use crate::http::{HResult, Reply};
use crate::shared::Shared;

/// `aclDisabled`: what every ACL endpoint answers while ACLs are off.
const ACL_DISABLED: &str = "ACL support disabled";
/// `ErrConnectNotEnabled`: what Connect's CA and intention endpoints answer (a plain
/// RPC error, so 500) while Connect is off.
const CONNECT_DISABLED: &str = "Connect must be enabled in order to use this endpoint";

/// `/v1/acl/*` other than `token/self`: 401 while ACLs are off; the dev agent does
/// not manage ACLs when they are on (one configured token only).
pub(crate) fn acl(shared: &Shared) -> HResult {
    if shared.cfg.acl_token.is_none() {
        return Err(Reply::text(StatusCode::UNAUTHORIZED, ACL_DISABLED));
    }
    Err(Reply::text(
        StatusCode::NOT_IMPLEMENTED,
        "consul-dev: ACL management is not implemented (one configured token only)",
    ))
}

/// `PUT /v1/agent/token/:kind`: 401 while ACLs are off; accepted otherwise.
pub(crate) fn agent_token(shared: &Shared) -> HResult {
    if shared.cfg.acl_token.is_none() {
        return Err(Reply::text(StatusCode::UNAUTHORIZED, ACL_DISABLED));
    }
    Ok(Reply::empty())
}

/// `/v1/connect/*` and `/v1/agent/connect/*`: Connect is disabled.
pub(crate) fn connect_disabled() -> HResult {
    Err(Reply::text(
        StatusCode::INTERNAL_SERVER_ERROR,
        CONNECT_DISABLED,
    ))
}

fn server(shared: &Shared) -> Value {
    let cfg = &shared.cfg;
    let index = shared.store().index;
    json!({
        "ID": cfg.node_id, "Name": cfg.node_name, "Address": LEADER_ADDR,
        "SerfStatus": "alive", "Version": VERSION, "Leader": true,
        "LastContact": "0s", "LastTerm": 2, "LastIndex": index,
        "Healthy": true, "Voter": true, "StableSince": go_time(shared.started),
    })
}

/// `GET /v1/operator/autopilot/health`: one healthy voter, no failure tolerance.
pub(crate) fn autopilot_health(shared: &Shared) -> HResult {
    Ok(Reply::json(&json!({
        "Healthy": true,
        "FailureTolerance": 0,
        "Servers": [server(shared)],
    })))
}

/// `GET /v1/operator/autopilot/state`.
pub(crate) fn autopilot_state(shared: &Shared) -> HResult {
    let cfg = &shared.cfg;
    let mut s = server(shared);
    s["Status"] = json!("leader");
    s["Meta"] = json!({ "consul-network-segment": "" });
    s["NodeType"] = json!("voter");
    Ok(Reply::json(&json!({
        "Healthy": true,
        "FailureTolerance": 0,
        "OptimisticFailureTolerance": 0,
        "Servers": { cfg.node_id.clone(): s },
        "Leader": cfg.node_id,
        "Voters": [cfg.node_id],
    })))
}

/// `GET /v1/agent/metrics`: go-metrics' in-memory summary, with the gauges clients
/// look for and no samples.
pub(crate) fn metrics(shared: &Shared) -> HResult {
    let store = shared.store();
    let services = store.services.len();
    drop(store);
    let gauge = |name: &str, value: f64| json!({ "Name": name, "Value": value, "Labels": {} });
    Ok(Reply::json(&json!({
        "Timestamp": go_time(SystemTime::now()),
        "Gauges": [
            gauge("consul.autopilot.failure_tolerance", 0.0),
            gauge("consul.autopilot.healthy", 1.0),
            gauge("consul.runtime.alloc_bytes", 0.0),
            gauge("consul.runtime.num_goroutines", 0.0),
            gauge("consul.state.services", services as f64),
        ],
        "Points": [],
        "Counters": [],
        "Samples": [],
    })))
}

/// `GET /v1/agent/host`: the host's name, OS and architecture (gopsutil's keys).
pub(crate) fn host() -> HResult {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    let collected = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    Ok(Reply::json(&json!({
        "Memory": {},
        "CPU": [],
        "Host": {
            "hostname": name, "os": std::env::consts::OS,
            "kernelArch": std::env::consts::ARCH, "platform": "", "uptime": 0,
        },
        "Disk": {},
        "CollectionTime": collected,
        "Errors": null,
    })))
}

/// Go's `time.Time.String()` of a UTC instant: `2023-11-03 10:20:30 +0000 UTC`.
pub(crate) fn go_time(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} +0000 UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Howard Hinnant's days-to-civil conversion.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_times_like_go() {
        let t = UNIX_EPOCH + std::time::Duration::from_secs(1_699_006_830);
        assert_eq!(go_time(t), "2023-11-03 10:20:30 +0000 UTC");
        assert_eq!(go_time(UNIX_EPOCH), "1970-01-01 00:00:00 +0000 UTC");
    }
}
