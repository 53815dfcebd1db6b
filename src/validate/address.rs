//! The advertised address: what other hosts dial, the same rule for every registry.
//!
//! - The port is the bound one and must not be 0 (bind first, then register the
//!   listener's `local_addr()`).
//! - An explicit `advertise` address is used as given; a wildcard (`0.0.0.0`, `[::]`)
//!   is refused there, since it names no host.
//! - Otherwise the bound address is used, unless it is a wildcard: a wildcard is never
//!   advertised, the address of this host's interface that routes towards the registry
//!   is advertised instead (found by connecting a UDP socket, which sends no packet).
//!   When no interface routes there, registering fails and asks for `advertise`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::error::{Error, Result};

/// Checks what can be checked before the network: the bound port and an explicit
/// advertise address.
///
/// # Errors
///
/// A configuration error naming the address: port 0, or a wildcard `advertise`.
pub(crate) fn check(bind: SocketAddr, advertise: Option<IpAddr>) -> Result<()> {
    if bind.port() == 0 {
        return Err(Error::config(format!(
            "cannot register port 0 (bind address {bind}); bind the listener first and \
             register its local_addr()"
        )));
    }
    if let Some(ip) = advertise.filter(IpAddr::is_unspecified) {
        return Err(Error::config(format!(
            "cannot advertise the wildcard address {ip}; give the address clients should use"
        )));
    }
    Ok(())
}

/// The address to advertise: `advertise`, else the bound IP, else (a wildcard bind) the
/// IP of the interface that routes towards `registry`, a URL or `host:port` (its port,
/// else `default_port`). The port is always the bound one.
///
/// # Errors
///
/// A configuration error when `registry` has no host or does not resolve, or no
/// interface routes towards it.
pub(crate) async fn advertised(
    bind: SocketAddr,
    advertise: Option<IpAddr>,
    registry: &str,
    default_port: u16,
) -> Result<SocketAddr> {
    let ip = match advertise {
        Some(ip) => ip,
        None if !bind.ip().is_unspecified() => bind.ip(),
        None => ip_towards(registry, default_port).await?,
    };
    Ok(SocketAddr::new(ip, bind.port()))
}

/// The local address of the interface that routes towards `registry`: a UDP socket
/// `connect`ed there (no packet is sent) reports it as its local address.
async fn ip_towards(registry: &str, default_port: u16) -> Result<IpAddr> {
    let (host, port) = host_port(registry, default_port)
        .ok_or_else(|| Error::config(format!("registry address `{registry}` has no host")))?;
    let target = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| {
            Error::config(format!("cannot resolve the registry host `{host}`")).with_source(e)
        })?
        .next()
        .ok_or_else(|| Error::config(format!("the registry host `{host}` has no address")))?;
    let local: SocketAddr = if target.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let fail =
        |e| Error::config(format!("cannot find the interface towards {target}")).with_source(e);
    let socket = tokio::net::UdpSocket::bind(local).await.map_err(fail)?;
    socket.connect(target).await.map_err(fail)?;
    let ip = socket.local_addr().map_err(fail)?.ip();
    if ip.is_unspecified() {
        return Err(Error::config(format!(
            "no interface routes towards the registry at {target}; set an advertise address"
        )));
    }
    Ok(ip)
}

/// The host (without IPv6 brackets) and port of a URL (`http://host:port/path`) or a
/// `host:port`; `default_port` when it names none.
fn host_port(registry: &str, default_port: u16) -> Option<(&str, u16)> {
    let rest = registry
        .split_once("://")
        .map_or(registry, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && !port.contains(']') => (host, port.parse().ok()?),
        _ => (authority, default_port),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (!host.is_empty()).then_some((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_hosts_and_ports() {
        let table = [
            ("http://127.0.0.1:8500", Some(("127.0.0.1", 8500))),
            ("https://consul.example/", Some(("consul.example", 1))),
            ("http://[::1]:2379", Some(("::1", 2379))),
            ("10.0.0.5:8848", Some(("10.0.0.5", 8848))),
            ("nacos", Some(("nacos", 1))),
            ("http://user:pw@host:9", Some(("host", 9))),
            ("http://", None),
            ("", None),
        ];
        for (registry, want) in table {
            assert_eq!(host_port(registry, 1), want, "{registry}");
        }
    }

    #[test]
    fn ports_and_wildcard_advertise_addresses() {
        let at = |s: &str| s.parse::<SocketAddr>().unwrap();
        let table: [(SocketAddr, Option<IpAddr>, Option<&str>); 5] = [
            (at("10.0.0.1:7"), None, None),
            (at("0.0.0.0:7"), Some("10.0.0.2".parse().unwrap()), None),
            (
                at("10.0.0.1:0"),
                None,
                Some("port 0 (bind address 10.0.0.1:0)"),
            ),
            (
                at("10.0.0.1:7"),
                Some(Ipv4Addr::UNSPECIFIED.into()),
                Some("wildcard address 0.0.0.0"),
            ),
            (
                at("[::]:7"),
                Some(Ipv6Addr::UNSPECIFIED.into()),
                Some("wildcard address ::"),
            ),
        ];
        for (bind, advertise, want) in table {
            match (check(bind, advertise), want) {
                (Ok(()), None) => {}
                (Err(e), Some(want)) => {
                    assert!(e.is_config() && e.to_string().contains(want), "{e}")
                }
                (got, want) => panic!("{bind} {advertise:?}: {got:?}, want {want:?}"),
            }
        }
    }

    #[tokio::test]
    async fn a_wildcard_bind_advertises_the_route_towards_the_registry() {
        let at = |s: &str| s.parse::<SocketAddr>().unwrap();
        for registry in ["http://127.0.0.1:8500", "127.0.0.1:8848", "localhost"] {
            let got = advertised(at("0.0.0.0:7"), None, registry, 1)
                .await
                .unwrap();
            assert!(
                got.ip().is_loopback() && got.port() == 7,
                "{registry}: {got}"
            );
        }
        let given = advertised(at("[::]:7"), Some([10, 1, 2, 3].into()), "x", 1).await;
        assert_eq!(given.unwrap(), at("10.1.2.3:7"));
        let bound = advertised(at("10.0.0.1:7"), None, "x", 1).await;
        assert_eq!(bound.unwrap(), at("10.0.0.1:7"));
        let e = advertised(at("0.0.0.0:7"), None, "http://", 1).await;
        assert!(e.unwrap_err().to_string().contains("`http://` has no host"));
    }
}
