//! Catalog, status, self, ACL and KV endpoints of `ConsulDev`.

mod common;
mod support;

use common::{Api, fixture};
use consul_dev::ConsulDev;
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn the_dev_node_has_serf_health_and_the_consul_service() {
    support::trace_init();
    let dev = ConsulDev::builder()
        .node_name("node1")
        .datacenter("dc9")
        .start()
        .await
        .unwrap();
    let api = Api::new(&dev);
    let (services, _) = api.get_json("/v1/catalog/services").await;
    assert_eq!(services, json!({"consul": []}));
    let (nodes, _) = api.get_json("/v1/catalog/nodes").await;
    assert_eq!(nodes[0]["Node"], "node1");
    assert_eq!(nodes[0]["Datacenter"], "dc9");
    let (checks, _) = api.get_json("/v1/health/node/node1").await;
    assert_eq!(checks[0]["CheckID"], "serfHealth");
    assert_eq!(checks[0]["Status"], "passing");
    let (dcs, _) = api.get_json("/v1/catalog/datacenters").await;
    assert_eq!(dcs, json!(["dc9"]));
    let (leader, _) = api.get_json("/v1/status/leader").await;
    assert!(leader.as_str().is_some_and(|l| !l.is_empty()));
    let (peers, _) = api.get_json("/v1/status/peers").await;
    assert_eq!(peers.as_array().map(Vec::len), Some(1));
    let (me, _) = api.get_json("/v1/agent/self").await;
    assert_eq!(me["Config"]["NodeName"], "node1");
    assert_eq!(me["Config"]["Datacenter"], "dc9");
    let (members, _) = api.get_json("/v1/agent/members").await;
    assert_eq!(members[0]["Name"], "node1");
    assert_eq!(members[0]["Status"], 1);
    // The agent's own lists don't show the server's `consul` service.
    let (agent_services, _) = api.get_json("/v1/agent/services").await;
    assert_eq!(agent_services, json!({}));
    let (code, text) = api
        .error(Method::GET, "/v1/catalog/services?dc=other", None)
        .await;
    assert_eq!((code, text.as_str()), (500, "No path to datacenter"));
}

#[tokio::test]
async fn catalog_service_has_the_documented_flat_shape() {
    let dev = ConsulDev::start().await.unwrap();
    let api = Api::new(&dev);
    api.register(json!({"Name": "web", "ID": "web-1", "Tags": ["prod"], "Address": "172.17.0.3", "Port": 5000})).await;
    let (list, index) = api.get_json("/v1/catalog/service/web?tag=PROD").await;
    assert!(index >= 1);
    let want = fixture("catalog-service.json");
    let (got, doc) = (list[0].as_object().unwrap(), want[0].as_object().unwrap());
    // Every documented field is present (Namespace is Enterprise-only).
    for key in doc.keys().filter(|k| *k != "Namespace") {
        assert!(got.contains_key(key), "missing {key}");
    }
    assert_eq!(got["ServiceTags"], json!(["prod"]));
    assert_eq!(got["ServicePort"], 5000);
    let (none, _) = api.get_json("/v1/catalog/service/web?tag=dev").await;
    assert_eq!(none, json!([]));
    let (only_prod, _) = api
        .get_json("/v1/catalog/services?filter=prod%20in%20ServiceTags")
        .await;
    assert_eq!(only_prod, json!({"web": ["prod"]}));
}

#[tokio::test]
async fn catalog_register_and_deregister_external_nodes() {
    let dev = ConsulDev::start().await.unwrap();
    let api = Api::new(&dev);
    let body = json!({
        "Node": "ext1", "Address": "10.0.0.1", "NodeMeta": {"rack": "r1"},
        "Service": {"Service": "db", "ID": "db1", "Port": 5432, "Tags": ["primary"]},
        "Check": {"CheckID": "db-alive", "Name": "db alive", "Status": "passing", "ServiceID": "db1"},
    });
    let (ok, _) = {
        let resp = api.put("/v1/catalog/register", Some(body)).await;
        assert_eq!(resp.status(), 200);
        (resp.text().await.unwrap(), ())
    };
    assert_eq!(ok.trim(), "true");
    let (entries, _) = api
        .get_json("/v1/health/service/db?passing&node-meta=rack:r1")
        .await;
    assert_eq!(entries[0]["Node"]["Address"], "10.0.0.1");
    assert_eq!(entries[0]["Checks"][0]["CheckID"], "db-alive");
    let (node, _) = api.get_json("/v1/catalog/node/ext1").await;
    assert_eq!(node["Services"]["db1"]["Port"], 5432);
    let resp = api
        .put("/v1/catalog/deregister", Some(json!({"Node": "ext1"})))
        .await;
    assert_eq!(resp.status(), 200);
    let (entries, _) = api.get_json("/v1/health/service/db").await;
    assert_eq!(entries, json!([]));
    let (code, text) = api
        .error(
            Method::PUT,
            "/v1/catalog/register",
            Some(json!({"Address": "x"})),
        )
        .await;
    // Catalog.Register's checks are server errors: 500 with their text.
    assert_eq!((code, text.as_str()), (500, "Must provide node"));
    for (body, want) in [
        (
            json!({"Node": "n"}),
            "Must provide address if SkipNodeUpdate is not set",
        ),
        (
            json!({"Node": "n", "Address": "10.0.0.1", "ID": "nope"}),
            "Bad node ID: uuid string is wrong length",
        ),
        (
            json!({"Node": "n", "Address": "10.0.0.1", "Service": {"Service": "s", "Address": "0.0.0.0"}}),
            "Invalid service address",
        ),
        (
            json!({"Node": "n", "Address": "10.0.0.1", "Service": {"Kind": "connect-proxy", "Service": "p", "Port": 1}}),
            "1 error occurred:\n\t* Proxy.DestinationServiceName must be non-empty for Connect proxy services\n\n",
        ),
    ] {
        let (code, text) = api
            .error(Method::PUT, "/v1/catalog/register", Some(body))
            .await;
        assert_eq!((code, text.as_str()), (500, want));
    }
}

#[tokio::test]
async fn acl_token_is_required_when_configured() {
    let dev = ConsulDev::builder()
        .acl_token(Some("s3cret".into()))
        .start()
        .await
        .unwrap();
    assert!(
        !format!("{dev:?}").contains("s3cret"),
        "Debug must not leak the token"
    );
    let api = Api::new(&dev);
    let (code, text) = api.error(Method::GET, "/v1/agent/services", None).await;
    assert_eq!((code, text.as_str()), (403, "Permission denied"));
    let resp = api
        .http
        .get(format!("{}/v1/agent/services", api.base))
        .header("X-Consul-Token", "wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(resp.headers()["x-consul-default-acl-policy"], "deny");
    assert_eq!(resp.text().await.unwrap(), "ACL not found");
    for req in [
        api.http
            .get(format!("{}/v1/agent/services", api.base))
            .header("X-Consul-Token", "s3cret"),
        api.http
            .get(format!("{}/v1/agent/services", api.base))
            .header("Authorization", "Bearer s3cret"),
        api.http
            .get(format!("{}/v1/agent/services?token=s3cret", api.base)),
        // `?token` wins over the header.
        api.http
            .get(format!("{}/v1/agent/services?token=s3cret", api.base))
            .header("X-Consul-Token", "wrong"),
    ] {
        assert_eq!(req.send().await.unwrap().status(), 200);
    }
    // The header wins over Authorization.
    let resp = api
        .http
        .get(format!("{}/v1/agent/services", api.base))
        .header("X-Consul-Token", "wrong")
        .header("Authorization", "Bearer s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(api.get("/v1/status/leader").await.status(), 200);
}

#[tokio::test]
async fn kv_put_get_list_cas_and_delete() {
    let dev = ConsulDev::start().await.unwrap();
    let api = Api::new(&dev);
    let put = |path: &'static str, body: &'static str| {
        let req = api.http.put(format!("{}{path}", api.base)).body(body);
        async move {
            req.send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
                .trim()
                .to_owned()
        }
    };
    assert_eq!(put("/v1/kv/app/a?flags=7", "hello").await, "true");
    assert_eq!(put("/v1/kv/app/b/c", "x").await, "true");
    let (entry, index) = api.get_json("/v1/kv/app/a").await;
    assert_eq!(entry[0]["Value"], "aGVsbG8=");
    assert_eq!(entry[0]["Flags"], 7);
    let modify = entry[0]["ModifyIndex"].as_u64().unwrap();
    assert!(index >= modify);
    let raw = api.get("/v1/kv/app/a?raw").await;
    assert_eq!(raw.headers()["content-type"], "text/plain");
    assert_eq!(raw.text().await.unwrap(), "hello");
    let (code, text) = api.error(Method::DELETE, "/v1/kv/", None).await;
    assert_eq!((code, text.as_str()), (400, "Missing key name"));
    let (keys, _) = api.get_json("/v1/kv/app/?keys&separator=/").await;
    assert_eq!(keys, json!(["app/a", "app/b/"]));
    let (all, _) = api.get_json("/v1/kv/app?recurse").await;
    assert_eq!(all.as_array().unwrap().len(), 2);
    assert_eq!(put("/v1/kv/app/a?cas=1", "no").await, "false");
    let cas = format!("/v1/kv/app/a?cas={modify}");
    let resp = api
        .http
        .put(format!("{}{cas}", api.base))
        .body("yes")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.text().await.unwrap().trim(), "true");
    assert_eq!(
        api.send(Method::DELETE, "/v1/kv/app?recurse", None)
            .await
            .status(),
        200
    );
    let resp = api.get("/v1/kv/app/a").await;
    assert_eq!(resp.status(), 404);
    assert!(common::index_of(&resp) >= 1);
}

#[tokio::test]
async fn sessions_lock_and_release_keys() {
    let dev = ConsulDev::start().await.unwrap();
    let api = Api::new(&dev);
    let create = |body: serde_json::Value| {
        let req = api
            .http
            .put(format!("{}/v1/session/create", api.base))
            .body(body.to_string());
        async move {
            let bytes = req.send().await.unwrap().bytes().await.unwrap();
            let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            v["ID"].as_str().unwrap().to_owned()
        }
    };
    let put = |path: String| {
        let req = api.http.put(format!("{}{path}", api.base)).body("v");
        async move {
            req.send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
                .trim()
                .to_owned()
        }
    };
    let s1 = create(json!({"Name": "one", "TTL": "30s"})).await;
    let s2 = create(json!({"Name": "two", "Behavior": "delete"})).await;
    let (info, _) = api.get_json(&format!("/v1/session/info/{s1}")).await;
    assert_eq!(info[0]["Name"], "one");
    assert_eq!(info[0]["NodeChecks"], json!(["serfHealth"]));
    assert_eq!(info[0]["LockDelay"], 15_000_000_000u64);

    assert_eq!(put(format!("/v1/kv/lock?acquire={s1}")).await, "true");
    assert_eq!(put(format!("/v1/kv/lock?acquire={s2}")).await, "false");
    let (entry, _) = api.get_json("/v1/kv/lock").await;
    assert_eq!(entry[0]["Session"], s1.as_str());
    assert_eq!(entry[0]["LockIndex"], 1);
    assert_eq!(put(format!("/v1/kv/lock?release={s2}")).await, "false");
    assert_eq!(put(format!("/v1/kv/lock?release={s1}")).await, "true");
    assert_eq!(put(format!("/v1/kv/lock?acquire={s2}")).await, "true");

    // Destroying a `delete` session deletes its keys.
    assert_eq!(
        api.put(&format!("/v1/session/destroy/{s2}"), None)
            .await
            .status(),
        200
    );
    assert_eq!(api.get("/v1/kv/lock").await.status(), 404);
    let (list, _) = api.get_json("/v1/session/list").await;
    assert_eq!(list.as_array().map(Vec::len), Some(1));
    let (gone, _) = api.get_json(&format!("/v1/session/info/{s2}")).await;
    assert_eq!(gone, json!([]));
    let (code, text) = api
        .error(Method::PUT, &format!("/v1/session/renew/{s2}"), None)
        .await;
    assert_eq!((code, text), (404, format!("Session id '{s2}' not found")));
}

#[tokio::test]
async fn catalog_writes_to_another_datacenter_have_no_path() {
    let dev = ConsulDev::start().await.unwrap();
    let api = Api::new(&dev);
    let node = json!({"Node": "ext", "Address": "10.0.0.9"});
    let mut in_body = node.clone();
    in_body["Datacenter"] = json!("dc2");
    let gone = json!({"Node": "ext"});
    for (path, body) in [
        ("/v1/catalog/register", in_body),
        ("/v1/catalog/register?dc=dc2", node.clone()),
        (
            "/v1/catalog/deregister",
            json!({"Node": "ext", "Datacenter": "dc2"}),
        ),
        ("/v1/catalog/deregister?dc=dc2", gone),
    ] {
        let (code, text) = api.error(Method::PUT, path, Some(body)).await;
        assert_eq!(
            (code, text.as_str()),
            (500, "No path to datacenter"),
            "{path}"
        );
    }
    let resp = api.get("/v1/catalog/node/ext").await;
    assert_eq!(
        resp.text().await.unwrap().trim(),
        "null",
        "nothing registered"
    );
    // The body's own datacenter wins over `?dc`, as `CatalogRegister` reads it first.
    let mut own = node;
    own["Datacenter"] = json!("dc1");
    api.put_ok("/v1/catalog/register?dc=dc2", Some(own)).await;
    let (ext, _) = api.get_json("/v1/catalog/node/ext").await;
    assert_eq!(ext["Node"]["Address"], "10.0.0.9");
}

#[tokio::test]
async fn gateway_services_list_what_gateway_entries_link() {
    let dev = ConsulDev::start().await.unwrap();
    let api = Api::new(&dev);
    let (code, text) = api
        .error(Method::GET, "/v1/catalog/gateway-services/", None)
        .await;
    assert_eq!((code, text.as_str()), (400, "Missing gateway name"));
    // No config entry links anything to this gateway yet.
    let resp = api.get("/v1/catalog/gateway-services/egress").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap().trim(), "null");
    api.register(json!({"Name": "billing", "Port": 1})).await;
    api.register(json!({"Name": "api", "Port": 2})).await;
    api.put_ok(
        "/v1/config",
        Some(json!({
            "Kind": "terminating-gateway", "Name": "egress",
            "Services": [{"Name": "mail", "CAFile": "/ca.pem", "SNI": "mail.example"}],
        })),
    )
    .await;
    let (linked, _) = api.get_json("/v1/catalog/gateway-services/egress").await;
    assert_eq!(linked.as_array().map(Vec::len), Some(1));
    assert_eq!(linked[0]["Gateway"], json!({"Name": "egress"}));
    assert_eq!(linked[0]["Service"], json!({"Name": "mail"}));
    assert_eq!(linked[0]["GatewayKind"], "terminating-gateway");
    assert_eq!(linked[0]["CAFile"], "/ca.pem");
    assert_eq!(linked[0]["SNI"], "mail.example");
    assert_eq!(linked[0].get("CertFile"), None, "omitted when empty");
    api.put_ok(
        "/v1/config",
        Some(json!({
            "Kind": "ingress-gateway", "Name": "in",
            "Listeners": [
                {"Port": 8080, "Protocol": "http", "Services": [{"Name": "*"}]},
                {"Port": 9090, "Services": [{"Name": "billing", "Hosts": ["b.example"]}]},
            ],
        })),
    )
    .await;
    let (linked, _) = api.get_json("/v1/catalog/gateway-services/in").await;
    let summary: Vec<(String, u64, String, bool)> = linked
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["Service"]["Name"].as_str().unwrap().to_owned(),
                g["Port"].as_u64().unwrap(),
                g["Protocol"].as_str().unwrap().to_owned(),
                g["FromWildcard"] == json!(true),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("api".to_owned(), 8080, "http".to_owned(), true),
            ("billing".to_owned(), 8080, "http".to_owned(), true),
            ("billing".to_owned(), 9090, "tcp".to_owned(), false),
            ("consul".to_owned(), 8080, "http".to_owned(), true),
        ]
    );
    assert_eq!(linked[2]["Hosts"], json!(["b.example"]));
    assert_eq!(linked[0]["GatewayKind"], "ingress-gateway");
}
