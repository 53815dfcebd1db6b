//! Agent check endpoints of `ConsulDev` (TTL updates and expiry, maintenance,
//! agent health) and its state helpers, over real HTTP.

mod common;
mod support;

use std::time::Duration;

use common::{Api, fixture};
use consul_dev::ConsulDev;
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn ttl_endpoints_answer_like_consul() {
    let dev = ConsulDev::start().await.unwrap();
    let api = Api::new(&dev);
    api.register(json!({"Name": "svc", "Check": {"TTL": "30s"}}))
        .await;
    api.put_ok(
        "/v1/agent/check/update/service:svc",
        Some(fixture("agent-check-update.json")),
    )
    .await;
    let (checks, _) = api.get_json("/v1/agent/checks").await;
    assert_eq!(checks["service:svc"]["Status"], "passing");
    assert_eq!(
        checks["service:svc"]["Output"],
        "curl reported a failure:\n\n..."
    );

    let (code, text) = api
        .error(
            Method::PUT,
            "/v1/agent/check/update/service:svc",
            Some(json!({"Status": "ok"})),
        )
        .await;
    assert_eq!((code, text.as_str()), (400, "Invalid check status: 'ok'"));
    let (code, text) = api
        .error(Method::PUT, "/v1/agent/check/pass/nope", None)
        .await;
    assert_eq!(code, 404);
    assert_eq!(
        text,
        "Unknown check ID \"nope\". Ensure that the check ID is passed, not the check name."
    );
    api.put_ok(
        "/v1/agent/check/register",
        Some(json!({"Name": "web-http", "HTTP": "http://127.0.0.1:1/", "Interval": "1h"})),
    )
    .await;
    let (code, text) = api
        .error(Method::PUT, "/v1/agent/check/fail/web-http", None)
        .await;
    assert_eq!(
        (code, text.as_str()),
        (500, "CheckID \"web-http\" does not have associated TTL")
    );
    let (code, text) = api
        .error(Method::GET, "/v1/agent/check/pass/service:svc", None)
        .await;
    assert_eq!((code, text.as_str()), (405, "method GET not allowed"));
    let (code, _) = api.error(Method::GET, "/v1/agent/nothing-here", None).await;
    assert_eq!(code, 404);
}

#[tokio::test]
async fn ttl_checks_expire_with_consuls_output() {
    support::trace_init();
    let dev = ConsulDev::start().await.unwrap();
    let api = Api::new(&dev);
    api.register(json!({"Name": "svc", "Check": {"TTL": "200ms"}}))
        .await;
    api.put_ok("/v1/agent/check/pass/service:svc?note=all%20good", None)
        .await;
    let (checks, _) = api.get_json("/v1/agent/checks").await;
    assert_eq!(checks["service:svc"]["Status"], "passing");
    support::eventually(
        Duration::from_secs(5),
        "TTL check turns critical",
        || async {
            let (checks, _) = api.get_json("/v1/agent/checks").await;
            checks["service:svc"]["Status"] == "critical"
        },
    )
    .await;
    let (checks, _) = api.get_json("/v1/agent/checks").await;
    assert_eq!(
        checks["service:svc"]["Output"],
        "TTL expired (last output before timeout follows): all good"
    );
}

#[tokio::test]
async fn maintenance_adds_a_critical_check() {
    let dev = ConsulDev::start().await.unwrap();
    let api = Api::new(&dev);
    api.register(json!({"Name": "svc"})).await;
    api.put_ok(
        "/v1/agent/service/maintenance/svc?enable=true&reason=upgrade",
        None,
    )
    .await;
    let (checks, _) = api.get_json("/v1/agent/checks").await;
    let maint = &checks["_service_maintenance:svc"];
    assert_eq!(maint["Status"], "critical");
    assert_eq!(maint["Notes"], "upgrade");
    let (code, text) = api
        .error(Method::PUT, "/v1/agent/service/maintenance/svc", None)
        .await;
    assert_eq!((code, text.as_str()), (400, "Missing value for enable"));
    api.put_ok("/v1/agent/service/maintenance/svc?enable=false", None)
        .await;
    let (checks, _) = api.get_json("/v1/agent/checks").await;
    assert!(checks.get("_service_maintenance:svc").is_none());
}

#[tokio::test]
async fn state_helpers_drive_checks_and_forget_everything() {
    let dev = ConsulDev::start().await.unwrap();
    let api = Api::new(&dev);
    api.register(json!({"Name": "svc", "Check": {"TTL": "30s"}}))
        .await;
    assert!(dev.set_check_status("service:svc", "warning", "slow"));
    assert!(!dev.set_check_status("service:svc", "bogus", ""));
    let (checks, _) = api.get_json("/v1/agent/checks").await;
    assert_eq!(checks["service:svc"]["Status"], "warning");
    let before = dev.index();
    dev.forget_all();
    assert!(dev.index() > before);
    let (services, _) = api.get_json("/v1/agent/services").await;
    assert_eq!(services, json!({}));
    assert_eq!(dev.request_count("/v1/agent/services"), 1);
}

#[tokio::test]
async fn agent_health_answers_with_status_codes() {
    let dev = ConsulDev::start().await.unwrap();
    let api = Api::new(&dev);
    api.register(json!({"Name": "svc", "ID": "s1", "Check": {"TTL": "1h", "Status": "passing"}}))
        .await;
    api.register(json!({"Name": "svc", "ID": "s2", "Check": {"TTL": "1h", "Status": "warning"}}))
        .await;
    let resp = api.get("/v1/agent/health/service/id/s1").await;
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!(body["AggregatedStatus"], "passing");
    assert_eq!(body["Service"]["ID"], "s1");
    let (code, text) = api
        .error(
            Method::GET,
            "/v1/agent/health/service/id/s2?format=text",
            None,
        )
        .await;
    assert_eq!((code, text.as_str()), (429, "warning"));
    let (code, _) = api
        .error(Method::GET, "/v1/agent/health/service/name/svc", None)
        .await;
    assert_eq!(code, 429, "the worst instance decides");
    let (code, text) = api
        .error(
            Method::GET,
            "/v1/agent/health/service/id/nope?format=text",
            None,
        )
        .await;
    assert_eq!((code, text.as_str()), (404, "ServiceId nope not found"));
    dev.set_check_status("service:s1", "critical", "down");
    let (code, _) = api
        .error(Method::GET, "/v1/agent/health/service/id/s1", None)
        .await;
    assert_eq!(code, 503);
}

#[tokio::test]
async fn alias_checks_follow_the_aliased_service() {
    let dev = ConsulDev::start().await.unwrap();
    let api = Api::new(&dev);
    api.register(json!({"Name": "web", "Port": 80, "Check": {"TTL": "30s"}}))
        .await;
    api.put_ok(
        "/v1/agent/check/register",
        Some(json!({"Name": "web-alias", "AliasService": "web"})),
    )
    .await;
    let alias = |dev_api: Api| async move {
        let (checks, _) = dev_api.get_json("/v1/agent/checks").await;
        (
            checks["web-alias"]["Status"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            checks["web-alias"]["Output"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        )
    };
    let (checks, _) = api.get_json("/v1/agent/checks").await;
    assert_eq!(checks["web-alias"]["Type"], "alias");
    assert_eq!(checks["web-alias"]["Definition"]["AliasService"], "web");
    support::eventually(Duration::from_secs(5), "the alias is critical", || {
        let api = api.clone();
        async move {
            alias(api).await
                == (
                    "critical".to_owned(),
                    "Aliased check \"Service 'web' check\" failing: ".to_owned(),
                )
        }
    })
    .await;
    api.put_ok("/v1/agent/check/pass/service:web?note=ok", None)
        .await;
    support::eventually(Duration::from_secs(5), "the alias passes", || {
        let api = api.clone();
        async move { alias(api).await == ("passing".to_owned(), "All checks passing.".to_owned()) }
    })
    .await;
    api.put_ok("/v1/agent/service/deregister/web", None).await;
    support::eventually(
        Duration::from_secs(5),
        "the alias misses its service",
        || {
            let api = api.clone();
            async move {
                alias(api).await
                    == (
                        "critical".to_owned(),
                        "Service web could not be found on node ".to_owned(),
                    )
            }
        },
    )
    .await;
}
