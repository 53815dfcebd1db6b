//! Self-registration: a lease, the instance key put with it, and a task that keeps the
//! lease alive and registers again whenever it is lost.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use super::keys::{KeyLayout, Published};
use super::lease::keep_alive_interval;
use crate::backoff::Backoff;
use crate::error::{Error, Result};

/// etcd grants leases in whole seconds and raises shorter TTLs to its minimum
/// (1.5 × election timeout, 2 s with default settings).
pub(super) const MIN_TTL: Duration = Duration::from_secs(2);

/// One instance to register. Created by [`Registration::builder`].
#[derive(Clone)]
pub struct Registration {
    pub(super) published: Published,
    pub(super) layout: KeyLayout,
    pub(super) ttl: Duration,
    pub(super) backoff: Option<Backoff>,
}

/// Builds a [`Registration`].
#[must_use]
pub struct RegistrationBuilder {
    published: Published,
    layout: KeyLayout,
    ttl: Duration,
    backoff: Option<Backoff>,
    id_set: bool,
}

// === impl Registration ===

impl Registration {
    /// A registration of `service` reachable at `addr`.
    ///
    /// The service name may hold ASCII letters, digits, `-`, `_`, `.` and, for the
    /// endpoints layout, `/` between non-empty segments (`foo/bar/my-service`).
    pub fn builder(service: impl Into<String>, addr: SocketAddr) -> RegistrationBuilder {
        let service = service.into();
        let host = addr.ip().to_string();
        RegistrationBuilder {
            published: Published {
                id: format!("{service}-{}-{}", host, addr.port()),
                service,
                host,
                port: addr.port(),
                meta: BTreeMap::new(),
                version: String::new(),
            },
            layout: KeyLayout::default(),
            ttl: Duration::from_secs(10),
            backoff: None,
            id_set: false,
        }
    }

    /// The etcd key this registration writes.
    pub fn key(&self) -> String {
        self.layout.key(&self.published)
    }

    /// The lease TTL.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// How often the lease is kept alive: a third of the TTL, as etcd's Go client does.
    pub fn keep_alive_interval(&self) -> Duration {
        keep_alive_interval(self.ttl)
    }
}

impl fmt::Debug for Registration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("etcd::Registration")
            .field("key", &self.key())
            .field("ttl", &self.ttl)
            .finish()
    }
}

// === impl RegistrationBuilder ===

impl RegistrationBuilder {
    /// The instance id, used in the key of the kratos layout (the endpoints layout
    /// keys by address). Default: `<service>-<ip>-<port>`.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.published.id = id.into();
        self.id_set = true;
        self
    }

    /// The lease TTL: how long the key outlives a crashed instance. Rounded up to whole
    /// seconds, at least 2 s (etcd's minimum). Default: 10 s.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
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

    /// Validates the registration.
    ///
    /// # Errors
    ///
    /// A configuration error for an invalid service name or id, an unspecified IP
    /// address (`0.0.0.0`, `::`) or port 0.
    pub fn build(self) -> Result<Registration> {
        let p = &self.published;
        validate_name(&p.service, self.layout == KeyLayout::Endpoints)?;
        if self.id_set {
            validate_name(&p.id, false).map_err(|_| {
                Error::config(format!("instance id `{}` is not a valid key segment", p.id))
            })?;
        }
        let ip_unspecified = p
            .host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_unspecified());
        if ip_unspecified || p.port == 0 {
            return Err(Error::config(format!(
                "cannot register `{}:{}`: other hosts need a concrete IP address and port",
                p.host, p.port
            )));
        }
        Ok(Registration {
            published: self.published,
            layout: self.layout,
            ttl: self.ttl,
            backoff: self.backoff,
        })
    }
}

impl fmt::Debug for RegistrationBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("etcd::RegistrationBuilder")
            .field("service", &self.published.service)
            .field("ttl", &self.ttl)
            .field("layout", &self.layout)
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

    #[test]
    fn names_follow_key_rules() {
        for ok in ["echo", "greet.rpc", "foo/bar/my-service", "a_b"] {
            Registration::builder(ok, addr()).build().unwrap();
        }
        for bad in ["", "/echo", "echo/", "a//b", "é", "a b", "a\n"] {
            let e = Registration::builder(bad, addr()).build().unwrap_err();
            assert!(e.is_config(), "{bad}: {e}");
        }
        let kratos = Registration::builder("a/b", addr()).layout(KeyLayout::Kratos);
        assert!(kratos.build().unwrap_err().is_config());
        let id = Registration::builder("a", addr()).id("x/y");
        assert!(id.build().unwrap_err().is_config());
    }

    #[test]
    fn unspecified_addresses_are_refused() {
        for bad in ["0.0.0.0:1", "[::]:1", "10.0.0.1:0"] {
            let e = Registration::builder("a", bad.parse().unwrap())
                .build()
                .unwrap_err();
            assert!(e.is_config(), "{bad}");
        }
    }

    #[test]
    fn ttl_is_whole_seconds_and_at_least_the_minimum() {
        let ttl = |d| {
            Registration::builder("a", addr())
                .ttl(d)
                .build()
                .unwrap()
                .ttl()
        };
        assert_eq!(ttl(Duration::from_millis(100)), MIN_TTL);
        assert_eq!(ttl(Duration::from_millis(2500)), Duration::from_secs(3));
        let r = Registration::builder("a", addr()).build().unwrap();
        assert_eq!(r.ttl(), Duration::from_secs(10));
        assert_eq!(r.keep_alive_interval(), Duration::from_secs(10) / 3);
        assert_eq!(r.key(), "a/10.0.0.1:50051");
    }
}
