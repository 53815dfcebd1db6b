//! What a balanced channel shares with its calls' futures, and what those futures
//! have in common: the way back to the worker, the worker's end, and the
//! `grpc-timeout` header.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tonic::body::Body;
use tower::retry::budget::TpsBudget;

use super::buffer::ReplayBuffer;
use super::metrics::ChannelMetrics;
use super::policies::Policies;
use super::table::{Registry, Waiting};
use super::worker::{CallFuture, Message};
use crate::{BoxError, InstanceKey};

/// What a channel shares with its calls' futures: the name, the table, the
/// timeout and the way back to the worker for resends.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) name: Arc<str>,
    pub(crate) registry: Registry,
    pub(crate) timeout: Option<Duration>,
    /// Where requests an instance did not process go back to the worker.
    pub(crate) resend: mpsc::UnboundedSender<Message>,
    pub(crate) budget: TpsBudget,
    pub(crate) max_resends: u32,
    /// The service config's policies by method and its retry throttle.
    pub(crate) policies: Policies,
    /// Where the requests of calls that may go again are kept.
    pub(crate) buffer: Arc<ReplayBuffer>,
    pub(crate) metrics: Arc<ChannelMetrics>,
}

/// Hands `request` back to the worker for an instance other than those `tried`. Its
/// `grpc-timeout`, if it has one, becomes the time that `remains`, so the next
/// server's deadline is not later than the caller's.
pub(crate) fn requeue(
    mut request: http::Request<Body>,
    tried: &[InstanceKey],
    shared: Option<&Shared>,
    remains: Option<Duration>,
) -> Result<oneshot::Receiver<Result<CallFuture, BoxError>>, BoxError> {
    let Some(shared) = shared else {
        return Err(worker_gone(None));
    };
    if let Some(remains) = remains
        && request.headers().contains_key("grpc-timeout")
        && let Ok(value) = http::HeaderValue::try_from(grpc_timeout(remains))
    {
        request.headers_mut().insert("grpc-timeout", value);
    }
    let (tx, rx) = oneshot::channel();
    let msg = Message {
        request,
        tx,
        avoid: tried.to_vec(),
        _waiting: Waiting::new(&shared.registry),
    };
    shared
        .resend
        .send(msg)
        .map_err(|_| worker_gone(Some(shared)))?;
    Ok(rx)
}

pub(crate) fn name(shared: Option<&Shared>) -> &str {
    shared.map_or("?", |s| &s.name)
}

pub(crate) fn worker_gone(shared: Option<&Shared>) -> BoxError {
    let msg = format!("the balancing worker of `{}` has ended", name(shared));
    Box::new(tonic::Status::unavailable(msg))
}

/// The call's timeout: the shorter of the channel's and the request's
/// `grpc-timeout` header (set by `tonic::Request::set_timeout`), as tonic's own
/// channel does. An unparsable header is ignored.
pub(crate) fn call_timeout(
    channel: Option<Duration>,
    headers: &http::HeaderMap,
) -> Option<Duration> {
    let header = headers
        .get("grpc-timeout")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_grpc_timeout);
    match (channel, header) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// A `grpc-timeout` value for `d` (at most 8 digits), rounded down to the unit:
/// microseconds up to 100 s, then milliseconds, then seconds.
pub(crate) fn grpc_timeout(d: Duration) -> String {
    const MAX: u128 = 99_999_999;
    if d.as_micros() <= MAX {
        format!("{}u", d.as_micros())
    } else if d.as_millis() <= MAX {
        format!("{}m", d.as_millis())
    } else {
        format!("{}S", u128::from(d.as_secs()).min(MAX))
    }
}

/// Parses a `grpc-timeout` value: at most 8 digits and a unit (gRPC over HTTP/2).
pub(crate) fn parse_grpc_timeout(s: &str) -> Option<Duration> {
    let unit_at = s.len().checked_sub(1)?;
    let (value, unit) = (s.get(..unit_at)?, s.get(unit_at..)?);
    if value.is_empty() || value.len() > 8 {
        return None;
    }
    let n: u64 = value.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remaining_times_encode_within_eight_digits_never_longer() {
        for d in [
            Duration::ZERO,
            Duration::from_nanos(1_500),
            Duration::from_millis(700),
            Duration::from_secs(99),
            Duration::from_secs(101),
            Duration::from_secs(200_000),
            Duration::from_secs(u64::MAX / 4),
        ] {
            let value = grpc_timeout(d);
            let parsed = parse_grpc_timeout(&value).expect("a valid grpc-timeout");
            assert!(parsed <= d, "{d:?} encoded as {value}");
            assert!(d - parsed < Duration::from_secs(1) || d > Duration::from_secs(99_999_999));
        }
    }

    #[test]
    fn grpc_timeout_values_parse() {
        assert_eq!(parse_grpc_timeout("3S"), Some(Duration::from_secs(3)));
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_grpc_timeout("7n"), Some(Duration::from_nanos(7)));
        for bad in ["", "S", "123456789S", "12x", "-1S", "1é"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_shorter_timeout_wins() {
        let mut headers = http::HeaderMap::new();
        let s = Duration::from_secs(1);
        assert_eq!(call_timeout(Some(s), &headers), Some(s));
        headers.insert("grpc-timeout", http::HeaderValue::from_static("100m"));
        assert_eq!(
            call_timeout(Some(s), &headers),
            Some(Duration::from_millis(100))
        );
        assert_eq!(
            call_timeout(None, &headers),
            Some(Duration::from_millis(100))
        );
        headers.insert("grpc-timeout", http::HeaderValue::from_static("5S"));
        assert_eq!(call_timeout(Some(s), &headers), Some(s));
    }
}
