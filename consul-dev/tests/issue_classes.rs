//! The fidelity classes an independent Consul client suite found: other
//! datacenters, check registration for a missing service, `/v1/agent/self` stats,
//! per-service filters on a node, `peer` views, Connect health, `Locality`, and
//! script checks (off by default, run when enabled).

mod common;
mod support;

use std::time::Duration;

use common::Api;
use consul_dev::ConsulDev;
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn other_datacenters_have_no_path() {
    support::trace_init();
    let dev = ConsulDev::start().await.unwrap();
    let api = Api::new(&dev);
    for path in [
        "/v1/health/service/web?dc=dc2",
        "/v1/catalog/services?dc=dc2",
        "/v1/catalog/nodes?dc=dc2",
        "/v1/kv/a?dc=dc2",
    ] {
        let (code, text) = api.error(Method::GET, path, None).await;
        assert_eq!(
            (code, text.as_str()),
            (500, "No path to datacenter"),
            "{path}"
        );
    }
    // Its own datacenter, by name, is fine.
    let (_, _) = api.get_json("/v1/catalog/services?dc=dc1").await;
}

#[tokio::test]
async fn check_register_for_a_missing_service_is_404() {
    let dev = ConsulDev::start().await.unwrap();
    let api = Api::new(&dev);
    let body = json!({"Name": "c", "ServiceID": "nope", "TTL": "10s"});
    let (code, text) = api
        .error(Method::PUT, "/v1/agent/check/register", Some(body))
        .await;
    assert_eq!(
        (code, text.as_str()),
        (404, "ServiceID \"nope\" does not exist")
    );
    let body = json!({"Name": "c", "TTL": "10s", "Status": "bogus"});
    let (code, text) = api
        .error(Method::PUT, "/v1/agent/check/register", Some(body))
        .await;
    assert_eq!((code, text.as_str()), (400, "Bad check status"));
}

#[tokio::test]
async fn agent_self_reports_the_leader_in_stats() {
    let dev = ConsulDev::start().await.unwrap();
    let api = Api::new(&dev);
    api.register(json!({"Name": "web", "Check": {"TTL": "10s"}}))
        .await;
    let (me, _) = api.get_json("/v1/agent/self").await;
    let consul = &me["Stats"]["consul"];
    assert_eq!(consul["leader"], "true");
    assert_eq!(consul["server"], "true");
    assert_eq!(consul["known_datacenters"], "1");
    assert_eq!(consul["acl"], "disabled");
    let (leader, _) = api.get_json("/v1/status/leader").await;
    assert_eq!(consul["leader_addr"], leader);
    assert_eq!(me["Stats"]["raft"]["state"], "Leader");
    assert_eq!(me["Stats"]["agent"]["services"], "1");
    assert_eq!(me["Stats"]["agent"]["check_ttls"], "1");
    assert_eq!(me["Stats"]["build"]["version"], me["Config"]["Version"]);
    assert_eq!(me["DebugConfig"]["EnableRemoteScriptChecks"], false);
}

#[tokio::test]
async fn node_filter_applies_to_each_service() {
    let dev = ConsulDev::start().await.unwrap();
    let api = Api::new(&dev);
    api.register(json!({"Name": "web", "Port": 80, "Tags": ["v1"]}))
        .await;
    api.register(json!({"Name": "db", "Port": 5432})).await;
    let (node, _) = api
        .get_json("/v1/catalog/node/consul-dev?filter=Service%20%3D%3D%20%22web%22")
        .await;
    let ids: Vec<&String> = node["Services"].as_object().unwrap().keys().collect();
    assert_eq!(ids, ["web"]);
    assert_eq!(node["Node"]["Node"], "consul-dev");
    let (node, _) = api
        .get_json("/v1/catalog/node/consul-dev?filter=%22v1%22%20in%20Tags")
        .await;
    assert_eq!(node["Services"].as_object().unwrap().len(), 1);
    // node-services lists them, filtered the same way.
    let (list, _) = api
        .get_json("/v1/catalog/node-services/consul-dev?filter=Service%20%3D%3D%20%22db%22")
        .await;
    assert_eq!(list["Services"].as_array().unwrap().len(), 1);
    assert_eq!(list["Services"][0]["ID"], "db");
    let (none, _) = api.get_json("/v1/catalog/node-services/nobody").await;
    assert_eq!(none, json!({"Node": null, "Services": []}));
    let (none, _) = api.get_json("/v1/catalog/node/nobody").await;
    assert_eq!(none, json!(null));
}

#[tokio::test]
async fn peer_reads_see_an_empty_view() {
    let dev = ConsulDev::start().await.unwrap();
    let api = Api::new(&dev);
    api.register(json!({"Name": "web", "Port": 80})).await;
    let (local, _) = api.get_json("/v1/health/service/web").await;
    assert_eq!(local.as_array().unwrap().len(), 1);
    for (path, empty) in [
        ("/v1/health/service/web?peer=p1", json!([])),
        ("/v1/health/checks/web?peer=p1", json!([])),
        ("/v1/catalog/service/web?peer=p1", json!([])),
        ("/v1/catalog/services?peer=p1", json!({})),
        ("/v1/catalog/nodes?peer=p1", json!([])),
    ] {
        let (body, index) = api.get_json(path).await;
        assert_eq!(body, empty, "{path}");
        assert!(index >= 1, "{path}");
    }
}

#[tokio::test]
async fn connect_health_lists_proxies_and_native_instances() {
    let dev = ConsulDev::start().await.unwrap();
    let api = Api::new(&dev);
    api.register(json!({"Name": "web", "ID": "web-1", "Port": 80}))
        .await;
    api.register(json!({
        "Kind": "connect-proxy", "Name": "web-sidecar-proxy", "ID": "web-proxy", "Port": 21000,
        "Proxy": {"DestinationServiceName": "web", "DestinationServiceID": "web-1"},
    }))
    .await;
    api.register(json!({"Name": "api", "ID": "api-1", "Port": 81, "Connect": {"Native": true}}))
        .await;
    let (web, _) = api.get_json("/v1/health/connect/web").await;
    assert_eq!(common::ids(&web), ["web-proxy"]);
    assert_eq!(web[0]["Service"]["Kind"], "connect-proxy");
    let (native, _) = api.get_json("/v1/health/connect/api").await;
    assert_eq!(common::ids(&native), ["api-1"]);
    let (catalog, _) = api.get_json("/v1/catalog/connect/web").await;
    assert_eq!(catalog[0]["ServiceID"], "web-proxy");
    let (none, _) = api.get_json("/v1/health/connect/db").await;
    assert_eq!(none, json!([]));
    let (ingress, _) = api.get_json("/v1/health/ingress/web").await;
    assert_eq!(ingress, json!([]));
}

#[tokio::test]
async fn locality_is_kept_and_returned() {
    let dev = ConsulDev::start().await.unwrap();
    let api = Api::new(&dev);
    let locality = json!({"Region": "us-west-1", "Zone": "us-west-1a"});
    api.register(json!({"Name": "web", "Port": 80, "Locality": locality}))
        .await;
    api.register(json!({"Name": "db", "Port": 81})).await;
    let (services, _) = api.get_json("/v1/agent/services").await;
    assert_eq!(services["web"]["Locality"], locality);
    assert!(
        services["db"].get("Locality").is_none(),
        "omitted when unset"
    );
    let (health, _) = api.get_json("/v1/health/service/web").await;
    assert_eq!(health[0]["Service"]["Locality"], locality);
    let (catalog, _) = api.get_json("/v1/catalog/service/web").await;
    assert_eq!(catalog[0]["ServiceLocality"], locality);
    let (code, text) = api
        .error(
            Method::PUT,
            "/v1/agent/service/register",
            Some(json!({"Name": "x", "Locality": {"Planet": "earth"}})),
        )
        .await;
    assert_eq!(
        (code, text.as_str()),
        (400, "Request decode failed: json: unknown field \"Planet\"")
    );
}

#[tokio::test]
async fn script_checks_are_refused_unless_enabled() {
    let dev = ConsulDev::start().await.unwrap();
    let api = Api::new(&dev);
    let body = json!({"Name": "s", "Check": {"Args": ["true"], "Interval": "10s"}});
    let (code, text) = api
        .error(Method::PUT, "/v1/agent/service/register", Some(body))
        .await;
    assert_eq!(code, 500);
    assert_eq!(
        text,
        "Scripts are disabled on this agent from remote calls; to enable, configure 'enable_script_checks' to true"
    );
    let local_only = ConsulDev::builder()
        .enable_local_script_checks(true)
        .start()
        .await
        .unwrap();
    let body = json!({"Name": "c", "Args": ["true"], "Interval": "10s"});
    let (code, _) = Api::new(&local_only)
        .error(Method::PUT, "/v1/agent/check/register", Some(body))
        .await;
    assert_eq!(code, 500, "local script checks do not cover the HTTP API");
}

#[tokio::test]
async fn enabled_script_checks_follow_the_exit_code() {
    support::trace_init();
    let dev = ConsulDev::builder()
        .enable_script_checks(true)
        .start()
        .await
        .unwrap();
    let api = Api::new(&dev);
    let script = |code: u8| json!({"Args": ["sh", "-c", format!("echo out{code}; exit {code}")], "Interval": "50ms"});
    api.register(json!({"Name": "ok", "Check": script(0)}))
        .await;
    api.register(json!({"Name": "warn", "Check": script(1)}))
        .await;
    let mut starts_passing = script(2);
    starts_passing["Status"] = json!("passing");
    api.register(json!({"Name": "bad", "Check": starts_passing}))
        .await;
    let wait = Duration::from_secs(10);
    for (id, status, output) in [
        ("service:ok", "passing", "out0\n"),
        ("service:warn", "warning", "out1\n"),
        ("service:bad", "critical", "out2\n"),
    ] {
        support::eventually(wait, id, || async {
            let (checks, _) = api.get_json("/v1/agent/checks").await;
            checks[id]["Status"] == status && checks[id]["Output"] == output
        })
        .await;
    }
    let (checks, _) = api.get_json("/v1/agent/checks").await;
    assert_eq!(checks["service:ok"]["Type"], "script");
    let (me, _) = api.get_json("/v1/agent/self").await;
    assert_eq!(me["Stats"]["agent"]["check_monitors"], "3");
}

#[tokio::test]
async fn cached_reads_say_they_missed_the_cache() {
    let dev = ConsulDev::start().await.unwrap();
    let api = Api::new(&dev);
    let resp = api.get("/v1/health/service/consul?cached").await;
    assert_eq!(resp.headers()["x-cache"], "MISS");
    let resp = api.get("/v1/catalog/services?cached").await;
    assert_eq!(resp.headers()["x-cache"], "MISS");
    let resp = api.get("/v1/health/service/consul").await;
    assert!(resp.headers().get("x-cache").is_none());
}
