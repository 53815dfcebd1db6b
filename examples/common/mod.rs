//! Command-line plumbing shared by the examples: argument parsing, durations, and the
//! `--registry` URL.
#![allow(dead_code)]

use std::str::FromStr;
use std::time::Duration;

/// The arguments after the program name, consumed option by option.
pub struct Args {
    rest: Vec<String>,
}

impl Args {
    pub fn from_env() -> Self {
        Args {
            rest: std::env::args().skip(1).collect(),
        }
    }

    /// Removes `--name VALUE` (or `--name=VALUE`) and returns the value, if present.
    pub fn optional(&mut self, name: &str) -> Result<Option<String>, String> {
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

    pub fn required(&mut self, name: &str) -> Result<String, String> {
        self.optional(name)?
            .ok_or_else(|| format!("{name} is required"))
    }

    /// Every value of a repeatable option.
    pub fn all(&mut self, name: &str) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(Some(v)) = self.optional(name) {
            out.push(v);
        }
        out
    }

    pub fn parsed<T: FromStr>(&mut self, name: &str, default: T) -> Result<T, String> {
        match self.optional(name)? {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| format!("{name}: `{v}` is not a valid value")),
        }
    }

    pub fn duration(&mut self, name: &str, default: Duration) -> Result<Duration, String> {
        match self.optional(name)? {
            None => Ok(default),
            Some(v) => parse_duration(&v).map_err(|e| format!("{name}: {e}")),
        }
    }

    /// Removes a flag without value; true if it was given.
    pub fn flag(&mut self, name: &str) -> bool {
        match self.rest.iter().position(|a| a == name) {
            Some(i) => {
                self.rest.remove(i);
                true
            }
            None => false,
        }
    }

    /// Fails on anything left over.
    pub fn finish(self) -> Result<(), String> {
        match self.rest.first() {
            None => Ok(()),
            Some(a) => Err(format!("unexpected argument `{a}`")),
        }
    }
}

/// `1500ms`, `2s`, `1.5s`, `1m`, `1m30s`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
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

/// Where instances are registered and discovered.
pub enum Registry {
    /// No registry: serve only.
    None,
    /// A Consul agent's HTTP address.
    Consul(String),
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
        if let Some(addr) = s.strip_prefix("consuls://") {
            return Ok(Registry::Consul(format!("https://{addr}")));
        }
        Err(format!(
            "--registry `{s}`: expected consul://HOST:PORT, consuls://HOST:PORT or none"
        ))
    }
}

impl Registry {
    /// A Consul client for this registry, with the token and TLS settings of the
    /// `CONSUL_*` environment variables.
    pub fn consul_client(&self) -> Result<tonic_discovery::consul::Client, String> {
        match self {
            Registry::Consul(addr) => tonic_discovery::consul::Client::builder(addr.clone())
                .build()
                .map_err(|e| e.to_string()),
            Registry::None => Err("no registry given".into()),
        }
    }

    pub fn discovery(
        &self,
        service: &str,
        tags: &[String],
    ) -> Result<tonic_discovery::consul::Discovery, String> {
        let client = self.consul_client()?;
        let mut builder = client.discovery(service);
        for tag in tags {
            builder = builder.tag(tag.clone());
        }
        Ok(builder.build())
    }
}

pub fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

pub fn usage_error(message: &str, usage: &str) -> ! {
    eprintln!("error: {message}\nusage: {usage}");
    std::process::exit(2)
}

pub fn fail(message: &str) -> ! {
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
