//! Fault injection of `ConsulDev`, in process and through the admin endpoints.

mod common;
mod support;

use std::time::Duration;

use common::{Api, ids, index_of};
use consul_dev::{ConsulDev, Fault, FaultRule};
use reqwest::Method;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn no_leader_applies_to_a_prefix_for_n_requests() {
    support::trace_init();
    let dev = ConsulDev::start().await.unwrap();
    let api = Api::new(&dev);
    dev.faults().add(
        FaultRule::new(Fault::NoLeader)
            .path_prefix("/v1/health/")
            .times(2),
    );
    for _ in 0..2 {
        let (code, text) = api
            .error(Method::GET, "/v1/health/service/echo", None)
            .await;
        assert_eq!((code, text.as_str()), (500, "No cluster leader"));
    }
    let (code, _) = api
        .error(Method::GET, "/v1/health/service/echo", None)
        .await;
    assert_eq!(code, 200);
    assert_eq!(dev.request_count("/v1/health/service/echo"), 3);
}

#[tokio::test]
async fn faults_switch_on_and_off() {
    let dev = ConsulDev::start().await.unwrap();
    let api = Api::new(&dev);
    let id = dev.faults().add(FaultRule::new(Fault::NoLeader));
    assert_eq!(api.get("/v1/catalog/services").await.status(), 500);
    assert!(dev.faults().remove(id));
    assert_eq!(api.get("/v1/catalog/services").await.status(), 200);
    dev.faults().add(FaultRule::new(Fault::NoLeader));
    dev.faults().clear();
    assert_eq!(api.get("/v1/catalog/services").await.status(), 200);
}

#[tokio::test]
async fn too_many_connections_is_the_raw_429_before_the_request_is_read() {
    let dev = ConsulDev::start().await.unwrap();
    dev.faults()
        .add(FaultRule::new(Fault::TooManyConnections).times(1));
    let mut conn = tokio::net::TcpStream::connect(dev.addr()).await.unwrap();
    let mut raw = String::new();
    conn.read_to_string(&mut raw).await.unwrap();
    assert_eq!(
        raw,
        "HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n\
         Your IP is issuing too many concurrent connections, please rate limit your calls\n"
    );
    // On a path prefix it answers requests on open connections too.
    dev.faults().add(
        FaultRule::new(Fault::TooManyConnections)
            .path_prefix("/v1/health/")
            .times(1),
    );
    let api = Api::new(&dev);
    let (code, text) = api.error(Method::GET, "/v1/health/service/x", None).await;
    assert_eq!(code, 429);
    assert!(text.starts_with("Your IP is issuing too many concurrent connections"));
}

#[tokio::test]
async fn delay_holds_the_response() {
    let dev = ConsulDev::start().await.unwrap();
    let api = Api::new(&dev);
    dev.faults()
        .add(FaultRule::new(Fault::Delay(Duration::from_secs(30))).times(1));
    let client = common::client();
    let resp = client
        .get(format!("{}/v1/status/leader", dev.url()))
        .timeout(Duration::from_millis(200))
        .send()
        .await;
    assert!(resp.unwrap_err().is_timeout());
    assert_eq!(api.get("/v1/status/leader").await.status(), 200);
}

#[tokio::test]
async fn malformed_json_and_wrong_content_type() {
    let dev = ConsulDev::start().await.unwrap();
    let api = Api::new(&dev);
    api.register(json!({"Name": "echo"})).await;
    dev.faults()
        .add(FaultRule::new(Fault::MalformedJson).times(1));
    let body = api
        .get("/v1/health/service/echo")
        .await
        .bytes()
        .await
        .unwrap();
    assert!(serde_json::from_slice::<serde_json::Value>(&body).is_err());

    dev.faults()
        .add(FaultRule::new(Fault::WrongContentType).times(1));
    let resp = api.get("/v1/health/service/echo").await;
    assert_eq!(resp.headers()["content-type"], "text/html");
    let (body, _) = api.get_json("/v1/health/service/echo").await;
    assert_eq!(ids(&body), ["echo"]);
}

#[tokio::test]
async fn zero_index_rewrites_the_header() {
    let dev = ConsulDev::start().await.unwrap();
    let api = Api::new(&dev);
    dev.faults().add(FaultRule::new(Fault::ZeroIndex).times(1));
    let resp = api.get("/v1/health/service/echo").await;
    assert_eq!(resp.headers()["x-consul-index"], "0");
    assert!(index_of(&api.get("/v1/health/service/echo").await) >= 1);
}

#[tokio::test]
async fn drop_connection_cuts_the_body() {
    let dev = ConsulDev::start().await.unwrap();
    let api = Api::new(&dev);
    api.register(json!({"Name": "echo"})).await;
    dev.faults()
        .add(FaultRule::new(Fault::DropConnection).times(1));
    let resp = api.get("/v1/health/service/echo").await;
    assert_eq!(resp.status(), 200);
    assert!(resp.bytes().await.is_err(), "the body must end early");
    let (body, _) = api.get_json("/v1/health/service/echo").await;
    assert_eq!(ids(&body), ["echo"]);
}

#[tokio::test]
async fn index_reset_ends_blocking_queries_with_the_lower_index() {
    let dev = ConsulDev::start().await.unwrap();
    let api = Api::new(&dev);
    api.register(json!({"Name": "echo"})).await;
    let (_, index) = api.get_json("/v1/health/service/echo").await;
    let waiter = api
        .spawn_blocking_get(
            &dev,
            &format!("/v1/health/service/echo?index={index}&wait=30s"),
            2,
        )
        .await;
    dev.faults().reset_index(2);
    let (_, after) = waiter.await.unwrap();
    assert_eq!(after, 2);
    assert!(after < index);
    api.register(json!({"Name": "echo", "Port": 2})).await;
    let (_, next) = api.get_json("/v1/health/service/echo").await;
    assert_eq!(next, 3, "the index counts on from the reset value");
    dev.faults().reset_index(0);
    let (_, zero) = api.get_json("/v1/health/service/echo").await;
    assert_eq!(zero, 1, "index 0 is reported as 1");
}

#[tokio::test]
async fn spurious_wakeup_returns_unchanged_data_with_a_new_index() {
    let dev = ConsulDev::start().await.unwrap();
    let api = Api::new(&dev);
    api.register(json!({"Name": "echo"})).await;
    let (before, index) = api.get_json("/v1/health/service/echo").await;
    let waiter = api
        .spawn_blocking_get(
            &dev,
            &format!("/v1/health/service/echo?index={index}&wait=30s"),
            2,
        )
        .await;
    dev.faults().spurious_wakeup();
    let (after, new_index) = waiter.await.unwrap();
    assert!(new_index > index);
    assert_eq!(after, before);
}

#[tokio::test]
async fn admin_endpoints_drive_faults_from_outside() {
    let dev = ConsulDev::start().await.unwrap();
    let api = Api::new(&dev);
    let body = json!({"Fault": "no-leader", "PathPrefix": "/v1/catalog/", "Times": 1});
    let (added, _) = {
        let resp = api.put("/_consul_dev/faults", Some(body)).await;
        assert_eq!(resp.status(), 200);
        (
            serde_json::from_slice::<serde_json::Value>(&resp.bytes().await.unwrap()).unwrap(),
            0,
        )
    };
    assert!(added["ID"].as_u64().is_some());
    assert_eq!(api.get("/v1/catalog/services").await.status(), 500);
    assert_eq!(api.get("/v1/catalog/services").await.status(), 200);

    api.put_ok(
        "/_consul_dev/faults",
        Some(json!({"Fault": "delay", "Delay": "1ms"})),
    )
    .await;
    assert_eq!(
        api.send(Method::DELETE, "/_consul_dev/faults", None)
            .await
            .status(),
        200
    );
    let (code, _) = api
        .error(
            Method::PUT,
            "/_consul_dev/faults",
            Some(json!({"Fault": "bogus"})),
        )
        .await;
    assert_eq!(code, 400);

    api.register(json!({"Name": "echo"})).await;
    let resp = api.get("/v1/health/service/echo").await;
    assert!(index_of(&resp) > 1);
    api.put_ok("/_consul_dev/index?reset=1", None).await;
    assert_eq!(index_of(&api.get("/v1/health/service/echo").await), 1);
    api.put_ok("/_consul_dev/wakeup", None).await;
    assert_eq!(index_of(&api.get("/v1/health/service/echo").await), 1 + 1);
    let (counts, _) = api.get_json("/_consul_dev/requests").await;
    assert_eq!(counts["/v1/health/service/echo"], 3);
    api.put_ok(
        "/_consul_dev/check/serfHealth?status=critical&output=down",
        None,
    )
    .await;
    let (node, _) = api.get_json("/v1/health/state/critical").await;
    assert_eq!(node[0]["CheckID"], "serfHealth");
    api.put_ok("/_consul_dev/forget", None).await;
    let (services, _) = api.get_json("/v1/agent/services").await;
    assert_eq!(services, json!({}));
}

#[tokio::test]
async fn dropping_the_registry_closes_connections() {
    let dev = ConsulDev::start().await.unwrap();
    let addr = dev.addr();
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(b"GET /v1/health/service/x?index=1&wait=10m HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // The blocking query is in flight; dropping ends it and closes the socket.
    support::eventually(
        Duration::from_secs(5),
        "the blocking query arrives",
        || async { dev.request_count("/v1/health/service/x") == 1 },
    )
    .await;
    drop(dev);
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(_)) | Ok(Err(_))),
        "connection must close"
    );
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "listener closed"
    );
}
