//! The detectors and the settings, with the paused clock.

use std::time::Duration;

use tokio::time::{self, Instant};
use tonic::Code;

use super::*;

fn config() -> FailureAccrual {
    FailureAccrual::default()
}

#[tokio::test(start_paused = true)]
async fn consecutive_failures_trip_at_the_threshold_and_a_success_resets_them() {
    let cfg = config().without_failure_rate().consecutive_failures(3);
    let mut d = Detector::new();
    let epoch = Instant::now();
    assert!(!d.record(&cfg, Verdict::Failure, epoch, Instant::now()));
    assert!(!d.record(&cfg, Verdict::Failure, epoch, Instant::now()));
    assert!(!d.record(&cfg, Verdict::Success, epoch, Instant::now()));
    assert!(!d.record(&cfg, Verdict::Failure, epoch, Instant::now()));
    assert!(!d.record(&cfg, Verdict::Failure, epoch, Instant::now()));
    assert!(d.record(&cfg, Verdict::Failure, epoch, Instant::now()));
}

#[tokio::test(start_paused = true)]
async fn the_failure_rate_needs_the_minimum_volume_and_the_threshold() {
    let cfg =
        config()
            .without_consecutive_failures()
            .failure_rate(0.5, 10, Duration::from_secs(10));
    let mut d = Detector::new();
    let epoch = Instant::now();
    // Alternating: 50% failures, but fewer than 10 calls until the tenth.
    let mut tripped_at = None;
    for i in 0..10 {
        let verdict = if i % 2 == 0 {
            Verdict::Success
        } else {
            Verdict::Failure
        };
        if d.record(&cfg, verdict, epoch, Instant::now()) {
            tripped_at = Some(i + 1);
            break;
        }
    }
    assert_eq!(tripped_at, Some(10));
}

#[tokio::test(start_paused = true)]
async fn a_rate_below_the_threshold_never_trips() {
    let cfg =
        config()
            .without_consecutive_failures()
            .failure_rate(0.5, 10, Duration::from_secs(10));
    let mut d = Detector::new();
    let epoch = Instant::now();
    for i in 0..1_000 {
        // One failure in three.
        let verdict = if i % 3 == 0 {
            Verdict::Failure
        } else {
            Verdict::Success
        };
        assert!(!d.record(&cfg, verdict, epoch, Instant::now()), "call {i}");
        time::advance(Duration::from_millis(7)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn old_calls_leave_the_window() {
    let cfg = config()
        .without_consecutive_failures()
        .failure_rate(0.5, 4, Duration::from_secs(10));
    let mut d = Detector::new();
    let epoch = Instant::now();
    // Three failures, then the window moves on past them.
    for _ in 0..3 {
        assert!(!d.record(&cfg, Verdict::Failure, epoch, Instant::now()));
    }
    time::advance(Duration::from_secs(11)).await;
    // Within the new window: one failure and three successes is 25%, and the old
    // failures must not count (they would make it 4 of 7).
    for v in [Verdict::Success, Verdict::Success, Verdict::Success] {
        assert!(!d.record(&cfg, v, epoch, Instant::now()));
    }
    assert!(!d.record(&cfg, Verdict::Failure, epoch, Instant::now()));
    // 2 of 5 stays below; 3 of 6 trips.
    assert!(!d.record(&cfg, Verdict::Failure, epoch, Instant::now()));
    assert!(d.record(&cfg, Verdict::Failure, epoch, Instant::now()));
}

#[test]
fn bad_settings_name_the_setting() {
    let cases = [
        (config().consecutive_failures(0), "consecutive_failures"),
        (
            config().failure_rate(0.0, 10, Duration::from_secs(1)),
            "threshold",
        ),
        (
            config().failure_rate(1.5, 10, Duration::from_secs(1)),
            "threshold",
        ),
        (
            config().failure_rate(f64::NAN, 10, Duration::from_secs(1)),
            "threshold",
        ),
        (
            config().failure_rate(0.5, 0, Duration::from_secs(1)),
            "min_requests",
        ),
        (config().failure_rate(0.5, 10, Duration::ZERO), "window"),
        (config().max_ejected_fraction(1.01), "max_ejected_fraction"),
        (config().max_ejected_fraction(-0.1), "max_ejected_fraction"),
        (
            config().max_ejected_fraction(f64::NAN),
            "max_ejected_fraction",
        ),
        (
            config().ejection_backoff(crate::Backoff::new(Duration::ZERO, Duration::from_secs(1))),
            "ejection_backoff",
        ),
        (config().failure_codes([Code::Ok]), "OK"),
    ];
    for (cfg, name) in cases {
        let err = cfg.validate().expect_err(name);
        assert!(err.contains(name), "{err:?} does not name {name}");
    }
    assert_eq!(config().validate(), Ok(()));
    assert_eq!(FailureAccrual::disabled().validate(), Ok(()));
}

#[test]
fn the_guard_rounds_down() {
    let cfg = config();
    assert_eq!(cfg.max_ejected(1), 0);
    assert_eq!(cfg.max_ejected(2), 1);
    assert_eq!(cfg.max_ejected(3), 1);
    assert_eq!(cfg.max_ejected(10), 5);
    assert_eq!(config().max_ejected_fraction(1.0).max_ejected(3), 3);
}

#[test]
fn code_sets_hold_what_they_were_given() {
    let set = CodeSet::of([Code::Unavailable, Code::Internal]);
    assert!(set.contains(Code::Unavailable) && set.contains(Code::Internal));
    assert!(!set.contains(Code::Ok) && !set.contains(Code::DeadlineExceeded));
    assert_eq!(format!("{set:?}").matches(',').count(), 1);
}

#[tokio::test(start_paused = true)]
async fn the_consecutive_count_saturates() {
    // Both detectors off: nothing trips, and the count only grows.
    let cfg = config()
        .without_failure_rate()
        .without_consecutive_failures();
    let mut d = Detector::new();
    d.consecutive = u32::MAX - 1;
    let epoch = Instant::now();
    for _ in 0..3 {
        assert!(!d.record(&cfg, Verdict::Failure, epoch, Instant::now()));
    }
    assert_eq!(d.consecutive(), u32::MAX);
}
