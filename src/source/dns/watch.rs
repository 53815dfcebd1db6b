//! [`DnsSource`]: the watch of one DNS name, as a [`Source`] of the shared core.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{Instant, sleep};

use super::Inner;
use super::resolve::{Resolved, resolve};
use super::target::Target;
use crate::backoff::Backoff;
use crate::error::Error;
use crate::source::{Sink, Source};

/// Resolves one name, again when its records expire, when asked, and after failures.
pub(super) struct DnsSource {
    dns: Arc<Inner>,
    target: Target,
}

// === impl DnsSource ===

impl DnsSource {
    pub(super) fn new(dns: Arc<Inner>, target: Target) -> Self {
        DnsSource { dns, target }
    }

    /// Resolves once, reports to `sink`, and returns how long to wait before the next
    /// resolution.
    async fn resolve_once(&mut self, sink: &Sink) -> Duration {
        // Our own schedule follows the TTL; the resolver's cache would only answer a
        // refresh with the records it was asked to replace.
        self.dns.resolver.clear_cache();
        match resolve(&self.dns.resolver, &self.target).await {
            Ok(resolved) => self.publish(sink, resolved),
            Err(error) => self.failed(sink, &error),
        }
    }

    fn publish(&mut self, sink: &Sink, resolved: Resolved) -> Duration {
        let next = self.dns.hold(resolved.ttl);
        tracing::debug!(
            instances = resolved.instances.len(),
            ttl = ?resolved.ttl,
            ?next,
            "resolved"
        );
        sink.snapshot(resolved.instances);
        next
    }

    fn failed(&mut self, sink: &Sink, error: &Error) -> Duration {
        sink.retry_later(error)
    }
}

impl Source for DnsSource {
    fn registry(&self) -> &'static str {
        "dns"
    }

    /// 1 s to 30 s (or the builder's): a failing name is most often a zone or
    /// resolver problem that lasts, and resolvers rate-limit clients that ask again
    /// at once.
    fn backoff(&self) -> Backoff {
        self.dns.backoff
    }

    async fn run(mut self, sink: Sink) {
        let mut refresh = self.dns.refresh.subscribe();
        loop {
            let started = Instant::now();
            // A refresh asked for while resolving asks for the next resolution.
            refresh.mark_unchanged();
            let wait = self.resolve_once(&sink).await;
            tokio::select! {
                () = self.dns.pause(&mut refresh, started, wait) => {}
                () = sink.closed() => return,
            }
        }
    }
}

// === impl Inner ===

impl Inner {
    /// How long an answer whose records live `ttl` holds before the name is resolved
    /// again: `ttl` within [`min_ttl`](super::DnsBuilder::min_ttl) and
    /// [`max_ttl`](super::DnsBuilder::max_ttl).
    pub(super) fn hold(&self, ttl: Duration) -> Duration {
        ttl.clamp(self.min_ttl, self.max_ttl)
    }

    /// Waits `wait` (an answer's hold, or a backoff after a failure), or less when a
    /// [`refresh`](super::Dns::refresh) comes, though never less than `min_ttl` after
    /// `started`, when the last resolution started.
    pub(super) async fn pause(
        &self,
        refresh: &mut watch::Receiver<u64>,
        started: Instant,
        wait: Duration,
    ) {
        tokio::select! {
            () = sleep(wait) => {}
            // `Inner` holds the sender, so this never reports a closed channel.
            _ = refresh.changed() => {
                tracing::debug!("refresh asked");
                sleep(self.min_ttl.saturating_sub(started.elapsed())).await;
            }
        }
    }
}

impl fmt::Debug for DnsSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DnsSource")
            .field("target", &self.target)
            .finish()
    }
}
