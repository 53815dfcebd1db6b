//! Health queries of `ConsulDev`: filtering and blocking, over real HTTP.

mod common;
mod support;

use common::{Api, ids, index_of};
use consul_dev::ConsulDev;
use reqwest::Method;
use serde_json::json;

async fn three_instances(api: &Api) {
    for (id, tags, status) in [
        ("e1", json!(["v1", "Primary"]), "passing"),
        ("e2", json!(["v1"]), "passing"),
        ("e3", json!(["v2"]), "warning"),
    ] {
        let check = json!({"TTL": "1h", "Status": status});
        api.register(json!({"Name": "echo", "ID": id, "Tags": tags, "Port": 1, "Check": check}))
            .await;
    }
}

#[tokio::test]
async fn filters_by_passing_tag_and_expression() {
    support::trace_init();
    let dev = ConsulDev::start().await.unwrap();
    let api = Api::new(&dev);
    three_instances(&api).await;

    let (all, _) = api.get_json("/v1/health/service/echo").await;
    assert_eq!(ids(&all), ["e1", "e2", "e3"]);
    let (passing, _) = api.get_json("/v1/health/service/echo?passing").await;
    assert_eq!(ids(&passing), ["e1", "e2"]);
    let (passing, _) = api.get_json("/v1/health/service/echo?passing=1").await;
    assert_eq!(ids(&passing), ["e1", "e2"]);
    let (not_filtered, _) = api.get_json("/v1/health/service/echo?passing=false").await;
    assert_eq!(ids(&not_filtered), ["e1", "e2", "e3"]);
    // Tags are ANDed and compared case-insensitively.
    let (tagged, _) = api
        .get_json("/v1/health/service/echo?tag=V1&tag=primary")
        .await;
    assert_eq!(ids(&tagged), ["e1"]);
    let (filtered, _) = api
        .get_json("/v1/health/service/echo?filter=%22v2%22%20in%20Service.Tags%20or%20Service.ID%20%3D%3D%20e1")
        .await;
    assert_eq!(ids(&filtered), ["e1", "e3"]);
    let (filtered, _) = api
        .get_json("/v1/health/service/echo?filter=Checks.Status%20%3D%3D%20warning")
        .await;
    assert_eq!(ids(&filtered), ["e3"]);

    let (code, text) = api
        .error(Method::GET, "/v1/health/service/echo?passing=maybe", None)
        .await;
    assert_eq!((code, text.as_str()), (400, "Invalid value for ?passing"));
    let (code, text) = api
        .error(
            Method::GET,
            "/v1/health/service/echo?filter=Service.ID%20%3D%3D",
            None,
        )
        .await;
    assert_eq!(code, 400);
    assert!(
        text.starts_with("Failed to create boolean expression evaluator"),
        "{text}"
    );
}

#[tokio::test]
async fn entries_carry_node_service_and_checks() {
    let dev = ConsulDev::builder()
        .node_name("node1")
        .start()
        .await
        .unwrap();
    let api = Api::new(&dev);
    api.register(json!({"Name": "echo", "Check": {"TTL": "1h"}}))
        .await;
    let resp = api.get("/v1/health/service/echo").await;
    for h in [
        "x-consul-index",
        "x-consul-knownleader",
        "x-consul-lastcontact",
        "x-consul-effective-consistency",
        "x-consul-default-acl-policy",
    ] {
        assert!(resp.headers().contains_key(h), "missing {h}");
    }
    assert_eq!(resp.headers()["content-type"], "application/json");
    let body: serde_json::Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    let entry = &body[0];
    assert_eq!(entry["Node"]["Node"], "node1");
    assert_eq!(entry["Node"]["Datacenter"], "dc1");
    assert_eq!(entry["Service"]["Tags"], json!([]));
    assert!(entry["Service"].get("Port").is_none(), "Port 0 is omitted");
    let check_ids: Vec<&str> = entry["Checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["CheckID"].as_str().unwrap())
        .collect();
    assert_eq!(check_ids, ["serfHealth", "service:echo"]);
    assert_eq!(entry["Checks"][0]["ServiceTags"], json!([]));

    let (missing, index) = api.get_json("/v1/health/service/nothing").await;
    assert_eq!(missing, json!([]));
    assert!(index >= 1, "X-Consul-Index is never 0");
    let (code, text) = api.error(Method::GET, "/v1/health/service/", None).await;
    assert_eq!((code, text.as_str()), (400, "Missing service name"));
}

#[tokio::test]
async fn blocking_query_wakes_on_change_and_times_out_otherwise() {
    support::trace_init();
    let dev = ConsulDev::start().await.unwrap();
    let api = Api::new(&dev);
    api.register(json!({"Name": "echo", "ID": "e1", "Check": {"TTL": "1h", "Status": "passing"}}))
        .await;
    let (_, index) = api.get_json("/v1/health/service/echo").await;

    // Nothing changes: returns after the wait with the same index.
    let (_, same) = api
        .get_json(&format!("/v1/health/service/echo?index={index}&wait=200ms"))
        .await;
    assert_eq!(same, index);

    // A write to another service does not wake this one.
    let url = format!("/v1/health/service/echo?index={index}&wait=30s");
    let waiter = api.spawn_blocking_get(&dev, &url, 3).await;
    api.register(json!({"Name": "other"})).await;
    tokio::task::yield_now().await;
    assert!(!waiter.is_finished(), "woke on an unrelated write");
    api.register(json!({"Name": "echo", "ID": "e2", "Check": {"TTL": "1h", "Status": "passing"}}))
        .await;
    let (body, new_index) = waiter.await.unwrap();
    assert!(new_index > index);
    assert_eq!(ids(&body), ["e1", "e2"]);
}

#[tokio::test]
async fn absent_service_blocks_on_the_last_extinction() {
    let dev = ConsulDev::start().await.unwrap();
    let api = Api::new(&dev);
    api.register(json!({"Name": "gone"})).await;
    api.put_ok("/v1/agent/service/deregister/gone", None).await;
    let (_, index) = api.get_json("/v1/health/service/echo").await;
    let waiter = api
        .spawn_blocking_get(
            &dev,
            &format!("/v1/health/service/echo?index={index}&wait=30s"),
            2,
        )
        .await;
    api.register(json!({"Name": "echo"})).await;
    let (body, new_index) = waiter.await.unwrap();
    assert!(new_index > index);
    assert_eq!(ids(&body), ["echo"]);
}

#[tokio::test]
async fn rejects_bad_query_options() {
    let dev = ConsulDev::start().await.unwrap();
    let api = Api::new(&dev);
    let cases = [
        ("?wait=10", "Invalid wait time"),
        ("?index=abc", "Invalid index"),
        (
            "?stale&consistent",
            "Cannot specify ?stale with ?consistent, conflicting semantics.",
        ),
        (
            "?cached&consistent",
            "Cannot specify ?cached with ?consistent, conflicting semantics.",
        ),
        ("?max_stale=x", "Invalid max_stale value \"x\""),
    ];
    for (q, want) in cases {
        let (code, text) = api
            .error(Method::GET, &format!("/v1/health/service/echo{q}"), None)
            .await;
        assert_eq!((code, text.as_str()), (400, want), "{q}");
    }
    let resp = api.get("/v1/health/service/echo?stale&wait=1m30s").await;
    assert_eq!(resp.headers()["x-consul-effective-consistency"], "stale");
    let resp = api
        .get("/v1/health/service/echo?index=0&wait=300000ms")
        .await;
    assert_eq!(resp.status(), 200);
    assert!(index_of(&resp) >= 1);
}

#[tokio::test]
async fn check_lists_by_service_node_and_state() {
    let dev = ConsulDev::builder().node_name("n1").start().await.unwrap();
    let api = Api::new(&dev);
    three_instances(&api).await;
    let (checks, _) = api.get_json("/v1/health/checks/echo").await;
    assert_eq!(checks.as_array().unwrap().len(), 3);
    let (node, _) = api.get_json("/v1/health/node/n1").await;
    assert_eq!(
        node.as_array().unwrap().len(),
        4,
        "three service checks and serfHealth"
    );
    let (warning, _) = api.get_json("/v1/health/state/warning").await;
    assert_eq!(warning[0]["ServiceID"], "e3");
    let (any, _) = api.get_json("/v1/health/state/any").await;
    assert_eq!(any.as_array().unwrap().len(), 4);
    let (code, _) = api.error(Method::GET, "/v1/health/state/bogus", None).await;
    assert_eq!(code, 400);
}

#[tokio::test]
async fn heartbeats_and_identical_reregistration_do_not_move_the_index() {
    let dev = ConsulDev::start().await.unwrap();
    let api = Api::new(&dev);
    let body = json!({"Name": "echo", "Tags": ["a"], "Check": {"TTL": "1h"}});
    api.register(body.clone()).await;
    api.put_ok("/v1/agent/check/pass/service:echo?note=1", None)
        .await;
    let (_, index) = api.get_json("/v1/health/service/echo").await;
    // Same status, new output: the agent syncs outputs lazily, so no write.
    api.put_ok("/v1/agent/check/pass/service:echo?note=2", None)
        .await;
    // The same definition again: no write either (and the status is kept).
    api.register(body).await;
    let (entries, same) = api.get_json("/v1/health/service/echo").await;
    assert_eq!(same, index);
    assert_eq!(entries[0]["Checks"][1]["Status"], "passing");
    // A real change moves it.
    api.register(json!({"Name": "echo", "Tags": ["b"], "Check": {"TTL": "1h"}}))
        .await;
    let (_, moved) = api.get_json("/v1/health/service/echo").await;
    assert!(moved > index);
}
