//! The follower of a live service config: what each kind of update leaves in the
//! channel's table.

use std::sync::Arc;

use arc_swap::ArcSwap;
use futures_util::stream;

use super::*;
use crate::error::Error;
use crate::source::ConfigUpdate;

const RETRY: &str = r#"{"methodConfig": [{"name": [{"service": "echo.Echo"}],
  "retryPolicy": {"maxAttempts": 3, "initialBackoff": "0.1s", "maxBackoff": "1s",
  "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]}}],
  "retryThrottling": {"maxTokens": 10, "tokenRatio": 0.1}}"#;

const HEDGE: &str = r#"{"methodConfig": [{"name": [{"service": "echo.Echo"}],
  "hedgingPolicy": {"maxAttempts": 2, "hedgingDelay": "0.01s"}}],
  "retryThrottling": {"maxTokens": 10, "tokenRatio": 0.1}}"#;

/// Runs the follower over `updates` to their end, from a channel built with `base`;
/// returns the table it leaves.
async fn follow_all(base: ServiceConfig, updates: Vec<ConfigUpdate>) -> Arc<ArcSwap<Live>> {
    let swap = Arc::new(ArcSwap::from_pointee(Live::new(&base, None)));
    let follower = Follower {
        watch: ServiceConfigWatch::new("test", stream::iter(updates)),
        policies: Arc::downgrade(&swap),
        base,
        service: "echo".into(),
        metrics: ChannelMetrics::new("echo".into(), 0, false),
    };
    follow(follower).await;
    swap
}

fn policies(swap: &ArcSwap<Live>) -> (bool, bool, bool) {
    let live = swap.load();
    let method = live
        .methods
        .as_ref()
        .and_then(|m| m.lookup("/echo.Echo/Echo"));
    (
        method.is_some_and(|m| m.retry.is_some()),
        method.is_some_and(|m| m.hedge.is_some()),
        live.throttle.is_some(),
    )
}

#[tokio::test]
async fn a_good_document_replaces_the_table() {
    let swap = follow_all(ServiceConfig::new(), vec![Ok(Some(RETRY.into()))]).await;
    assert_eq!(policies(&swap), (true, false, true));
    let swap = follow_all(
        ServiceConfig::new(),
        vec![Ok(Some(RETRY.into())), Ok(Some(HEDGE.into()))],
    )
    .await;
    assert_eq!(policies(&swap), (false, true, true));
}

#[tokio::test]
async fn a_bad_document_or_a_failed_read_keeps_the_last_good() {
    let bad = [
        "not json",
        // gRFC A6: maxAttempts must be at least 2.
        r#"{"methodConfig": [{"name": [{"service": "echo.Echo"}],
           "retryPolicy": {"maxAttempts": 1, "initialBackoff": "0.1s", "maxBackoff": "1s",
           "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]}}]}"#,
    ];
    for bad in bad {
        let updates = vec![Ok(Some(RETRY.into())), Ok(Some(bad.into()))];
        let swap = follow_all(ServiceConfig::new(), updates).await;
        assert_eq!(policies(&swap), (true, false, true), "after {bad}");
    }
    let failed = Err(Error::config("registry down").into());
    let swap = follow_all(ServiceConfig::new(), vec![Ok(Some(RETRY.into())), failed]).await;
    assert_eq!(policies(&swap), (true, false, true));
}

#[tokio::test]
async fn no_document_brings_back_the_channels_own_config() {
    let base = ServiceConfig::from_json(HEDGE).expect("hedging config");
    let swap = follow_all(base.clone(), vec![Ok(Some(RETRY.into()))]).await;
    assert_eq!(policies(&swap), (true, false, true));
    let swap = follow_all(base, vec![Ok(Some(RETRY.into())), Ok(None)]).await;
    assert_eq!(policies(&swap), (false, true, true));
    let swap = follow_all(ServiceConfig::new(), vec![Ok(Some(RETRY.into())), Ok(None)]).await;
    assert_eq!(policies(&swap), (false, false, false));
}

#[tokio::test]
async fn an_unchanged_throttle_keeps_its_tokens() {
    let throttling = RetryThrottling::new(10, 0.1);
    let config = ServiceConfig::new().retry_throttling(throttling);
    let first = Live::new(&config, None);
    let kept = Live::new(&config, Some(&first));
    let (a, b) = (first.throttle.as_ref(), kept.throttle.as_ref());
    assert!(a.zip(b).is_some_and(|(a, b)| Arc::ptr_eq(a, b)));
    let other = ServiceConfig::new().retry_throttling(RetryThrottling::new(20, 0.1));
    let fresh = Live::new(&other, Some(&first));
    let (a, c) = (first.throttle.as_ref(), fresh.throttle.as_ref());
    assert!(a.zip(c).is_some_and(|(a, c)| !Arc::ptr_eq(a, c)));
}

#[tokio::test]
async fn the_follower_ends_with_the_channel() {
    let swap = Arc::new(ArcSwap::from_pointee(Live::new(
        &ServiceConfig::new(),
        None,
    )));
    let follower = Follower {
        // Would never end on its own.
        watch: ServiceConfigWatch::new("test", stream::repeat_with(|| Ok(None))),
        policies: Arc::downgrade(&swap),
        base: ServiceConfig::new(),
        service: "echo".into(),
        metrics: ChannelMetrics::new("echo".into(), 0, false),
    };
    drop(swap);
    follow(follower).await;
}
