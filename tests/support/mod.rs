//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub, unused_imports)]

use std::future::Future;
use std::time::Duration;

pub use tonic_discovery_testkit::trace_init;

pub mod capture;
pub mod seen;

/// Polls `cond` every 5 ms until it returns true or `timeout` passes; panics with
/// `what` on timeout. Use this, not a fixed sleep, to wait for a state.
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if cond().await {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Calls `channel` until every instance id in `want` has answered one call; panics
/// after `timeout`.
pub async fn calls_reach(
    timeout: Duration,
    channel: &tonic_discovery::balance::BalancedChannel,
    want: &[&str],
) {
    use tonic_discovery_testkit::pb::{EchoRequest, echo_client::EchoClient};
    let seen = std::sync::Mutex::new(std::collections::BTreeSet::new());
    let what = format!("calls answered by {want:?}");
    eventually(timeout, &what, || async {
        let reply = EchoClient::new(channel.clone())
            .echo(EchoRequest::default())
            .await
            .expect("call");
        let mut seen = seen.lock().unwrap();
        seen.insert(reply.into_inner().instance_id);
        want.iter().all(|id| seen.contains(*id))
    })
    .await;
}
