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
use crate::validate::{self, NAME_RULE};

/// etcd grants leases in whole seconds and raises shorter TTLs to its minimum
/// (1.5 × election timeout, 2 s with default settings).
pub(super) const MIN_TTL: Duration = Duration::from_secs(2);

/// One instance to register with [`Client::register`](super::Client::register):
/// service `name` at an address, kept alive by a lease.
///
/// What goes into etcd depends on the [`KeyLayout`]: by default the key
/// `<name>/<ip:port>` with the Go `naming/endpoints` value, so grpc-go clients using
/// etcd's resolver see the instance too. Setters only record; [`validate`](Self::validate)
/// (called by `register`) checks everything before anything is sent, with the name, ID,
/// metadata and address rules every registry of this crate shares.
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
    allow_non_dns_name: bool,
}

// === impl Registration ===

impl Registration {
    /// An instance of service `name` listening on `addr`.
    ///
    /// `name` follows the same rule as everywhere in this crate: ASCII letters, digits
    /// and dashes, 1 to 63 bytes, not starting or ending with a dash (a DNS label;
    /// underscores, dots and, in the endpoints layout, `/` between segments, as in Go
    /// targets such as `foo/bar/my-service`, only with
    /// [`allow_non_dns_name`](Self::allow_non_dns_name)). `addr`'s port must not be 0;
    /// a wildcard IP (`0.0.0.0`, `[::]`) is never published: unless
    /// [`advertise`](Self::advertise) names one, `register` publishes the address of
    /// the interface that routes towards etcd instead (and [`key`](Self::key) shows
    /// the wildcard until then).
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
            allow_non_dns_name: false,
        }
    }

    /// Accepts a service name that DNS cannot carry: underscores and dots besides
    /// letters, digits and dashes (1 to 63 bytes), and, in the endpoints layout, Go
    /// targets of such segments joined by `/` (`foo/bar/my_service`). Lets a fleet keep
    /// its old name while its clients move to a dashed one; discovery of such names
    /// needs no opt-in. Registering logs a warning once per registration.
    /// Default: `false`.
    pub fn allow_non_dns_name(mut self, allow: bool) -> Self {
        self.allow_non_dns_name = allow;
        self
    }

    /// The instance id, used in the key of the kratos layout (the endpoints layout
    /// keys by address). Default: `<name>-<ip>-<port>`. Allowed: 1 to 128 ASCII letters,
    /// digits, `-`, `_`, `.`, `:`.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.published.id = id.into();
        self.id_set = true;
        self
    }

    /// The IP address other hosts reach this instance at; the port stays the bound one.
    /// Default: the bound address.
    pub fn advertise(mut self, ip: IpAddr) -> Self {
        self.advertise = Some(ip);
        self.publish_at(ip);
        self
    }

    fn publish_at(&mut self, ip: IpAddr) {
        self.published.host = ip.to_string();
        if !self.id_set {
            let host = self.published.host.replace(':', ".");
            self.published.id = format!("{}-{host}-{}", self.published.service, self.bind.port());
        }
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

    /// Adds a metadata entry. Keys: 1 to 128 printable ASCII characters without spaces;
    /// values at most 512 bytes without control characters; at most 64 entries.
    /// Default: none.
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
    /// A configuration error naming the field and the value: a service name, id or
    /// metadata outside the crate's rules (see [`new`](Self::new)), a `/` in a name
    /// without the opt-in or outside the endpoints layout, port 0, or a wildcard
    /// [`advertise`](Self::advertise) address.
    pub fn validate(self) -> Result<Self> {
        self.check_name()?;
        validate::Registered {
            name: &self.published.service,
            allow_non_dns_name: self.allow_non_dns_name,
            id: self.id_set.then_some(self.published.id.as_str()),
            meta: &self.published.meta,
            bind: self.bind,
            advertise: self.advertise,
        }
        .check_all_but_name()?;
        Ok(self)
    }

    /// Validates, and publishes the address of the interface that routes towards the
    /// first of `endpoints` in place of a wildcard bind.
    pub(super) async fn resolve(mut self, endpoints: &[String]) -> Result<Self> {
        self = self.validate()?;
        validate::warn_if_not_dns("etcd", &self.published.service);
        if self.advertise.is_none() && self.bind.ip().is_unspecified() {
            let etcd = endpoints.first().map_or("", String::as_str);
            let at = validate::address::advertised(self.bind, None, etcd, 2379).await?;
            self.publish_at(at.ip());
        }
        Ok(self)
    }

    /// The crate's name rule, extended by etcd's Go targets: with the opt-in, in the
    /// endpoints layout, `/`-separated segments each under the opt-in rule.
    fn check_name(&self) -> Result<()> {
        let name = self.published.service.as_str();
        if !name.contains('/') {
            return validate::name(name, self.allow_non_dns_name);
        }
        if !self.allow_non_dns_name || self.layout != KeyLayout::Endpoints {
            return Err(Error::config(format!(
                "service name `{name}` contains '/'; {NAME_RULE}; a Go target such as \
                 `foo/bar/my-service` needs `allow_non_dns_name(true)` and the endpoints layout"
            )));
        }
        name.split('/').try_for_each(|segment| {
            validate::non_dns_service_name(segment).map_err(|e| {
                Error::config(format!("service name `{name}` has a bad `/` segment: {e}"))
            })
        })
    }
}

impl fmt::Debug for Registration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("etcd::Registration")
            .field("key", &self.key())
            .field("ttl", &self.ttl)
            .field("layout", &self.layout)
            .field("health", &self.health)
            .field("allow_non_dns_name", &self.allow_non_dns_name)
            .finish()
    }
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

    // The crate's name rule replaced etcd's own (any of `[A-Za-z0-9._-]`, `/` between
    // segments, up to 256 bytes): dots, underscores and Go targets need the opt-in.
    #[test]
    fn names_follow_the_crate_rule_and_go_targets_need_the_opt_in() {
        let old_names = ["greet.rpc", "foo/bar/my-service", "a_b"];
        for ok in ["echo", "echo-v2"] {
            let _ = check(Registration::new(ok, addr())).unwrap();
        }
        for bad in old_names
            .into_iter()
            .chain(["", "-echo", "é", "a b", "a\n"])
        {
            let e = check(Registration::new(bad, addr())).unwrap_err();
            assert!(e.is_config(), "{bad}: {e}");
        }
        let e = check(Registration::new("foo/bar", addr())).unwrap_err();
        assert!(e.to_string().contains("allow_non_dns_name(true)"), "{e}");
        let opted = |name| Registration::new(name, addr()).allow_non_dns_name(true);
        for ok in old_names {
            let _ = check(opted(ok)).unwrap();
        }
        for bad in ["", "/echo", "echo/", "a//b", "é", "a b", "a\n"] {
            let e = check(opted(bad)).unwrap_err();
            assert!(e.is_config(), "{bad}: {e}");
        }
        let kratos = opted("a/b").layout(KeyLayout::Kratos);
        assert!(check(kratos).unwrap_err().is_config());
        let id = Registration::new("a", addr()).id("x/y");
        assert!(
            check(id)
                .unwrap_err()
                .to_string()
                .contains("instance ID `x/y`")
        );
        let _ = check(Registration::new("a", addr()).id("a-::1:7")).unwrap();
        let meta = Registration::new("a", addr()).meta("k", "line\nbreak");
        assert!(check(meta).unwrap_err().is_config());
    }

    // A wildcard bind was refused without `advertise`; it is now replaced by the route
    // towards etcd, as every registry of the crate does.
    #[tokio::test]
    async fn a_wildcard_bind_publishes_the_route_towards_etcd() {
        let etcd = ["http://127.0.0.1:2379".to_owned()];
        for bind in ["0.0.0.0:7", "[::]:7"] {
            let r = Registration::new("a", bind.parse().unwrap()).layout(KeyLayout::Kratos);
            let r = r.resolve(&etcd).await.unwrap();
            assert_eq!(r.published.host, "127.0.0.1", "{bind}");
            assert_eq!(r.key(), "/microservices/a/a-127.0.0.1-7", "{bind}");
        }
        let e = check(Registration::new("a", "10.0.0.1:0".parse().unwrap())).unwrap_err();
        assert!(e.is_config());
        let r = Registration::new("a", "0.0.0.0:7".parse().unwrap())
            .advertise("10.1.2.3".parse().unwrap());
        assert_eq!(r.resolve(&etcd).await.unwrap().key(), "a/10.1.2.3:7");
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
