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
