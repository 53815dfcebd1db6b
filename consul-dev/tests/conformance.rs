//! Conformance with the sample bodies of Consul's API documentation
//! (`tests/fixtures/consul/`, sources in its README): every field a documented
//! response shows is in ours, with the same JSON type. The samples leave fields out
//! (see the fixture notes), so ours may have more; Enterprise-only fields
//! (`Namespace`, `Partition`) are skipped.

mod common;
mod support;

use common::{Api, fixture};
use consul_dev::ConsulDev;
use serde_json::{Value, json};

const ENTERPRISE: &[&str] = &["Namespace", "Partition"];

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Asserts every key of the documented object `doc` is in `ours` with the same
/// JSON type; returns the missing or mistyped keys for the message.
fn assert_covers(what: &str, doc: &Value, ours: &Value) {
    let doc = doc.as_object().expect("documented object");
    let ours = ours
        .as_object()
        .unwrap_or_else(|| panic!("{what}: ours is not an object: {ours}"));
    let mut wrong = Vec::new();
    for (key, value) in doc {
        if ENTERPRISE.contains(&key.as_str()) {
            continue;
        }
        match ours.get(key) {
            None => wrong.push(format!("{key} missing")),
            // A documented `null` is a nil slice or map in the sample's Go value;
            // the handlers turn those into `[]` and `{}` (buildAgentService), so
            // only the key's presence is checked.
            Some(v) if !value.is_null() && kind(v) != kind(value) => {
                wrong.push(format!("{key}: {} not {}", kind(v), kind(value)))
            }
            Some(_) => {}
        }
    }
    assert!(wrong.is_empty(), "{what}: {wrong:?}\nours: {ours:?}");
}

/// The documented redis instance, registered with the agent.
async fn register_redis(api: &Api) {
    api.register(json!({
        "ID": "redis", "Name": "redis", "Tags": ["primary"], "Address": "10.1.10.12",
        "TaggedAddresses": {
            "lan": {"Address": "10.1.10.12", "Port": 8000},
            "wan": {"Address": "198.18.1.2", "Port": 80},
        },
        "Meta": {"redis_version": "4.0"}, "Port": 8000,
        "Weights": {"Passing": 10, "Warning": 1},
        "Check": {"TCP": "127.0.0.1:1", "Interval": "10s", "Timeout": "1s"},
    }))
    .await;
}

#[tokio::test]
async fn health_service_entries_cover_the_documented_sample() {
    support::trace_init();
    let dev = ConsulDev::start().await.unwrap();
    let api = Api::new(&dev);
    register_redis(&api).await;
    let (ours, _) = api.get_json("/v1/health/service/redis").await;
    let doc = fixture("health-service.json");
    let (doc, ours) = (&doc[0], &ours[0]);
    assert_covers("entry", doc, ours);
    assert_covers("Node", &doc["Node"], &ours["Node"]);
    assert_covers("Service", &doc["Service"], &ours["Service"]);
    assert_covers(
        "Weights",
        &doc["Service"]["Weights"],
        &ours["Service"]["Weights"],
    );
    let checks = ours["Checks"].as_array().unwrap();
    assert_eq!(
        checks.len(),
        2,
        "the node's serfHealth and the service's own"
    );
    for (i, doc_check) in doc["Checks"].as_array().unwrap().iter().enumerate() {
        let id = doc_check["CheckID"].as_str().unwrap();
        let ours = checks
            .iter()
            .find(|c| c["CheckID"] == id)
            .unwrap_or_else(|| panic!("check {id} missing"));
        assert_covers(&format!("Checks[{i}]"), doc_check, ours);
    }
}

#[tokio::test]
async fn agent_services_and_checks_cover_the_documented_samples() {
    let dev = ConsulDev::start().await.unwrap();
    let api = Api::new(&dev);
    register_redis(&api).await;
    let (services, _) = api.get_json("/v1/agent/services").await;
    let doc = fixture("agent-services.json");
    assert_covers("AgentService", &doc["redis"], &services["redis"]);

    let (one, _) = api.get_json("/v1/agent/service/redis").await;
    let doc = fixture("agent-service-by-id.json");
    // The sample is a connect-proxy: its Kind and Proxy only show for proxies.
    let mut doc = doc.as_object().unwrap().clone();
    doc.remove("Kind");
    doc.remove("Proxy");
    assert_covers("AgentService by ID", &Value::Object(doc), &one);

    let (checks, _) = api.get_json("/v1/agent/checks").await;
    for sample in ["agent-checks.json", "agent-checks.extended.json"] {
        let doc = fixture(sample);
        for (id, doc_check) in doc.as_object().unwrap() {
            let ours = checks
                .as_object()
                .unwrap()
                .values()
                .find(|c| {
                    c["ServiceID"] == doc_check["ServiceID"]
                        && !c["ServiceID"].as_str().unwrap().is_empty()
                })
                .unwrap_or_else(|| panic!("{sample}: no check like {id}"));
            assert_covers(&format!("{sample} {id}"), doc_check, ours);
        }
    }
}

#[tokio::test]
async fn catalog_service_covers_the_documented_sample() {
    let dev = ConsulDev::start().await.unwrap();
    let api = Api::new(&dev);
    register_redis(&api).await;
    let (ours, _) = api.get_json("/v1/catalog/service/redis").await;
    let doc = fixture("catalog-service.json");
    assert_covers("ServiceNode", &doc[0], &ours[0]);
}
