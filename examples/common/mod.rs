//! Command-line plumbing shared by the examples: clap value parsers for durations
//! (humantime, with the bounds the examples need) and the `--registry` URL, and what
//! the registry does for a server or a client.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use tonic_discovery::Target;
use tonic_discovery::balance::{BalancedChannel, BalancedChannelBuilder};
use tonic_discovery::target::Scheme;

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

/// Where a server registers: a registry target (`consul://HOST:PORT`,
/// `etcd://HOST:PORT[,…]`, `nacos://HOST:PORT[,…][?namespace=NS&group=G]`; see
/// `tonic_discovery::target`), or `none`. Parsed by clap through `FromStr`.
#[derive(Clone)]
pub(crate) enum Registry {
    /// No registry: serve only.
    None,
    /// A registry target; its path, if any, names the service.
    Target(Target),
}

impl FromStr for Registry {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == "none" {
            return Ok(Registry::None);
        }
        target(s).map(Registry::Target)
    }
}

/// A client's `--registry` target URI, parsed by the library.
pub(crate) fn target(s: &str) -> Result<Target, String> {
    Target::parse(s).map_err(|e| e.to_string())
}

/// The service: the target's path or `--service`; both given must agree. `None` when
/// neither names one (fine for static and DNS targets).
pub(crate) fn service(
    target: Option<&Target>,
    flag: Option<&str>,
) -> Result<Option<String>, String> {
    match (target.and_then(Target::service), flag) {
        (Some(a), Some(b)) if a != b => Err(format!(
            "--service {b} disagrees with the target's service `{a}`"
        )),
        (Some(a), _) => Ok(Some(a.to_owned())),
        (None, b) => Ok(b.map(str::to_owned)),
    }
}

/// A client's target with `--tag`s added to a `consul://` target's query and the
/// service from `--service` when the target names none.
pub(crate) fn client_target(
    target: &Target,
    service_flag: Option<&str>,
    tags: &[String],
) -> Result<Target, String> {
    let service = service(Some(target), service_flag)?;
    let mut target = target.clone();
    if !tags.is_empty() {
        if target.scheme() != Scheme::Consul {
            return Err("--tag needs a consul:// target".into());
        }
        let mut uri = target.to_string();
        for tag in tags {
            uri.push(if uri.contains('?') { '&' } else { '?' });
            uri.push_str("tag=");
            uri.push_str(&percent_encode(tag));
        }
        target = self::target(&uri)?;
    }
    if let Some(service) = service {
        target = target.with_service(service);
    } else if target.needs_service() {
        return Err(format!(
            "target `{target}` names no service: add /SERVICE to it or pass --service"
        ));
    }
    Ok(target)
}

/// Percent-encodes everything but unreserved characters, for a query value.
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A balanced channel over a client's target (see [`client_target`]).
pub(crate) async fn channel(
    target: &Target,
    builder: BalancedChannelBuilder,
) -> Result<BalancedChannel, String> {
    let discovery = target.discovery().await.map_err(|e| e.to_string())?;
    builder.build(discovery).map_err(|e| e.to_string())
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
            region,
            meta,
        } = publish;
        let id = id.as_deref();
        let target = match self {
            Registry::None => {
                let id = id.map_or_else(|| format!("{service}-{}", addr.port()), str::to_owned);
                return Ok((id, Registered::None));
            }
            Registry::Target(target) => target,
        };
        match target.scheme() {
            Scheme::Static => Err(
                "a static list cannot be registered in: serve with --registry none and give \
                 the address to the clients' static:///"
                    .into(),
            ),
            Scheme::Dns | Scheme::DnsSrv => Err(
                "DNS cannot be registered in from here: serve with --registry none and add \
                 the address to the DNS records the clients resolve"
                    .into(),
            ),
            Scheme::Consul => {
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
                    let region = region.as_deref().unwrap_or_default();
                    reg = reg.locality(tonic_discovery::Locality::new(region, zone));
                }
                for (k, v) in meta {
                    reg = reg.meta(k.clone(), v.clone());
                }
                let handle = target
                    .consul_client()
                    .map_err(|e| e.to_string())?
                    .register(reg)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok((handle.id().to_owned(), Registered::Consul(handle)))
            }
            #[cfg(feature = "etcd")]
            Scheme::Etcd => {
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
                if let Some(region) = region {
                    reg = reg.meta("region", region.clone());
                }
                for (k, v) in meta {
                    reg = reg.meta(k.clone(), v.clone());
                }
                let handle = target
                    .etcd_client()
                    .await
                    .map_err(|e| e.to_string())?
                    .register(reg)
                    .await
                    .map_err(|e| e.to_string())?;
                let id = id.map_or_else(|| handle.key().to_owned(), str::to_owned);
                Ok((id, Registered::Etcd(Box::new(handle))))
            }
            #[cfg(feature = "nacos")]
            Scheme::Nacos => {
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
                if let Some(region) = region {
                    reg = reg.meta("region", region.clone());
                }
                for (k, v) in meta {
                    reg = reg.meta(k.clone(), v.clone());
                }
                let handle = target
                    .nacos_client()
                    .await
                    .map_err(|e| e.to_string())?
                    .register(reg)
                    .await
                    .map_err(|e| e.to_string())?;
                let id = id.map_or_else(|| handle.id().to_owned(), str::to_owned);
                Ok((id, Registered::Nacos(handle)))
            }
            // A scheme this build lacks never parses; a scheme added later lands here.
            _ => Err(format!("cannot register in `{target}`")),
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
    pub(crate) region: Option<String>,
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
            Ok(Registry::Target(_))
        ));
        assert!("zookeeper://x".parse::<Registry>().is_err());
        let t = target("static:///127.0.0.1:1").unwrap();
        assert_eq!(client_target(&t, None, &[]).unwrap().service(), None);
        assert!(client_target(&t, None, &["a".into()]).is_err());
        let c = target("consul://127.0.0.1:8500").unwrap();
        assert!(client_target(&c, None, &[]).is_err(), "no service");
        let c = client_target(&c, Some("echo"), &["a b&c".into()]).unwrap();
        assert_eq!(c.to_string(), "consul://127.0.0.1:8500?tag=a%20b%26c");
        assert_eq!(c.service(), Some("echo"));
        let named = target("consul://127.0.0.1:8500/echo").unwrap();
        assert!(client_target(&named, Some("other"), &[]).is_err());
    }
}
