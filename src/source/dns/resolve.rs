//! One resolution of a [`Target`]: the instances it names and how long they hold.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures_util::future::join_all;
use hickory_resolver::TokioResolver;
use hickory_resolver::net::NetError;
use hickory_resolver::proto::rr::rdata::SRV;
use hickory_resolver::proto::rr::{Name, RData, Record};

use super::target::Target;
use crate::error::{Error, Result};
use crate::instance::{Instance, InstanceKey};

/// What one resolution found.
#[derive(Debug)]
pub(super) struct Resolved {
    pub(super) instances: Vec<Instance>,
    /// The smallest TTL of the records the answer was built from.
    pub(super) ttl: Duration,
}

/// Resolves `target` once.
///
/// # Errors
///
/// `unavailable` for NXDOMAIN, no records or no address at all; `timeout` and
/// `transport` for a resolver that did not answer.
pub(super) async fn resolve(resolver: &TokioResolver, target: &Target) -> Result<Resolved> {
    match target {
        Target::Host { host, port } => resolve_host(resolver, host, *port).await,
        Target::Srv(name) => resolve_srv(resolver, name).await,
    }
}

async fn resolve_host(resolver: &TokioResolver, host: &str, port: u16) -> Result<Resolved> {
    let what = || format!("A/AAAA {host}");
    let lookup = resolver
        .lookup_ip(host)
        .await
        .map_err(|e| failure(what(), e))?;
    let instances: Vec<Instance> = lookup
        .iter()
        .map(|ip| instance(SocketAddr::new(ip, port)))
        .collect();
    if instances.is_empty() {
        return Err(Error::unavailable(format!("{}: no address", what())));
    }
    let ttl = min_ttl(lookup.as_lookup().answers());
    Ok(Resolved { instances, ttl })
}

async fn resolve_srv(resolver: &TokioResolver, name: &str) -> Result<Resolved> {
    let what = format!("SRV {name}");
    let lookup = resolver
        .srv_lookup(name)
        .await
        .map_err(|e| failure(what.clone(), e))?;
    let mut ttl = min_ttl(lookup.answers());
    let mut records: Vec<&SRV> = lookup
        .answers()
        .iter()
        .filter_map(|r| match &r.data {
            RData::SRV(srv) => Some(srv),
            _ => None,
        })
        .collect();
    if records.is_empty() {
        return Err(Error::unavailable(format!("{what}: no records")));
    }
    // RFC 2782: a target of "." means the service is decidedly not available.
    records.retain(|srv| !srv.target.is_root());
    if records.is_empty() {
        return Ok(Resolved {
            instances: Vec::new(),
            ttl,
        });
    }
    // Of two records naming the same address, the first one here is kept.
    records.sort_by_key(|srv| (srv.priority, Reverse(srv.weight)));
    let (addrs, addrs_ttl) = resolve_targets(resolver, &records).await?;
    ttl = ttl.min(addrs_ttl);
    let instances = srv_instances(&records, &addrs);
    if instances.is_empty() {
        return Err(Error::unavailable(format!(
            "{what}: no target has an address"
        )));
    }
    Ok(Resolved { instances, ttl })
}

/// The addresses of every distinct target of `records`, and their smallest TTL. A
/// target without address records is left out; any other failure fails the whole.
async fn resolve_targets(
    resolver: &TokioResolver,
    records: &[&SRV],
) -> Result<(HashMap<Name, Vec<IpAddr>>, Duration)> {
    let mut seen = HashSet::new();
    let targets: Vec<&Name> = records
        .iter()
        .map(|srv| &srv.target)
        .filter(|t| seen.insert(*t))
        .collect();
    let lookups = join_all(targets.iter().map(|t| resolver.lookup_ip((*t).clone()))).await;
    let mut addrs = HashMap::new();
    let mut ttl = Duration::MAX;
    for (target, lookup) in targets.into_iter().zip(lookups) {
        match lookup {
            Ok(lookup) => {
                ttl = ttl.min(min_ttl(lookup.as_lookup().answers()));
                addrs.insert(target.clone(), lookup.iter().collect());
            }
            Err(e) if e.is_no_records_found() => {
                tracing::debug!(%target, error = %e, "SRV target has no address; skipped");
            }
            Err(e) => return Err(failure(format!("SRV target {target}"), e)),
        }
    }
    Ok((addrs, ttl))
}

/// One instance per address of each record's target, at the record's port; the first
/// record naming an address wins.
fn srv_instances(records: &[&SRV], addrs: &HashMap<Name, Vec<IpAddr>>) -> Vec<Instance> {
    let mut seen = HashSet::new();
    let mut instances = Vec::new();
    for srv in records {
        let ips = addrs
            .get(&srv.target)
            .map(Vec::as_slice)
            .unwrap_or_default();
        for &ip in ips {
            let addr = SocketAddr::new(ip, srv.port);
            if !seen.insert(addr) {
                continue;
            }
            let meta = BTreeMap::from([
                ("srv.target".to_owned(), srv.target.to_string()),
                ("srv.priority".to_owned(), srv.priority.to_string()),
                ("srv.weight".to_owned(), srv.weight.to_string()),
            ]);
            let weight = u32::from(srv.weight.max(1));
            instances.push(instance(addr).with_meta(meta).with_weight(weight));
        }
    }
    instances
}

/// The instance at `addr`, keyed by it.
fn instance(addr: SocketAddr) -> Instance {
    Instance::new(
        InstanceKey::new("", addr.to_string()),
        addr.ip().to_string(),
        addr.port(),
    )
}

/// The smallest TTL of `records`; none means the largest possible.
pub(super) fn min_ttl(records: &[Record]) -> Duration {
    records
        .iter()
        .map(|r| Duration::from_secs(u64::from(r.ttl)))
        .min()
        .unwrap_or(Duration::MAX)
}

/// The crate's error for a failed lookup of `what`.
pub(super) fn failure(what: String, e: NetError) -> Error {
    if e.is_no_records_found() {
        let why = if e.is_nx_domain() {
            "NXDOMAIN"
        } else {
            "no records"
        };
        Error::unavailable(format!("{what}: {why}")).with_source(e)
    } else if matches!(e, NetError::Timeout) {
        Error::timeout(format!("resolving {what}")).with_source(e)
    } else {
        Error::transport(format!("resolving {what}"), e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn srv(priority: u16, weight: u16, port: u16, target: &str) -> SRV {
        SRV::new(priority, weight, port, Name::from_utf8(target).unwrap())
    }

    #[test]
    fn srv_records_become_instances_keyed_by_address() {
        let (a, b) = (srv(0, 0, 7001, "a.test."), srv(1, 20, 7002, "b.test."));
        let dup = srv(5, 90, 7001, "c.test.");
        let addrs = HashMap::from([
            (
                a.target.clone(),
                vec!["10.0.0.1".parse().unwrap(), "::1".parse().unwrap()],
            ),
            (b.target.clone(), vec!["10.0.0.2".parse().unwrap()]),
            (dup.target.clone(), vec!["10.0.0.1".parse().unwrap()]),
        ]);
        let instances = srv_instances(&[&a, &b, &dup], &addrs);
        let got: Vec<_> = instances
            .iter()
            .map(|i| {
                (
                    i.id().to_owned(),
                    i.weight(),
                    i.meta()["srv.priority"].clone(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("10.0.0.1:7001".to_owned(), 1, "0".to_owned()),
                ("[::1]:7001".to_owned(), 1, "0".to_owned()),
                ("10.0.0.2:7002".to_owned(), 20, "1".to_owned()),
            ]
        );
        assert_eq!(instances[1].host(), "::1");
        assert_eq!(instances[2].meta()["srv.target"], "b.test.");
        assert_eq!(instances[2].meta()["srv.weight"], "20");
    }

    #[test]
    fn errors_say_what_failed() {
        let e = failure("A/AAAA x".into(), NetError::Timeout);
        assert!(e.is_timeout(), "{e}");
        let e = failure("A/AAAA x".into(), NetError::NoConnections);
        assert!(
            e.is_transport() && e.to_string().contains("A/AAAA x"),
            "{e}"
        );
    }
}
