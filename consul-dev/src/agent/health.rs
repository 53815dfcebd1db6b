//! `GET /v1/agent/health/service/id/:id` and `/name/:name`: the agent's local
//! view of a service's health, as a status code (200 passing, 429 warning,
//! 503 critical or maintenance) with a JSON or plain-text body.

use http::StatusCode;
use serde_json::{Value, json};

use crate::http::{HResult, Reply, Req, bad_request};
use crate::shared::Shared;
use crate::store::Store;
use crate::store::model::{CONSUL_SERVICE, CheckStatus, Service};
use crate::store::render::ServiceView;

/// Consul's `AggregatedStatus`: maintenance > critical > warning > passing.
fn aggregate(store: &Store, svc: &Service) -> &'static str {
    let checks = store.checks_for(svc);
    if checks
        .iter()
        .any(|c| c.id == "_node_maintenance" || c.id.starts_with("_service_maintenance:"))
    {
        return "maintenance";
    }
    let worst = checks
        .iter()
        .map(|c| c.status)
        .fold(CheckStatus::Passing, |w, s| match (w, s) {
            (CheckStatus::Critical, _) | (_, CheckStatus::Critical) => CheckStatus::Critical,
            (CheckStatus::Warning, _) | (_, CheckStatus::Warning) => CheckStatus::Warning,
            _ => CheckStatus::Passing,
        });
    worst.as_str()
}

fn code(status: &str) -> StatusCode {
    match status {
        "passing" => StatusCode::OK,
        "warning" => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    }
}

fn info(shared: &Shared, store: &Store, svc: &Service) -> (&'static str, Value) {
    let status = aggregate(store, svc);
    let checks = store.checks_for(svc);
    let body = json!({
        "AggregatedStatus": status,
        "Service": svc.to_json(ServiceView::Agent { datacenter: &shared.cfg.datacenter }),
        "Checks": store.render_checks(&checks),
    });
    (status, body)
}

fn wants_text(req: &Req) -> bool {
    let accept = req.headers.get("accept").and_then(|v| v.to_str().ok());
    req.param("format") == Some("text") || accept == Some("text/plain")
}

fn reply(status: StatusCode, text: bool, text_body: &str, json_body: &Value) -> Reply {
    let mut r = if text {
        Reply::text(status, text_body)
    } else {
        Reply::json(json_body)
    };
    r.status = status;
    r
}

fn local<'a>(shared: &Shared, store: &'a Store) -> impl Iterator<Item = &'a Service> {
    let node = shared.cfg.node_name.clone();
    store
        .services
        .values()
        .filter(move |s| s.node == node && s.id != CONSUL_SERVICE)
}

pub(crate) fn by_id(shared: &Shared, req: &Req, id: &str) -> HResult {
    if id.is_empty() {
        return Err(bad_request("Missing serviceID"));
    }
    let text = wants_text(req);
    let store = shared.store();
    let Some(svc) = local(shared, &store).find(|s| s.id == id) else {
        let reason = format!("ServiceId {id} not found");
        let body = json!({ "AggregatedStatus": "critical", "Service": null, "Checks": null });
        return Err(reply(StatusCode::NOT_FOUND, text, &reason, &body));
    };
    let (status, body) = info(shared, &store, svc);
    Ok(reply(code(status), text, status, &body))
}

pub(crate) fn by_name(shared: &Shared, req: &Req, name: &str) -> HResult {
    if name.is_empty() {
        return Err(bad_request("Missing service Name"));
    }
    let text = wants_text(req);
    let store = shared.store();
    let found: Vec<(&str, Value)> = local(shared, &store)
        .filter(|s| s.name == name)
        .map(|s| info(shared, &store, s))
        .collect();
    if found.is_empty() {
        let reason = format!("ServiceName {name} Not Found");
        return Err(reply(StatusCode::NOT_FOUND, text, &reason, &json!([])));
    }
    let rank = |s: &str| match s {
        "passing" => 0,
        "warning" => 1,
        "critical" => 2,
        _ => 3,
    };
    let worst = found
        .iter()
        .map(|(s, _)| *s)
        .max_by_key(|s| rank(s))
        .unwrap_or("critical");
    let list: Vec<Value> = found.into_iter().map(|(_, v)| v).collect();
    Ok(reply(code(worst), text, worst, &Value::Array(list)))
}
