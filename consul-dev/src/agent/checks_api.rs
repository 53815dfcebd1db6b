//! Agent check endpoints: list, register, deregister, TTL pass/warn/fail/update.

use std::sync::Arc;

use http::StatusCode;
use serde_json::Value;

use crate::agent::register::{decode_check, finish_check, validate_check};
use crate::checks;
use crate::http::decode::{body_json, fields};
use crate::http::{HResult, Reply, Req, bad_request, decode_failed, not_found};
use crate::query::filter;
use crate::shared::Shared;
use crate::store::model::{CheckKind, CheckStatus};

/// Consul's default `OutputMaxSize`.
const OUTPUT_MAX: usize = 4096;

pub(crate) fn list(shared: &Shared, req: &Req) -> HResult {
    let node = &shared.cfg.node_name;
    let items: Vec<(String, Value)> = {
        let store = shared.store();
        store
            .checks
            .values()
            .filter(|c| c.node == *node && c.id != "serfHealth")
            .map(|c| {
                (
                    c.id.clone(),
                    c.to_json(&store.service_tags(&c.node, &c.service_id)),
                )
            })
            .collect()
    };
    let out = filter::apply_keyed(req.param("filter"), items).map_err(bad_request)?;
    Ok(Reply::json(&out))
}

pub(crate) fn register(shared: &Arc<Shared>, req: &Req) -> HResult {
    let body = body_json(&req.body).map_err(decode_failed)?;
    let spec = decode_check(&body, "CheckDefinition").map_err(decode_failed)?;
    if spec.check.name.is_empty() {
        return Err(bad_request("Missing check name"));
    }
    // `AgentRegisterCheck` vets the status before the check type, with its own text.
    if spec.status_given && CheckStatus::parse(&spec.check.output).is_none() {
        return Err(bad_request("Bad check status"));
    }
    validate_check(&spec)?;
    let mut check = spec.check;
    if check.id.is_empty() {
        check.id = check.name.clone();
    }
    let node = shared.cfg.node_name.clone();
    finish_check(&mut check, &node, shared.cfg.min_deregister_after);
    if !check.service_id.is_empty() {
        let store = shared.store();
        let Some(svc) = store
            .services
            .get(&(node.clone(), check.service_id.clone()))
        else {
            // Consul answers 404 here (`HTTPError{StatusCode: http.StatusNotFound}`).
            return Err(not_found(format!(
                "ServiceID {:?} does not exist",
                check.service_id
            )));
        };
        check.service_name = svc.name.clone();
    }
    crate::agent::register::scripts_allowed(&shared.cfg, std::iter::once(&check))?;
    let started = check.clone();
    shared.write(|s| s.upsert_check(check, false));
    checks::start_runner(shared, &started);
    Ok(Reply::empty())
}

fn unknown_check(id: &str) -> Reply {
    not_found(format!(
        "Unknown check ID {id:?}. Ensure that the check ID is passed, not the check name."
    ))
}

pub(crate) fn deregister(shared: &Shared, id: &str) -> HResult {
    let node = shared.cfg.node_name.clone();
    if shared.write(|s| s.remove_check(&node, id)).is_none() {
        return Err(unknown_check(id));
    }
    shared.set_runner((node, id.to_owned()), None);
    Ok(Reply::empty())
}

pub(crate) fn ttl(shared: &Shared, req: &Req, id: &str, status: &str) -> HResult {
    update_ttl(shared, id, status, req.param("note").unwrap_or(""))
}

pub(crate) fn update(shared: &Shared, req: &Req, id: &str) -> HResult {
    let body = body_json(&req.body).map_err(decode_failed)?;
    let f = fields(&body, "checkUpdate", &["Status", "Output"]).map_err(decode_failed)?;
    let status = f.string("Status").map_err(decode_failed)?;
    let output = f.string("Output").map_err(decode_failed)?;
    if CheckStatus::parse(&status).is_none() {
        return Err(bad_request(format!("Invalid check status: '{status}'")));
    }
    update_ttl(shared, id, &status, &output)
}

fn update_ttl(shared: &Shared, id: &str, status: &str, output: &str) -> HResult {
    let node = shared.cfg.node_name.clone();
    let status = CheckStatus::parse(status).unwrap_or_default();
    let output = truncate_output(output);
    let result = shared.write(|s| {
        let key = (node.clone(), id.to_owned());
        let Some(check) = s.checks.get_mut(&key) else {
            return Err(unknown_check(id));
        };
        let CheckKind::Ttl(ttl) = check.kind else {
            return Err(Reply::text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("CheckID {id:?} does not have associated TTL"),
            ));
        };
        check.ttl_deadline = Some(tokio::time::Instant::now() + ttl);
        s.set_check_status(&node, id, status, &output);
        Ok(())
    });
    result.map(|()| Reply::empty())
}

/// `SetStatus` truncation: `<first N bytes> ... (captured N of M bytes)`.
pub(crate) fn truncate_output(output: &str) -> String {
    if output.len() <= OUTPUT_MAX {
        return output.to_owned();
    }
    let mut end = OUTPUT_MAX;
    while !output.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{} ... (captured {OUTPUT_MAX} of {} bytes)",
        &output[..end],
        output.len()
    )
}
