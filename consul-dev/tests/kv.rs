//! KV edge answers as Consul's KVS handlers give them.

mod common;
mod support;

use common::Api;
use consul_dev::ConsulDev;
use reqwest::Method;

#[tokio::test]
async fn bad_numbers_and_conflicting_flags() {
    support::trace_init();
    let dev = ConsulDev::start().await.unwrap();
    let api = Api::new(&dev);
    let (code, text) = api.error(Method::PUT, "/v1/kv/a?flags=x", None).await;
    assert_eq!(
        (code, text.as_str()),
        (500, "strconv.ParseUint: parsing \"x\": invalid syntax")
    );
    let (code, text) = api
        .error(Method::PUT, "/v1/kv/a?cas=99999999999999999999", None)
        .await;
    assert_eq!(
        (code, text.as_str()),
        (
            500,
            "strconv.ParseUint: parsing \"99999999999999999999\": value out of range"
        )
    );
    let (code, text) = api
        .error(Method::PUT, "/v1/kv/a?release=s&cas=1", None)
        .await;
    assert_eq!(
        (code, text.as_str()),
        (400, "Conflicting flags: cas=1&release=s\n")
    );
    let (code, text) = api
        .error(Method::DELETE, "/v1/kv/a?recurse&cas=1", None)
        .await;
    assert_eq!(
        (code, text.as_str()),
        (400, "Conflicting flags: cas=1&recurse=\n")
    );
}

#[tokio::test]
async fn cas_deletes_and_missing_keys() {
    let dev = ConsulDev::start().await.unwrap();
    let api = Api::new(&dev);
    // A CAS delete of a key that is not there succeeds.
    let resp = api.send(Method::DELETE, "/v1/kv/none?cas=5", None).await;
    assert_eq!(resp.text().await.unwrap().trim(), "true");
    let resp = api.put("/v1/kv/k", None).await;
    assert_eq!(resp.text().await.unwrap().trim(), "true");
    let (entries, _) = api.get_json("/v1/kv/k").await;
    let modify = entries[0]["ModifyIndex"].as_u64().unwrap();
    let resp = api
        .send(
            Method::DELETE,
            &format!("/v1/kv/k?cas={}", modify + 1),
            None,
        )
        .await;
    assert_eq!(resp.text().await.unwrap().trim(), "false");
    let resp = api
        .send(Method::DELETE, &format!("/v1/kv/k?cas={modify}"), None)
        .await;
    assert_eq!(resp.text().await.unwrap().trim(), "true");
    let resp = api.get("/v1/kv/k").await;
    assert_eq!(resp.status(), 404);
    assert!(common::index_of(&resp) >= 1, "404s carry the index");
    let resp = api.get("/v1/kv/nothing/?keys").await;
    assert_eq!(resp.status(), 404);
    let (root, _) = api.get_json("/v1/kv/?keys").await;
    assert_eq!(root, serde_json::json!([]));
}
