//! Target URIs: one string naming where a client's instances come from, as gRPC
//! clients name theirs (`dns:///host:port`) and grpc-consul-resolver extends it
//! (`consul://127.0.0.1:8500/service?tag=…`).
//!
//! [`Target::parse`] checks the whole URI (scheme, hosts, ports, query keys) without
//! touching the network; [`Target::discovery`] then connects to the registry and
//! returns the [`Discovery`] a [`BalancedChannel`](crate::balance::BalancedChannel)
//! is built from.
//!
//! | target | discovers | feature |
//! |---|---|---|
//! | `consul://[HOST:PORT]/SERVICE[?tag=T&dc=DC&near=NODE&filter=EXPR&passing=BOOL]` | the instances of `SERVICE` known to the agent at `HOST:PORT` (empty: `CONSUL_HTTP_ADDR`, else `127.0.0.1:8500`); `tag` may repeat; `passing` defaults to `true` | `consul` |
//! | `etcd://HOST:PORT[,HOST:PORT…]/SERVICE` | the instances of `SERVICE` registered in etcd | `etcd` |
//! | `nacos://HOST:PORT[,HOST:PORT…]/SERVICE[?namespace=NS&group=G&cluster=C]` | the instances of `SERVICE` in Nacos (HTTP port; the SDK uses `PORT + 1000`) | `nacos` |
//! | `dns:[//NAMESERVER:PORT]/HOST:PORT` | the A/AAAA records of `HOST`, re-resolved at their TTL | `dns` |
//! | `dns+srv:[//NAMESERVER:PORT]/NAME` | the SRV records of `NAME` (`_grpc._tcp.example.com`) | `dns` |
//! | `static:///HOST:PORT[,HOST:PORT…]` (or `static://HOST:PORT,…`) | a fixed list | always |
//!
//! Query values are percent-decoded, and `+` is a space (as Go's `url.ParseQuery`,
//! which grpc-consul-resolver uses, reads it): write `%2B` for a plus. An unknown
//! query key, a missing or zero port, an invalid host, an unknown scheme or a scheme
//! whose feature this build lacks is a configuration error naming it.
//!
//! The ACL token, TLS settings and credentials never go in the URI: a `consul://`
//! target reads them from the `CONSUL_*` environment variables
//! ([`consul::ClientBuilder::from_env`](crate::consul::ClientBuilder::from_env)); for
//! more control build the registry's client and discovery yourself.
//!
//! ```
//! use tonic_discovery::target::{Scheme, Target};
//!
//! let target = Target::parse("consul://127.0.0.1:8500/echo?tag=blue&dc=eu1")?;
//! assert_eq!(target.scheme(), Scheme::Consul);
//! assert_eq!(target.service(), Some("echo"));
//!
//! let err = Target::parse("consul://127.0.0.1:8500/echo?colour=blue").unwrap_err();
//! assert!(err.to_string().contains("`colour`"));
//! # Ok::<(), tonic_discovery::Error>(())
//! ```

mod parse;
#[cfg(test)]
mod tests;

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::source::Discovery;
use parse::Parts;

/// The kind of discovery a [`Target`] names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Scheme {
    /// `consul://`
    Consul,
    /// `etcd://`
    Etcd,
    /// `nacos://`
    Nacos,
    /// `dns:` (A/AAAA records)
    Dns,
    /// `dns+srv:` (SRV records)
    DnsSrv,
    /// `static:`
    Static,
}

/// A parsed target URI; see the [module docs](self) for the syntax.
#[derive(Clone, PartialEq, Eq)]
pub struct Target {
    uri: String,
    service: Option<String>,
    spec: Spec,
}

/// What each scheme keeps; a scheme whose feature is off never parses.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Spec {
    #[cfg(feature = "consul")]
    Consul(ConsulSpec),
    #[cfg(feature = "etcd")]
    Etcd {
        endpoints: Vec<String>,
    },
    #[cfg(feature = "nacos")]
    Nacos(NacosSpec),
    #[cfg(feature = "dns")]
    Dns {
        nameserver: Option<std::net::SocketAddr>,
        host: String,
    },
    #[cfg(feature = "dns")]
    DnsSrv {
        nameserver: Option<std::net::SocketAddr>,
        name: String,
    },
    Static {
        addrs: Vec<String>,
    },
}

#[cfg(feature = "consul")]
#[derive(Debug, Clone, PartialEq, Eq)]
struct ConsulSpec {
    /// `None`: from the environment.
    address: Option<String>,
    tags: Vec<String>,
    dc: Option<String>,
    near: Option<String>,
    filter: Option<String>,
    passing: bool,
}

#[cfg(feature = "nacos")]
#[derive(Debug, Clone, PartialEq, Eq)]
struct NacosSpec {
    servers: Vec<String>,
    namespace: Option<String>,
    group: Option<String>,
    cluster: Option<String>,
}

// === impl Target ===

impl Target {
    /// Parses a target URI. Nothing is sent over the network.
    ///
    /// # Errors
    ///
    /// A configuration error ([`Error::is_config`]) naming the bad part: an unknown
    /// scheme, a scheme whose feature is not built, an unknown query key or a bad
    /// value for a known one, a host or port that is not valid. A registry target
    /// without a service is not an error here (a server registers in it; a client
    /// sets one with [`Target::with_service`]).
    pub fn parse(uri: &str) -> Result<Target> {
        let parts = parse::split(uri)?;
        let (spec, service) = match parts.scheme {
            "consul" => consul(&parts)?,
            "etcd" => etcd(&parts)?,
            "nacos" => nacos(&parts)?,
            "dns" => dns(&parts, false)?,
            "dns+srv" => dns(&parts, true)?,
            "static" => (statik(&parts)?, None),
            other => {
                return Err(Error::config(format!(
                    "target `{uri}`: unknown scheme `{other}` (known: consul, etcd, nacos, \
                     dns, dns+srv, static)"
                )));
            }
        };
        Ok(Target {
            uri: uri.to_owned(),
            service,
            spec,
        })
    }

    /// Which discovery this target names.
    pub fn scheme(&self) -> Scheme {
        match &self.spec {
            #[cfg(feature = "consul")]
            Spec::Consul(_) => Scheme::Consul,
            #[cfg(feature = "etcd")]
            Spec::Etcd { .. } => Scheme::Etcd,
            #[cfg(feature = "nacos")]
            Spec::Nacos(_) => Scheme::Nacos,
            #[cfg(feature = "dns")]
            Spec::Dns { .. } => Scheme::Dns,
            #[cfg(feature = "dns")]
            Spec::DnsSrv { .. } => Scheme::DnsSrv,
            Spec::Static { .. } => Scheme::Static,
        }
    }

    /// Whether the scheme is a registry (Consul, etcd, Nacos), whose discoveries need
    /// a service name; DNS and static lists need none.
    pub fn needs_service(&self) -> bool {
        matches!(self.scheme(), Scheme::Consul | Scheme::Etcd | Scheme::Nacos)
    }

    /// The service: the path of a registry target, or the one set by
    /// [`Target::with_service`]. `None` for a registry target without a path (which
    /// then only serves to register in, or needs `with_service`) and for DNS and
    /// static targets without `with_service`.
    pub fn service(&self) -> Option<&str> {
        self.service.as_deref()
    }

    /// Sets the service, replacing the one in the URI's path: the service a
    /// registry is asked for, or the name a DNS or static discovery carries in logs.
    pub fn with_service(mut self, service: impl Into<String>) -> Self {
        self.service = Some(service.into());
        self
    }

    /// The name a channel over this target should carry: the service, else the DNS
    /// name, else the scheme.
    pub fn name(&self) -> &str {
        if let Some(service) = &self.service {
            return service;
        }
        match &self.spec {
            #[cfg(feature = "dns")]
            Spec::Dns { host, .. } => host,
            #[cfg(feature = "dns")]
            Spec::DnsSrv { name, .. } => name,
            _ => self.uri.split(':').next().unwrap_or_default(),
        }
    }

    /// Connects to the registry (etcd and Nacos connect here; Consul and DNS on first
    /// use) and builds the discovery of the target's instances.
    ///
    /// # Errors
    ///
    /// A configuration error when a registry target has no service (neither in its
    /// path nor from [`Target::with_service`]) or the registry's client refuses its
    /// settings; the errors of connecting to etcd or Nacos.
    pub async fn discovery(&self) -> Result<Discovery> {
        match &self.spec {
            #[cfg(feature = "consul")]
            Spec::Consul(spec) => {
                let mut builder = self.consul_client()?.discovery(self.required_service()?);
                for tag in &spec.tags {
                    builder = builder.tag(tag.clone());
                }
                if let Some(dc) = &spec.dc {
                    builder = builder.dc(dc.clone());
                }
                if let Some(near) = &spec.near {
                    builder = builder.near(near.clone());
                }
                if let Some(filter) = &spec.filter {
                    builder = builder.filter(filter.clone());
                }
                Ok(builder
                    .health(if spec.passing {
                        crate::consul::HealthFilter::Passing
                    } else {
                        crate::consul::HealthFilter::Any
                    })
                    .build())
            }
            #[cfg(feature = "etcd")]
            Spec::Etcd { .. } => {
                let service = self.required_service()?;
                Ok(self.etcd_client().await?.discovery(service).build())
            }
            #[cfg(feature = "nacos")]
            Spec::Nacos(spec) => {
                let service = self.required_service()?;
                let mut builder = self.nacos_client().await?.discovery(service);
                if let Some(cluster) = &spec.cluster {
                    builder = builder.cluster(cluster.clone());
                }
                Ok(builder.build())
            }
            #[cfg(feature = "dns")]
            Spec::Dns { nameserver, host } => dns_resolver(*nameserver)?.host_discovery(host),
            #[cfg(feature = "dns")]
            Spec::DnsSrv { nameserver, name } => dns_resolver(*nameserver)?.srv_discovery(name),
            Spec::Static { addrs } => {
                Ok(crate::source::StaticList::from_addrs(addrs)?.discovery(self.name()))
            }
        }
    }

    /// A Consul client for a `consul://` target's agent, with the token and TLS
    /// settings of the `CONSUL_*` environment variables (and their address when the
    /// target has no authority). Use it to register in the same agent.
    ///
    /// # Errors
    ///
    /// A configuration error when the target is not `consul://`, or as
    /// [`consul::ClientBuilder::build`](crate::consul::ClientBuilder::build).
    #[cfg(feature = "consul")]
    #[cfg_attr(docsrs, doc(cfg(feature = "consul")))]
    pub fn consul_client(&self) -> Result<crate::consul::Client> {
        let Spec::Consul(spec) = &self.spec else {
            return Err(self.not("consul"));
        };
        let mut builder = crate::consul::ClientBuilder::from_env();
        if let Some(address) = &spec.address {
            builder = builder.address(address.clone());
        }
        builder.build()
    }

    /// An etcd client connected to an `etcd://` target's endpoints, with the
    /// credentials of the environment (`ETCDCTL_USER`, `ETCDCTL_PASSWORD`; see
    /// [`etcd::ClientBuilder::from_env`](crate::etcd::ClientBuilder::from_env)). Use
    /// it to register in the same cluster.
    ///
    /// # Errors
    ///
    /// A configuration error when the target is not `etcd://`, or as
    /// [`etcd::ClientBuilder::connect`](crate::etcd::ClientBuilder::connect).
    #[cfg(feature = "etcd")]
    #[cfg_attr(docsrs, doc(cfg(feature = "etcd")))]
    pub async fn etcd_client(&self) -> Result<crate::etcd::Client> {
        let Spec::Etcd { endpoints } = &self.spec else {
            return Err(self.not("etcd"));
        };
        crate::etcd::ClientBuilder::from_env()
            .endpoints(endpoints.join(","))
            .connect()
            .await
    }

    /// A Nacos client connected to a `nacos://` target's servers, in its namespace
    /// and group. Use it to register in the same namespace.
    ///
    /// # Errors
    ///
    /// A configuration error when the target is not `nacos://`, or as
    /// [`nacos::ClientBuilder::connect`](crate::nacos::ClientBuilder::connect).
    #[cfg(feature = "nacos")]
    #[cfg_attr(docsrs, doc(cfg(feature = "nacos")))]
    pub async fn nacos_client(&self) -> Result<crate::nacos::Client> {
        let Spec::Nacos(spec) = &self.spec else {
            return Err(self.not("nacos"));
        };
        let mut builder = crate::nacos::Client::builder(spec.servers.join(","));
        if let Some(namespace) = &spec.namespace {
            builder = builder.namespace(namespace.clone());
        }
        if let Some(group) = &spec.group {
            builder = builder.group(group.clone());
        }
        builder.connect().await
    }

    #[cfg_attr(
        not(any(feature = "consul", feature = "etcd", feature = "nacos")),
        allow(dead_code)
    )]
    fn required_service(&self) -> Result<&str> {
        self.service.as_deref().ok_or_else(|| {
            Error::config(format!(
                "target `{}` names no service: add it as the path (`…/SERVICE`) or set one \
                 with Target::with_service",
                self.uri
            ))
        })
    }

    #[cfg_attr(
        not(any(feature = "consul", feature = "etcd", feature = "nacos")),
        allow(dead_code)
    )]
    fn not(&self, scheme: &str) -> Error {
        Error::config(format!("target `{}` is not a {scheme}:// target", self.uri))
    }
}

impl FromStr for Target {
    type Err = Error;

    fn from_str(s: &str) -> Result<Target> {
        Target::parse(s)
    }
}

/// The URI as given.
impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.uri)
    }
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target")
            .field("uri", &self.uri)
            .field("service", &self.service)
            .field("spec", &self.spec)
            .finish()
    }
}

const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Target>();
};

// === parsing per scheme ===

type Parsed = (Spec, Option<String>);

/// A feature this build lacks.
#[cfg_attr(
    all(
        feature = "consul",
        feature = "etcd",
        feature = "nacos",
        feature = "dns"
    ),
    allow(dead_code)
)]
fn missing(parts: &Parts<'_>, feature: &str) -> Error {
    Error::config(format!(
        "target scheme `{}` needs the `{feature}` feature of tonic-discovery, which this \
         build lacks",
        parts.scheme
    ))
}

/// The service in a registry target's path (`/SERVICE`), percent-decoded; `None` when
/// empty.
#[cfg_attr(
    not(any(feature = "consul", feature = "etcd", feature = "nacos")),
    allow(dead_code)
)]
fn service_path(parts: &Parts<'_>) -> Result<Option<String>> {
    let service = parse::decode(parts.path, false)?;
    if service.contains('/') {
        return Err(Error::config(format!(
            "{}: the path `{}` is more than one service name",
            parts.scheme, parts.path
        )));
    }
    Ok((!service.is_empty()).then_some(service))
}

/// Refuses a query key the scheme does not know, naming it.
fn unknown_key(parts: &Parts<'_>, key: &str, known: &str) -> Error {
    Error::config(format!(
        "{}: unknown query key `{key}` (known: {known})",
        parts.scheme
    ))
}

#[cfg(feature = "consul")]
fn consul(parts: &Parts<'_>) -> Result<Parsed> {
    let address = match parts.authority {
        None | Some("") => None,
        Some(addr) => {
            parse::host_port("consul", addr)?;
            Some(addr.to_owned())
        }
    };
    let mut spec = ConsulSpec {
        address,
        tags: Vec::new(),
        dc: None,
        near: None,
        filter: None,
        passing: true,
    };
    for (key, value) in parse::query_pairs(parts.query)? {
        match key.as_str() {
            "tag" => spec.tags.push(value),
            "dc" => spec.dc = Some(value),
            "near" => spec.near = Some(value),
            "filter" => spec.filter = Some(value),
            "passing" => spec.passing = parse::boolean(&key, &value)?,
            _ => return Err(unknown_key(parts, &key, "tag, dc, near, filter, passing")),
        }
    }
    Ok((Spec::Consul(spec), service_path(parts)?))
}

#[cfg(not(feature = "consul"))]
fn consul(parts: &Parts<'_>) -> Result<Parsed> {
    Err(missing(parts, "consul"))
}

#[cfg(feature = "etcd")]
fn etcd(parts: &Parts<'_>) -> Result<Parsed> {
    let endpoints = parse::host_list("etcd", parts.authority.unwrap_or_default())?;
    if let Some((key, _)) = parse::query_pairs(parts.query)?.into_iter().next() {
        return Err(unknown_key(parts, &key, "none"));
    }
    Ok((Spec::Etcd { endpoints }, service_path(parts)?))
}

#[cfg(not(feature = "etcd"))]
fn etcd(parts: &Parts<'_>) -> Result<Parsed> {
    Err(missing(parts, "etcd"))
}

#[cfg(feature = "nacos")]
fn nacos(parts: &Parts<'_>) -> Result<Parsed> {
    let mut spec = NacosSpec {
        servers: parse::host_list("nacos", parts.authority.unwrap_or_default())?,
        namespace: None,
        group: None,
        cluster: None,
    };
    for (key, value) in parse::query_pairs(parts.query)? {
        match key.as_str() {
            "namespace" => spec.namespace = Some(value),
            "group" => spec.group = Some(value),
            "cluster" => spec.cluster = Some(value),
            _ => return Err(unknown_key(parts, &key, "namespace, group, cluster")),
        }
    }
    Ok((Spec::Nacos(spec), service_path(parts)?))
}

#[cfg(not(feature = "nacos"))]
fn nacos(parts: &Parts<'_>) -> Result<Parsed> {
    Err(missing(parts, "nacos"))
}

/// `dns:[//NAMESERVER:PORT]/HOST:PORT` and `dns+srv:[//NAMESERVER:PORT]/NAME`.
#[cfg(feature = "dns")]
fn dns(parts: &Parts<'_>, srv: bool) -> Result<Parsed> {
    let scheme = parts.scheme;
    if let Some((key, _)) = parse::query_pairs(parts.query)?.into_iter().next() {
        return Err(unknown_key(parts, &key, "none"));
    }
    let nameserver = match parts.authority {
        None | Some("") => None,
        Some(addr) => Some(addr.parse().map_err(|_| {
            Error::config(format!(
                "{scheme}: nameserver `{addr}` is not IP:PORT (write {scheme}:///NAME for \
                 the system's resolver)"
            ))
        })?),
    };
    let name = parse::decode(parts.path, false)?;
    if name.is_empty() {
        return Err(Error::config(format!(
            "{scheme}: no name to resolve (expected {scheme}:///{})",
            if srv { "NAME" } else { "HOST:PORT" }
        )));
    }
    if srv {
        if !parse::is_dns_name(&name) {
            return Err(Error::config(format!(
                "{scheme}: `{name}` is not a DNS name"
            )));
        }
        return Ok((Spec::DnsSrv { nameserver, name }, None));
    }
    parse::host_port(scheme, &name)?;
    Ok((
        Spec::Dns {
            nameserver,
            host: name,
        },
        None,
    ))
}

#[cfg(not(feature = "dns"))]
fn dns(parts: &Parts<'_>, _srv: bool) -> Result<Parsed> {
    Err(missing(parts, "dns"))
}

#[cfg(feature = "dns")]
fn dns_resolver(nameserver: Option<std::net::SocketAddr>) -> Result<crate::source::Dns> {
    let mut builder = crate::source::Dns::builder();
    if let Some(addr) = nameserver {
        builder = builder.nameserver(addr);
    }
    builder.build()
}

/// `static:///A:1,B:2`, or `static://A:1,B:2` (the list as the authority).
fn statik(parts: &Parts<'_>) -> Result<Spec> {
    if let Some((key, _)) = parse::query_pairs(parts.query)?.into_iter().next() {
        return Err(unknown_key(parts, &key, "none"));
    }
    let list = match (parts.authority, parts.path) {
        (Some(authority), "") => authority,
        (None | Some(""), path) => path,
        (Some(authority), path) => {
            return Err(Error::config(format!(
                "static: both an authority `{authority}` and a path `{path}`; write \
                 static:///HOST:PORT[,HOST:PORT…]"
            )));
        }
    };
    Ok(Spec::Static {
        addrs: parse::host_list("static", list)?,
    })
}
