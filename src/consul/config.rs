//! A service's gRPC service config kept in Consul's KV store, followed with blocking
//! reads of one key: [`Client::service_config`].

use std::fmt;
use std::time::Duration;

use futures_util::stream;
use http::Method;
use tokio::time::Instant;
use tracing::debug;

use super::client::{ApiRequest, Client};
use super::watch::{TokenBucket, read_timeout};
use crate::backoff::Backoff;
use crate::error::Error;
use crate::source::{ConfigUpdate, ServiceConfigWatch};

/// Consul caps `wait` at 10 minutes.
const MAX_WAIT: Duration = Duration::from_secs(600);

/// Builds the [`ServiceConfigWatch`] of one KV key. Created by
/// [`Client::service_config`].
#[must_use]
pub struct ServiceConfigBuilder {
    client: Client,
    key: String,
    dc: Option<String>,
    namespace: Option<String>,
    partition: Option<String>,
    wait: Duration,
    backoff: Backoff,
    requery_interval: Duration,
}

// === impl Client ===

impl Client {
    /// A builder for the live service config of `service`: the gRPC service config
    /// JSON document stored at the KV key `service-config/<service>` (or
    /// [`key`](ServiceConfigBuilder::key)), followed with blocking reads, for
    /// [`BalancedChannelBuilder::service_config_watch`](crate::balance::BalancedChannelBuilder::service_config_watch).
    ///
    /// ```no_run
    /// use tonic_discovery::{balance::BalancedChannel, consul};
    ///
    /// # async fn run() -> Result<(), tonic_discovery::Error> {
    /// let consul = consul::Client::from_env()?;
    /// // `consul kv put service-config/echo @service-config.json` applies it live.
    /// let channel = BalancedChannel::builder("echo")
    ///     .service_config_watch(consul.service_config("echo").build())
    ///     .build(consul.discovery("echo").build())?;
    /// # let _ = channel;
    /// # Ok(())
    /// # }
    /// ```
    pub fn service_config(&self, service: impl AsRef<str>) -> ServiceConfigBuilder {
        ServiceConfigBuilder {
            client: self.clone(),
            key: format!("service-config/{}", service.as_ref()),
            dc: None,
            namespace: None,
            partition: None,
            wait: Duration::from_secs(300),
            backoff: Backoff::new(Duration::from_millis(250), Duration::from_secs(30)),
            requery_interval: Duration::from_secs(1),
        }
    }
}

// === impl ServiceConfigBuilder ===

impl ServiceConfigBuilder {
    /// The KV key holding the document. Default: `service-config/<service>`.
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = key.into();
        self
    }

    /// The datacenter (`?dc=`). Default: the agent's.
    pub fn dc(mut self, dc: impl Into<String>) -> Self {
        self.dc = Some(dc.into());
        self
    }

    /// The namespace (`?ns=`, Consul Enterprise). Default: the token's or `default`.
    pub fn namespace(mut self, ns: impl Into<String>) -> Self {
        self.namespace = Some(ns.into());
        self
    }

    /// The admin partition (`?partition=`, Consul Enterprise). Default: the token's.
    pub fn partition(mut self, partition: impl Into<String>) -> Self {
        self.partition = Some(partition.into());
        self
    }

    /// How long one blocking read may wait for a change (`?wait=`), capped at
    /// Consul's 10 minutes. Default: 5 minutes.
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = wait.clamp(Duration::from_millis(1), MAX_WAIT);
        self
    }

    /// Backoff between failed reads. Default: 250 ms to 30 s, jitter 0.2, as the
    /// discovery's.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// The refill interval of the token bucket (burst 2) that paces re-reads whose
    /// index did not move. Default: 1 s.
    pub fn requery_interval(mut self, interval: Duration) -> Self {
        self.requery_interval = interval;
        self
    }

    /// The watch: a stream that yields the document whenever it changes, `None`
    /// when the key is absent, and an error for each failed read (it then backs off
    /// and reads again without an index). The first read has no index; it follows
    /// the same blocking-query rules as the discovery (an index that goes backwards
    /// is reset, index 0 is never sent as a wait, re-reads that did not move the
    /// index are rate limited). It reads only while polled: dropping it stops it.
    pub fn build(self) -> ServiceConfigWatch {
        let origin = format!("consul kv {}", self.key);
        let state = KvWatch {
            bucket: TokenBucket::new(2, self.requery_interval),
            builder: self,
            index: 0,
            last: None,
            failures: 0,
            pause: Duration::ZERO,
        };
        ServiceConfigWatch::new(
            origin,
            stream::unfold(state, |mut w| async move {
                let update = w.next().await;
                Some((update, w))
            }),
        )
    }
}

impl fmt::Debug for ServiceConfigBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("consul::ServiceConfigBuilder")
            .field("client", &self.client)
            .field("key", &self.key)
            .field("dc", &self.dc)
            .field("wait", &self.wait)
            .finish_non_exhaustive()
    }
}

/// The loop's state between reads.
struct KvWatch {
    builder: ServiceConfigBuilder,
    index: u64,
    /// What was yielded last: `None` before the first answer.
    last: Option<Option<String>>,
    bucket: TokenBucket,
    /// Failed reads in a row.
    failures: u32,
    /// How long to wait before the next read.
    pause: Duration,
}

impl KvWatch {
    /// Reads until the document changes or a read fails.
    async fn next(&mut self) -> ConfigUpdate {
        loop {
            if !self.pause.is_zero() {
                tokio::time::sleep(std::mem::take(&mut self.pause)).await;
            }
            let (index, value) = match self.read().await {
                Ok(answer) => answer,
                Err(e) => {
                    self.index = 0;
                    self.failures = self.failures.saturating_add(1);
                    self.pause = self.builder.backoff.delay(self.failures);
                    return Err(e.into());
                }
            };
            self.failures = 0;
            let prev = self.index;
            self.index = if index < prev { 0 } else { index };
            if index <= prev {
                self.pause = self.bucket.take(Instant::now());
            }
            if self.last.as_ref() != Some(&value) {
                debug!(key = %self.builder.key, index, present = value.is_some(), "service config changed");
                self.last = Some(value.clone());
                return Ok(value);
            }
        }
    }

    /// One read: the index and the document (`None` when the key is absent).
    async fn read(&self) -> Result<(u64, Option<String>), Error> {
        let b = &self.builder;
        let mut segments = vec!["v1", "kv"];
        segments.extend(b.key.split('/').filter(|s| !s.is_empty()));
        let blocking = self.index > 0;
        let timeout = read_timeout(b.wait, b.client.inner.request_timeout, blocking);
        let mut api = ApiRequest::new(Method::GET, &segments)
            .query("raw", "")
            .timeout(timeout)
            .not_found_ok();
        for (key, value) in [
            ("dc", &b.dc),
            ("ns", &b.namespace),
            ("partition", &b.partition),
        ] {
            if let Some(v) = value {
                api = api.query(key, v.clone());
            }
        }
        if blocking {
            api = api
                .query("index", self.index.to_string())
                .query("wait", format!("{}ms", b.wait.as_millis().max(1)));
        }
        let response = b.client.call(api).await?;
        let index = response.index().unwrap_or(0);
        if response.status == http::StatusCode::NOT_FOUND {
            return Ok((index, None));
        }
        let document = String::from_utf8(response.body.to_vec()).map_err(|e| {
            Error::decode(
                format!("Consul KV `{}`: the service config is not UTF-8", b.key),
                e,
            )
        })?;
        Ok((index, Some(document)))
    }
}
