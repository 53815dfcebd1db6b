//! Agent endpoints: local services (register, deregister, list,
//! get with hash blocking, maintenance).
//!
//! The agent family: `health` (`/v1/agent/health/service/…`), `info` (`self`,
//! `members`), `checks_api` (`/v1/agent/check/…`, `/v1/agent/checks`), `register`
//! (decoding and validation of service and check definitions, shared with the
//! catalog), `validate` (`NodeService.Validate`), `sidecar` (sidecar proxies) and
//! `membership` (`leave`, `force-leave`, `monitor`).

pub(crate) mod checks_api;
pub(crate) mod health;
pub(crate) mod info;
pub(crate) mod membership;
pub(crate) mod register;
pub(crate) mod sidecar;
pub(crate) mod validate;

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::{Value, json};

use crate::agent::register::decode_service;
use crate::http::decode::body_json;
use crate::http::{HResult, Reply, Req, bad_request, decode_failed, not_found};
use crate::query::filter;
use crate::query::{self, parse_bool};
use crate::shared::Shared;
use crate::store::model::{CONSUL_SERVICE, Check, CheckKind, CheckStatus, Service};
use crate::store::render::ServiceView;
use crate::{checks, store::Store};

/// The agent's own services (the catalog-only `consul` service excluded).
fn local_services(shared: &Shared, store: &Store) -> Vec<(String, Value)> {
    let node = &shared.cfg.node_name;
    let view = ServiceView::Agent {
        datacenter: &shared.cfg.datacenter,
    };
    store
        .services
        .values()
        .filter(|s| s.node == *node && s.id != CONSUL_SERVICE)
        .map(|s| (s.id.clone(), s.to_json(view)))
        .collect()
}

pub(crate) fn services(shared: &Shared, req: &Req) -> HResult {
    let list = local_services(shared, &shared.store());
    let out = filter::apply_keyed(req.param("filter"), list).map_err(bad_request)?;
    Ok(Reply::json(&out))
}

/// `GET /v1/agent/service/:id`, with hash-based blocking.
pub(crate) async fn service(shared: &Shared, req: &Req, id: &str) -> HResult {
    let opts = query::parse(shared, req)?;
    let node = shared.cfg.node_name.clone();
    let found = query::block_hash(shared, &opts, |store| {
        let svc = store.services.get(&(node.clone(), id.to_owned()));
        let svc = svc.filter(|s| s.id != CONSUL_SERVICE)?;
        let json = svc.to_json(ServiceView::Agent {
            datacenter: &shared.cfg.datacenter,
        });
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

pub(crate) fn register(shared: &Arc<Shared>, req: &Req) -> HResult {
    let body = body_json(&req.body).map_err(decode_failed)?;
    let replace = matches!(req.param("replace-existing-checks"), Some("" | "true"));
    let node = shared.cfg.node_name.clone();
    let (mut svc, new_checks) = decode_service(&body, &node, shared.cfg.min_deregister_after)?;
    let sidecar = match sidecar::take_definition(&mut svc.connect) {
        Some(def) => Some(sidecar_of(shared, &svc, def)?),
        None => None,
    };
    crate::agent::register::scripts_allowed(&shared.cfg, new_checks.iter())?;
    if let Some((_, checks)) = &sidecar {
        crate::agent::register::scripts_allowed(&shared.cfg, checks.iter())?;
    }
    add_service(shared, svc, new_checks, replace);
    if let Some((sc, checks)) = sidecar {
        add_service(shared, sc, checks, replace);
    }
    Ok(Reply::empty())
}

/// The sidecar `Connect.SidecarService` asks for, with its checks.
fn sidecar_of(
    shared: &Shared,
    svc: &Service,
    def: serde_json::Value,
) -> Result<(Service, Vec<Check>), Reply> {
    let parent = sidecar::Parent {
        id: &svc.id,
        name: &svc.name,
        port: svc.port,
        tags: &svc.tags,
        meta: &svc.meta,
        node: &svc.node,
    };
    let def = sidecar::definition(def, &parent, &shared.store())?;
    let (mut sc, checks) = decode_service(&def, &svc.node, shared.cfg.min_deregister_after)?;
    sc.sidecar_of = Some(svc.id.clone());
    Ok((sc, checks))
}

/// Stores a service with its checks and starts their runners;
/// `replace-existing-checks` removes the service's other checks.
fn add_service(shared: &Arc<Shared>, svc: Service, new_checks: Vec<Check>, replace: bool) {
    let node = svc.node.clone();
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
}

pub(crate) fn deregister(shared: &Shared, id: &str) -> HResult {
    let node = shared.cfg.node_name.clone();
    let removed = shared.write(|s| {
        let removed = s.remove_service(&node, id)?;
        // `removeServiceSidecars`: the sidecar the agent registered for it goes too.
        let sidecar = (node.clone(), format!("{id}-sidecar-proxy"));
        let owned = s
            .services
            .get(&sidecar)
            .is_some_and(|sc| sc.sidecar_of.as_deref() == Some(id));
        let sidecar_checks = match owned {
            true => s.remove_service(&node, &sidecar.1).unwrap_or_default(),
            false => Vec::new(),
        };
        Some(
            removed
                .into_iter()
                .chain(sidecar_checks)
                .collect::<Vec<_>>(),
        )
    });
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

pub(crate) fn maintenance(shared: &Shared, req: &Req, id: &str) -> HResult {
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

pub(crate) fn node_maintenance(shared: &Shared, req: &Req) -> HResult {
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
