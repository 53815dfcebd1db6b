//! [`Dns`]: discovery through DNS, A/AAAA records of `host:port` or SRV records of a
//! name, and service configs from TXT records (gRFC A2), re-resolved at the records'
//! TTL (feature `dns`).

mod choice;
mod config_watch;
mod resolve;
mod seen;
mod target;
mod watch;

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;

use self::target::Target;
use self::watch::DnsSource;
use super::discovery::Discovery;
use super::shared::Watches;
use crate::backoff::Backoff;
use crate::error::{Error, Result};

/// Discovery through DNS: each [`host_discovery`](Self::host_discovery) or
/// [`srv_discovery`](Self::srv_discovery) is a [`Discovery`] that follows a name's
/// records, and [`service_config`](Self::service_config) follows the gRPC service
/// config a name's TXT records hold.
///
/// ```no_run
/// use tonic_discovery::balance::BalancedChannel;
/// use tonic_discovery::source::Dns;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> tonic_discovery::Result<()> {
/// let dns = Dns::builder().build()?; // the system's resolver configuration
/// let echo = dns.host_discovery("echo.internal:50051")?; // A/AAAA
/// let greeter = dns.srv_discovery("_grpc._tcp.greeter.internal")?; // SRV
/// let channel = BalancedChannel::builder("echo").build(echo)?;
/// // After changing the records, rather than waiting for their TTL:
/// dns.refresh();
/// # Ok(())
/// # }
/// ```
///
/// # Instances
///
/// - **A/AAAA** (`host:port`): every address of the host is an instance at the given
///   port, keyed by `ip:port` (`[v6]:port`) with no node. Both address families are
///   asked for; `localhost` resolves to `127.0.0.1` and `::1` without a query.
/// - **SRV** (`_service._proto.name`): every address of every record's target is an
///   instance at that record's port, keyed by `ip:port`. Its metadata holds the
///   record's `srv.target`, `srv.priority` and `srv.weight`; its weight is the
///   record's weight (0 counts as 1: RFC 2782 still gives such records a small
///   share). Every priority is in the set: the balancer does not rank them, so keep
///   backups out of the records, or filter on `srv.priority`. An address listed by
///   two records keeps the record of lowest priority, then highest weight. A target
///   whose name has no address is skipped (when no target has one, the resolution
///   fails, as below).
///
/// # Re-resolution
///
/// A name is resolved again when its records expire: after the smallest TTL of the
/// answer (SRV records and their targets' addresses), bounded by
/// [`min_ttl`](DnsBuilder::min_ttl) and [`max_ttl`](DnsBuilder::max_ttl) (1 s and
/// 5 min by default, so a zero TTL does not turn into a busy loop and a day-long one
/// does not hide changes). [`refresh`](Self::refresh) resolves every name of this
/// `Dns` again at once, though not sooner than `min_ttl` after its last resolution.
/// Answers are not served from a cache: each resolution asks the nameservers.
///
/// # Failures and empty answers
///
/// A failed resolution (timeout, unreachable nameserver, `SERVFAIL`) keeps the last
/// set: it is counted in the watch's
/// [`consecutive_failures`](super::WatchState::consecutive_failures) and
/// [`last_error`](super::WatchState::last_error), and retried with the
/// [`backoff`](DnsBuilder::backoff).
///
/// **NXDOMAIN and empty answers are failures too**: a name that does not exist or
/// has no records keeps the last set. A name that disappears from DNS is more often
/// a mistake in a zone change, a split-horizon view or a resolver answering from a
/// stale negative cache than the end of every instance, and emptying the set would
/// fail every call at once, while instances that are really gone are ejected by the
/// balancer as their connections fail. (grpc's DNS resolver instead reports an
/// empty list, and its channel fails calls until the name resolves again.) The one
/// way to empty a set on purpose is the one RFC 2782 gives: an SRV answer whose only
/// target is `.` ("the service is decidedly not available") is published as an
/// empty set. Until a name has resolved once, the set is unknown, and a balancer
/// waits for it.
///
/// # Drop
///
/// Discoveries of the same name share one watch, which ends when the last of them
/// drops; the `Dns` handle itself may be dropped before or after them.
#[derive(Clone)]
pub struct Dns {
    inner: Arc<Inner>,
}

struct Inner {
    resolver: TokioResolver,
    nameservers: Vec<SocketAddr>,
    min_ttl: Duration,
    max_ttl: Duration,
    backoff: Backoff,
    /// Bumped by `refresh`; every watch re-resolves when it changes.
    refresh: tokio::sync::watch::Sender<u64>,
    watches: Watches<Target>,
}

/// Builds a [`Dns`]. Created by [`Dns::builder`].
#[must_use]
pub struct DnsBuilder {
    nameservers: Vec<SocketAddr>,
    timeout: Option<Duration>,
    min_ttl: Duration,
    max_ttl: Duration,
    backoff: Backoff,
}

// === impl Dns ===

impl Dns {
    /// A builder with the defaults: the system's resolver configuration, re-resolution
    /// between 1 s and 5 min, retries from 1 s to 30 s.
    pub fn builder() -> DnsBuilder {
        DnsBuilder {
            nameservers: Vec::new(),
            timeout: None,
            min_ttl: Duration::from_secs(1),
            max_ttl: Duration::from_secs(300),
            backoff: Backoff::new(Duration::from_secs(1), Duration::from_secs(30)),
        }
    }

    /// A discovery of the A and AAAA records of `host:port` (`[v6]:port` for an IPv6
    /// literal; an IP literal is a set of one).
    ///
    /// The watch is spawned on the current tokio runtime, or on first poll when built
    /// outside one.
    ///
    /// # Errors
    ///
    /// A configuration error when `addr` is not `host:port` with a port from 1 to
    /// 65535, or the host is not a valid DNS name.
    pub fn host_discovery(&self, addr: &str) -> Result<Discovery> {
        Ok(self.discovery(Target::host(addr)?))
    }

    /// A discovery of the SRV records of `name` (`_grpc._tcp.example.com`), each
    /// target resolved to its addresses.
    ///
    /// The watch is spawned on the current tokio runtime, or on first poll when built
    /// outside one.
    ///
    /// # Errors
    ///
    /// A configuration error when `name` is not a valid DNS name.
    pub fn srv_discovery(&self, name: &str) -> Result<Discovery> {
        Ok(self.discovery(Target::srv(name)?))
    }

    /// Resolves every name watched through this `Dns` again now, rather than when
    /// its records expire; a name resolved less than
    /// [`min_ttl`](DnsBuilder::min_ttl) ago is resolved when that has passed.
    pub fn refresh(&self) {
        self.inner.refresh.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn discovery(&self, target: Target) -> Discovery {
        let service = target.to_string();
        let inner = self.inner.clone();
        let source = || DnsSource::new(inner, target.clone());
        Discovery::shared(&self.inner.watches, target.clone(), service, source)
    }
}

impl fmt::Debug for Dns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &self.inner;
        let mut d = f.debug_struct("Dns");
        if inner.nameservers.is_empty() {
            d.field("nameservers", &"system");
        } else {
            d.field("nameservers", &inner.nameservers);
        }
        d.field("min_ttl", &inner.min_ttl)
            .field("max_ttl", &inner.max_ttl)
            .field("backoff", &inner.backoff)
            .field("watches", &inner.watches.len())
            .finish()
    }
}

// === impl DnsBuilder ===

impl DnsBuilder {
    /// Asks this nameserver (UDP, and TCP for truncated answers) instead of the
    /// system's; call again to add more, asked in turn. With any, the system's
    /// configuration (its nameservers, search domains and options) is not read; the
    /// hosts file still is. Default: the system's configuration (`/etc/resolv.conf`
    /// on Unix).
    pub fn nameserver(mut self, addr: SocketAddr) -> Self {
        self.nameservers.push(addr);
        self
    }

    /// How long one query waits for an answer before it is retried (the resolver
    /// tries twice in all). Default: the system's `timeout` option, else 5 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The shortest time between two resolutions of a name, whatever the TTL (a TTL
    /// of 0 included) or [`Dns::refresh`]. Default: 1 s.
    pub fn min_ttl(mut self, min: Duration) -> Self {
        self.min_ttl = min;
        self
    }

    /// The longest time between two resolutions of a name, whatever the TTL.
    /// Default: 5 min. Below [`min_ttl`](Self::min_ttl), it is taken as `min_ttl`.
    pub fn max_ttl(mut self, max: Duration) -> Self {
        self.max_ttl = max;
        self
    }

    /// The delay before resolving again after failures. Default: 1 s to 30 s, not
    /// the sources' [`DEFAULT_BACKOFF`](crate::source::DEFAULT_BACKOFF): a failed
    /// lookup has already waited out the resolver's own timeouts and retries (5 s and
    /// two attempts per server by default), and the last records keep serving
    /// meanwhile, so a quick first retry gains nothing.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Builds the resolver. Nothing is sent until a discovery is polled.
    ///
    /// # Errors
    ///
    /// A configuration error when the system's resolver configuration cannot be read
    /// (only when no [`nameserver`](Self::nameserver) is given).
    pub fn build(self) -> Result<Dns> {
        let mut builder = if self.nameservers.is_empty() {
            TokioResolver::builder_tokio().map_err(|e| {
                Error::config("reading the system's resolver configuration").with_source(e)
            })?
        } else {
            let servers = self.nameservers.iter().map(|&a| name_server(a)).collect();
            let config = ResolverConfig::from_parts(None, Vec::new(), servers);
            TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
                .with_options(ResolverOpts::default())
        };
        if let Some(timeout) = self.timeout {
            builder.options_mut().timeout = timeout;
        }
        let resolver = builder
            .build()
            .map_err(|e| Error::config("building the DNS resolver").with_source(e))?;
        Ok(Dns {
            inner: Arc::new(Inner {
                resolver,
                nameservers: self.nameservers,
                min_ttl: self.min_ttl,
                max_ttl: self.max_ttl.max(self.min_ttl),
                backoff: self.backoff,
                refresh: tokio::sync::watch::Sender::new(0),
                watches: Watches::new(),
            }),
        })
    }
}

/// A nameserver at `addr`, over UDP and (for truncated answers) TCP on the same port.
fn name_server(addr: SocketAddr) -> NameServerConfig {
    let connections = [ConnectionConfig::udp(), ConnectionConfig::tcp()]
        .into_iter()
        .map(|mut c| {
            c.port = addr.port();
            c
        })
        .collect();
    NameServerConfig::new(addr.ip(), true, connections)
}

impl fmt::Debug for DnsBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DnsBuilder")
            .field("nameservers", &self.nameservers)
            .field("timeout", &self.timeout)
            .field("min_ttl", &self.min_ttl)
            .field("max_ttl", &self.max_ttl)
            .field("backoff", &self.backoff)
            .finish()
    }
}

const _: () = {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    fn assert_all() {
        assert_send_sync::<Dns>();
        assert_send_sync::<DnsBuilder>();
    }
    let _ = assert_all;
};

#[cfg(test)]
mod tests;
