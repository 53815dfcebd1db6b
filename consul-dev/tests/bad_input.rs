//! Bad input answered as Consul answers it: malformed JSON, unknown fields, wrong
//! types, invalid durations, oversized bodies and bad query options, each with
//! Consul's status and text, and the agent still serving afterwards.

mod common;
mod support;

use common::Api;
use consul_dev::ConsulDev;
use reqwest::Method;
use serde_json::json;

/// PUTs a raw body; returns status and text.
async fn put_raw(api: &Api, path: &str, body: &'static [u8]) -> (u16, String) {
    let resp = api
        .http
        .put(format!("{}{path}", api.base))
        .body(body)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

#[tokio::test]
async fn malformed_json_reads_as_gos_decoder() {
    support::trace_init();
    let dev = ConsulDev::start().await.unwrap();
    let api = Api::new(&dev);
    let register = "/v1/agent/service/register";
    let cases: [(&[u8], &str); 5] = [
        (
            b"@",
            "Request decode failed: invalid character '@' looking for beginning of value",
        ),
        (b"{\"Name\": ", "Request decode failed: unexpected EOF"),
        (
            b"not json",
            "Request decode failed: invalid character 'o' in literal null (expecting 'u')",
        ),
        (
            b"{\"Name\" \"a\"}",
            "Request decode failed: invalid character '\"' after object key",
        ),
        (
            b"[1,2]",
            "Request decode failed: json: cannot unmarshal array into Go value of type structs.ServiceDefinition",
        ),
    ];
    for (body, want) in cases {
        assert_eq!(put_raw(&api, register, body).await, (400, want.to_owned()));
    }
    let (services, _) = api.get_json("/v1/agent/services").await;
    assert_eq!(services, json!({}), "nothing registered");
}

#[tokio::test]
async fn wrong_types_and_durations_name_the_field() {
    let dev = ConsulDev::start().await.unwrap();
    let api = Api::new(&dev);
    let cases = [
        (
            json!({"Name": "a", "Port": "80"}),
            "Request decode failed: json: cannot unmarshal string into Go struct field ServiceDefinition.Port of type int",
        ),
        (
            json!({"Name": "a", "Tags": "x"}),
            "Request decode failed: json: cannot unmarshal string into Go struct field ServiceDefinition.Tags of type []string",
        ),
        (
            json!({"Name": "a", "Check": {"TTL": "10x"}}),
            "Request decode failed: time: unknown unit \"x\" in duration \"10x\"",
        ),
        (
            json!({"Name": "a", "Check": {"TTL": "10"}}),
            "Request decode failed: time: missing unit in duration \"10\"",
        ),
    ];
    for (body, want) in cases {
        let (code, text) = api
            .error(Method::PUT, "/v1/agent/service/register", Some(body))
            .await;
        assert_eq!((code, text.as_str()), (400, want));
    }
}

#[tokio::test]
async fn bad_query_options_are_400s() {
    let dev = ConsulDev::start().await.unwrap();
    let api = Api::new(&dev);
    for (path, want) in [
        ("/v1/health/service/a?wait=10", "Invalid wait time"),
        ("/v1/health/service/a?index=x", "Invalid index"),
        (
            "/v1/health/service/a?passing=maybe",
            "Invalid value for ?passing",
        ),
        (
            "/v1/catalog/services?stale&consistent",
            "Cannot specify ?stale with ?consistent, conflicting semantics.",
        ),
    ] {
        let (code, text) = api.error(Method::GET, path, None).await;
        assert_eq!((code, text.as_str()), (400, want), "{path}");
    }
}

#[tokio::test]
async fn oversized_kv_values_and_transactions_are_413() {
    let dev = ConsulDev::start().await.unwrap();
    let api = Api::new(&dev);
    let big = vec![b'x'; 512 * 1024 + 1];
    let resp = api
        .http
        .put(format!("{}/v1/kv/big", api.base))
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert_eq!(
        resp.text().await.unwrap(),
        "Request body(524289 bytes) too large, max size: 524288 bytes. See \
         https://developer.hashicorp.com/docs/agent/config/config-files#kv_max_value_size."
    );
    let resp = api
        .http
        .put(format!("{}/v1/txn", api.base))
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    // A value at the limit is stored.
    let resp = api
        .http
        .put(format!("{}/v1/kv/fits", api.base))
        .body(vec![b'x'; 512 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}
