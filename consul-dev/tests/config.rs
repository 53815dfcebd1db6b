//! Config entries (`/v1/config`) as a dev agent with Connect disabled answers them.

mod common;
mod support;

use common::Api;
use consul_dev::ConsulDev;
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn service_defaults_round_trip_with_cas() {
    support::trace_init();
    let dev = ConsulDev::start().await.unwrap();
    let api = Api::new(&dev);
    let (list, _) = api.get_json("/v1/config/service-defaults").await;
    assert_eq!(list, json!([]));
    let entry = json!({"Kind": "service-defaults", "Name": "web", "Protocol": "http"});
    let resp = api.put("/v1/config", Some(entry.clone())).await;
    assert_eq!(resp.text().await.unwrap().trim(), "true");
    let (got, index) = api.get_json("/v1/config/service-defaults/web").await;
    assert_eq!(got["Kind"], "service-defaults");
    assert_eq!(got["Protocol"], "http");
    let modify = got["ModifyIndex"].as_u64().unwrap();
    assert_eq!(index, modify);
    // A stale CAS loses, the current one wins.
    let resp = api
        .put(
            &format!("/v1/config?cas={}", modify + 100),
            Some(entry.clone()),
        )
        .await;
    assert_eq!(resp.text().await.unwrap().trim(), "false");
    let resp = api
        .put(&format!("/v1/config?cas={modify}"), Some(entry))
        .await;
    assert_eq!(resp.text().await.unwrap().trim(), "true");
    let (list, _) = api.get_json("/v1/config/service-defaults").await;
    assert_eq!(list.as_array().unwrap().len(), 1);

    let resp = api
        .send(Method::DELETE, "/v1/config/service-defaults/web", None)
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap().trim(), "{}");
    let (code, text) = api
        .error(Method::GET, "/v1/config/service-defaults/web", None)
        .await;
    assert_eq!(
        (code, text.as_str()),
        (
            404,
            "Config entry not found for \"service-defaults\" / \"web\""
        )
    );
}

#[tokio::test]
async fn bad_kinds_and_bodies_are_refused() {
    let dev = ConsulDev::start().await.unwrap();
    let api = Api::new(&dev);
    let (code, text) = api
        .error(Method::PUT, "/v1/config", Some(json!({"Name": "web"})))
        .await;
    assert_eq!(
        (code, text.as_str()),
        (
            400,
            "Request decoding failed: Payload does not contain a kind/Kind key at the top level"
        )
    );
    let (code, text) = api
        .error(
            Method::PUT,
            "/v1/config",
            Some(json!({"Kind": "bogus", "Name": "x"})),
        )
        .await;
    assert_eq!(
        (code, text.as_str()),
        (
            400,
            "Request decoding failed: invalid config entry kind: bogus"
        )
    );
    let (code, text) = api.error(Method::GET, "/v1/config/bogus", None).await;
    assert_eq!(
        (code, text.as_str()),
        (500, "invalid config entry kind: bogus")
    );
    let intentions = json!({"Kind": "service-intentions", "Name": "web", "Sources": []});
    let (code, text) = api.error(Method::PUT, "/v1/config", Some(intentions)).await;
    assert_eq!(
        (code, text.as_str()),
        (500, "Connect must be enabled in order to use this endpoint")
    );
}

#[tokio::test]
async fn discovery_chain_of_a_plain_service_is_one_default_resolver() {
    let dev = ConsulDev::start().await.unwrap();
    let api = Api::new(&dev);
    let (body, _) = api.get_json("/v1/discovery-chain/web").await;
    let chain = &body["Chain"];
    let sni = chain["Targets"]["web.default.default.dc1"]["SNI"]
        .as_str()
        .unwrap()
        .to_owned();
    let trust_domain = sni
        .strip_prefix("web.default.dc1.internal.")
        .expect("SNI names the service, namespace, datacenter and trust domain");
    assert!(trust_domain.ends_with(".consul"), "{sni}");
    assert_eq!(
        *chain,
        json!({
            "ServiceName": "web", "Namespace": "default", "Partition": "default",
            "Datacenter": "dc1", "Default": true, "Protocol": "tcp",
            "StartNode": "resolver:web.default.default.dc1",
            "Nodes": {"resolver:web.default.default.dc1": {
                "Type": "resolver", "Name": "web.default.default.dc1",
                "Resolver": {"Default": true, "ConnectTimeout": "5s", "Target": "web.default.default.dc1"},
            }},
            "Targets": {"web.default.default.dc1": {
                "ID": "web.default.default.dc1", "Service": "web", "Namespace": "default",
                "Partition": "default", "Datacenter": "dc1", "MeshGateway": {}, "Subset": {},
                "TransparentProxy": {}, "ConnectTimeout": "5s", "SNI": sni, "Name": sni,
            }},
            "AutoVirtualIPs": null, "ManualVirtualIPs": null,
        })
    );
    let (other_dc, _) = api.get_json("/v1/discovery-chain/web?compile-dc=dc2").await;
    assert_eq!(
        other_dc["Chain"]["StartNode"],
        "resolver:web.default.default.dc2"
    );
    let (code, text) = api.error(Method::GET, "/v1/discovery-chain/", None).await;
    assert_eq!((code, text.as_str()), (400, "Missing chain name"));
}

#[tokio::test]
async fn discovery_chain_follows_defaults_resolvers_and_overrides() {
    let dev = ConsulDev::start().await.unwrap();
    let api = Api::new(&dev);
    api.put_ok(
        "/v1/config",
        Some(json!({"Kind": "service-defaults", "Name": "web", "Protocol": "http", "Meta": {"owner": "a"}})),
    )
    .await;
    api.put_ok(
        "/v1/config",
        Some(json!({"Kind": "service-resolver", "Name": "web", "ConnectTimeout": "15s"})),
    )
    .await;
    let (body, _) = api.get_json("/v1/discovery-chain/web").await;
    let chain = &body["Chain"];
    assert_eq!(chain["Protocol"], "http");
    assert_eq!(chain["ServiceMeta"], json!({"owner": "a"}));
    assert_eq!(chain.get("Default"), None, "a resolver entry applies");
    let node = &chain["Nodes"]["resolver:web.default.default.dc1"]["Resolver"];
    assert_eq!(node["ConnectTimeout"], "15s");
    assert_eq!(node.get("Default"), None);
    let overrides = json!({
        "OverrideProtocol": "grpc", "OverrideConnectTimeout": "7s",
        "OverrideMeshGateway": {"Mode": "remote"},
    });
    let resp = api
        .send(Method::POST, "/v1/discovery-chain/web", Some(overrides))
        .await;
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    let chain = &body["Chain"];
    assert_eq!(chain["Protocol"], "grpc");
    assert!(
        chain["CustomizationHash"]
            .as_str()
            .is_some_and(|h| h.len() == 8)
    );
    let target = &chain["Targets"]["web.default.default.dc1"];
    assert_eq!(target["MeshGateway"], json!({"Mode": "remote"}));
    assert_eq!(target["ConnectTimeout"], "7s");
    let bad = json!({"OverrideMeshGateway": {"Mode": "sideways"}});
    let (code, text) = api
        .error(Method::POST, "/v1/discovery-chain/web", Some(bad))
        .await;
    assert_eq!(
        (code, text.as_str()),
        (400, "Invalid OverrideMeshGateway.Mode parameter")
    );
}
