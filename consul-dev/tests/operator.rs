//! Operator and agent read endpoints, and what a dev agent with ACLs and Connect
//! disabled answers, over real HTTP.

mod common;
mod support;

use common::Api;
use consul_dev::ConsulDev;
use reqwest::Method;

#[tokio::test]
async fn acl_endpoints_answer_acl_support_disabled() {
    support::trace_init();
    let dev = ConsulDev::start().await.unwrap();
    let api = Api::new(&dev);
    for (method, path) in [
        (Method::GET, "/v1/acl/token/self"),
        (Method::GET, "/v1/acl/tokens"),
        (Method::GET, "/v1/acl/policies"),
        (Method::PUT, "/v1/acl/bootstrap"),
        (Method::PUT, "/v1/agent/token/default"),
    ] {
        let (code, text) = api.error(method, path, None).await;
        assert_eq!(
            (code, text.as_str()),
            (401, "ACL support disabled"),
            "{path}"
        );
    }
}

#[tokio::test]
async fn connect_endpoints_say_connect_is_disabled() {
    let dev = ConsulDev::start().await.unwrap();
    let api = Api::new(&dev);
    for path in [
        "/v1/connect/ca/roots",
        "/v1/connect/ca/configuration",
        "/v1/connect/intentions",
        "/v1/agent/connect/ca/roots",
        "/v1/agent/connect/ca/leaf/web",
    ] {
        let (code, text) = api.error(Method::GET, path, None).await;
        assert_eq!(
            (code, text.as_str()),
            (500, "Connect must be enabled in order to use this endpoint"),
            "{path}"
        );
    }
}

#[tokio::test]
async fn autopilot_reports_one_healthy_leader() {
    let dev = ConsulDev::start().await.unwrap();
    let api = Api::new(&dev);
    let (health, _) = api.get_json("/v1/operator/autopilot/health").await;
    assert_eq!(health["Healthy"], true);
    assert_eq!(health["FailureTolerance"], 0);
    let servers = health["Servers"].as_array().unwrap();
    assert_eq!(servers.len(), 1);
    assert_eq!(servers[0]["Leader"], true);
    assert_eq!(servers[0]["Name"], "consul-dev");
    let (raft, _) = api.get_json("/v1/operator/raft/configuration").await;
    assert_eq!(servers[0]["ID"], raft["Servers"][0]["ID"]);
    let (state, _) = api.get_json("/v1/operator/autopilot/state").await;
    assert_eq!(state["Leader"], servers[0]["ID"]);
    let (config, _) = api.get_json("/v1/operator/autopilot/configuration").await;
    assert_eq!(config["CleanupDeadServers"], true);
    assert_eq!(config["LastContactThreshold"], "200ms");
}

#[tokio::test]
async fn agent_metrics_and_host_have_their_shapes() {
    let dev = ConsulDev::start().await.unwrap();
    let api = Api::new(&dev);
    let (metrics, _) = api.get_json("/v1/agent/metrics").await;
    let ts = metrics["Timestamp"].as_str().unwrap();
    assert!(ts.ends_with(" +0000 UTC"), "{ts}");
    assert!(
        metrics["Gauges"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["Name"] == "consul.runtime.alloc_bytes")
    );
    for key in ["Points", "Counters", "Samples"] {
        assert!(metrics[key].is_array(), "{key}");
    }
    let (host, _) = api.get_json("/v1/agent/host").await;
    assert_eq!(host["Host"]["os"], std::env::consts::OS);
}

#[tokio::test]
async fn unknown_paths_answer_consuls_index_texts() {
    let dev = ConsulDev::start().await.unwrap();
    let api = Api::new(&dev);
    let (code, text) = api.error(Method::GET, "/v1/nothing", None).await;
    assert_eq!(
        (code, text.as_str()),
        (
            404,
            "Invalid URL path: not a recognized HTTP API endpoint\n"
        )
    );
    let (code, text) = api.error(Method::GET, "/nothing", None).await;
    assert_eq!(
        (code, text.as_str()),
        (
            404,
            "Invalid URL path: if attempting to use the HTTP API, ensure the path starts with '/v1/'\n"
        )
    );
    let (code, text) = api.error(Method::GET, "/", None).await;
    assert_eq!(code, 200);
    assert!(text.starts_with("Consul Agent: UI disabled."), "{text}");
}
