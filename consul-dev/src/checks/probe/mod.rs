//! One run of an HTTP, gRPC or TCP check, with the agent's status rules and
//! output texts.

mod http;
mod script;
mod tls;

use std::time::Duration;

use crate::store::model::{CheckKind, CheckStatus};

/// Runs `probe` once; returns the resulting status and output.
pub(crate) async fn run(probe: &CheckKind, timeout: Duration) -> (CheckStatus, String) {
    match probe {
        CheckKind::Http {
            url,
            method,
            header,
            body,
            tls_skip_verify,
        } => {
            let p = http::HttpProbe {
                url,
                method,
                header,
                body,
                tls_skip_verify: *tls_skip_verify,
                disable_redirects: false,
            };
            http::run(&p, timeout).await
        }
        CheckKind::Grpc { target, .. } => grpc_probe(target, timeout).await,
        CheckKind::Tcp(addr) => tcp_probe(addr, timeout).await,
        CheckKind::Script(args) => script::run(args, timeout).await,
        _ => (CheckStatus::Critical, String::new()),
    }
}

/// Without the `grpc` feature a GRPC check stays critical and says why.
#[cfg(not(feature = "grpc"))]
async fn grpc_probe(target: &str, _timeout: Duration) -> (CheckStatus, String) {
    (
        CheckStatus::Critical,
        format!("gRPC {target}: GRPC checks need consul-dev's grpc feature"),
    )
}

#[cfg(feature = "grpc")]
async fn grpc_probe(target: &str, timeout: Duration) -> (CheckStatus, String) {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

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
