//! Checks run by `ConsulDev` (HTTP, gRPC, TCP) and the critical-service reaper.

mod common;
mod support;

use std::time::Duration;

use common::Api;
use consul_dev::ConsulDev;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(10);

async fn check_status(api: &Api, id: &str) -> String {
    let (checks, _) = api.get_json("/v1/agent/checks").await;
    checks[id]["Status"].as_str().unwrap_or("absent").to_owned()
}

#[tokio::test]
async fn http_checks_follow_the_status_code() {
    support::trace_init();
    let dev = ConsulDev::start().await.unwrap();
    let api = Api::new(&dev);
    // The registry's own API is a handy HTTP target: 200 here, 404 there.
    let ok = format!("{}/v1/status/leader", dev.url());
    let missing = format!("{}/v1/nothing", dev.url());
    api.register(json!({"Name": "a", "Check": {"HTTP": ok, "Interval": "50ms"}}))
        .await;
    api.register(
        json!({"Name": "b", "Check": {"HTTP": missing, "Interval": "50ms", "Status": "passing"}}),
    )
    .await;
    support::eventually(WAIT, "HTTP check a passes", || async {
        check_status(&api, "service:a").await == "passing"
    })
    .await;
    support::eventually(WAIT, "HTTP check b fails", || async {
        check_status(&api, "service:b").await == "critical"
    })
    .await;
    let (checks, _) = api.get_json("/v1/agent/checks").await;
    assert_eq!(checks["service:a"]["Type"], "http");
    assert!(
        checks["service:a"]["Output"]
            .as_str()
            .unwrap()
            .starts_with("HTTP GET ")
    );
}

/// A tonic server with only `grpc.health.v1.Health` on loopback; dropping the
/// returned sender stops it.
#[cfg(feature = "grpc")]
async fn health_server() -> (
    std::net::SocketAddr,
    tonic_health::server::HealthReporter,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let (reporter, service) = tonic_health::server::health_reporter();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming_shutdown(tokio_stream_listener(listener), async move {
                let _ = stopped.await;
            })
            .await
            .expect("health server runs");
    });
    (addr, reporter, stop, task)
}

#[cfg(feature = "grpc")]
fn tokio_stream_listener(
    listener: tokio::net::TcpListener,
) -> impl futures_core::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    futures_util::stream::unfold(listener, |l| async move {
        let next = l.accept().await.map(|(s, _)| s);
        Some((next, l))
    })
}

#[cfg(feature = "grpc")]
#[tokio::test]
async fn grpc_checks_use_grpc_health_v1() {
    support::trace_init();
    let dev = ConsulDev::start().await.unwrap();
    let api = Api::new(&dev);
    let (addr, reporter, stop, task) = health_server().await;
    reporter
        .set_service_status("echo.v1.Echo", tonic_health::ServingStatus::Serving)
        .await;
    let target = format!("{addr}/echo.v1.Echo");
    api.register(
        json!({"Name": "echo", "Port": addr.port(), "Check": {"GRPC": target, "Interval": "50ms"}}),
    )
    .await;
    support::eventually(WAIT, "gRPC check passes", || async {
        check_status(&api, "service:echo").await == "passing"
    })
    .await;
    reporter
        .set_service_status("echo.v1.Echo", tonic_health::ServingStatus::NotServing)
        .await;
    support::eventually(WAIT, "gRPC check fails", || async {
        check_status(&api, "service:echo").await == "critical"
    })
    .await;
    let (entries, _) = api.get_json("/v1/health/service/echo?passing").await;
    assert_eq!(entries, json!([]));
    let _ = stop.send(());
    task.await.unwrap();
}

#[tokio::test]
async fn tcp_checks_connect() {
    let dev = ConsulDev::start().await.unwrap();
    let api = Api::new(&dev);
    let addr = dev.addr().to_string();
    api.register(json!({"Name": "t", "Check": {"TCP": addr, "Interval": "50ms"}}))
        .await;
    support::eventually(WAIT, "TCP check passes", || async {
        check_status(&api, "service:t").await == "passing"
    })
    .await;
}

#[tokio::test]
async fn reaps_services_critical_for_longer_than_allowed() {
    support::trace_init();
    let dev = ConsulDev::builder()
        .reap_interval(Duration::from_millis(50))
        .min_deregister_critical_after(Duration::from_millis(100))
        .start()
        .await
        .unwrap();
    let api = Api::new(&dev);
    let check = json!({"TTL": "1h", "DeregisterCriticalServiceAfter": "100ms"});
    api.register(json!({"Name": "doomed", "Check": check}))
        .await;
    api.register(json!({"Name": "kept", "Check": {"TTL": "1h", "Status": "passing", "DeregisterCriticalServiceAfter": "100ms"}})).await;
    support::eventually(WAIT, "critical service reaped", || async {
        let (services, _) = api.get_json("/v1/agent/services").await;
        services.get("doomed").is_none()
    })
    .await;
    let (services, _) = api.get_json("/v1/agent/services").await;
    assert!(services.get("kept").is_some(), "passing services stay");
    let (checks, _) = api.get_json("/v1/agent/checks").await;
    assert!(checks.get("service:doomed").is_none(), "its checks go too");
}

#[tokio::test]
async fn deregister_after_is_raised_to_the_minimum() {
    let dev = ConsulDev::start().await.unwrap();
    let api = Api::new(&dev);
    api.register(
        json!({"Name": "s", "Check": {"TTL": "1h", "DeregisterCriticalServiceAfter": "1s"}}),
    )
    .await;
    let (checks, _) = api.get_json("/v1/agent/checks").await;
    assert_eq!(
        checks["service:s"]["Definition"]["DeregisterCriticalServiceAfter"],
        "1m0s"
    );
}
