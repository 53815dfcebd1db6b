//! Feeds a `tonic_health` reporter's status into a [`HealthSource`].

use futures_util::StreamExt;
use tokio::sync::watch;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_server::Health;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tonic_health::server::{HealthReporter, HealthService};

use super::health::HealthSource;
use crate::error::{Error, Result};

/// Subscribes to `service` through the reporter's own `Watch` implementation and
/// forwards every status into a `watch` channel, until the stream ends or every
/// receiver is gone.
pub(crate) async fn follow(reporter: &HealthReporter, service: &str) -> Result<HealthSource> {
    let health = HealthService::from_health_reporter(reporter.clone());
    let request = tonic::Request::new(HealthCheckRequest {
        service: service.to_owned(),
    });
    let mut stream = health
        .watch(request)
        .await
        .map_err(|s| {
            Error::config(format!(
                "the health reporter does not know service `{service}`: {}",
                s.message()
            ))
        })?
        .into_inner();
    let first = stream.next().await;
    let serving =
        |item: Option<Result<_, tonic::Status>>| matches!(item, Some(Ok(r)) if is_serving(&r));
    let (tx, rx) = watch::channel(serving(first));
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = tx.closed() => return,
                item = stream.next() => {
                    let Some(item) = item else { return };
                    let _ = tx.send(serving(Some(item)));
                }
            }
        }
    });
    Ok(HealthSource::watch(rx))
}

fn is_serving(response: &HealthCheckResponse) -> bool {
    response.status == ServingStatus::Serving as i32
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tonic_health::ServingStatus as Status;
    use tonic_health::server::HealthReporter;

    use super::*;

    #[tokio::test]
    async fn follows_the_reporter() {
        let reporter = HealthReporter::new();
        reporter.set_service_status("echo", Status::Serving).await;
        let mut source = follow(&reporter, "echo").await.unwrap();
        assert!(source.healthy());

        reporter
            .set_service_status("echo", Status::NotServing)
            .await;
        let changed = tokio::time::timeout(Duration::from_secs(5), source.changed()).await;
        assert!(changed.is_ok(), "no change seen");
        assert!(!source.healthy());

        reporter.set_service_status("echo", Status::Serving).await;
        let changed = tokio::time::timeout(Duration::from_secs(5), source.changed()).await;
        assert!(changed.is_ok() && source.healthy());
    }

    #[tokio::test]
    async fn unknown_service_is_a_config_error() {
        let e = follow(&HealthReporter::new(), "nope").await.unwrap_err();
        assert!(e.is_config(), "{e}");
    }
}
