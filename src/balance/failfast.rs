//! The fail-fast timer: how long a request may wait for a ready endpoint.
//!
//! The timer runs while a request waits and no endpoint is in service (busy ones,
//! at their stream or concurrency limits, stop it: the request waits for them). When it fires the
//! channel enters fail-fast: the waiting request and every request after it fail at
//! once with `Unavailable`, until an endpoint is ready again.

use std::future::Future;
use std::pin::Pin;
use std::task::Context;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

#[derive(Debug)]
pub(crate) struct FailFast {
    timeout: Duration,
    /// Created on first use, so a channel can be built outside a runtime
    /// (`build_with_worker` for custom executors).
    sleep: Option<Pin<Box<Sleep>>>,
    armed: bool,
    active: bool,
}

// === impl FailFast ===

impl FailFast {
    pub(crate) fn new(timeout: Duration) -> Self {
        FailFast {
            timeout,
            sleep: None,
            armed: false,
            active: false,
        }
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Whether requests fail at once.
    pub(crate) fn is_active(&self) -> bool {
        self.active
    }

    /// A request is waiting with no ready endpoint: starts the timer if it is not
    /// running and returns true once it has fired (the channel is then in fail-fast).
    pub(crate) fn poll_expired(&mut self, cx: &mut Context<'_>) -> bool {
        if self.active {
            return true;
        }
        let deadline = Instant::now() + self.timeout;
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if !self.armed {
            self.armed = true;
            sleep.as_mut().reset(deadline);
        }
        if sleep.as_mut().poll(cx).is_pending() {
            return false;
        }
        self.armed = false;
        self.active = true;
        true
    }

    /// No request is waiting any more (it was sent, or the queue is empty).
    pub(crate) fn disarm(&mut self) {
        self.armed = false;
    }

    /// An endpoint is ready: leaves fail-fast. Returns whether it was active.
    pub(crate) fn leave(&mut self) -> bool {
        self.armed = false;
        std::mem::replace(&mut self.active, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    fn poll(ff: &mut FailFast) -> bool {
        ff.poll_expired(&mut Context::from_waker(Waker::noop()))
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn fires_after_the_timeout_and_stays_until_leave() {
        let mut ff = FailFast::new(Duration::from_secs(3));
        assert!(!poll(&mut ff));
        tokio::time::advance(Duration::from_millis(2_999)).await;
        assert!(!poll(&mut ff), "fired early");
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(poll(&mut ff));
        assert!(ff.is_active());
        assert!(ff.leave());
        assert!(!ff.is_active() && !ff.leave());
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn disarm_restarts_the_wait() {
        let mut ff = FailFast::new(Duration::from_secs(3));
        assert!(!poll(&mut ff));
        tokio::time::advance(Duration::from_secs(2)).await;
        ff.disarm();
        assert!(!poll(&mut ff));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(!poll(&mut ff), "the wait must restart after disarm");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(poll(&mut ff));
    }
}
