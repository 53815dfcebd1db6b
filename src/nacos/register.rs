//! What a service registers in Nacos, checked before anything is sent.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};

use nacos_sdk::api::naming::ServiceInstance;

use crate::error::{Error, Result};
use crate::register::HealthSource;
use crate::validate;

/// Nacos's largest instance weight.
const MAX_WEIGHT: f64 = 10_000.0;

/// One ephemeral instance to register with [`Client::register`](super::Client::register):
/// service `name` at an address.
///
/// Nacos identifies the instance by address, port and cluster: its id is
/// `ip#port#cluster#group@@service` ([`instance_id`](Self::instance_id)). Setters only
/// record; [`validate`](Self::validate) (called by `register`) checks everything
/// before anything is sent, with the name, metadata and address rules every registry
/// of this crate shares.
#[must_use]
#[derive(Clone)]
pub struct Registration {
    pub(super) service: String,
    pub(super) group: Option<String>,
    cluster: String,
    bind: SocketAddr,
    advertise: Option<IpAddr>,
    weight: f64,
    meta: BTreeMap<String, String>,
    pub(super) health: HealthSource,
    allow_non_dns_name: bool,
}

// === impl Registration ===

impl Registration {
    /// An instance of service `name` listening on `addr`.
    ///
    /// `name` follows the same rules as everywhere in this crate: ASCII letters, digits
    /// and dashes, 1 to 63 bytes (a DNS label; underscores and dots only with
    /// [`allow_non_dns_name`](Self::allow_non_dns_name)). `addr`'s port must not
    /// be 0; a wildcard IP (`0.0.0.0`, `[::]`) is never registered: unless
    /// [`advertise`](Self::advertise) names one, `register` registers the address of
    /// the interface that routes towards the Nacos server instead (and
    /// [`address`](Self::address) shows the wildcard until then).
    pub fn new(name: impl Into<String>, addr: SocketAddr) -> Self {
        Registration {
            service: name.into(),
            group: None,
            cluster: "DEFAULT".to_owned(),
            bind: addr,
            advertise: None,
            weight: 1.0,
            meta: BTreeMap::new(),
            health: HealthSource::always_passing(),
            allow_non_dns_name: false,
        }
    }

    /// Accepts a service name with underscores and dots besides letters, digits and
    /// dashes (1 to 63 bytes), which Nacos takes but DNS cannot carry, so that a fleet
    /// can keep its old name while its clients move to a dashed one. Discovery of such
    /// names needs no opt-in. Registering logs a warning once per registration.
    /// Default: `false`.
    pub fn allow_non_dns_name(mut self, allow: bool) -> Self {
        self.allow_non_dns_name = allow;
        self
    }

    /// The group. Default: the client's.
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
    }

    /// The cluster. Default: `DEFAULT`.
    pub fn cluster(mut self, cluster: impl Into<String>) -> Self {
        self.cluster = cluster.into();
        self
    }

    /// The IP address other hosts reach this instance at; the port stays the bound one.
    /// Default: the bound address.
    pub fn advertise(mut self, ip: IpAddr) -> Self {
        self.advertise = Some(ip);
        self
    }

    /// The weight, above 0 and at most 10,000. Default: 1.
    pub fn weight(mut self, weight: f64) -> Self {
        self.weight = weight;
        self
    }

    /// Adds a metadata entry. Keys: 1 to 128 printable ASCII characters without spaces;
    /// values at most 512 bytes without control characters; at most 64 entries.
    /// Default: none.
    pub fn meta(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.meta.insert(key.into(), value.into());
        self
    }

    /// Whether the instance serves: while `source` says it does not, the instance is
    /// deregistered (its connection stays), and registered again once it serves; an
    /// instance that does not serve at registration is not registered until it does.
    /// A `watch::Receiver<bool>` converts into one. Default:
    /// [`HealthSource::always_passing`].
    pub fn health(mut self, source: impl Into<HealthSource>) -> Self {
        self.health = source.into();
        self
    }

    /// The address other instances reach this one at.
    pub fn address(&self) -> SocketAddr {
        SocketAddr::new(self.advertise.unwrap_or(self.bind.ip()), self.bind.port())
    }

    /// Nacos's id for the instance, `ip#port#cluster#group@@service`, with `group` the
    /// registration's or, when it names none, the given default.
    pub fn instance_id(&self, default_group: &str) -> String {
        let addr = self.address();
        let group = self.group.as_deref().unwrap_or(default_group);
        format!(
            "{}#{}#{}#{group}@@{}",
            addr.ip(),
            addr.port(),
            self.cluster,
            self.service
        )
    }

    /// Checks the registration; [`Client::register`](super::Client::register) calls it.
    ///
    /// # Errors
    ///
    /// A configuration error naming the field and the value: a service name or
    /// metadata outside the crate's rules, port 0 or a wildcard
    /// [`advertise`](Self::advertise) address, or Nacos's own: an invalid group or
    /// cluster name or weight.
    pub fn validate(self) -> Result<Self> {
        validate::Registered {
            name: &self.service,
            allow_non_dns_name: self.allow_non_dns_name,
            id: None,
            meta: &self.meta,
            bind: self.bind,
            advertise: self.advertise,
        }
        .check()?;
        if let Some(group) = &self.group {
            check_group(group)?;
        }
        if self.cluster.is_empty()
            || self.cluster.len() > validate::MAX_NAME_LEN
            || !self
                .cluster
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(Error::config(format!(
                "cluster name `{}` must be 1 to {} ASCII letters, digits and dashes",
                self.cluster,
                validate::MAX_NAME_LEN
            )));
        }
        if !(self.weight > 0.0 && self.weight <= MAX_WEIGHT) {
            return Err(Error::config(format!(
                "weight {} of `{}` must be above 0 and at most {MAX_WEIGHT}",
                self.weight, self.service
            )));
        }
        Ok(self)
    }

    /// Validates, and advertises the address of the interface that routes towards the
    /// first of `servers` in place of a wildcard bind.
    pub(super) async fn resolve(mut self, servers: &[String]) -> Result<Self> {
        self = self.validate()?;
        validate::warn_if_not_dns("nacos", &self.service);
        let nacos = servers.first().map_or("", String::as_str);
        let at = validate::address::advertised(self.bind, self.advertise, nacos, 8848).await?;
        self.advertise = Some(at.ip());
        Ok(self)
    }

    /// The instance as the SDK sends it.
    pub(super) fn to_sdk(&self) -> ServiceInstance {
        let addr = self.address();
        ServiceInstance {
            instance_id: None,
            ip: addr.ip().to_string(),
            port: i32::from(addr.port()),
            weight: self.weight,
            healthy: true,
            enabled: true,
            ephemeral: true,
            cluster_name: Some(self.cluster.clone()),
            service_name: Some(self.service.clone()),
            metadata: self.meta.clone().into_iter().collect(),
        }
    }
}

/// Group names: Nacos joins group and service with `@@`, so neither may contain it.
pub(super) fn check_group(group: &str) -> Result<()> {
    if group.is_empty() || group.len() > 128 {
        return Err(Error::config(format!(
            "group `{group}` must have 1 to 128 characters"
        )));
    }
    if group.contains("@@") || group.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(Error::config(format!(
            "group `{group}` must not contain `@@`, spaces or control characters"
        )));
    }
    Ok(())
}

impl fmt::Debug for Registration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("nacos::Registration")
            .field("service", &self.service)
            .field("group", &self.group)
            .field("cluster", &self.cluster)
            .field("address", &self.address())
            .field("weight", &self.weight)
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

    #[test]
    fn names_follow_the_crate_rules() {
        let _ = Registration::new("echo-v2", addr()).validate().unwrap();
        for bad in ["", "echo_v2", "echo.v2", "-echo", "a b"] {
            let e = Registration::new(bad, addr()).validate().unwrap_err();
            assert!(e.is_config(), "{bad}: {e}");
        }
        let e = Registration::new("echo_v2", addr()).validate().unwrap_err();
        assert!(e.to_string().contains("echo-v2"), "suggests dashes: {e}");
        for opted in ["echo_v2", "com.example.echo"] {
            let r = Registration::new(opted, addr()).allow_non_dns_name(true);
            assert!(r.validate().is_ok(), "{opted} with the opt-in");
        }
        let e = Registration::new("echo/v2", addr())
            .allow_non_dns_name(true)
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("allow_non_dns_name(true)"), "{e}");
        for bad in ["", "a@@b", "a b"] {
            let e = Registration::new("echo", addr())
                .group(bad)
                .validate()
                .unwrap_err();
            assert!(e.is_config(), "group {bad}: {e}");
        }
        for bad in ["", "east_1", "a.b"] {
            let e = Registration::new("echo", addr())
                .cluster(bad)
                .validate()
                .unwrap_err();
            assert!(e.is_config(), "cluster {bad}: {e}");
        }
    }

    #[test]
    fn weights_addresses_and_metadata() {
        for bad in [0.0, -1.0, 10_001.0, f64::NAN, f64::INFINITY] {
            let e = Registration::new("echo", addr())
                .weight(bad)
                .validate()
                .unwrap_err();
            assert!(e.is_config(), "weight {bad}");
        }
        let e = Registration::new("a", "10.0.0.1:0".parse().unwrap())
            .validate()
            .unwrap_err();
        assert!(e.is_config());
        let e = Registration::new("a", addr())
            .meta("", "x")
            .validate()
            .unwrap_err();
        assert!(e.is_config());
        let e = Registration::new("a", addr())
            .meta("k", "x".repeat(513))
            .validate()
            .unwrap_err();
        assert!(e.is_config());
        let r = Registration::new("echo", "0.0.0.0:7".parse().unwrap())
            .advertise("10.1.2.3".parse().unwrap())
            .cluster("east")
            .meta("preserved.register.source", "RUST")
            .validate()
            .unwrap();
        assert_eq!(
            r.instance_id("DEFAULT_GROUP"),
            "10.1.2.3#7#east#DEFAULT_GROUP@@echo"
        );
        let sdk = r.to_sdk();
        assert_eq!(
            (sdk.ip.as_str(), sdk.port, sdk.ephemeral),
            ("10.1.2.3", 7, true)
        );
        assert_eq!(sdk.metadata["preserved.register.source"], "RUST");
    }

    // A wildcard bind was refused without `advertise`; it is now replaced by the route
    // towards the server, as every registry of the crate does.
    #[tokio::test]
    async fn a_wildcard_bind_registers_the_route_towards_the_server() {
        let nacos = ["127.0.0.1:8848".to_owned()];
        for bind in ["0.0.0.0:7", "[::]:7"] {
            let r = Registration::new("echo", bind.parse().unwrap());
            let r = r.resolve(&nacos).await.unwrap();
            assert_eq!(r.address(), "127.0.0.1:7".parse().unwrap(), "{bind}");
            assert_eq!(r.to_sdk().ip, "127.0.0.1");
        }
        let r = Registration::new("echo", "0.0.0.0:7".parse().unwrap())
            .advertise("0.0.0.0".parse().unwrap());
        assert!(r.resolve(&nacos).await.unwrap_err().is_config());
    }
}
