//! [`Registration`]: what a service instance registers with the Consul agent.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::Locality;
use crate::error::{Error, Result};
use crate::register::HealthSource;
use crate::validate;

/// Default TTL of the check the heartbeat keeps passing.
pub(crate) const DEFAULT_TTL: Duration = Duration::from_secs(10);
/// The shortest TTL we accept.
pub(crate) const MIN_TTL: Duration = Duration::from_secs(1);
/// Consul's minimum for `DeregisterCriticalServiceAfter` (`check_deregister_interval_min`);
/// smaller values are silently raised by the agent, so we refuse them.
pub(crate) const MIN_DEREGISTER_AFTER: Duration = Duration::from_secs(60);

/// A service instance to register with the Consul agent, with its TTL health check.
///
/// Built with [`Registration::new`] and consuming setters, then handed to
/// [`Client::register`](super::Client::register). Invalid input (a service name with an
/// underscore, port 0, a TTL under one second, …) is returned by `register` before
/// anything is sent; [`Registration::validate`] checks it without a client. The name,
/// ID, metadata and address rules are the crate's, the same for every registry; the
/// Consul-only settings (TTL, checks, tags, weights) are checked by their setters, which
/// remember the first error for `validate`.
///
/// What gets registered:
/// - `ID`: the explicit [`id`](Registration::id), else `<name>-<hostname>-<port>`, so
///   replicas on one agent never overwrite each other;
/// - `Address`/`Port`: the [`advertise`](Registration::advertise)d address, else the bound
///   address, except that a wildcard (`0.0.0.0`, `[::]`) is never advertised: the
///   interface that routes towards the agent is used instead (the rule every registry
///   of this crate follows);
/// - a TTL check with the explicit `CheckID` `service:<id>`, kept passing by the
///   heartbeat, and removed with the service by the agent after it stayed critical for
///   [`deregister_critical_after`](Registration::deregister_critical_after);
/// - optional HTTP and gRPC checks run by the agent.
#[must_use]
pub struct Registration {
    pub(crate) name: String,
    pub(crate) id: Option<String>,
    pub(crate) bind: SocketAddr,
    pub(crate) advertise: Option<IpAddr>,
    pub(crate) tags: Vec<String>,
    pub(crate) meta: BTreeMap<String, String>,
    pub(crate) weights: Option<(u32, u32)>,
    pub(crate) locality: Option<Locality>,
    pub(crate) ttl: Duration,
    pub(crate) deregister_after: Duration,
    pub(crate) heartbeat: Option<Duration>,
    pub(crate) extra_checks: Vec<ExtraCheck>,
    pub(crate) health: HealthSource,
    pub(crate) allow_non_dns_name: bool,
    error: Option<Error>,
}

/// A check the agent runs itself, besides the TTL check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ExtraCheck {
    Http { url: String, interval: Duration },
    Grpc { service: String, interval: Duration },
}

// === impl Registration ===

impl Registration {
    /// An instance of service `name` listening on `addr`.
    ///
    /// `name` must be a DNS label: ASCII letters, digits and dashes, at most 63 bytes,
    /// not starting or ending with a dash (or, with
    /// [`allow_non_dns_name`](Self::allow_non_dns_name), underscores and dots too).
    /// `addr` is where the server is bound; its port must not be 0 (bind first, then
    /// register the listener's `local_addr()`).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tonic_discovery::consul::Registration;
    ///
    /// let registration = Registration::new("greeter", "10.0.0.7:50051".parse().unwrap())
    ///     .id("greeter-1")
    ///     .tag("v2")
    ///     .meta("version", "2.1.0")
    ///     .ttl(Duration::from_secs(10))
    ///     .validate()
    ///     .expect("a valid registration");
    ///
    /// // Names DNS cannot carry are refused, with the dashed name to use instead.
    /// let refused = Registration::new("user_service", "10.0.0.7:50051".parse().unwrap())
    ///     .validate()
    ///     .unwrap_err();
    /// assert!(refused.to_string().contains("`user-service`"));
    /// ```
    pub fn new(name: impl Into<String>, addr: SocketAddr) -> Self {
        let name = name.into();
        Registration {
            error: None,
            name,
            id: None,
            bind: addr,
            advertise: None,
            tags: Vec::new(),
            meta: BTreeMap::new(),
            weights: None,
            locality: None,
            ttl: DEFAULT_TTL,
            deregister_after: MIN_DEREGISTER_AFTER,
            heartbeat: None,
            extra_checks: Vec::new(),
            health: HealthSource::always_passing(),
            allow_non_dns_name: false,
        }
    }

    /// Accepts a service name that Consul takes but DNS cannot carry: underscores and
    /// dots besides letters, digits and dashes, 1 to 63 bytes. Such a service is
    /// discoverable through the HTTP API (every discovery of this crate finds it, no
    /// opt-in needed there) but not through Consul's DNS interface, which is why the
    /// default refuses it; this lets a fleet keep its old name while its clients move
    /// to a dashed one. Registering logs a warning once per registration. Default:
    /// `false`.
    ///
    /// ```
    /// use tonic_discovery::consul::Registration;
    ///
    /// let registration = Registration::new("user_service", "10.0.0.7:50051".parse().unwrap())
    ///     .allow_non_dns_name(true)
    ///     .validate()
    ///     .expect("allowed by the opt-in");
    /// ```
    pub fn allow_non_dns_name(mut self, allow: bool) -> Self {
        self.allow_non_dns_name = allow;
        self
    }

    /// The instance ID. Default: `<name>-<hostname>-<port>` (hostname sanitised to
    /// letters, digits and dashes). Allowed: 1 to 128 ASCII letters, digits, `-`, `_`,
    /// `.`, `:`.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// The IP address other hosts reach this instance at; the port stays the bound one.
    /// Default: the bound address, or, when that is a wildcard (`0.0.0.0`, `[::]`), the
    /// address of the interface that routes towards the agent (found by connecting a UDP
    /// socket, which sends no packet). A wildcard here names no host and is refused by
    /// [`validate`](Self::validate).
    pub fn advertise(mut self, ip: IpAddr) -> Self {
        self.advertise = Some(ip);
        self
    }

    /// Adds a tag. Default: no tags.
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        let tag = tag.into();
        if tag.is_empty() {
            self.fail_if(Err(Error::config("a service tag is empty")));
        }
        self.tags.push(tag);
        self
    }

    /// Adds a metadata pair. Keys: ASCII letters, digits, `-`, `_`, at most 128 bytes,
    /// not starting with `consul-` (Consul's rule); values at most 512 bytes without
    /// control characters; at most 64 pairs. Default: none.
    pub fn meta(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.meta.insert(key.into(), value.into());
        self
    }

    /// The weights balancers give this instance while its checks pass or warn.
    /// Both must be at least 1. Default: Consul's `{Passing: 1, Warning: 1}`.
    pub fn weights(mut self, passing: u32, warning: u32) -> Self {
        if passing == 0 || warning == 0 {
            self.fail_if(Err(Error::config("service weights must be at least 1")));
        }
        self.weights = Some((passing, warning));
        self
    }

    /// Where the instance runs: Consul's `Locality {Region, Zone}` (Consul 1.17+;
    /// older agents ignore it). Zone-aware clients prefer instances of their own zone
    /// (see [`TrafficPolicy::locality`](crate::balance::TrafficPolicy::locality)).
    /// Default: none.
    pub fn locality(mut self, locality: Locality) -> Self {
        self.locality = (!locality.is_unknown()).then_some(locality);
        self
    }

    /// The TTL of the heartbeat check: the check turns critical when no heartbeat
    /// arrived for this long. At least 1 s. Default: 10 s.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        if ttl < MIN_TTL {
            self.fail_if(Err(Error::config(format!(
                "check TTL {ttl:?} is below the minimum of 1s"
            ))));
        }
        self.ttl = ttl;
        self
    }

    /// How often the heartbeat reports. At most half the TTL, so that a failed
    /// heartbeat can still be retried before the TTL runs out (a heartbeat every 9 s for
    /// a 10 s TTL turns the check critical on the first slow answer). Default: TTL / 3.
    pub fn heartbeat_interval(mut self, interval: Duration) -> Self {
        self.heartbeat = Some(interval);
        self
    }

    /// After how long in the critical state the agent removes the service
    /// (`DeregisterCriticalServiceAfter`). At least 1 minute, Consul's minimum.
    /// Default: 1 minute.
    pub fn deregister_critical_after(mut self, after: Duration) -> Self {
        if after < MIN_DEREGISTER_AFTER {
            self.fail_if(Err(Error::config(format!(
                "DeregisterCriticalServiceAfter {after:?} is below Consul's minimum of 1m"
            ))));
        }
        self.deregister_after = after;
        self
    }

    /// Adds an HTTP check the agent runs every `interval` against `url` (2xx passes).
    /// Default: none.
    pub fn http_check(mut self, url: impl Into<String>, interval: Duration) -> Self {
        let url = url.into();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            self.fail_if(Err(Error::config(format!(
                "HTTP check URL `{url}` must start with http:// or https://"
            ))));
        }
        self.fail_if(positive("HTTP check interval", interval));
        self.extra_checks.push(ExtraCheck::Http { url, interval });
        self
    }

    /// Adds a `grpc.health.v1` check the agent runs every `interval` against the
    /// advertised address, for `service` (`""` for the whole server). Default: none.
    pub fn grpc_check(mut self, service: impl Into<String>, interval: Duration) -> Self {
        self.fail_if(positive("gRPC check interval", interval));
        self.extra_checks.push(ExtraCheck::Grpc {
            service: service.into(),
            interval,
        });
        self
    }

    /// Where the heartbeat takes the status it reports (passing or critical); a
    /// `watch::Receiver<bool>` converts into one. Default: [`HealthSource::always_passing`].
    pub fn health(mut self, source: impl Into<HealthSource>) -> Self {
        self.health = source.into();
        self
    }

    /// Checks everything that can be checked without the network, and hands the
    /// registration back when it is valid.
    ///
    /// # Errors
    ///
    /// A configuration error naming the field and the value: a service name outside
    /// its rule (see [`new`](Self::new) and
    /// [`allow_non_dns_name`](Self::allow_non_dns_name)), an invalid instance ID or
    /// metadata, port 0 or a wildcard [`advertise`](Self::advertise) address (the
    /// crate's rules, shared by every registry), a metadata key Consul refuses, the
    /// first error a setter met, or a heartbeat interval that is zero or above half the
    /// TTL.
    pub fn validate(mut self) -> Result<Self> {
        validate::Registered {
            name: &self.name,
            allow_non_dns_name: self.allow_non_dns_name,
            id: self.id.as_deref(),
            meta: &self.meta,
            bind: self.bind,
            advertise: self.advertise,
        }
        .check()?;
        self.meta.keys().try_for_each(|key| meta_key(key))?;
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        let interval = self.heartbeat_every();
        if interval.is_zero() || interval > self.ttl / 2 {
            return Err(Error::config(format!(
                "heartbeat interval {interval:?} must be above zero and at most half the TTL \
                 {:?}, to leave room for retries",
                self.ttl
            )));
        }
        Ok(self)
    }

    /// The heartbeat interval in effect.
    pub(crate) fn heartbeat_every(&self) -> Duration {
        self.heartbeat.unwrap_or(self.ttl / 3)
    }

    fn fail_if(&mut self, result: Result<()>) {
        if let (Err(e), None) = (result, &self.error) {
            self.error = Some(e);
        }
    }
}

/// Consul's own rule for metadata keys, on top of the shared one (`agent/structs`:
/// `validateMetaPair`): ASCII letters, digits, `-` and `_`, not the reserved `consul-`
/// prefix.
fn meta_key(key: &str) -> Result<()> {
    if let Some(c) = key
        .chars()
        .find(|c| !c.is_ascii_alphanumeric() && !matches!(c, '-' | '_'))
    {
        return Err(Error::config(format!(
            "service metadata key `{key}` contains {c:?}; Consul takes only ASCII letters, \
             digits, `-` and `_`"
        )));
    }
    if key.to_ascii_lowercase().starts_with("consul-") {
        return Err(Error::config(format!(
            "service metadata key `{key}` uses the prefix `consul-`, which Consul reserves"
        )));
    }
    Ok(())
}

fn positive(what: &str, d: Duration) -> Result<()> {
    if d.is_zero() {
        return Err(Error::config(format!("{what} must be above zero")));
    }
    Ok(())
}

impl fmt::Debug for Registration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("consul::Registration")
            .field("name", &self.name)
            .field("allow_non_dns_name", &self.allow_non_dns_name)
            .field("id", &self.id)
            .field("bind", &self.bind)
            .field("advertise", &self.advertise)
            .field("tags", &self.tags)
            .field("meta", &self.meta)
            .field("ttl", &self.ttl)
            .field("heartbeat", &self.heartbeat_every())
            .field("deregister_after", &self.deregister_after)
            .field("extra_checks", &self.extra_checks)
            .finish_non_exhaustive()
    }
}
