//! The health follower: takes the instance out of discovery while its
//! [`HealthSource`] says it does not serve, and puts it back once it does.

use std::time::Duration;

use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use super::{HealthSource, Registrar};
use crate::backoff::{Backoff, BackoffState};

/// How often a callback health source is asked.
pub(crate) const POLL: Duration = Duration::from_secs(1);

/// Retries of a failed withdrawal or restoration: quick at first, then every 5 s.
fn retry_backoff() -> Backoff {
    Backoff::new(Duration::from_millis(100), Duration::from_secs(5))
}

/// Applies every change of `health` to `registrar` until `stop`: `withdraw` when it
/// stops serving, `restore` when it serves again. `published` says whether the
/// instance is in discovery now.
///
/// A failure leaves the state unknown (a call that timed out may still land), so the
/// follower retries with backoff whichever call the health then asks for, at once
/// when the health changed since the failed attempt. A call in flight is never cut
/// off by `stop`: the handle waits for it, so it cannot land after the final removal.
pub(crate) async fn follow<R: Registrar>(
    registrar: &R,
    mut health: HealthSource,
    published: bool,
    stop: &CancellationToken,
) {
    let mut applied = Some(published);
    let mut retry = BackoffState::new(retry_backoff());
    // After a failure: when to try again, and what the failed attempt wanted.
    let mut pending: Option<(Instant, bool)> = None;
    loop {
        let serving = health.healthy();
        if applied == Some(serving) {
            pending = None;
            retry.reset();
        } else if pending.is_none_or(|(due, tried)| tried != serving || Instant::now() >= due) {
            match apply(registrar, serving).await {
                Ok(()) => {
                    applied = Some(serving);
                    continue;
                }
                Err(e) => {
                    applied = None;
                    let delay = retry.next_delay();
                    let failures = retry.failures();
                    tracing::warn!(error = %e, serving, failures, retry_in = ?delay,
                        "could not follow the health status");
                    pending = Some((Instant::now() + delay, serving));
                }
            }
        }
        let due = pending.map(|(due, _)| due);
        tokio::select! {
            biased;
            () = stop.cancelled() => return,
            () = health.next(POLL) => {}
            () = sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {}
        }
    }
}

/// One withdrawal or restoration.
async fn apply<R: Registrar>(registrar: &R, serving: bool) -> crate::Result<()> {
    if serving {
        registrar.restore().await?;
        tracing::info!("serving again: back in discovery");
    } else {
        registrar.withdraw().await?;
        tracing::info!("not serving: out of discovery");
    }
    Ok(())
}

#[cfg(test)]
#[path = "follow_tests.rs"]
mod tests;
