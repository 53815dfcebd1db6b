//! Outcome classification, the tracked body, and the endpoint's ejection states,
//! with the paused clock.

use std::sync::Arc;
use std::task::{Context, Waker};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use http_body::{Body as HttpBody, Frame};
use http_body_util::{BodyExt, StreamBody};
use tokio::sync::mpsc;
use tokio::time::{self, Instant};
use tonic::Code;

use super::*;
use crate::InstanceKey;
use crate::balance::accrual::FailureAccrual;
use crate::balance::info::EndpointState;
use crate::balance::stats::{EndpointStats, Mode};

const DECAY: Duration = Duration::from_secs(10);

fn new_stats(
    accrual: FailureAccrual,
) -> (Arc<EndpointStats>, mpsc::UnboundedReceiver<InstanceKey>) {
    let (trips, rx) = mpsc::unbounded_channel();
    let stats = EndpointStats::new(
        InstanceKey::new("n", "a"),
        "127.0.0.1:1".into(),
        Duration::from_millis(1),
        DECAY,
        Arc::new(accrual),
        trips,
        crate::balance::metrics::Telemetry::detached(),
    );
    stats.set_conn(EndpointState::Ready);
    stats.set_max_streams(u32::MAX);
    (stats, rx)
}

/// Ejects the endpoint, lets its ejection run out and takes the probe slot.
fn probe_allowed(stats: &EndpointStats) {
    stats.eject();
    stats.allow_probe();
    assert!(stats.take_probe(), "the probe slot is free");
}

fn finish(stats: &Arc<EndpointStats>, outcome: Outcome) {
    let mut call = Call::start(stats.clone(), false);
    call.headers();
    call.finish(outcome);
}

fn trailers(code: &'static str) -> HeaderMap {
    let mut map = HeaderMap::new();
    map.insert("grpc-status", HeaderValue::from_static(code));
    map
}

#[test]
fn the_status_is_read_from_trailers_only_answers_and_http_codes() {
    assert_eq!(status_in_headers(StatusCode::OK, &HeaderMap::new()), None);
    assert_eq!(
        status_in_headers(StatusCode::OK, &trailers("14")),
        Some(Code::Unavailable)
    );
    assert_eq!(
        status_in_headers(StatusCode::OK, &trailers("garbage")),
        Some(Code::Unknown)
    );
    let http = |s: u16| status_in_headers(StatusCode::from_u16(s).unwrap(), &HeaderMap::new());
    assert_eq!(http(503), Some(Code::Unavailable));
    assert_eq!(http(429), Some(Code::Unavailable));
    assert_eq!(http(404), Some(Code::Unimplemented));
    assert_eq!(http(400), Some(Code::Internal));
    assert_eq!(http(500), Some(Code::Unknown));
}

#[tokio::test(start_paused = true)]
async fn failures_trip_the_detector_once_and_other_codes_do_not() {
    let (stats, mut trips) = new_stats(FailureAccrual::default().consecutive_failures(3));
    for _ in 0..10 {
        finish(&stats, Outcome::Status(Code::NotFound));
        finish(&stats, Outcome::Status(Code::Internal));
    }
    assert!(
        trips.try_recv().is_err(),
        "NOT_FOUND and INTERNAL are not failures by default"
    );
    for _ in 0..10 {
        finish(&stats, Outcome::Status(Code::Unavailable));
    }
    assert_eq!(trips.try_recv().ok(), Some(stats.key.clone()));
    assert!(
        trips.try_recv().is_err(),
        "one trip until the worker takes it"
    );
    assert!(stats.take_trip());
}

#[tokio::test(start_paused = true)]
async fn cancelled_calls_and_expired_deadlines_count_for_neither_side() {
    let (stats, mut trips) = new_stats(FailureAccrual::default().consecutive_failures(2));
    for _ in 0..10 {
        drop(Call::start(stats.clone(), false));
        finish(&stats, Outcome::DeadlineExpired);
        finish(&stats, Outcome::NotSent);
    }
    assert!(trips.try_recv().is_err());
    // With DEADLINE_EXCEEDED in the failure set, an expired deadline counts.
    let (stats, mut trips) = new_stats(
        FailureAccrual::default()
            .consecutive_failures(2)
            .failure_codes([Code::Unavailable, Code::DeadlineExceeded]),
    );
    finish(&stats, Outcome::DeadlineExpired);
    finish(&stats, Outcome::DeadlineExpired);
    assert!(trips.try_recv().is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_body_reports_the_status_in_its_trailers() {
    let (stats, mut trips) = new_stats(FailureAccrual::default().consecutive_failures(1));
    let frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = vec![
        Ok(Frame::data(Bytes::from_static(b"message"))),
        Ok(Frame::trailers(trailers("14"))),
    ];
    let mut call = Call::start(stats.clone(), false);
    call.headers();
    let body = TrackedBody::new(StreamBody::new(futures_util::stream::iter(frames)), call);
    assert_eq!(stats.open_streams(), 1);
    let collected = body.collect().await.expect("body");
    assert!(collected.trailers().is_some());
    assert_eq!(stats.open_streams(), 0);
    assert!(
        trips.try_recv().is_ok(),
        "UNAVAILABLE in the trailers is a failure"
    );
}

#[tokio::test(start_paused = true)]
async fn a_body_dropped_before_its_end_is_a_cancellation() {
    let (stats, mut trips) = new_stats(FailureAccrual::default().consecutive_failures(1));
    let frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> =
        vec![Ok(Frame::data(Bytes::from_static(b"message")))];
    let mut call = Call::start(stats.clone(), false);
    call.headers();
    let mut body = TrackedBody::new(StreamBody::new(futures_util::stream::iter(frames)), call);
    let mut cx = Context::from_waker(Waker::noop());
    let first = std::pin::Pin::new(&mut body).poll_frame(&mut cx);
    assert!(matches!(first, std::task::Poll::Ready(Some(Ok(_)))));
    drop(body);
    assert_eq!(stats.open_streams(), 0);
    assert!(trips.try_recv().is_err());
}

#[tokio::test(start_paused = true)]
async fn failures_make_an_endpoint_dearer_within_a_bound_and_fade() {
    let (stats, _trips) = new_stats(FailureAccrual::disabled());
    let before = stats.cost();
    finish(&stats, Outcome::Status(Code::Unavailable));
    // One failure: score 0.2, cost × 3 (and the fast failure did not lower the estimate).
    let one = stats.cost();
    assert!((one / before - 3.0).abs() < 0.01, "{one} vs {before}");
    for _ in 0..100 {
        finish(&stats, Outcome::Status(Code::Unavailable));
    }
    let many = stats.cost();
    assert!(
        many <= before * 11.0 + 1.0 && many > before * 10.9,
        "{many} vs {before}"
    );
    // Successes bring it back.
    for _ in 0..30 {
        finish(&stats, Outcome::Status(Code::Ok));
    }
    assert!(stats.failure_score(Instant::now()) < 0.01);
    // And so does time, for an instance that gets no calls.
    finish(&stats, Outcome::Status(Code::Unavailable));
    let score = stats.failure_score(Instant::now());
    time::advance(DECAY).await;
    let faded = stats.failure_score(Instant::now());
    assert!(
        (faded - score / std::f64::consts::E).abs() < 1e-6,
        "{score} {faded}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failure_run_is_penalised_once_the_detector_has_judged_it() {
    let accrual = FailureAccrual::default().without_failure_rate();
    let (stats, mut trips) = new_stats(accrual.clone());
    let before = stats.cost();
    // Four failures in a row: the consecutive detector (5) has not judged them yet, so
    // the cost stays and the endpoint keeps getting the calls that decide.
    for _ in 0..4 {
        finish(&stats, Outcome::Status(Code::Unavailable));
    }
    assert!(
        (stats.cost() / before - 1.0).abs() < 0.01,
        "{}",
        stats.cost()
    );
    assert!(trips.try_recv().is_err());
    // The fifth trips the detector, and the whole run counts at once.
    finish(&stats, Outcome::Status(Code::Unavailable));
    assert!(trips.try_recv().is_ok());
    let score = stats.failure_score(Instant::now());
    assert!((score - (1.0 - 0.8f64.powi(5))).abs() < 1e-9, "{score}");

    // A short run that a success ends counts too.
    let (stats, mut trips) = new_stats(accrual.clone());
    for _ in 0..2 {
        finish(&stats, Outcome::Status(Code::Unavailable));
    }
    finish(&stats, Outcome::Status(Code::Ok));
    let score = stats.failure_score(Instant::now());
    assert!((score - 0.36 * 0.8).abs() < 1e-9, "{score}");
    assert!(trips.try_recv().is_err());

    // Once the guard refused an ejection, every failure is penalised at once, and
    // beyond the bound that leaves an unjudged instance calls.
    let (stats, mut trips) = new_stats(accrual);
    let before = stats.cost();
    for _ in 0..5 {
        finish(&stats, Outcome::Status(Code::Unavailable));
    }
    assert!(stats.take_trip() && trips.try_recv().is_ok());
    stats.refused();
    let refused_at = stats.failure_score(Instant::now());
    finish(&stats, Outcome::Status(Code::Unavailable));
    let score = stats.failure_score(Instant::now());
    assert!((score - (refused_at * 0.8 + 0.2)).abs() < 1e-9, "{score}");
    assert!(
        stats.cost() > before * 500.0,
        "{} vs {before}",
        stats.cost()
    );
    // A success ends it.
    finish(&stats, Outcome::Status(Code::Ok));
    assert!(stats.cost() < before * 11.0, "{} vs {before}", stats.cost());
}

#[tokio::test(start_paused = true)]
async fn a_silent_endpoint_gets_dearer_while_calls_wait() {
    let (stats, _trips) = new_stats(FailureAccrual::disabled());
    let call = Call::start(stats.clone(), false);
    let at_send = stats.cost();
    time::advance(Duration::from_secs(2)).await;
    // The 1 ms estimate decays, but a call has waited 2 s: the cost is at least that.
    assert!(stats.cost() >= 2.0 * 2e9, "{}", stats.cost());
    assert!(stats.cost() > at_send * 100.0);
    drop(call);
}

#[tokio::test(start_paused = true)]
async fn ejection_then_one_probe_then_back_in_service() {
    let (stats, mut trips) = new_stats(FailureAccrual::default().consecutive_failures(1));
    finish(&stats, Outcome::Transport);
    assert!(trips.try_recv().is_ok() && stats.take_trip());
    let delay = stats.eject();
    assert!(delay <= Duration::from_secs(1) && delay >= Duration::from_millis(800));
    assert_eq!(stats.state(), EndpointState::Ejected);
    let until = stats.ejected_until().expect("until");
    assert_eq!(until, Instant::now() + delay);
    // Outcomes of calls sent before the ejection change nothing.
    finish(&stats, Outcome::Transport);
    assert!(trips.try_recv().is_err());

    stats.allow_probe();
    assert_eq!(stats.state(), EndpointState::Probing);
    assert!(stats.take_probe(), "one probe may go");
    assert!(!stats.take_probe(), "only one");
    assert_eq!(stats.mode(), Mode::Probing);
    let mut probe = Call::start(stats.clone(), true);
    probe.headers();
    probe.finish(Outcome::Status(Code::Ok));
    assert_eq!(stats.mode(), Mode::In);
    assert_eq!(stats.state(), EndpointState::Ready);
}

#[tokio::test(start_paused = true)]
async fn a_failed_probe_asks_for_a_longer_ejection() {
    let (stats, mut trips) = new_stats(FailureAccrual::default().consecutive_failures(1));
    let first = stats.eject();
    stats.allow_probe();
    assert!(stats.take_probe());
    let mut probe = Call::start(stats.clone(), true);
    probe.headers();
    probe.finish(Outcome::Status(Code::Unavailable));
    assert!(trips.try_recv().is_ok() && stats.take_trip());
    let second = stats.eject();
    // Doubling from 1 s, less at most 20% jitter each.
    assert!(
        second >= Duration::from_millis(1600) && second > first,
        "{first:?} {second:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_probe_resent_elsewhere_lets_another_go() {
    let (stats, _trips) = new_stats(FailureAccrual::default());
    probe_allowed(&stats);
    // The probe went to another endpoint (the server never processed it).
    Call::start(stats.clone(), true).finish(Outcome::NotSent);
    assert_eq!(stats.mode(), Mode::ProbeAllowed);
    assert!(stats.take_probe());
}

#[tokio::test(start_paused = true)]
async fn a_lifted_ejection_is_back_in_service() {
    let (stats, _trips) = new_stats(FailureAccrual::default());
    stats.eject();
    stats.lift();
    assert_eq!(stats.mode(), Mode::In);
    assert_eq!(stats.ejected_until(), None);
}

#[tokio::test(start_paused = true)]
async fn the_stream_limit_is_kept() {
    let (stats, _trips) = new_stats(FailureAccrual::default());
    stats.set_max_streams(2);
    let a = Call::start(stats.clone(), false);
    assert!(stats.has_stream_capacity());
    let b = Call::start(stats.clone(), false);
    assert!(!stats.has_stream_capacity());
    drop(a);
    assert!(stats.has_stream_capacity());
    drop(b);
}

#[tokio::test(start_paused = true)]
async fn the_limit_is_unknown_until_the_server_speaks() {
    let (stats, _trips) = new_stats(FailureAccrual::default());
    stats.connection_opening();
    assert!(
        !stats.has_stream_capacity(),
        "no call before the server's SETTINGS"
    );
    stats.set_max_streams(0);
    assert!(!stats.has_stream_capacity());
    stats.set_max_streams(1);
    assert!(stats.has_stream_capacity());
}

#[tokio::test(start_paused = true)]
async fn a_streaming_probe_is_decided_at_its_headers() {
    let (stats, _trips) = new_stats(FailureAccrual::default());
    probe_allowed(&stats);
    let mut probe = Call::start(stats.clone(), true);
    probe.headers();
    probe.answered();
    // The stream goes on; the endpoint is back already.
    assert_eq!(stats.mode(), Mode::In);
    drop(probe);
    assert_eq!(stats.mode(), Mode::In);
}

#[tokio::test(start_paused = true)]
async fn a_probe_that_runs_out_of_time_fails() {
    let (stats, mut trips) = new_stats(FailureAccrual::default());
    probe_allowed(&stats);
    Call::start(stats.clone(), true).finish(Outcome::DeadlineExpired);
    assert!(
        trips.try_recv().is_ok() && stats.take_trip(),
        "a failed probe trips"
    );
    // A probe dropped by its caller fails the same way.
    probe_allowed(&stats);
    drop(Call::start(stats.clone(), true));
    assert!(trips.try_recv().is_ok() && stats.take_trip());
}

#[tokio::test(start_paused = true)]
async fn ejections_keep_doubling_after_a_return() {
    let (stats, _trips) = new_stats(FailureAccrual::default());
    probe_allowed(&stats);
    let mut probe = Call::start(stats.clone(), true);
    probe.headers();
    probe.finish(Outcome::Status(Code::Ok));
    // Serving for over the maximum (60 s) starts the sequence over...
    time::advance(Duration::from_secs(61)).await;
    let first = stats.eject();
    assert!(first <= Duration::from_secs(1), "{first:?}");
    // ...but a failed probe right after doubles it, and again.
    let second = stats.eject();
    let third = stats.eject();
    assert!(second >= Duration::from_millis(1600), "{second:?}");
    assert!(third >= Duration::from_millis(3200), "{third:?}");
}

#[tokio::test(start_paused = true)]
async fn a_trip_sent_during_an_ejection_is_stale() {
    let (stats, mut trips) = new_stats(FailureAccrual::default().consecutive_failures(1));
    finish(&stats, Outcome::Transport);
    assert!(trips.try_recv().is_ok());
    stats.eject();
    assert!(!stats.take_trip(), "the endpoint is out already");
}

#[tokio::test(start_paused = true)]
async fn a_refused_ejection_starts_the_count_over() {
    let (stats, mut trips) = new_stats(FailureAccrual::default().consecutive_failures(3));
    for _ in 0..3 {
        finish(&stats, Outcome::Transport);
    }
    assert!(trips.try_recv().is_ok() && stats.take_trip());
    stats.refused();
    finish(&stats, Outcome::Transport);
    finish(&stats, Outcome::Transport);
    assert!(
        trips.try_recv().is_err(),
        "two failures after a refusal are not three"
    );
    finish(&stats, Outcome::Transport);
    assert!(trips.try_recv().is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_lost_connection_or_the_callers_own_error_counts_for_neither_side() {
    let (stats, mut trips) = new_stats(FailureAccrual::default().consecutive_failures(1));
    finish(&stats, Outcome::ConnectionLost);
    finish(&stats, Outcome::Cancelled);
    assert!(trips.try_recv().is_err());
    let io = std::io::Error::new(std::io::ErrorKind::BrokenPipe, "closed");
    assert_eq!(error_outcome(&io), Outcome::ConnectionLost);
}
