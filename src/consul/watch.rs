//! The blocking-query loop behind every discovery: one task per (service, options)
//! reads `/v1/health/service/:name` with `index` + `wait` and publishes each snapshot
//! through a `tokio::sync::watch` channel.
//!
//! It follows Consul's client rules ("Blocking Queries → Implementation Details"):
//! the first read has no index; an index that goes backwards is reset; a missing or
//! zero index means the next read is a fresh non-blocking one (index 0 is never sent
//! as a wait); re-queries whose index did not move are rate limited by a token
//! bucket (burst 2); the HTTP timeout is `wait + wait/16 + margin`; errors back off
//! with jitter and retry without an index.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;
use tower::{Service, ServiceExt};
use tracing::{debug, info};

use super::decoder::{Decoded, HealthDecoder};
use super::query::{QueryOptions, WatchRequest, WatchResponse};
use crate::backoff::Backoff;
use crate::error::{BoxError, Error};
use crate::source::{Sink, Source};

/// How the loop paces itself.
#[derive(Debug, Clone)]
pub(crate) struct WatchConfig {
    pub(crate) backoff: Backoff,
    /// The token bucket's refill interval for re-queries that did not move the index.
    pub(crate) requery_interval: Duration,
    /// Added to `wait + wait/16` for the HTTP timeout; the whole timeout of a fresh read.
    pub(crate) margin: Duration,
    /// The client's cap on blocking reads in flight, shared by its watches: a
    /// blocking read holds a permit while it waits (fresh reads take none).
    pub(crate) permits: Option<Arc<Semaphore>>,
}

/// What a shared watch is keyed by: the query, and how it is followed (backoff,
/// re-query pacing). Two discoveries that differ in either get watches of their own.
pub(crate) type WatchKey = (QueryOptions, Backoff, Duration);

impl Default for WatchConfig {
    fn default() -> Self {
        WatchConfig {
            backoff: Backoff::new(Duration::from_millis(250), Duration::from_secs(30)),
            requery_interval: Duration::from_secs(1),
            margin: Duration::from_secs(10),
            permits: None,
        }
    }
}

/// The HTTP timeout of a read: `wait + wait/16` (Consul's maximum jitter) plus the
/// margin for a blocking read, the margin alone for a fresh one.
pub(crate) fn read_timeout(wait: Duration, margin: Duration, blocking: bool) -> Duration {
    if blocking {
        wait.saturating_add(wait / 16).saturating_add(margin)
    } else {
        margin
    }
}

/// A token bucket: `capacity` re-queries at once, then one per `interval`.
#[derive(Debug)]
pub(crate) struct TokenBucket {
    capacity: u32,
    tokens: u32,
    interval: Duration,
    last: Instant,
}

impl TokenBucket {
    pub(crate) fn new(capacity: u32, interval: Duration) -> Self {
        TokenBucket {
            capacity,
            tokens: capacity,
            interval,
            last: Instant::now(),
        }
    }

    /// Takes a token; returns how long to wait for it (zero when one was available).
    pub(crate) fn take(&mut self, now: Instant) -> Duration {
        self.refill(now);
        if self.tokens > 0 {
            self.tokens -= 1;
            return Duration::ZERO;
        }
        // Reserve the next token: it is consumed when it appears.
        self.last = self
            .last
            .checked_add(self.interval)
            .unwrap_or_else(|| now + Duration::from_secs(365 * 24 * 3600));
        self.last.saturating_duration_since(now)
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last);
        let n = if self.interval.is_zero() {
            u128::from(self.capacity)
        } else {
            elapsed.as_nanos() / self.interval.as_nanos()
        };
        if n == 0 {
            return;
        }
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        self.tokens = self.tokens.saturating_add(n).min(self.capacity);
        self.last = if self.tokens == self.capacity {
            now
        } else {
            self.last + self.interval * n
        };
    }
}

/// The loop's bookkeeping between reads.
struct Loop {
    query: Arc<QueryOptions>,
    config: WatchConfig,
    index: u64,
    bucket: TokenBucket,
    /// Decodes only the entries that changed since the last answer.
    decoder: HealthDecoder,
}

impl Loop {
    fn request(&self) -> WatchRequest {
        let index = (self.index > 0).then_some(self.index);
        WatchRequest {
            query: self.query.clone(),
            index,
            timeout: read_timeout(self.query.wait, self.config.margin, index.is_some()),
        }
    }

    /// Applies an answer; returns how long to pause before the next read.
    fn on_response(&mut self, resp: WatchResponse, sink: &Sink) -> Duration {
        let decoded = match self.decoder.decode(&resp.body) {
            Ok(decoded) => decoded,
            Err(e) => return self.on_error(e, sink),
        };
        let prev = self.index;
        let new = resp.index.unwrap_or(0);
        self.index = if new < prev {
            info!(prev, new, "Consul index went backwards; resetting it");
            0
        } else {
            new
        };
        sink.set_position(self.index);
        match decoded {
            Decoded::Changed(instances) => {
                debug!(index = new, instances = instances.len(), "Consul snapshot");
                sink.snapshot(instances);
            }
            Decoded::Unchanged => {
                debug!(index = new, "Consul snapshot: same entries as the last one");
                sink.unchanged();
            }
        }
        if new > prev {
            Duration::ZERO
        } else {
            self.bucket.take(Instant::now())
        }
    }

    fn on_error(&mut self, e: Error, sink: &Sink) -> Duration {
        self.index = 0;
        sink.set_position(0);
        sink.retry_later(&e)
    }
}

/// The blocking-query loop of one query, as a [`Source`] of the shared core.
pub(crate) struct ConsulSource<S> {
    pub(crate) transport: S,
    pub(crate) query: Arc<QueryOptions>,
    pub(crate) config: WatchConfig,
}

impl<S> Source for ConsulSource<S>
where
    S: Service<WatchRequest, Response = WatchResponse> + Send + 'static,
    S::Error: Into<BoxError> + Send,
    S::Future: Send,
{
    fn registry(&self) -> &'static str {
        "consul"
    }

    /// 250 ms to 30 s (or the builder's): one agent serves every service on its host
    /// and the servers a whole datacenter, so a fleet backs off further than from a
    /// registry of its own while Consul elects a leader or restarts.
    fn backoff(&self) -> Backoff {
        self.config.backoff
    }

    async fn run(self, sink: Sink) {
        run(self.transport, self.query, self.config, sink).await;
    }
}

/// Runs the watch until the task is aborted (when its last subscriber drops).
async fn run<S>(mut transport: S, query: Arc<QueryOptions>, config: WatchConfig, sink: Sink)
where
    S: Service<WatchRequest, Response = WatchResponse>,
    S::Error: Into<BoxError>,
{
    info!(service = %query.service, tags = ?query.tags, wait = ?query.wait, "Consul watch started");
    let mut lp = Loop {
        bucket: TokenBucket::new(2, config.requery_interval),
        decoder: HealthDecoder::new(query.address.clone(), query.health),
        query,
        config,
        index: 0,
    };
    loop {
        let req = lp.request();
        // Queued before the read's timeout starts, so waiting for a permit is no failure.
        let permit = match (&lp.config.permits, req.index) {
            (Some(permits), Some(_)) => permit(permits).await,
            _ => None,
        };
        let result = read(&mut transport, req).await;
        drop(permit);
        let pause = match result {
            Ok(resp) => lp.on_response(resp, &sink),
            Err(e) => lp.on_error(e, &sink),
        };
        if !pause.is_zero() {
            debug!(?pause, "pausing before the next Consul read");
            tokio::time::sleep(pause).await;
        }
    }
}

/// A permit for one blocking read; waits (with a debug log) while the cap is reached.
async fn permit(permits: &Semaphore) -> Option<SemaphorePermit<'_>> {
    if let Ok(permit) = permits.try_acquire() {
        return Some(permit);
    }
    debug!("blocking read queued: the client's cap on concurrent blocking watches is reached");
    // Only a closed semaphore fails, and this one is never closed.
    permits.acquire().await.ok()
}

async fn read<S>(transport: &mut S, req: WatchRequest) -> Result<WatchResponse, Error>
where
    S: Service<WatchRequest, Response = WatchResponse>,
    S::Error: Into<BoxError>,
{
    let timeout = req.timeout;
    let call = async { transport.ready().await?.call(req).await };
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(resp)) => Ok(resp),
        Ok(Err(e)) => Err(into_error(e.into())),
        Err(_) => Err(Error::timeout(format!(
            "Consul read: no answer within {timeout:?}"
        ))),
    }
}

fn into_error(e: BoxError) -> Error {
    match e.downcast::<Error>() {
        Ok(e) => *e,
        Err(e) => Error::transport("Consul read failed", e),
    }
}

#[cfg(test)]
mod tests;
