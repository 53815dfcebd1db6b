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

#[tokio::test]
async fn raft_peer_removal_refuses_unknown_peers_and_the_last_voter() {
    let dev = ConsulDev::start().await.unwrap();
    let api = Api::new(&dev);
    let (raft, _) = api.get_json("/v1/operator/raft/configuration").await;
    let id = raft["Servers"][0]["ID"].as_str().unwrap().to_owned();
    let address = raft["Servers"][0]["Address"].as_str().unwrap().to_owned();
    let cases = [
        (
            "/v1/operator/raft/peer".to_owned(),
            400,
            "Must specify either ?id with the server's ID or ?address with IP:port of peer to remove".to_owned(),
        ),
        (
            "/v1/operator/raft/peer?id=a&address=b".to_owned(),
            400,
            "Must specify only one of ?id or ?address".to_owned(),
        ),
        (
            "/v1/operator/raft/peer?address=10.0.0.1:8300".to_owned(),
            500,
            "address \"10.0.0.1:8300\" was not found in the Raft configuration".to_owned(),
        ),
        (
            "/v1/operator/raft/peer?id=nope".to_owned(),
            500,
            "id \"nope\" was not found in the Raft configuration".to_owned(),
        ),
        (
            format!("/v1/operator/raft/peer?id={id}"),
            500,
            "need at least one voter in configuration: {[]}".to_owned(),
        ),
        (
            format!("/v1/operator/raft/peer?address={address}"),
            500,
            "need at least one voter in configuration: {[]}".to_owned(),
        ),
    ];
    for (path, code, text) in cases {
        let got = api.error(Method::DELETE, &path, None).await;
        assert_eq!(got, (code, text), "{path}");
    }
    let (raft_after, _) = api.get_json("/v1/operator/raft/configuration").await;
    assert_eq!(raft_after["Servers"], raft["Servers"]);
}

#[tokio::test]
async fn transfer_leader_has_no_other_voter() {
    let dev = ConsulDev::start().await.unwrap();
    let api = Api::new(&dev);
    let (raft, _) = api.get_json("/v1/operator/raft/configuration").await;
    let id = raft["Servers"][0]["ID"].as_str().unwrap().to_owned();
    for (path, why) in [
        (
            "/v1/operator/raft/transfer-leader".to_owned(),
            "cannot find peer".to_owned(),
        ),
        (
            format!("/v1/operator/raft/transfer-leader?id={id}"),
            "cannot find replication state for 0xc000a1b2c0".to_owned(),
        ),
        (
            "/v1/operator/raft/transfer-leader?id=other".to_owned(),
            "Could not find address for server id other".to_owned(),
        ),
    ] {
        let got = api.error(Method::POST, &path, None).await;
        assert_eq!(
            got,
            (500, format!("rpc error: code = Unknown desc = {why}")),
            "{path}"
        );
    }
    let (state, _) = api.get_json("/v1/operator/autopilot/state").await;
    assert_eq!(state["Leader"], id.as_str());
}

#[tokio::test]
async fn autopilot_configuration_round_trips_with_cas() {
    let dev = ConsulDev::start().await.unwrap();
    let api = Api::new(&dev);
    let (before, _) = api.get_json("/v1/operator/autopilot/configuration").await;
    assert_eq!(before["ServerStabilizationTime"], "10s");
    let sent = serde_json::json!({
        "CleanupDeadServers": false,
        "LastContactThreshold": "1s",
        "MaxTrailingLogs": 100,
        "MinQuorum": 3,
        "ServerStabilizationTime": "30s",
        "RedundancyZoneTag": "zone",
        "DisableUpgradeMigration": true,
        "UpgradeVersionTag": "build",
    });
    let resp = api
        .put("/v1/operator/autopilot/configuration", Some(sent.clone()))
        .await;
    assert_eq!(resp.text().await.unwrap().trim(), "true");
    let (got, _) = api.get_json("/v1/operator/autopilot/configuration").await;
    for (key, value) in sent.as_object().unwrap() {
        assert_eq!(&got[key], value, "{key}");
    }
    let modify = got["ModifyIndex"].as_u64().unwrap();
    assert!(modify > before["ModifyIndex"].as_u64().unwrap());
    assert_eq!(got["CreateIndex"], before["CreateIndex"]);
    // A stale `cas` is refused (false), the current one applies (true).
    let stale = format!("/v1/operator/autopilot/configuration?cas={}", modify - 1);
    let resp = api.put(&stale, Some(serde_json::json!({}))).await;
    assert_eq!(resp.text().await.unwrap().trim(), "false");
    let current = format!("/v1/operator/autopilot/configuration?cas={modify}");
    let resp = api.put(&current, Some(serde_json::json!({}))).await;
    assert_eq!(resp.text().await.unwrap().trim(), "true");
    // Fields left out take `api.NewAutopilotConfiguration`'s values.
    let (reset, _) = api.get_json("/v1/operator/autopilot/configuration").await;
    assert_eq!(reset["CleanupDeadServers"], true);
    assert_eq!(reset["LastContactThreshold"], "200ms");
    assert_eq!(reset["MinQuorum"], 0);
    let (code, text) = api
        .error(
            Method::PUT,
            "/v1/operator/autopilot/configuration?cas=x",
            Some(serde_json::json!({})),
        )
        .await;
    assert_eq!(
        (code, text.as_str()),
        (
            400,
            "Error parsing cas value: strconv.ParseUint: parsing \"x\": invalid syntax"
        )
    );
    let (code, text) = api
        .error(
            Method::PUT,
            "/v1/operator/autopilot/configuration",
            Some(serde_json::json!({"Bogus": 1})),
        )
        .await;
    assert_eq!(
        (code, text.as_str()),
        (
            400,
            "Error parsing autopilot config: json: unknown field \"Bogus\""
        )
    );
}

#[tokio::test]
async fn keyring_operations_fail_without_gossip_encryption() {
    let dev = ConsulDev::builder().node_name("n1").start().await.unwrap();
    let api = Api::new(&dev);
    let (code, text) = api.error(Method::GET, "/v1/operator/keyring", None).await;
    assert_eq!(
        (code, text.as_str()),
        (
            500,
            "4 errors occurred:\n\t* WAN error: 1/1 nodes reported failure\n\t* n1.dc1: Keyring is empty (encryption not enabled)\n\t* dc1 (LAN) error: 1/1 nodes reported failure\n\t* n1: Keyring is empty (encryption not enabled)\n\n"
        )
    );
    let (code, text) = api
        .error(Method::GET, "/v1/operator/keyring?local-only=true", None)
        .await;
    assert_eq!(
        (code, text.as_str()),
        (
            500,
            "2 errors occurred:\n\t* dc1 (LAN) error: 1/1 nodes reported failure\n\t* n1: Keyring is empty (encryption not enabled)\n\n"
        )
    );
    let key = serde_json::json!({"Key": "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s="});
    let (code, text) = api
        .error(Method::POST, "/v1/operator/keyring", Some(key.clone()))
        .await;
    assert_eq!(code, 500);
    assert!(
        text.contains("* n1: No keyring to modify (encryption not enabled)\n"),
        "{text}"
    );
    let (code, text) = api
        .error(
            Method::PUT,
            "/v1/operator/keyring?local-only=true",
            Some(key),
        )
        .await;
    assert_eq!(
        (code, text.as_str()),
        (
            400,
            "Invalid use of local-only: local-only can only be set for GET requests"
        )
    );
    let (code, text) = api
        .error(Method::GET, "/v1/operator/keyring?relay-factor=9", None)
        .await;
    assert_eq!(
        (code, text.as_str()),
        (
            400,
            "Invalid relay-factor: Relay factor must be in range: [0, 5]"
        )
    );
}

#[tokio::test]
async fn usage_counts_services_and_instances() {
    let dev = ConsulDev::start().await.unwrap();
    let api = Api::new(&dev);
    api.register(serde_json::json!({"Name": "web", "ID": "web-1", "Port": 80}))
        .await;
    api.register(serde_json::json!({"Name": "web", "ID": "web-2", "Port": 81}))
        .await;
    api.register(serde_json::json!({
        "Name": "web-proxy", "Kind": "connect-proxy", "Port": 20000,
        "Proxy": {"DestinationServiceName": "web"},
    }))
    .await;
    let (usage, index) = api.get_json("/v1/operator/usage").await;
    assert_eq!(usage["Index"], index);
    assert_eq!(usage["KnownLeader"], true);
    let dc1 = &usage["Usage"]["dc1"];
    assert_eq!(dc1["Services"], 3, "consul, web and web-proxy");
    assert_eq!(dc1["ServiceInstances"], 4);
    assert_eq!(dc1["BillableServiceInstances"], 2);
    assert_eq!(dc1["ConnectServiceInstances"]["connect-native"], 0);
    assert_eq!(
        dc1.as_object().map(|o| o.len()),
        Some(4),
        "ServiceUsage's four fields: {dc1}"
    );
    assert_eq!(dc1["ConnectServiceInstances"]["connect-proxy"], 1);
    assert_eq!(dc1["ConnectServiceInstances"]["mesh-gateway"], 0);
}
