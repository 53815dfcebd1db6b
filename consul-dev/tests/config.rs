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
