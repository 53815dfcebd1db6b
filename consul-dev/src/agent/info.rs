//! `GET /v1/agent/self` and `/v1/agent/members`: the dev agent as one server
//! member that leads its own datacenter.

use serde_json::{Value, json};

use crate::http::{HResult, Reply, Req, bad_request};
use crate::query::filter;
use crate::shared::Shared;
use crate::store::model::{CONSUL_SERVICE, CheckKind};

/// The server RPC address the dev agent reports as the raft leader (`/v1/status/leader`).
pub(crate) const LEADER_ADDR: &str = "127.0.0.1:8300";
/// The Consul version the dev agent reports.
pub(crate) const VERSION: &str = "1.17.0";

pub(crate) fn agent_self(shared: &Shared) -> HResult {
    let cfg = &shared.cfg;
    Ok(Reply::json(&json!({
        "Config": {
            "Datacenter": cfg.datacenter,
            "PrimaryDatacenter": cfg.datacenter,
            "NodeName": cfg.node_name,
            "NodeID": cfg.node_id,
            "Revision": "consul-dev",
            "Server": true,
            "Version": VERSION,
            "BuildDate": "2023-11-03T00:00:00Z",
        },
        "DebugConfig": {
            "Datacenter": cfg.datacenter, "NodeName": cfg.node_name, "DevMode": true,
            "EnableLocalScriptChecks": cfg.enable_script_checks || cfg.enable_local_script_checks,
            "EnableRemoteScriptChecks": cfg.enable_script_checks,
        },
        "Coord": { "Vec": [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], "Error": 1.5, "Adjustment": 0.0, "Height": 1e-5 },
        "Member": member(shared),
        "Stats": stats(shared),
        "Meta": { "consul-network-segment": "", "consul-version": "1.17.0" },
        "xDS": { "SupportedProxies": {}, "Port": -1, "Ports": { "Plaintext": -1, "TLS": -1 } },
    })))
}

/// `Agent.Stats`: the server's `consul`, `raft`, `serf_lan`, `serf_wan` and `runtime`
/// maps, then `agent` and `build`; every value a string, as Consul's
/// `map[string]map[string]string`. One voter that leads since start.
fn stats(shared: &Shared) -> Value {
    let store = shared.store();
    let node = &shared.cfg.node_name;
    let services = store
        .services
        .values()
        .filter(|s| s.node == *node && s.id != CONSUL_SERVICE)
        .count();
    let local_checks = store.checks.values().filter(|c| c.node == *node);
    let (checks, ttls, monitors) = local_checks.fold((0, 0, 0), |(n, t, m), c| {
        let ttl = matches!(c.kind, CheckKind::Ttl(_)) as usize;
        let script = matches!(c.kind, CheckKind::Script(_)) as usize;
        (n + 1, t + ttl, m + script)
    });
    let index = store.index.to_string();
    drop(store);
    json!({
        "consul": {
            "acl": if shared.cfg.acl_token.is_some() { "enabled" } else { "disabled" },
            "bootstrap": "false",
            "known_datacenters": "1",
            "leader": "true",
            "leader_addr": LEADER_ADDR,
            "server": "true",
        },
        "raft": {
            "applied_index": index, "commit_index": index, "fsm_pending": "0",
            "last_contact": "0", "last_log_index": index, "last_log_term": "2",
            "last_snapshot_index": "0", "last_snapshot_term": "0",
            "latest_configuration": format!("[{{Suffrage:Voter ID:{} Address:{LEADER_ADDR}}}]", shared.cfg.node_id),
            "latest_configuration_index": "0", "num_peers": "0",
            "protocol_version": "3", "protocol_version_max": "3", "protocol_version_min": "0",
            "snapshot_version_max": "1", "snapshot_version_min": "0",
            "state": "Leader", "term": "2",
        },
        "serf_lan": serf_stats(),
        "serf_wan": serf_stats(),
        "runtime": {
            "arch": std::env::consts::ARCH, "os": std::env::consts::OS,
            "cpu_count": std::thread::available_parallelism().map_or(1, |n| n.get()).to_string(),
            "goroutines": "0", "max_procs": "0", "version": "consul-dev",
        },
        "agent": {
            "check_monitors": monitors.to_string(),
            "check_ttls": ttls.to_string(),
            "checks": checks.to_string(),
            "services": services.to_string(),
        },
        "build": {
            "prerelease": "", "revision": "consul-d", "version": VERSION, "version_metadata": "",
        },
    })
}

fn serf_stats() -> Value {
    json!({
        "coordinate_resets": "0", "encrypted": "false", "event_queue": "0", "event_time": "1",
        "failed": "0", "health_score": "0", "intent_queue": "0", "left": "0",
        "member_time": "1", "members": "1", "query_queue": "0", "query_time": "1",
    })
}

fn member(shared: &Shared) -> Value {
    let cfg = &shared.cfg;
    json!({
        "Name": cfg.node_name,
        "Addr": "127.0.0.1",
        "Port": 8301,
        "Tags": {
            "build": "1.17.0:consul-dev", "dc": cfg.datacenter, "id": cfg.node_id,
            "role": "consul", "segment": "", "vsn": "2", "vsn_max": "3", "vsn_min": "2",
            "bootstrap": "1", "port": "8300", "raft_vsn": "3", "wan_join_port": "8302",
        },
        "Status": 1,
        "ProtocolMin": 1, "ProtocolMax": 5, "ProtocolCur": 2,
        "DelegateMin": 2, "DelegateMax": 5, "DelegateCur": 4,
    })
}

/// `GET /v1/agent/members` (`wan`, `segment`, `filter`): the one LAN member, or as
/// a WAN member `node.dc` on the WAN port.
pub(crate) fn members(shared: &Shared, req: &Req) -> HResult {
    let wan = req.nonempty("wan").is_some();
    let segment = req.param("segment").unwrap_or("");
    if wan && !matches!(segment, "" | "_all") {
        return Err(bad_request("Cannot provide a segment with wan=true"));
    }
    let mut me = member(shared);
    if wan {
        let cfg = &shared.cfg;
        me["Name"] = json!(format!("{}.{}", cfg.node_name, cfg.datacenter));
        me["Port"] = json!(8302);
    } else if !matches!(segment, "" | "_all") {
        // Consul CE has only the default segment.
        return Ok(Reply::json(&json!([])));
    }
    let list = filter::apply(req.param("filter"), vec![me], FILTER_ERR).map_err(bad_request)?;
    Ok(Reply::json(&Value::Array(list)))
}

const FILTER_ERR: &str = "Failed to create boolean expression evaluator";
