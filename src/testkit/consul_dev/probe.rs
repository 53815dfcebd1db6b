//! One run of an HTTP, gRPC or TCP check, with the agent's status rules and
//! output texts.

use std::time::Duration;

use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use super::model::{CheckKind, CheckStatus};

/// Runs `probe` once; returns the resulting status and output.
pub(super) async fn run(
    probe: &CheckKind,
    http: Option<&reqwest::Client>,
    timeout: Duration,
) -> (CheckStatus, String) {
    match probe {
        CheckKind::Http {
            url,
            method,
            header,
            body,
            ..
        } => {
            let Some(client) = http else {
                return (CheckStatus::Critical, "HTTP client unavailable".into());
            };
            http_probe(client, url, method, header, body).await
        }
        CheckKind::Grpc { target, .. } => grpc_probe(target, timeout).await,
        CheckKind::Tcp(addr) => tcp_probe(addr, timeout).await,
        _ => (CheckStatus::Critical, String::new()),
    }
}

async fn http_probe(
    client: &reqwest::Client,
    url: &str,
    method: &str,
    header: &std::collections::BTreeMap<String, Vec<String>>,
    body: &str,
) -> (CheckStatus, String) {
    let method = if method.is_empty() { "GET" } else { method };
    let Ok(m) = reqwest::Method::from_bytes(method.as_bytes()) else {
        return (CheckStatus::Critical, format!("invalid method {method:?}"));
    };
    let mut req = client
        .request(m, url)
        .header("User-Agent", "Consul Health Check");
    for (name, values) in header {
        for v in values {
            req = req.header(name.as_str(), v.as_str());
        }
    }
    if !body.is_empty() {
        req = req.body(body.to_owned());
    }
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => return (CheckStatus::Critical, format!("Get {url:?}: {e}")),
    };
    let code = resp.status();
    let text = resp.text().await.unwrap_or_default();
    let output = format!("HTTP {method} {url}: {code} Output: {text}");
    let status = if code.is_success() {
        CheckStatus::Passing
    } else if code.as_u16() == 429 {
        CheckStatus::Warning
    } else {
        CheckStatus::Critical
    };
    (status, output)
}

async fn grpc_probe(target: &str, timeout: Duration) -> (CheckStatus, String) {
    let (addr, service) = target.split_once('/').unwrap_or((target, ""));
    let endpoint = match tonic::transport::Endpoint::from_shared(format!("http://{addr}")) {
        Ok(e) => e.connect_timeout(timeout).timeout(timeout),
        Err(e) => return (CheckStatus::Critical, format!("gRPC {target}: {e}")),
    };
    let channel = match endpoint.connect().await {
        Ok(c) => c,
        Err(e) => return (CheckStatus::Critical, format!("gRPC {target}: {e}")),
    };
    let req = HealthCheckRequest {
        service: service.to_owned(),
    };
    match HealthClient::new(channel).check(req).await {
        Ok(resp) if resp.get_ref().status == ServingStatus::Serving as i32 => (
            CheckStatus::Passing,
            format!("gRPC check {target}: success"),
        ),
        Ok(resp) => {
            let name = ServingStatus::try_from(resp.get_ref().status)
                .map(|s| s.as_str_name())
                .unwrap_or("UNKNOWN");
            (
                CheckStatus::Critical,
                format!("gRPC {target} serving status: {name}"),
            )
        }
        Err(status) => (
            CheckStatus::Critical,
            format!(
                "gRPC {target}: rpc error: code = {:?} desc = {}",
                status.code(),
                status.message()
            ),
        ),
    }
}

async fn tcp_probe(addr: &str, timeout: Duration) -> (CheckStatus, String) {
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_)) => (CheckStatus::Passing, format!("TCP connect {addr}: Success")),
        Ok(Err(e)) => (CheckStatus::Critical, format!("dial tcp {addr}: {e}")),
        Err(_) => (
            CheckStatus::Critical,
            format!("dial tcp {addr}: i/o timeout"),
        ),
    }
}
