//! Command-line plumbing shared by the examples: clap value parsers for durations
//! (humantime, with the bounds the examples need) and the `--registry` URL, and what
//! the registry does for a server or a client.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use tonic_discovery::balance::{BalancedChannel, BalancedChannelBuilder};

/// The longest run a `--duration` may ask for. A run's end is `Instant::now() + duration`,
/// which panics on overflow for absurd values; a year is far beyond any real run.
const MAX_RUN: Duration = Duration::from_secs(365 * 24 * 3600);

/// A run length (`30s`, `10m`, `1h30m`): a humantime duration of at most a year.
pub(crate) fn run_length(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d > MAX_RUN {
        return Err("at most a year (8760h)".to_owned());
    }
    Ok(d)
}

/// A period that must not be zero (`200ms`, `1s`): tokio intervals panic on zero.
pub(crate) fn period(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d.is_zero() {
        return Err("must be greater than zero".to_owned());
    }
    Ok(d)
}

/// Where instances are registered and discovered: `consul://HOST:PORT`,
/// `etcd://HOST:PORT[,HOST:PORT…]`, `nacos://HOST:PORT[,…][?namespace=NS&group=G]`, or
/// `none`; for clients only, `static://HOST:PORT[,HOST:PORT…]` (a fixed list),
/// `dns://HOST:PORT` (A/AAAA records) and `dns+srv://NAME` (SRV records). Parsed by clap
/// through `FromStr`.
#[derive(Clone)]
pub(crate) enum Registry {
    /// No registry: serve only.
    None,
    /// A Consul agent's HTTP address (`http://…`).
    Consul(String),
    /// etcd endpoints, comma-separated (needs the `etcd` feature).
    #[cfg(feature = "etcd")]
    Etcd(String),
    /// A Nacos URL (needs the `nacos` feature).
    #[cfg(feature = "nacos")]
    Nacos(String),
    /// A fixed list of `host:port` addresses (clients only).
    Static(Vec<String>),
    /// The A/AAAA records of `host:port` (clients only; needs the `dns` feature).
    #[cfg(feature = "dns")]
    Dns(String),
    /// The SRV records of a name (clients only; needs the `dns` feature).
    #[cfg(feature = "dns")]
    DnsSrv(String),
}

impl FromStr for Registry {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == "none" {
            return Ok(Registry::None);
        }
        if let Some(addr) = s.strip_prefix("consul://") {
            return Ok(Registry::Consul(format!("http://{addr}")));
        }
        if s.starts_with("http://") || s.starts_with("https://") {
            return Ok(Registry::Consul(s.to_owned()));
        }
        if s.starts_with("etcd://") {
            #[cfg(feature = "etcd")]
            return Ok(Registry::Etcd(s.to_owned()));
            #[cfg(not(feature = "etcd"))]
            return Err("etcd://… needs the etcd feature: cargo run --features etcd …".into());
        }
        if s.starts_with("nacos://") {
            #[cfg(feature = "nacos")]
            return Ok(Registry::Nacos(s.to_owned()));
            #[cfg(not(feature = "nacos"))]
            return Err("nacos://… needs the nacos feature: cargo run --features nacos …".into());
        }
        if let Some(addrs) = s.strip_prefix("static://") {
            return Self::static_list(addrs);
        }
        if s.starts_with("dns://") || s.starts_with("dns+srv://") {
            return Self::dns(s);
        }
        Err(
            "expected consul://HOST:PORT, etcd://HOST:PORT[,HOST:PORT], \
             nacos://HOST:PORT[?namespace=NS&group=G], static://HOST:PORT[,HOST:PORT], \
             dns://HOST:PORT, dns+srv://NAME or none"
                .to_owned(),
        )
    }
}

impl Registry {
    /// `static://` addresses, checked now so that a typo fails on the command line.
    fn static_list(addrs: &str) -> Result<Self, String> {
        if addrs.is_empty() {
            return Err("static:// needs at least one HOST:PORT".to_owned());
        }
        let addrs: Vec<String> = addrs.split(',').map(str::to_owned).collect();
        tonic_discovery::source::StaticList::from_addrs(&addrs).map_err(|e| e.to_string())?;
        Ok(Registry::Static(addrs))
    }

    /// `dns://HOST:PORT` or `dns+srv://NAME`.
    #[cfg(feature = "dns")]
    fn dns(s: &str) -> Result<Self, String> {
        match (s.strip_prefix("dns://"), s.strip_prefix("dns+srv://")) {
            (Some(addr), _) => Ok(Registry::Dns(addr.to_owned())),
            (_, Some(name)) => Ok(Registry::DnsSrv(name.to_owned())),
            _ => Err(format!(
                "`{s}` is neither dns://HOST:PORT nor dns+srv://NAME"
            )),
        }
    }

    #[cfg(not(feature = "dns"))]
    fn dns(_: &str) -> Result<Self, String> {
        Err("dns://… and dns+srv://… need the dns feature: cargo run --features dns …".into())
    }

    /// A registry to discover from: any but `none`, which only a server can use.
    pub(crate) fn parse_for_discovery(s: &str) -> Result<Self, String> {
        match s.parse()? {
            Registry::None => Err("a client needs a registry to discover from".to_owned()),
            registry => Ok(registry),
        }
    }
}

/// A registration kept alive in the registry until drained.
pub(crate) enum Registered {
    None,
    Consul(tonic_discovery::consul::RegistrationHandle),
    #[cfg(feature = "etcd")]
    Etcd(Box<tonic_discovery::etcd::RegistrationHandle>),
    #[cfg(feature = "nacos")]
    Nacos(tonic_discovery::nacos::RegistrationHandle),
}

impl Registered {
    /// Takes the instance out of the registry, waits `grace` for clients to drop it,
    /// then removes it.
    pub(crate) async fn drain(self, grace: Duration) -> Result<(), String> {
        match self {
            Registered::None => Ok(()),
            Registered::Consul(h) => h.drain(grace).await.map_err(|e| e.to_string()),
            #[cfg(feature = "etcd")]
            Registered::Etcd(h) => h.drain(grace).await.map_err(|e| e.to_string()),
            #[cfg(feature = "nacos")]
            Registered::Nacos(h) => h.drain(grace).await.map_err(|e| e.to_string()),
        }
    }
}

impl Registry {
    /// A Consul client for `addr`, with the token and TLS settings of the
    /// `CONSUL_*` environment variables.
    fn consul(addr: &str) -> Result<tonic_discovery::consul::Client, String> {
        tonic_discovery::consul::ClientBuilder::from_env()
            .address(addr)
            .build()
            .map_err(|e| e.to_string())
    }

    #[cfg(feature = "etcd")]
    async fn etcd(endpoints: &str) -> Result<tonic_discovery::etcd::Client, String> {
        tonic_discovery::etcd::Client::connect(endpoints)
            .await
            .map_err(|e| e.to_string())
    }

    #[cfg(feature = "nacos")]
    async fn nacos(url: &str) -> Result<tonic_discovery::nacos::Client, String> {
        tonic_discovery::nacos::Client::connect(url)
            .await
            .map_err(|e| e.to_string())
    }

    /// A balanced channel over the instances of `service` that carry every tag
    /// (tags are a Consul notion; the other registries refuse them). A static list or
    /// DNS has no service names: `service` only names the channel in logs.
    pub(crate) async fn channel(
        &self,
        service: &str,
        tags: &[String],
        builder: BalancedChannelBuilder,
    ) -> Result<BalancedChannel, String> {
        if !tags.is_empty() && !matches!(self, Registry::Consul(_)) {
            return Err("--tag needs a Consul registry".into());
        }
        match self {
            Registry::None => Err("a client needs a registry".into()),
            Registry::Consul(addr) => {
                let mut discovery = Self::consul(addr)?.discovery(service);
                for tag in tags {
                    discovery = discovery.tag(tag.clone());
                }
                builder.build(discovery.build()).map_err(|e| e.to_string())
            }
            #[cfg(feature = "etcd")]
            Registry::Etcd(endpoints) => {
                let client = Self::etcd(endpoints).await?;
                builder
                    .build(client.discovery(service).build())
                    .map_err(|e| e.to_string())
            }
            #[cfg(feature = "nacos")]
            Registry::Nacos(url) => {
                let client = Self::nacos(url).await?;
                builder
                    .build(client.discovery(service).build())
                    .map_err(|e| e.to_string())
            }
            Registry::Static(addrs) => {
                let list = tonic_discovery::source::StaticList::from_addrs(addrs)
                    .map_err(|e| e.to_string())?;
                builder
                    .build(list.discovery(service))
                    .map_err(|e| e.to_string())
            }
            #[cfg(feature = "dns")]
            Registry::Dns(addr) => {
                let dns = tonic_discovery::source::Dns::builder()
                    .build()
                    .map_err(|e| e.to_string())?;
                let discovery = dns.host_discovery(addr).map_err(|e| e.to_string())?;
                builder.build(discovery).map_err(|e| e.to_string())
            }
            #[cfg(feature = "dns")]
            Registry::DnsSrv(name) => {
                let dns = tonic_discovery::source::Dns::builder()
                    .build()
                    .map_err(|e| e.to_string())?;
                let discovery = dns.srv_discovery(name).map_err(|e| e.to_string())?;
                builder.build(discovery).map_err(|e| e.to_string())
            }
        }
    }

    /// Registers `service` at `addr`, out of discovery while `health` says not serving.
    pub(crate) async fn register(
        &self,
        service: &str,
        addr: SocketAddr,
        publish: &Publish,
        health: tonic_discovery::register::HealthSource,
    ) -> Result<(String, Registered), String> {
        let Publish {
            id,
            tags,
            ttl,
            weight,
            zone,
            meta,
        } = publish;
        let id = id.as_deref();
        match self {
            Registry::None => {
                let id = id.map_or_else(|| format!("{service}-{}", addr.port()), str::to_owned);
                Ok((id, Registered::None))
            }
            Registry::Static(_) => Err(
                "a static list cannot be registered in: serve with --registry none and give \
                 the address to the clients' static://"
                    .into(),
            ),
            #[cfg(feature = "dns")]
            Registry::Dns(_) | Registry::DnsSrv(_) => Err(
                "DNS cannot be registered in from here: serve with --registry none and add \
                 the address to the DNS records the clients resolve"
                    .into(),
            ),
            Registry::Consul(url) => {
                let mut reg =
                    tonic_discovery::consul::Registration::new(service, addr).health(health);
                if let Some(id) = id {
                    reg = reg.id(id);
                }
                for tag in tags {
                    reg = reg.tag(tag.clone());
                }
                if let Some(ttl) = ttl {
                    reg = reg.ttl(*ttl);
                }
                if let Some(weight) = weight {
                    reg = reg.weights(*weight, 1);
                }
                if let Some(zone) = zone {
                    reg = reg.locality(tonic_discovery::Locality::new("", zone));
                }
                for (k, v) in meta {
                    reg = reg.meta(k.clone(), v.clone());
                }
                let handle = Self::consul(url)?
                    .register(reg)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok((handle.id().to_owned(), Registered::Consul(handle)))
            }
            #[cfg(feature = "etcd")]
            Registry::Etcd(endpoints) => {
                if !tags.is_empty() {
                    return Err("--tag needs a Consul registry".into());
                }
                let mut reg =
                    tonic_discovery::etcd::Registration::new(service, addr).health(health);
                if let Some(id) = id {
                    reg = reg.id(id);
                }
                if let Some(ttl) = ttl {
                    reg = reg.ttl(*ttl);
                }
                // etcd values carry them as metadata (kratos's keys).
                if let Some(weight) = weight {
                    reg = reg.meta("weight", weight.to_string());
                }
                if let Some(zone) = zone {
                    reg = reg.meta("zone", zone.clone());
                }
                for (k, v) in meta {
                    reg = reg.meta(k.clone(), v.clone());
                }
                let handle = Self::etcd(endpoints)
                    .await?
                    .register(reg)
                    .await
                    .map_err(|e| e.to_string())?;
                let id = id.map_or_else(|| handle.key().to_owned(), str::to_owned);
                Ok((id, Registered::Etcd(Box::new(handle))))
            }
            #[cfg(feature = "nacos")]
            Registry::Nacos(url) => {
                if !tags.is_empty() {
                    return Err("--tag needs a Consul registry".into());
                }
                if ttl.is_some() {
                    return Err(
                        "--ttl does not apply to Nacos: the connection keeps the instance".into(),
                    );
                }
                // The id is the server's label for its answers; Nacos names the
                // instance by address (`ip#port#cluster#group@@service`).
                let mut reg =
                    tonic_discovery::nacos::Registration::new(service, addr).health(health);
                if let Some(id) = id {
                    reg = reg.meta("id", id);
                }
                if let Some(weight) = weight {
                    reg = reg.weight(f64::from(*weight));
                }
                // A Nacos cluster is the instance's zone.
                if let Some(zone) = zone {
                    reg = reg.cluster(zone.clone());
                }
                for (k, v) in meta {
                    reg = reg.meta(k.clone(), v.clone());
                }
                let handle = Self::nacos(url)
                    .await?
                    .register(reg)
                    .await
                    .map_err(|e| e.to_string())?;
                let id = id.map_or_else(|| handle.id().to_owned(), str::to_owned);
                Ok((id, Registered::Nacos(handle)))
            }
        }
    }
}

/// What a server publishes about itself besides its address.
#[derive(Debug, Clone, Default)]
pub(crate) struct Publish {
    pub(crate) id: Option<String>,
    pub(crate) tags: Vec<String>,
    pub(crate) ttl: Option<Duration>,
    pub(crate) weight: Option<u32>,
    pub(crate) zone: Option<String>,
    pub(crate) meta: Vec<(String, String)>,
}

/// `key=value`, for `--meta`.
pub(crate) fn key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("`{s}` is not key=value")),
    }
}

/// Installs the Prometheus exporter, serving the metrics at `http://addr/metrics`, and
/// prints where to scrape.
#[cfg(feature = "metrics")]
pub(crate) fn serve_metrics(addr: SocketAddr) {
    let installed = metrics_exporter_prometheus::PrometheusBuilder::new()
        .with_http_listener(addr)
        .install();
    match installed {
        Ok(()) => println!("metrics: scrape http://{addr}/metrics"),
        Err(e) => fail(&format!("metrics on {addr}: {e}")),
    }
}

#[cfg(not(feature = "metrics"))]
pub(crate) fn serve_metrics(_: SocketAddr) {
    fail("--metrics needs the metrics feature (cargo run --features metrics …)");
}

pub(crate) fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

pub(crate) fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(run_length("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(run_length("250ms").unwrap(), Duration::from_millis(250));
        assert!(run_length("10").is_err());
        assert!(run_length("").is_err());
        assert!(run_length("366d").is_err());
        assert!(period("0s").is_err());
        assert_eq!(period("1.5s").unwrap(), Duration::from_millis(1500));
    }

    #[test]
    fn registries() {
        assert!(matches!("none".parse(), Ok(Registry::None)));
        assert!(matches!(
            "consul://127.0.0.1:8500".parse(),
            Ok(Registry::Consul(url)) if url == "http://127.0.0.1:8500"
        ));
        assert!("zookeeper://x".parse::<Registry>().is_err());
        assert!(Registry::parse_for_discovery("none").is_err());
        assert!(matches!(
            "static://127.0.0.1:1,[::1]:2".parse(),
            Ok(Registry::Static(addrs)) if addrs == ["127.0.0.1:1", "[::1]:2"]
        ));
        for bad in ["static://", "static://127.0.0.1", "static://h:1,"] {
            assert!(bad.parse::<Registry>().is_err(), "{bad}");
        }
        #[cfg(feature = "dns")]
        {
            assert!(
                matches!("dns://localhost:1".parse(), Ok(Registry::Dns(a)) if a == "localhost:1")
            );
            assert!(matches!(
                "dns+srv://_grpc._tcp.x".parse(),
                Ok(Registry::DnsSrv(n)) if n == "_grpc._tcp.x"
            ));
        }
        #[cfg(not(feature = "dns"))]
        assert!("dns://localhost:1".parse::<Registry>().is_err());
    }
}
