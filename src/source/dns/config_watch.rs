//! [`Dns::service_config`](super::Dns::service_config)'s watch: the TXT records of
//! `_grpc_config.<name>`, resolved again at their TTL, as a [`ServiceConfigWatch`].

use std::sync::Arc;
use std::time::Duration;

use futures_util::stream;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::rr::RData;
use tokio::sync::watch;
use tokio::time::Instant;

use super::choice::{Client, select};
use super::resolve::{failure, min_ttl};
use super::seen::{Outcome, Seen};
use super::target::grpc_config_owner;
use super::{Dns, Inner};
use crate::error::Result;
use crate::source::{ConfigUpdate, ServiceConfigWatch};

// === impl Dns ===

impl Dns {
    /// The live gRPC service config of `name` (`echo.internal`: a
    /// [`host_discovery`](Self::host_discovery)'s host, without the port), read from
    /// DNS as gRPC's DNS resolver reads it (gRFC A2), for
    /// [`BalancedChannelBuilder::service_config_watch`](crate::balance::BalancedChannelBuilder::service_config_watch).
    ///
    /// ```no_run
    /// use tonic_discovery::balance::BalancedChannel;
    /// use tonic_discovery::source::Dns;
    ///
    /// # fn main() -> tonic_discovery::Result<()> {
    /// let dns = Dns::builder().build()?;
    /// let channel = BalancedChannel::builder("echo")
    ///     .service_config_watch(dns.service_config("echo.internal")?)
    ///     .build(dns.host_discovery("echo.internal:50051")?)?;
    /// # let _ = channel;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # The records
    ///
    /// Of the TXT records of `_grpc_config.<name>`, only the one whose text (its
    /// character-strings joined, so it may be longer than 255 bytes) starts with
    /// `grpc_config=` counts. The rest of its text is a JSON array of choices:
    ///
    /// ```text
    /// _grpc_config.echo.internal. 300 IN TXT "grpc_config=[{\"percentage\":10,\"serviceConfig\":{…}},{\"serviceConfig\":{…}}]"
    /// ```
    ///
    /// The first choice whose criteria all hold for this client is taken, and its
    /// `serviceConfig` yielded, serialized again as compact JSON:
    /// - `clientLanguage`: absent, empty, or listing `rust` (in any case);
    /// - `percentage`, an integer from 0 to 100: absent, or above this watch's
    ///   draw, a number from 0 to 99 drawn once when the watch is built (so a
    ///   re-resolution does not move the client in or out of a canary, and a client
    ///   in a 10 % choice is in a 50 % one too);
    /// - `clientHostname`: absent, empty, or listing this host's name exactly, as the
    ///   system gives it.
    ///
    /// Other fields are ignored, as grpc-go and grpc C-core ignore them
    /// (`clientHostName`, grpc-go's spelling, is read as `clientHostname`).
    ///
    /// # Items
    ///
    /// - `Ok(Some(json))`: the chosen service config;
    /// - `Ok(None)`: NXDOMAIN, no TXT record, no `grpc_config=` record or no choice
    ///   that applies: the channel goes back to the config it was built with;
    /// - `Err`, always this crate's [`Error`](crate::Error) (downcast it), which
    ///   [`is_decode`](crate::Error::is_decode) when the `grpc_config=` record is
    ///   malformed (not JSON, not an array of objects, a criterion of the
    ///   wrong type, a percentage that is not an integer from 0 to 100, a choice
    ///   without a `serviceConfig` object, even after the one that applies) or there
    ///   are two of them. The whole document is refused, as gRFC A2 asks, and the
    ///   channel keeps its last good config: a mistake in the zone is reported
    ///   without dropping the policies in force. (grpc-go logs such a record and goes
    ///   on as if there were no config.) The record is read again at its TTL;
    /// - `Err` that [`is_timeout`](crate::Error::is_timeout) or
    ///   [`is_transport`](crate::Error::is_transport): the nameservers did not
    ///   answer; the watch retries with the [`backoff`](super::DnsBuilder::backoff).
    ///
    /// The first resolution is always yielded; after it, only changes: a
    /// re-resolution that gives the same document yields nothing, a failure is
    /// yielded once (again only if the next one says something else, or after an
    /// answer), and the document kept through failures is not yielded again.
    ///
    /// # Re-resolution
    ///
    /// As for discoveries: at the records' TTL (the zone's negative TTL when there is
    /// no record, else [`max_ttl`](super::DnsBuilder::max_ttl)), bounded by
    /// [`min_ttl`](super::DnsBuilder::min_ttl) and `max_ttl`; after failures, with the
    /// backoff; and on [`refresh`](Self::refresh). Each call is a watch of its own,
    /// with its own draw: build one per channel.
    ///
    /// # Drop
    ///
    /// The watch resolves only while polled, on the task polling it (no task is
    /// spawned), and never ends on its own; dropping it stops it.
    ///
    /// # Errors
    ///
    /// A configuration error when `name` is empty, has a port, or
    /// `_grpc_config.<name>` is not a valid DNS name.
    pub fn service_config(&self, name: &str) -> Result<ServiceConfigWatch> {
        let owner = grpc_config_owner(name)?;
        Ok(watch(self.inner.clone(), owner))
    }
}

/// The watch of `owner` (`_grpc_config.<name>`) through `dns`, for a client of this
/// host with a fresh percentage draw. Nothing is sent until it is polled.
fn watch(dns: Arc<Inner>, owner: String) -> ServiceConfigWatch {
    let origin = format!("dns TXT {owner}");
    let state = TxtWatch {
        refresh: dns.refresh.subscribe(),
        dns,
        owner,
        client: Client::this_host(),
        seen: Seen::default(),
        failures: 0,
        next: None,
    };
    ServiceConfigWatch::new(
        origin,
        stream::unfold(state, |mut w| async move {
            let update = w.next().await;
            Some((update, w))
        }),
    )
}

/// The loop's state between resolutions.
struct TxtWatch {
    dns: Arc<Inner>,
    owner: String,
    client: Client,
    refresh: watch::Receiver<u64>,
    seen: Seen,
    /// Failed resolutions in a row.
    failures: u32,
    /// When the last resolution started and how long to wait after it; `None` before
    /// the first.
    next: Option<(Instant, Duration)>,
}

/// One resolution that got an answer: the document it gives (or why it is bad) and
/// how long its records live.
struct Answer {
    document: Outcome,
    ttl: Duration,
}

// === impl TxtWatch ===

impl TxtWatch {
    /// Resolves, at the records' TTL or after a backoff, until the outcome changes.
    async fn next(&mut self) -> ConfigUpdate {
        loop {
            if let Some((started, wait)) = self.next.take() {
                self.dns.pause(&mut self.refresh, started, wait).await;
            }
            let started = Instant::now();
            // A refresh asked for while resolving asks for the next resolution.
            self.refresh.mark_unchanged();
            let (outcome, wait) = match self.resolve().await {
                Ok(answer) => {
                    self.failures = 0;
                    (answer.document, self.dns.hold(answer.ttl))
                }
                Err(error) => {
                    self.failures = self.failures.saturating_add(1);
                    (Err(error), self.dns.backoff.delay(self.failures))
                }
            };
            tracing::debug!(
                owner = %self.owner,
                ok = outcome.is_ok(),
                failures = self.failures,
                next_in = ?wait,
                "TXT resolved"
            );
            self.next = Some((started, wait));
            if let Some(update) = self.seen.update(outcome) {
                return update.map_err(Into::into);
            }
        }
    }

    /// Resolves the TXT records once. A name without them (NXDOMAIN, or no TXT
    /// record) is an answer with no document, held for the zone's negative TTL
    /// (`max_ttl` when the answer has none).
    ///
    /// # Errors
    ///
    /// `timeout` and `transport` when the resolver did not answer.
    async fn resolve(&self) -> Result<Answer> {
        let resolver = &self.dns.resolver;
        // As for addresses: the TTL schedules us, the cache would only repeat itself.
        resolver.clear_cache();
        let lookup = match resolver.txt_lookup(self.owner.as_str()).await {
            Ok(lookup) => lookup,
            Err(e) if e.is_no_records_found() => {
                let ttl = negative_ttl(&e).unwrap_or(self.dns.max_ttl);
                let document = Ok(None);
                return Ok(Answer { document, ttl });
            }
            Err(e) => return Err(failure(format!("TXT {}", self.owner), e)),
        };
        let records = lookup.answers().iter().filter_map(|r| match &r.data {
            RData::TXT(txt) => Some(txt),
            _ => None,
        });
        let document = select(&self.owner, records, &self.client);
        let ttl = min_ttl(lookup.answers());
        Ok(Answer { document, ttl })
    }
}

/// The negative-caching TTL of a "no records" answer that carried the zone's SOA.
fn negative_ttl(e: &NetError) -> Option<Duration> {
    match e {
        NetError::Dns(DnsError::NoRecordsFound(none)) => {
            none.negative_ttl.map(|s| Duration::from_secs(s.into()))
        }
        _ => None,
    }
}
