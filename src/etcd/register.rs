//! Self-registration: a lease, the instance key put with it, and a task that keeps the
//! lease alive and registers again whenever it is lost.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::keys::{KeyLayout, Published};
use super::lease::keep_alive_interval;
use crate::backoff::Backoff;
use crate::error::{Error, Result};
use crate::register::HealthSource;

/// etcd grants leases in whole seconds and raises shorter TTLs to its minimum
/// (1.5 × election timeout, 2 s with default settings).
pub(super) const MIN_TTL: Duration = Duration::from_secs(2);

/// One instance to register with [`Client::register`](super::Client::register):
/// service `name` at an address, kept alive by a lease.
///
/// What goes into etcd depends on the [`KeyLayout`]: by default the key
/// `<name>/<ip:port>` with the Go `naming/endpoints` value, so grpc-go clients using
/// etcd's resolver see the instance too. Setters only record; [`validate`](Self::validate)
/// (called by `register`) checks everything before anything is sent.
#[must_use]
#[derive(Clone)]
pub struct Registration {
    pub(super) published: Published,
    pub(super) layout: KeyLayout,
    pub(super) ttl: Duration,
    pub(super) backoff: Option<Backoff>,
    pub(super) health: HealthSource,
    bind: SocketAddr,
    advertise: Option<IpAddr>,
    id_set: bool,
}

// === impl Registration ===

impl Registration {
    /// An instance of service `name` listening on `addr`.
    ///
    /// `name` may hold ASCII letters, digits, `-`, `_`, `.` and, in the endpoints layout,
    /// `/` between non-empty segments (Go targets such as `foo/bar/my-service`). `addr`'s
    /// port must not be 0, and a wildcard IP (`0.0.0.0`, `[::]`) needs
    /// [`advertise`](Self::advertise).
    pub fn new(name: impl Into<String>, addr: SocketAddr) -> Self {
        let service = name.into();
        let host = addr.ip().to_string();
        Registration {
            published: Published {
                id: format!("{service}-{}-{}", host.replace(':', "."), addr.port()),
                service,
                host,
                port: addr.port(),
                meta: BTreeMap::new(),
                version: String::new(),
            },
            layout: KeyLayout::default(),
            ttl: Duration::from_secs(10),
            backoff: None,
            health: HealthSource::always_passing(),
            bind: addr,
            advertise: None,
            id_set: false,
        }
    }

    /// The instance id, used in the key of the kratos layout (the endpoints layout
    /// keys by address). Default: `<name>-<ip>-<port>`. Allowed: ASCII letters, digits,
    /// `-`, `_`, `.`.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.published.id = id.into();
        self.id_set = true;
        self
    }

    /// The IP address other hosts reach this instance at; the port stays the bound one.
    /// Default: the bound address.
    pub fn advertise(mut self, ip: IpAddr) -> Self {
        self.advertise = Some(ip);
        self.published.host = ip.to_string();
        if !self.id_set {
            let host = self.published.host.replace(':', ".");
            self.published.id = format!("{}-{host}-{}", self.published.service, self.bind.port());
        }
        self
    }

    /// The lease TTL: how long the key outlives a crashed instance. Rounded up to whole
    /// seconds, at least 2 s (etcd's minimum). The lease is renewed every TTL/3.
    /// Default: 10 s.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        let secs = ttl
            .as_secs()
            .saturating_add(u64::from(ttl.subsec_nanos() > 0));
        self.ttl = Duration::from_secs(secs).max(MIN_TTL);
        self
    }

    /// Adds a metadata entry. Default: none.
    pub fn meta(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.published.meta.insert(key.into(), value.into());
        self
    }

    /// The version published in the kratos layout. Default: empty.
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.published.version = version.into();
        self
    }

    /// Where the instance lives in etcd. Default: [`KeyLayout::Endpoints`].
    pub fn layout(mut self, layout: KeyLayout) -> Self {
        self.layout = layout;
        self
    }

    /// Delay between attempts to register again after the lease was lost.
    /// Default: 100 ms up to the keep-alive interval, so a registration is back within
    /// about one interval of etcd returning.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = Some(backoff);
        self
    }

    /// Whether the instance serves: while `source` says it does not, its key is out of
    /// etcd (the lease stays), and it is put back once it serves again; an instance
    /// that does not serve at registration is not put until it does. A
    /// `watch::Receiver<bool>` converts into one. Default:
    /// [`HealthSource::always_passing`].
    pub fn health(mut self, source: impl Into<HealthSource>) -> Self {
        self.health = source.into();
        self
    }

    /// The etcd key this registration writes.
    pub fn key(&self) -> String {
        self.layout.key(&self.published)
    }

    /// The lease TTL.
    pub fn lease_ttl(&self) -> Duration {
        self.ttl
    }

    /// How often the lease is renewed: a third of the TTL, as etcd's Go client does.
    pub fn keep_alive_interval(&self) -> Duration {
        keep_alive_interval(self.ttl)
    }

    /// Checks the registration; [`Client::register`](super::Client::register) calls it.
    ///
    /// # Errors
    ///
    /// A configuration error for an invalid service name or id, port 0, or a wildcard
    /// address without [`advertise`](Self::advertise).
    pub fn validate(self) -> Result<Self> {
        let p = &self.published;
        validate_name(&p.service, self.layout == KeyLayout::Endpoints)?;
        if self.id_set {
            validate_name(&p.id, false).map_err(|_| {
                Error::config(format!("instance id `{}` is not a valid key segment", p.id))
            })?;
        }
        let ip = self.advertise.unwrap_or(self.bind.ip());
        if ip.is_unspecified() || p.port == 0 {
            return Err(Error::config(format!(
                "cannot register `{}` as {ip}:{}: other hosts need a concrete address and \
                 port (bind first, and give `advertise` for a wildcard bind)",
                p.service, p.port
            )));
        }
        Ok(self)
    }
}

impl fmt::Debug for Registration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("etcd::Registration")
            .field("key", &self.key())
            .field("ttl", &self.ttl)
            .field("layout", &self.layout)
            .field("health", &self.health)
            .finish()
    }
}

/// Service name rules for etcd keys.
// TODO(lead): unify with `src/validate.rs` of the Consul registration once merged; etcd
// names may contain `/` (Go endpoints targets such as `foo/bar/my-service`) and `_`.
fn validate_name(name: &str, allow_slash: bool) -> Result<()> {
    let bad = |why: &str| Err(Error::config(format!("service name `{name}` {why}")));
    if name.is_empty() || name.len() > 256 {
        return bad("must have 1 to 256 characters");
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if let Some(c) = name
        .chars()
        .find(|&c| !(allowed(c) || (allow_slash && c == '/')))
    {
        return bad(&format!("contains `{c}`"));
    }
    if name.split('/').any(str::is_empty) {
        return bad("has an empty `/` segment");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> SocketAddr {
        "10.0.0.1:50051".parse().unwrap()
    }

    fn check(r: Registration) -> Result<Registration> {
        r.validate()
    }

    #[test]
    fn names_follow_key_rules() {
        for ok in ["echo", "greet.rpc", "foo/bar/my-service", "a_b"] {
            let _ = check(Registration::new(ok, addr())).unwrap();
        }
        for bad in ["", "/echo", "echo/", "a//b", "é", "a b", "a\n"] {
            let e = check(Registration::new(bad, addr())).unwrap_err();
            assert!(e.is_config(), "{bad}: {e}");
        }
        let kratos = Registration::new("a/b", addr()).layout(KeyLayout::Kratos);
        assert!(check(kratos).unwrap_err().is_config());
        let id = Registration::new("a", addr()).id("x/y");
        assert!(check(id).unwrap_err().is_config());
    }

    #[test]
    fn wildcards_need_an_advertised_address() {
        for bad in ["0.0.0.0:1", "[::]:1", "10.0.0.1:0"] {
            let e = check(Registration::new("a", bad.parse().unwrap())).unwrap_err();
            assert!(e.is_config(), "{bad}");
        }
        let r = Registration::new("a", "0.0.0.0:7".parse().unwrap())
            .advertise("10.1.2.3".parse().unwrap());
        assert_eq!(check(r).unwrap().key(), "a/10.1.2.3:7");
        let r = Registration::new("a", "0.0.0.0:7".parse().unwrap())
            .advertise("0.0.0.0".parse().unwrap());
        assert!(check(r).unwrap_err().is_config());
    }

    #[test]
    fn ttl_is_whole_seconds_and_at_least_the_minimum() {
        let ttl = |d| Registration::new("a", addr()).ttl(d).lease_ttl();
        assert_eq!(ttl(Duration::from_millis(100)), MIN_TTL);
        assert_eq!(ttl(Duration::from_millis(2500)), Duration::from_secs(3));
        let r = Registration::new("a", addr());
        assert_eq!(r.lease_ttl(), Duration::from_secs(10));
        assert_eq!(r.keep_alive_interval(), Duration::from_secs(10) / 3);
        assert_eq!(r.key(), "a/10.0.0.1:50051");
        let r = r.layout(KeyLayout::Kratos);
        assert_eq!(r.key(), "/microservices/a/a-10.0.0.1-50051");
    }
}
