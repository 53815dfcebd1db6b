//! Events, membership no-ops, coordinates and raft configuration of `ConsulDev`.

mod common;
mod support;

use common::Api;
use consul_dev::ConsulDev;
use serde_json::json;

#[tokio::test]
async fn events_fire_and_list() {
    support::trace_init();
    let dev = ConsulDev::start().await.unwrap();
    let api = Api::new(&dev);
    let resp = api
        .http
        .put(format!("{}/v1/event/fire/deploy?service=web", api.base))
        .body("v2")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let fired: serde_json::Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!(fired["Name"], "deploy");
    assert_eq!(fired["Payload"], "djI=");
    assert_eq!(fired["ServiceFilter"], "web");
    api.put_ok("/v1/event/fire/other", None).await;
    let (list, index) = api.get_json("/v1/event/list?name=deploy").await;
    assert_eq!(list.as_array().map(Vec::len), Some(1));
    assert_eq!(list[0]["ID"], fired["ID"]);
    assert!(index >= 1);
}

#[tokio::test]
async fn membership_and_cluster_endpoints_answer() {
    let dev = ConsulDev::builder().node_name("n1").start().await.unwrap();
    let api = Api::new(&dev);
    for path in ["/v1/agent/join/127.0.0.1", "/v1/agent/reload"] {
        api.put_ok(path, None).await;
    }
    let (dcs, _) = api.get_json("/v1/coordinate/datacenters").await;
    assert_eq!(dcs[0]["Datacenter"], "dc1");
    let (nodes, _) = api.get_json("/v1/coordinate/nodes").await;
    assert_eq!(nodes[0]["Node"], "n1");
    assert_eq!(nodes[0]["Coord"]["Vec"].as_array().map(Vec::len), Some(8));
    let (node, index) = api.get_json("/v1/coordinate/node/n1").await;
    assert_eq!(node[0]["Node"], "n1");
    assert!(index >= 1);
    let resp = api.get("/v1/coordinate/node/nobody").await;
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.text().await.unwrap(), "");
    let (raft, _) = api.get_json("/v1/operator/raft/configuration").await;
    assert_eq!(raft["Servers"][0]["Leader"], json!(true));
    assert_eq!(raft["Servers"][0]["Node"], "n1");
}

#[tokio::test]
async fn txn_applies_kv_ops_atomically() {
    let dev = ConsulDev::start().await.unwrap();
    let api = Api::new(&dev);
    let ops = json!([
        {"KV": {"Verb": "set", "Key": "t/a", "Value": "YQ=="}},
        {"KV": {"Verb": "set", "Key": "t/b", "Value": "Yg==", "Flags": 3}},
        {"KV": {"Verb": "get", "Key": "t/a"}},
    ]);
    let resp = api.put("/v1/txn", Some(ops)).await;
    assert_eq!(resp.status(), 200);
    let out: serde_json::Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!(out["Errors"], json!(null));
    assert_eq!(
        out["Results"][0]["KV"]["Value"],
        json!(null),
        "writes return no value"
    );
    assert_eq!(out["Results"][2]["KV"]["Value"], "YQ==");

    // One failing op rolls back the others.
    let ops = json!([
        {"KV": {"Verb": "delete", "Key": "t/a"}},
        {"KV": {"Verb": "check-not-exists", "Key": "t/b"}},
    ]);
    let resp = api.put("/v1/txn", Some(ops)).await;
    assert_eq!(resp.status(), 409);
    let out: serde_json::Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!(
        out["Errors"][0],
        json!({"OpIndex": 1, "What": "key \"t/b\" exists"})
    );
    assert_eq!(api.get("/v1/kv/t/a").await.status(), 200, "rolled back");
    let (code, _) = api
        .error(
            reqwest::Method::PUT,
            "/v1/txn",
            Some(json!({"not": "a list"})),
        )
        .await;
    assert_eq!(code, 400);
}

#[tokio::test]
async fn sessions_expire_without_renewal_and_release_their_locks() {
    let dev = ConsulDev::start().await.unwrap();
    let api = Api::new(&dev);
    let resp = api
        .put("/v1/session/create", Some(json!({"TTL": "200ms"})))
        .await;
    let created: serde_json::Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    let id = created["ID"].as_str().unwrap().to_owned();
    let acquire = api
        .http
        .put(format!("{}/v1/kv/leader?acquire={id}", api.base))
        .body("me");
    assert_eq!(
        acquire.send().await.unwrap().text().await.unwrap().trim(),
        "true"
    );
    let (renewed, _) = {
        let resp = api.put(&format!("/v1/session/renew/{id}"), None).await;
        assert_eq!(resp.status(), 200);
        (
            serde_json::from_slice::<serde_json::Value>(&resp.bytes().await.unwrap()).unwrap(),
            (),
        )
    };
    assert_eq!(renewed[0]["TTL"], "200ms");
    support::eventually(
        std::time::Duration::from_secs(5),
        "session expires",
        || async {
            let (info, _) = api.get_json(&format!("/v1/session/info/{id}")).await;
            info == json!([])
        },
    )
    .await;
    let (entry, _) = api.get_json("/v1/kv/leader").await;
    assert!(entry[0].get("Session").is_none(), "the lock is released");
    assert_eq!(entry[0]["LockIndex"], 1);
}

#[tokio::test]
async fn token_self_and_version() {
    let open = ConsulDev::start().await.unwrap();
    let api = Api::new(&open);
    let (code, text) = api
        .error(reqwest::Method::GET, "/v1/acl/token/self", None)
        .await;
    assert_eq!((code, text.as_str()), (401, "ACL support disabled"));
    let (v, _) = api.get_json("/v1/agent/version").await;
    assert!(v["HumanVersion"].as_str().is_some());

    let locked = ConsulDev::builder()
        .acl_token(Some("t0k".into()))
        .start()
        .await
        .unwrap();
    let api = Api::new(&locked);
    let resp = api
        .http
        .get(format!("{}/v1/acl/token/self", api.base))
        .header("X-Consul-Token", "t0k")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let token: serde_json::Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!(token["Policies"][0]["Name"], "global-management");
}

#[tokio::test]
async fn sessions_need_a_known_node_and_healthy_checks() {
    let dev = ConsulDev::start().await.unwrap();
    let api = Api::new(&dev);
    let cases = [
        (json!({"Node": "nope"}), "Missing node registration"),
        (
            json!({"NodeChecks": ["nope"]}),
            "Missing check 'nope' registration",
        ),
    ];
    for (body, want) in cases {
        let (code, text) = api
            .error(reqwest::Method::PUT, "/v1/session/create", Some(body))
            .await;
        assert_eq!((code, text.as_str()), (500, want));
    }
    dev.set_check_status("serfHealth", "critical", "down");
    let (code, text) = api
        .error(reqwest::Method::PUT, "/v1/session/create", None)
        .await;
    assert_eq!(
        (code, text.as_str()),
        (500, "Check 'serfHealth' is in critical state")
    );
    let (code, _) = api
        .error(reqwest::Method::PUT, "/v1/session/create?dc=dc2", None)
        .await;
    assert_eq!(code, 500);
}

#[tokio::test]
async fn prepared_queries_round_trip_and_execute() {
    let dev = ConsulDev::start().await.unwrap();
    let api = Api::new(&dev);
    let (empty, _) = api.get_json("/v1/query").await;
    assert_eq!(empty, json!([]));
    api.register(json!({"Name": "foo", "ID": "f1", "Tags": ["a"], "Check": {"TTL": "1h", "Status": "passing"}})).await;
    api.register(json!({"Name": "foo", "ID": "f2", "Tags": ["b"], "Check": {"TTL": "1h", "Status": "warning"}})).await;
    let body = json!({"Name": "fooquery", "Service": {"Service": "foo", "OnlyPassing": false, "Tags": ["!b"]}});
    let resp = api
        .send(reqwest::Method::POST, "/v1/query", Some(body))
        .await;
    assert_eq!(resp.status(), 200);
    let created: serde_json::Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    let id = created["ID"].as_str().unwrap().to_owned();
    let (got, _) = api.get_json(&format!("/v1/query/{id}")).await;
    assert_eq!(got[0]["Name"], "fooquery");
    let (explained, _) = api.get_json("/v1/query/fooquery/explain").await;
    assert_eq!(explained["Query"]["ID"], id.as_str());
    let (result, _) = api.get_json("/v1/query/fooquery/execute").await;
    let ids: Vec<&str> = result["Nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["Service"]["ID"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["f1"]);
    assert_eq!(
        api.send(reqwest::Method::DELETE, &format!("/v1/query/{id}"), None)
            .await
            .status(),
        200
    );
    let (code, text) = api
        .error(reqwest::Method::GET, &format!("/v1/query/{id}"), None)
        .await;
    assert_eq!((code, text.as_str()), (404, "Query not found"));
}

#[tokio::test]
async fn coordinate_updates_are_read_back() {
    let dev = ConsulDev::builder().node_name("n1").start().await.unwrap();
    let api = Api::new(&dev);
    let coord = json!({"Vec": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8], "Error": 0.5, "Adjustment": 0.01, "Height": 0.0002});
    let (_, before) = api.get_json("/v1/coordinate/node/n1").await;
    api.put_ok(
        "/v1/coordinate/update",
        Some(json!({"Node": "n1", "Segment": "", "Coord": coord})),
    )
    .await;
    let (node, index) = api.get_json("/v1/coordinate/node/n1").await;
    assert!(index > before);
    assert_eq!(
        node,
        json!([{"Node": "n1", "Segment": "", "Partition": "", "Coord": coord}])
    );
    let (nodes, _) = api.get_json("/v1/coordinate/nodes").await;
    assert_eq!(nodes[0]["Coord"], coord);
    // A node not in the catalog is dropped silently, as `CoordinateBatchUpdate` does.
    api.put_ok(
        "/v1/coordinate/update",
        Some(json!({"Node": "nobody", "Coord": coord})),
    )
    .await;
    assert_eq!(api.get("/v1/coordinate/node/nobody").await.status(), 404);
    let short = json!({"Node": "n1", "Coord": {"Vec": [0.1, 0.2]}});
    let (code, text) = api
        .error(reqwest::Method::PUT, "/v1/coordinate/update", Some(short))
        .await;
    assert_eq!((code, text.as_str()), (500, "incompatible coordinate"));
    let unknown = json!({"Node": "n1", "Coords": coord});
    let (code, text) = api
        .error(reqwest::Method::PUT, "/v1/coordinate/update", Some(unknown))
        .await;
    assert_eq!(
        (code, text.as_str()),
        (400, "Request decode failed: json: unknown field \"Coords\"")
    );
}

#[tokio::test]
async fn force_leave_knows_only_the_agent_itself() {
    let dev = ConsulDev::builder().node_name("n1").start().await.unwrap();
    let api = Api::new(&dev);
    // Removing an alive member (the agent) does nothing, on either pool.
    for path in [
        "/v1/agent/force-leave/n1",
        "/v1/agent/force-leave/n1?prune",
        "/v1/agent/force-leave/n1.dc1?wan",
    ] {
        api.put_ok(path, None).await;
    }
    for (path, name) in [
        ("/v1/agent/force-leave/gone?prune", "gone"),
        ("/v1/agent/force-leave/n1?wan", "n1"),
        ("/v1/agent/force-leave/", ""),
    ] {
        let (code, text) = api.error(reqwest::Method::PUT, path, None).await;
        assert_eq!(
            (code, text),
            (500, format!("agent: No node found with name '{name}'")),
            "{path}"
        );
    }
    let (members, _) = api.get_json("/v1/agent/members").await;
    assert_eq!(members.as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn monitor_checks_the_log_level_and_streams() {
    let dev = ConsulDev::start().await.unwrap();
    let api = Api::new(&dev);
    for level in ["verbose", "fatal"] {
        let path = format!("/v1/agent/monitor?loglevel={level}");
        let (code, text) = api.error(reqwest::Method::GET, &path, None).await;
        assert_eq!((code, text), (400, format!("Unknown log level: {level}")));
    }
    // A known level (any case) answers 200 at once and keeps the body open.
    let mut resp = api.get("/v1/agent/monitor?loglevel=debug").await;
    assert_eq!(resp.status(), 200);
    let next = tokio::time::timeout(std::time::Duration::from_millis(100), resp.chunk()).await;
    assert!(next.is_err(), "the stream stays open: {next:?}");
}

#[tokio::test]
async fn leave_answers_then_the_agent_stops_serving() {
    let mut dev = ConsulDev::start().await.unwrap();
    let api = Api::new(&dev);
    // A blocking query parked when the agent leaves is closed after the grace.
    let (_, index) = api.get_json("/v1/kv/?keys").await;
    let parked = api
        .http
        .get(format!("{}/v1/kv/?keys&index={index}&wait=5m", api.base))
        .send();
    let parked = tokio::spawn(parked);
    support::eventually(
        std::time::Duration::from_secs(5),
        "the blocking query is parked",
        || async { dev.blocked_queries() == 1 },
    )
    .await;
    let resp = api.put("/v1/agent/leave", None).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "");
    // The agent shut down: new connections are refused.
    let fresh = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let url = format!("{}/v1/agent/self", dev.url());
    support::eventually(
        std::time::Duration::from_secs(5),
        "connections are refused",
        || async { fresh.get(&url).send().await.is_err() },
    )
    .await;
    tokio::time::timeout(std::time::Duration::from_secs(5), dev.left())
        .await
        .expect("the agent has left");
    let closed = parked.await.unwrap();
    assert!(
        closed.is_err(),
        "the parked query's connection closed: {closed:?}"
    );
    // A restart serves again, with the state kept.
    dev.restart().await.unwrap();
    assert_eq!(fresh.get(&url).send().await.unwrap().status(), 200);
}
