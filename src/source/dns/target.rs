//! What a DNS watch resolves: `host:port` (A/AAAA) or an SRV name.

use std::fmt;
use std::net::IpAddr;

use hickory_resolver::proto::rr::Name;

use crate::error::{Error, Result};

/// The name a DNS watch follows; also the key that shares watches.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(super) enum Target {
    /// The A and AAAA records of `host` (a DNS name or an IP literal), each address
    /// at `port`.
    Host { host: String, port: u16 },
    /// The SRV records of a name.
    Srv(String),
}

// === impl Target ===

impl Target {
    /// Parses `host:port` (`[v6]:port` for an IPv6 literal).
    pub(super) fn host(addr: &str) -> Result<Self> {
        let bad = |why: &str| Error::config(format!("`{addr}` is not host:port: {why}"));
        let (host, port) = addr.rsplit_once(':').ok_or_else(|| bad("no port"))?;
        let port: u16 = port.parse().map_err(|_| bad("bad port"))?;
        if port == 0 {
            return Err(bad("port 0"));
        }
        let bracketed = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'));
        let host = match bracketed {
            Some(v6) if v6.parse::<std::net::Ipv6Addr>().is_ok() => v6,
            Some(_) => return Err(bad("not an IPv6 address in brackets")),
            None if host.contains(':') => return Err(bad("an IPv6 address needs brackets")),
            None if host.is_empty() => return Err(bad("no host")),
            None if host.parse::<IpAddr>().is_ok() => host,
            None => {
                Name::from_utf8(host).map_err(|e| bad("bad host name").with_source(e))?;
                host
            }
        };
        Ok(Target::Host {
            host: host.to_owned(),
            port,
        })
    }

    /// Parses an SRV name (`_grpc._tcp.example.com`).
    pub(super) fn srv(name: &str) -> Result<Self> {
        if name.is_empty() || name == "." {
            return Err(Error::config("an SRV name must not be empty"));
        }
        Name::from_utf8(name)
            .map_err(|e| Error::config(format!("`{name}` is not a DNS name")).with_source(e))?;
        Ok(Target::Srv(name.to_owned()))
    }
}

/// The owner of `name`'s service config records: `_grpc_config.<name>` (gRFC A2).
pub(super) fn grpc_config_owner(name: &str) -> Result<String> {
    if name.is_empty() || name == "." {
        return Err(Error::config("a service name must not be empty or `.`"));
    }
    if name.contains(':') {
        return Err(Error::config(format!(
            "`{name}` is not a DNS name (the service config is the host's: leave out the port)"
        )));
    }
    let owner = format!("_grpc_config.{name}");
    Name::from_utf8(&owner)
        .map_err(|e| Error::config(format!("`{name}` is not a DNS name")).with_source(e))?;
    Ok(owner)
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Host { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            Target::Host { host, port } => write!(f, "{host}:{port}"),
            Target::Srv(name) => f.write_str(name),
        }
    }
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Host { .. } => write!(f, "A/AAAA {self}"),
            Target::Srv(_) => write!(f, "SRV {self}"),
        }
    }
}
