//! The TTL heartbeat: keeps the registration's check passing (or critical, as the
//! health source says) for as long as the handle lives.
//!
//! Every `interval` (TTL/3 by default) it sends `PUT /v1/agent/check/update/:id`. It
//! never gives up:
//! - a network error or timeout is retried with jittered backoff, and each attempt is
//!   cut off, with bounds taken from the slack between the interval and the TTL (for
//!   the default TTL/3: attempts cut off after one interval, retries at most half an
//!   interval apart), so several attempts land before the TTL runs out;
//! - a 404 (unknown check) or 500 (no TTL for that check, older agents' answer for an
//!   unknown check) means the agent forgot the service, typically after a restart: the
//!   service is registered again and the update is sent right after;
//! - a change of the health source is reported at once.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::{Instant, sleep_until, timeout};

use super::agent::{Agent, CheckStatus};
use super::payload::Resolved;
use crate::backoff::{Backoff, BackoffState};
use crate::error::{Error, Result};
use crate::register::HealthSource;
use crate::telemetry::RegistrationMetrics;

pub(crate) struct Heartbeat {
    pub(crate) agent: Arc<dyn Agent>,
    pub(crate) reg: Arc<Resolved>,
    pub(crate) health: HealthSource,
    pub(crate) backoff: BackoffState,
    /// How long one agent call may take.
    pub(crate) call_timeout: Duration,
    pub(crate) metrics: RegistrationMetrics,
}

/// The bounds that keep retries inside the TTL: an attempt due one interval after the
/// last success is cut off within half the slack (`ttl - interval`), and retries follow
/// at most a quarter of the slack (and half an interval) apart.
pub(crate) fn retry_bounds(interval: Duration, ttl: Duration) -> (Backoff, Duration) {
    let slack = ttl.saturating_sub(interval);
    let max = (interval / 2).min(slack / 4);
    (Backoff::new(max / 10, max), interval.min(slack / 2))
}

// === impl Heartbeat ===

impl Heartbeat {
    pub(crate) fn new(agent: Arc<dyn Agent>, reg: Arc<Resolved>, health: HealthSource) -> Self {
        let (backoff, call_timeout) = retry_bounds(reg.interval, reg.ttl);
        let metrics = RegistrationMetrics::new("consul", &reg.name);
        Heartbeat {
            agent,
            reg,
            health,
            backoff: BackoffState::new(backoff),
            call_timeout,
            metrics,
        }
    }

    /// Runs until the future is dropped (the handle stops it by dropping it).
    /// The first beat is due one interval from now: registration has just sent one.
    pub(crate) async fn run(mut self) {
        let mut next = Instant::now() + self.reg.interval;
        loop {
            tokio::select! {
                () = sleep_until(next) => {}
                () = self.health.changed() => {}
            }
            next = self.beat_and_schedule().await;
        }
    }

    async fn beat_and_schedule(&mut self) -> Instant {
        match self.beat().await {
            Ok(()) => {
                self.metrics.heartbeat();
                self.backoff.reset();
                Instant::now() + self.reg.interval
            }
            Err(e) => {
                self.metrics.heartbeat_failed();
                let delay = self.backoff.next_delay();
                tracing::warn!(
                    service_id = %self.reg.service_id,
                    error = %e,
                    failures = self.backoff.failures(),
                    retry_in = ?delay,
                    "heartbeat failed"
                );
                Instant::now() + delay
            }
        }
    }

    /// One heartbeat; re-registers first when the agent forgot the check.
    pub(crate) async fn beat(&self) -> Result<()> {
        match self.update().await {
            Err(e) if agent_forgot(&e) => {
                tracing::info!(
                    service_id = %self.reg.service_id,
                    error = %e,
                    "agent lost the registration; registering again"
                );
                self.bounded(self.agent.register(self.reg.body.clone()))
                    .await?;
                self.metrics.reregistered();
                self.update().await
            }
            other => other,
        }
    }

    async fn update(&self) -> Result<()> {
        let (status, output) = if self.health.healthy() {
            (CheckStatus::Passing, "serving")
        } else {
            (CheckStatus::Critical, "not serving")
        };
        let update = self.agent.update_ttl(&self.reg.check_id, status, output);
        self.bounded(update).await
    }

    /// Cuts an agent call off, so a hung call cannot use up the TTL.
    async fn bounded(&self, call: impl Future<Output = Result<()>>) -> Result<()> {
        timeout(self.call_timeout, call).await.unwrap_or_else(|_| {
            Err(Error::timeout(format!(
                "heartbeat for {}: no answer within {:?}",
                self.reg.service_id, self.call_timeout
            )))
        })
    }
}

/// 404 `Unknown check ID` and 500 `… does not have associated TTL` both mean the agent
/// has no such TTL check (any more).
pub(crate) fn agent_forgot(e: &Error) -> bool {
    matches!(e.status(), Some(404 | 500))
}

#[cfg(test)]
#[path = "heartbeat_tests.rs"]
mod tests;
