//! Command-line plumbing shared by the examples: argument parsing, durations, and the
//! `--registry` URL.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use tonic_discovery::balance::BalancedChannel;

/// The arguments after the program name, consumed option by option.
pub(crate) struct Args {
    rest: Vec<String>,
}

impl Args {
    pub(crate) fn from_env() -> Self {
        Args {
            rest: std::env::args().skip(1).collect(),
        }
    }

    /// Removes `--name VALUE` (or `--name=VALUE`) and returns the value, if present.
    pub(crate) fn optional(&mut self, name: &str) -> Result<Option<String>, String> {
        let prefix = format!("{name}=");
        let Some(i) = self
            .rest
            .iter()
            .position(|a| a == name || a.starts_with(&prefix))
        else {
            return Ok(None);
        };
        let arg = self.rest.remove(i);
        if let Some(value) = arg.strip_prefix(&prefix) {
            return Ok(Some(value.to_owned()));
        }
        if i < self.rest.len() && !self.rest[i].starts_with("--") {
            Ok(Some(self.rest.remove(i)))
        } else {
            Err(format!("{name} needs a value"))
        }
    }

    pub(crate) fn required(&mut self, name: &str) -> Result<String, String> {
        self.optional(name)?
            .ok_or_else(|| format!("{name} is required"))
    }

    /// Every value of a repeatable option.
    pub(crate) fn all(&mut self, name: &str) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(Some(v)) = self.optional(name) {
            out.push(v);
        }
        out
    }

    pub(crate) fn parsed<T: FromStr>(&mut self, name: &str, default: T) -> Result<T, String> {
        match self.optional(name)? {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| format!("{name}: `{v}` is not a valid value")),
        }
    }

    pub(crate) fn duration(&mut self, name: &str, default: Duration) -> Result<Duration, String> {
        match self.optional(name)? {
            None => Ok(default),
            Some(v) => parse_duration(&v).map_err(|e| format!("{name}: {e}")),
        }
    }

    /// Removes a flag without value; true if it was given.
    pub(crate) fn flag(&mut self, name: &str) -> bool {
        match self.rest.iter().position(|a| a == name) {
            Some(i) => {
                self.rest.remove(i);
                true
            }
            None => false,
        }
    }

    /// Fails on anything left over.
    pub(crate) fn finish(self) -> Result<(), String> {
        match self.rest.first() {
            None => Ok(()),
            Some(a) => Err(format!("unexpected argument `{a}`")),
        }
    }
}

/// `1500ms`, `2s`, `1.5s`, `1m`, `1m30s`.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("`{s}` is not a duration (examples: 500ms, 2s, 1m30s)");
    let mut total = Duration::ZERO;
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let value: f64 = rest[..num_end].parse().map_err(|_| bad())?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_end] {
            "us" | "µs" => 0.000_001,
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        rest = &rest[unit_end..];
        total += Duration::try_from_secs_f64(value * unit).map_err(|_| bad())?;
    }
    Ok(total)
}

/// Where instances are registered and discovered: `consul://HOST:PORT`,
/// `etcd://HOST:PORT[,HOST:PORT…]`, `nacos://HOST:PORT[,…][?namespace=NS&group=G]`, or
/// `none`.
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
            return Err(
                "--registry etcd://… needs the etcd feature: cargo run --features etcd …".into(),
            );
        }
        if s.starts_with("nacos://") {
            #[cfg(feature = "nacos")]
            return Ok(Registry::Nacos(s.to_owned()));
            #[cfg(not(feature = "nacos"))]
            return Err(
                "--registry nacos://… needs the nacos feature: cargo run --features nacos …".into(),
            );
        }
        Err(format!(
            "--registry `{s}`: expected consul://HOST:PORT, etcd://HOST:PORT[,HOST:PORT], \
             nacos://HOST:PORT[?namespace=NS&group=G] or none"
        ))
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
    /// (tags are a Consul notion; the other registries refuse them).
    pub(crate) async fn channel(
        &self,
        service: &str,
        tags: &[String],
    ) -> Result<BalancedChannel, String> {
        let builder = BalancedChannel::builder(service);
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
                if !tags.is_empty() {
                    return Err("--tag needs a Consul registry".into());
                }
                let client = Self::etcd(endpoints).await?;
                builder
                    .build(client.discovery(service).build())
                    .map_err(|e| e.to_string())
            }
            #[cfg(feature = "nacos")]
            Registry::Nacos(url) => {
                if !tags.is_empty() {
                    return Err("--tag needs a Consul registry".into());
                }
                let client = Self::nacos(url).await?;
                builder
                    .build(client.discovery(service).build())
                    .map_err(|e| e.to_string())
            }
        }
    }

    /// Registers `service` at `addr`; with Consul the TTL check follows `health`.
    pub(crate) async fn register(
        &self,
        service: &str,
        addr: SocketAddr,
        id: Option<&str>,
        tags: &[String],
        ttl: Option<Duration>,
        health: tonic_discovery::consul::HealthSource,
    ) -> Result<(String, Registered), String> {
        match self {
            Registry::None => {
                let id = id.map_or_else(|| format!("{service}-{}", addr.port()), str::to_owned);
                Ok((id, Registered::None))
            }
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
                    reg = reg.ttl(ttl);
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
                let mut reg = tonic_discovery::etcd::Registration::new(service, addr);
                if let Some(id) = id {
                    reg = reg.id(id);
                }
                if let Some(ttl) = ttl {
                    reg = reg.ttl(ttl);
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
                let mut reg = tonic_discovery::nacos::Registration::new(service, addr);
                if let Some(id) = id {
                    reg = reg.meta("id", id);
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

pub(crate) fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

pub(crate) fn usage_error(message: &str, usage: &str) -> ! {
    eprintln!("error: {message}\nusage: {usage}");
    std::process::exit(2)
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
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("").is_err());
    }
}
