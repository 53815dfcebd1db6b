//! Agent endpoints: self, members, local services (register, deregister, list,
//! get with hash blocking, maintenance).

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::{Value, json};

use super::decode::body_json;
use super::filter;
use super::http::{HResult, Reply, Req, bad_request, decode_failed, not_found};
use super::model::{Check, CheckKind, CheckStatus};
use super::query::{self, parse_bool};
use super::register::decode_service;
use super::shared::Shared;
use super::{checks, store::Store};

/// The service the dev agent's server registers for itself (catalog only).
pub(super) const CONSUL_SERVICE: &str = "consul";
/// The server RPC address the dev agent reports as the raft leader (`/v1/status/leader`).
pub(super) const LEADER_ADDR: &str = "127.0.0.1:8300";
/// The Consul version the dev agent reports.
pub(super) const VERSION: &str = "1.17.0";

pub(super) fn agent_self(shared: &Shared) -> HResult {
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
pub(super) fn members(shared: &Shared, req: &Req) -> HResult {
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

/// The agent's own services (the catalog-only `consul` service excluded).
fn local_services(shared: &Shared, store: &Store) -> Vec<(String, Value)> {
    let node = &shared.cfg.node_name;
    store
        .services
        .values()
        .filter(|s| s.node == *node && s.id != CONSUL_SERVICE)
        .map(|s| (s.id.clone(), s.to_agent_json(&shared.cfg.datacenter)))
        .collect()
}

pub(super) fn services(shared: &Shared, req: &Req) -> HResult {
    let list = local_services(shared, &shared.store());
    let out = filter::apply_keyed(req.param("filter"), list).map_err(bad_request)?;
    Ok(Reply::json(&out))
}

/// `GET /v1/agent/service/:id`, with hash-based blocking.
pub(super) async fn service(shared: &Shared, req: &Req, id: &str) -> HResult {
    let opts = query::parse(shared, req)?;
    let node = shared.cfg.node_name.clone();
    let found = query::block_hash(shared, &opts, |store| {
        let svc = store.services.get(&(node.clone(), id.to_owned()));
        let svc = svc.filter(|s| s.id != CONSUL_SERVICE)?;
        let json = svc.to_agent_json(&shared.cfg.datacenter);
        Some((content_hash(&json), json))
    })
    .await;
    let Some((hash, mut json)) = found else {
        return Err(not_found(format!("unknown service ID: {id}")));
    };
    if let Value::Object(m) = &mut json {
        m.insert("ContentHash".into(), json!(hash));
    }
    Ok(Reply::json(&json).header("X-Consul-ContentHash", hash))
}

/// FNV-1a over the JSON text: stable across runs, opaque to clients.
fn content_hash(v: &Value) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in v.to_string().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

pub(super) fn register(shared: &Arc<Shared>, req: &Req) -> HResult {
    let body = body_json(&req.body).map_err(decode_failed)?;
    let replace = matches!(req.param("replace-existing-checks"), Some("" | "true"));
    let node = shared.cfg.node_name.clone();
    let (svc, new_checks) = decode_service(&body, &node, shared.cfg.min_deregister_after)?;
    super::register::scripts_allowed(&shared.cfg, new_checks.iter())?;
    let sid = svc.id.clone();
    let new_ids: BTreeSet<String> = new_checks.iter().map(|c| c.id.clone()).collect();
    let started: Vec<Check> = new_checks.clone();
    let removed = shared.write(|s| {
        s.upsert_service(svc);
        for c in new_checks {
            s.upsert_check(c, true);
        }
        let stale: Vec<String> = s
            .check_ids_of(&node, &sid)
            .into_iter()
            .filter(|id| !new_ids.contains(id) && !id.starts_with("_service_maintenance:"))
            .collect();
        if replace {
            for id in &stale {
                s.remove_check(&node, id);
            }
        }
        if replace { stale } else { Vec::new() }
    });
    for id in removed {
        shared.set_runner((node.clone(), id), None);
    }
    for c in started {
        checks::start_runner(shared, &c);
    }
    Ok(Reply::empty())
}

pub(super) fn deregister(shared: &Shared, id: &str) -> HResult {
    let node = shared.cfg.node_name.clone();
    let removed = shared.write(|s| s.remove_service(&node, id));
    let Some(ids) = removed.filter(|_| id != CONSUL_SERVICE) else {
        return Err(not_found(format!(
            "Unknown service ID {id:?}. Ensure that the service ID is passed, not the service name."
        )));
    };
    for cid in ids {
        shared.set_runner((node.clone(), cid), None);
    }
    Ok(Reply::empty())
}

fn enable_param(req: &Req) -> Result<bool, Reply> {
    match req.param("enable") {
        None | Some("") => Err(bad_request("Missing value for enable")),
        Some(v) => {
            parse_bool(v).ok_or_else(|| bad_request(format!("Invalid value for enable: {v:?}")))
        }
    }
}

pub(super) fn maintenance(shared: &Shared, req: &Req, id: &str) -> HResult {
    if id.is_empty() {
        return Err(bad_request("Missing service ID"));
    }
    let enable = enable_param(req)?;
    let node = shared.cfg.node_name.clone();
    let svc = shared
        .store()
        .services
        .get(&(node.clone(), id.to_owned()))
        .cloned();
    let Some(svc) = svc else {
        return Err(not_found(format!("Unknown service ID {id:?}")));
    };
    let check_id = format!("_service_maintenance:{id}");
    let reason = req.nonempty("reason").unwrap_or(
        "Maintenance mode is enabled for this service, but no reason was provided. This is a default message.",
    );
    maint_check(
        shared,
        enable,
        Check {
            node,
            id: check_id,
            name: "Service Maintenance Mode".into(),
            notes: reason.into(),
            service_id: svc.id,
            service_name: svc.name,
            ..Check::default()
        },
    );
    Ok(Reply::empty())
}

pub(super) fn node_maintenance(shared: &Shared, req: &Req) -> HResult {
    let enable = enable_param(req)?;
    let reason = req.nonempty("reason").unwrap_or(
        "Maintenance mode is enabled for this node, but no reason was provided. This is a default message.",
    );
    maint_check(
        shared,
        enable,
        Check {
            node: shared.cfg.node_name.clone(),
            id: "_node_maintenance".into(),
            name: "Node Maintenance Mode".into(),
            notes: reason.into(),
            ..Check::default()
        },
    );
    Ok(Reply::empty())
}

fn maint_check(shared: &Shared, enable: bool, check: Check) {
    shared.write(|s| {
        let exists = s
            .checks
            .contains_key(&(check.node.clone(), check.id.clone()));
        match (enable, exists) {
            (true, false) => {
                let check = Check {
                    status: CheckStatus::Critical,
                    kind: CheckKind::Manual,
                    ..check
                };
                s.upsert_check(check, false);
            }
            (false, true) => {
                s.remove_check(&check.node, &check.id);
            }
            _ => {}
        }
    });
}
