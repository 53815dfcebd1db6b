//! Agent service and check endpoints of `ConsulDev`, over real HTTP.

mod common;
mod support;

use common::{Api, fixture};
use consul_dev::ConsulDev;
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn accepts_the_documented_register_payload() {
    support::trace_init();
    // The documented payload has a script check (`Args`): refused by default, as
    // Consul refuses it, and accepted by an agent with script checks enabled.
    let default = ConsulDev::start().await.unwrap();
    let (code, _) = Api::new(&default)
        .error(
            Method::PUT,
            "/v1/agent/service/register",
            Some(fixture("agent-service-register.json")),
        )
        .await;
    assert_eq!(code, 500);
    let dev = ConsulDev::builder()
        .enable_script_checks(true)
        .start()
        .await
        .unwrap();
    let api = Api::new(&dev);
    api.register(fixture("agent-service-register.json")).await;

    let (services, _) = api.get_json("/v1/agent/services").await;
    let redis = &services["redis1"];
    assert_eq!(redis["Service"], "redis");
    assert_eq!(redis["Tags"], json!(["primary", "v1"]));
    assert_eq!(redis["Port"], 8000);
    assert_eq!(redis["Weights"], json!({"Passing": 10, "Warning": 1}));
    assert_eq!(redis["Meta"], json!({"redis_version": "4.0"}));
    // The agent adds lan_ipv4/wan_ipv4 for IPv4 literal addresses.
    assert_eq!(
        redis["TaggedAddresses"]["lan_ipv4"],
        json!({"Address": "127.0.0.1", "Port": 8000})
    );

    let (checks, _) = api.get_json("/v1/agent/checks").await;
    let check = &checks["service:redis1"];
    assert_eq!(check["Name"], "Service 'redis' check");
    assert_eq!(check["Status"], "critical");
    assert_eq!(check["ServiceTags"], json!(["primary", "v1"]));
}

#[tokio::test]
async fn rejects_unknown_fields_and_accepts_snake_case() {
    support::trace_init();
    let dev = ConsulDev::start().await.unwrap();
    let api = Api::new(&dev);
    let (code, text) = api
        .error(
            Method::PUT,
            "/v1/agent/service/register",
            Some(json!({"Name": "a", "Bogus": 1})),
        )
        .await;
    assert_eq!(
        (code, text.as_str()),
        (400, "Request decode failed: json: unknown field \"Bogus\"")
    );

    let body = json!({
        "name": "web", "id": "web-1", "port": 80, "enable_tag_override": true,
        "check": {"ttl": "10s", "deregister_critical_service_after": 90_000_000_000u64},
    });
    api.register(body).await;
    let (svc, _) = api.get_json("/v1/agent/service/web-1").await;
    assert_eq!(svc["EnableTagOverride"], true);
    let (checks, _) = api.get_json("/v1/agent/checks").await;
    assert_eq!(checks["service:web-1"]["Type"], "ttl");
    assert_eq!(
        checks["service:web-1"]["Definition"]["DeregisterCriticalServiceAfter"],
        "1m30s"
    );
}

#[tokio::test]
async fn answers_consuls_400_texts() {
    let dev = ConsulDev::start().await.unwrap();
    let api = Api::new(&dev);
    let cases = [
        (json!({"ID": "x"}), "Missing service name"),
        (
            json!({"Name": "a", "Address": "0.0.0.0"}),
            "Invalid service address",
        ),
        (
            json!({"Name": "a", "Weights": {"Passing": 0, "Warning": 1}}),
            "Invalid Weights: Passing must be greater than 0",
        ),
        (
            json!({"Name": "a", "Check": {"TTL": "1s", "Interval": "1s"}}),
            "Invalid check: Interval and TTL cannot both be specified",
        ),
        (
            json!({"Name": "a", "Check": {"HTTP": "http://x"}}),
            "Invalid check: Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or OSService checks",
        ),
        (
            json!({"Name": "a", "Check": {"Notes": "n"}}),
            "Invalid check: TTL must be > 0 for TTL checks",
        ),
        (
            json!({"Name": "a", "Check": {"TTL": "1s", "Status": "ok"}}),
            "Status for checks must 'passing', 'warning', 'critical'",
        ),
        (
            json!({"Name": "a", "Port": "80"}),
            "Request decode failed: json: cannot unmarshal string into Go struct field ServiceDefinition.Port of type int",
        ),
    ];
    for (body, want) in cases {
        let (code, text) = api
            .error(
                Method::PUT,
                "/v1/agent/service/register",
                Some(body.clone()),
            )
            .await;
        assert_eq!((code, text.as_str()), (400, want), "body {body}");
    }
}

#[tokio::test]
async fn names_checks_by_position_and_keeps_status_on_reregister() {
    let dev = ConsulDev::start().await.unwrap();
    let api = Api::new(&dev);
    let body =
        json!({"Name": "svc", "Checks": [{"TTL": "30s"}, {"TTL": "30s", "Status": "passing"}]});
    api.register(body.clone()).await;
    api.put_ok("/v1/agent/check/pass/service:svc:1?note=ok", None)
        .await;
    let (checks, _) = api.get_json("/v1/agent/checks").await;
    assert_eq!(checks["service:svc:1"]["Status"], "passing");
    assert_eq!(checks["service:svc:1"]["Output"], "ok");
    assert_eq!(checks["service:svc:2"]["Status"], "passing");

    // Re-registering with one check keeps its status and leaves the other in place…
    api.register(
        json!({"Name": "svc", "Tags": ["b"], "Check": {"CheckID": "service:svc:1", "TTL": "30s"}}),
    )
    .await;
    let (checks, _) = api.get_json("/v1/agent/checks").await;
    assert_eq!(checks["service:svc:1"]["Status"], "passing");
    assert!(checks.get("service:svc:2").is_some());
    let (svc, _) = api.get_json("/v1/agent/service/svc").await;
    assert_eq!(svc["Tags"], json!(["b"]));
    // …unless replace-existing-checks is set.
    api.put_ok(
        "/v1/agent/service/register?replace-existing-checks",
        Some(json!({"Name": "svc", "Check": {"CheckID": "service:svc:1", "TTL": "30s"}})),
    )
    .await;
    let (checks, _) = api.get_json("/v1/agent/checks").await;
    assert!(checks.get("service:svc:2").is_none());
}

#[tokio::test]
async fn deregisters_and_reports_unknown_ids() {
    let dev = ConsulDev::start().await.unwrap();
    let api = Api::new(&dev);
    api.register(json!({"Name": "svc", "Check": {"TTL": "30s"}}))
        .await;
    api.put_ok("/v1/agent/service/deregister/svc", None).await;
    let (services, _) = api.get_json("/v1/agent/services").await;
    assert_eq!(services, json!({}));
    let (checks, _) = api.get_json("/v1/agent/checks").await;
    assert_eq!(checks, json!({}));
    let (code, text) = api
        .error(Method::PUT, "/v1/agent/service/deregister/svc", None)
        .await;
    assert_eq!(code, 404);
    assert_eq!(
        text,
        "Unknown service ID \"svc\". Ensure that the service ID is passed, not the service name."
    );
}

#[tokio::test]
async fn agent_service_blocks_on_its_content_hash() {
    let dev = ConsulDev::start().await.unwrap();
    let api = Api::new(&dev);
    api.register(json!({"Name": "svc", "Port": 1})).await;
    let resp = api.get("/v1/agent/service/svc").await;
    let hash = resp.headers()["x-consul-contenthash"]
        .to_str()
        .unwrap()
        .to_owned();
    let body: serde_json::Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!(body["ContentHash"], hash.as_str());

    // Unchanged: returns after the wait with the same hash.
    let (same, _) = api
        .get_json(&format!("/v1/agent/service/svc?hash={hash}&wait=100ms"))
        .await;
    assert_eq!(same["ContentHash"], hash.as_str());

    let waiter = api
        .spawn_blocking_get(
            &dev,
            &format!("/v1/agent/service/svc?hash={hash}&wait=30s"),
            3,
        )
        .await;
    api.register(json!({"Name": "svc", "Port": 2})).await;
    let changed = waiter.await.unwrap().0;
    assert_eq!(changed["Port"], 2);
    assert_ne!(changed["ContentHash"], hash.as_str());
    let (code, text) = api.error(Method::GET, "/v1/agent/service/nope", None).await;
    assert_eq!((code, text.as_str()), (404, "unknown service ID: nope"));
}

#[tokio::test]
async fn pretty_indents_json() {
    let dev = ConsulDev::start().await.unwrap();
    let api = Api::new(&dev);
    let text = api
        .get("/v1/catalog/datacenters?pretty")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(text, "[\n    \"dc1\"\n]\n");
}

#[tokio::test]
async fn agent_services_and_checks_take_a_filter() {
    let dev = ConsulDev::start().await.unwrap();
    let api = Api::new(&dev);
    api.register(json!({"Name": "web", "Tags": ["v1"], "Check": {"TTL": "1h"}}))
        .await;
    api.register(json!({"Name": "db", "Check": {"TTL": "1h"}}))
        .await;
    let (all, _) = api.get_json("/v1/agent/services").await;
    assert_eq!(all.as_object().unwrap().len(), 2);
    let (some, _) = api
        .get_json("/v1/agent/services?filter=%22v1%22%20in%20Tags")
        .await;
    let ids: Vec<&String> = some.as_object().unwrap().keys().collect();
    assert_eq!(ids, ["web"]);
    let (checks, _) = api
        .get_json("/v1/agent/checks?filter=ServiceName%20%3D%3D%20%22db%22")
        .await;
    let ids: Vec<&String> = checks.as_object().unwrap().keys().collect();
    assert_eq!(ids, ["service:db"]);
    let (code, _) = api
        .error(Method::GET, "/v1/agent/services?filter=%3D%3D", None)
        .await;
    assert_eq!(code, 400);
}

#[tokio::test]
async fn agent_services_show_proxy_and_connect_as_build_agent_service_does() {
    let dev = ConsulDev::start().await.unwrap();
    let api = Api::new(&dev);
    api.register(json!({"Name": "web", "Port": 80, "Connect": {"Native": false}, "Proxy": {}}))
        .await;
    api.register(json!({"Name": "api", "Port": 81, "Connect": {"Native": true}}))
        .await;
    api.register(json!({
        "Kind": "connect-proxy", "Name": "web-proxy", "Port": 21000,
        "Proxy": {"DestinationServiceName": "web"},
    }))
    .await;
    let (services, _) = api.get_json("/v1/agent/services").await;
    assert!(services["web"].get("Proxy").is_none());
    assert!(services["web"].get("Connect").is_none());
    assert_eq!(services["api"]["Connect"], json!({"Native": true}));
    assert_eq!(
        services["web-proxy"]["Proxy"]["DestinationServiceName"],
        "web"
    );
}

#[tokio::test]
async fn members_answer_lan_wan_and_segments() {
    let dev = ConsulDev::start().await.unwrap();
    let api = Api::new(&dev);
    let (lan, _) = api.get_json("/v1/agent/members").await;
    assert_eq!(lan[0]["Name"], "consul-dev");
    let (wan, _) = api.get_json("/v1/agent/members?wan=1").await;
    assert_eq!(wan[0]["Name"], "consul-dev.dc1");
    assert_eq!(wan[0]["Port"], 8302);
    let (code, text) = api
        .error(Method::GET, "/v1/agent/members?wan=1&segment=alpha", None)
        .await;
    assert_eq!(
        (code, text.as_str()),
        (400, "Cannot provide a segment with wan=true")
    );
    let (none, _) = api
        .get_json("/v1/agent/members?filter=Name%20%3D%3D%20%22other%22")
        .await;
    assert_eq!(none, json!([]));
}

#[tokio::test]
async fn proxies_and_gateways_are_validated_with_multierror_texts() {
    let dev = ConsulDev::start().await.unwrap();
    let api = Api::new(&dev);
    let (code, text) = api
        .error(
            Method::PUT,
            "/v1/agent/service/register",
            Some(json!({"Kind": "connect-proxy", "Name": "p"})),
        )
        .await;
    assert_eq!(code, 400);
    assert_eq!(
        text,
        "Validation failed: 2 errors occurred:\n\t* Port or SocketPath must be set for a connect-proxy\n\t* Proxy.DestinationServiceName must be non-empty for Connect proxy services\n\n"
    );
    let (code, text) = api
        .error(
            Method::PUT,
            "/v1/agent/service/register",
            Some(json!({"Kind": "mesh-gateway", "Name": "gw"})),
        )
        .await;
    assert_eq!(
        (code, text.as_str()),
        (
            400,
            "Validation failed: 1 error occurred:\n\t* Port must be non-zero for a mesh-gateway\n\n"
        )
    );
    // A socket path stands in for the port and is returned.
    api.register(json!({"Name": "sock", "SocketPath": "/tmp/s.sock"}))
        .await;
    let (services, _) = api.get_json("/v1/agent/services").await;
    assert_eq!(services["sock"]["SocketPath"], "/tmp/s.sock");
    let (catalog, _) = api.get_json("/v1/catalog/service/sock").await;
    assert_eq!(catalog[0]["ServiceSocketPath"], "/tmp/s.sock");
}

#[tokio::test]
async fn sidecar_service_registers_a_connect_proxy_with_consuls_defaults() {
    let dev = ConsulDev::start().await.unwrap();
    let api = Api::new(&dev);
    api.register(json!({
        "Name": "web", "Port": 8080, "Tags": ["v1"], "Meta": {"team": "a"},
        "Connect": {"SidecarService": {}},
    }))
    .await;
    let (services, _) = api.get_json("/v1/agent/services").await;
    let proxy = &services["web-sidecar-proxy"];
    assert_eq!(proxy["Kind"], "connect-proxy");
    assert_eq!(proxy["Service"], "web-sidecar-proxy");
    assert_eq!(proxy["Port"], 21000);
    assert_eq!(proxy["Tags"], json!(["v1"]));
    assert_eq!(proxy["Meta"], json!({"team": "a"}));
    assert_eq!(proxy["Proxy"]["DestinationServiceName"], "web");
    assert_eq!(proxy["Proxy"]["DestinationServiceID"], "web");
    assert_eq!(proxy["Proxy"]["LocalServiceAddress"], "127.0.0.1");
    assert_eq!(proxy["Proxy"]["LocalServicePort"], 8080);
    // The registration sugar is not kept on the parent.
    assert_eq!(services["web"]["Connect"].get("SidecarService"), None);
    let (checks, _) = api.get_json("/v1/agent/checks").await;
    let listening = &checks["service:web-sidecar-proxy:1"];
    assert_eq!(listening["Name"], "Connect Sidecar Listening");
    assert_eq!(listening["Type"], "tcp");
    assert_eq!(listening["ServiceID"], "web-sidecar-proxy");
    let aliasing = &checks["service:web-sidecar-proxy:2"];
    assert_eq!(aliasing["Name"], "Connect Sidecar Aliasing web");
    assert_eq!(aliasing["Type"], "alias");
    // `web` has no checks: the alias passes once it has looked.
    support::eventually(
        std::time::Duration::from_secs(5),
        "the aliasing check passes",
        || async {
            let (checks, _) = api.get_json("/v1/agent/checks").await;
            checks["service:web-sidecar-proxy:2"]["Status"] == "passing"
        },
    )
    .await;
    let (connect, _) = api.get_json("/v1/catalog/connect/web").await;
    assert_eq!(connect[0]["ServiceID"], "web-sidecar-proxy");
    // A second sidecar takes the next free port; a given port and name are kept.
    api.register(json!({
        "Name": "api", "Port": 9090,
        "Connect": {"SidecarService": {"Port": 0}},
    }))
    .await;
    api.register(json!({
        "Name": "db", "Port": 5432,
        "Connect": {"SidecarService": {"Name": "db-proxy", "Port": 30000,
            "Check": {"TTL": "10s"}}},
    }))
    .await;
    let (services, _) = api.get_json("/v1/agent/services").await;
    assert_eq!(services["api-sidecar-proxy"]["Port"], 21001);
    assert_eq!(services["db-sidecar-proxy"]["Service"], "db-proxy");
    assert_eq!(services["db-sidecar-proxy"]["Port"], 30000);
    let (checks, _) = api.get_json("/v1/agent/checks").await;
    assert_eq!(checks["service:db-sidecar-proxy"]["Type"], "ttl");
    // Deregistering the parent deregisters its sidecar.
    api.put_ok("/v1/agent/service/deregister/web", None).await;
    let (services, _) = api.get_json("/v1/agent/services").await;
    assert!(services.get("web-sidecar-proxy").is_none(), "{services}");
    assert!(services.get("api-sidecar-proxy").is_some());
}

#[tokio::test]
async fn sidecar_service_refuses_an_id_and_nesting() {
    let dev = ConsulDev::start().await.unwrap();
    let api = Api::new(&dev);
    let with_id = json!({"Name": "web", "Port": 1, "Connect": {"SidecarService": {"ID": "x"}}});
    let (code, text) = api
        .error(Method::PUT, "/v1/agent/service/register", Some(with_id))
        .await;
    assert_eq!(
        (code, text.as_str()),
        (
            400,
            "Validation failed: 1 error occurred:\n\t* A SidecarService cannot specify an ID as this is managed by the agent\n\n"
        )
    );
    let nested = json!({"Name": "web", "Port": 1,
        "Connect": {"SidecarService": {"Connect": {"SidecarService": {}}}}});
    let (code, text) = api
        .error(Method::PUT, "/v1/agent/service/register", Some(nested))
        .await;
    assert_eq!(
        (code, text.as_str()),
        (
            400,
            "Validation failed: 1 error occurred:\n\t* A SidecarService cannot have a nested SidecarService\n\n"
        )
    );
    let (services, _) = api.get_json("/v1/agent/services").await;
    assert_eq!(services, json!({}));
}
