//! What a registry reports about one serving instance.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// The identity of an instance within one discovered service.
///
/// Consul identifies an instance by the node it is registered on and its service ID
/// (two agents may register the same ID); etcd by its key. Two snapshots that list
/// the same key describe the same instance, possibly with a new address.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstanceKey {
    node: Arc<str>,
    id: Arc<str>,
}

// === impl InstanceKey ===

impl InstanceKey {
    /// A key from a node name (empty where the registry has no nodes) and an instance id.
    pub fn new(node: impl Into<Arc<str>>, id: impl Into<Arc<str>>) -> Self {
        InstanceKey {
            node: node.into(),
            id: id.into(),
        }
    }

    /// The node the instance is registered on; empty for registries without nodes.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The instance id (Consul's service ID, etcd's key).
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl fmt::Debug for InstanceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for InstanceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.node.is_empty() {
            f.write_str(&self.id)
        } else {
            write!(f, "{}/{}", self.node, self.id)
        }
    }
}

/// One instance of a service: where to reach it and what the registry says about it.
///
/// Equality covers every field, so a changed address, port, tag or metadata entry
/// makes a new snapshot differ and the instance is inserted again.
#[derive(Clone, PartialEq, Eq)]
pub struct Instance {
    key: InstanceKey,
    host: String,
    port: u16,
    tags: Vec<String>,
    meta: BTreeMap<String, String>,
    weight: u32,
    locality: Locality,
}

/// Where an instance runs: its region and zone, when the registry says (Consul's
/// `Service.Locality`, a metadata entry, a Nacos cluster). Zone-aware routing
/// ([`TrafficPolicy::locality`](crate::balance::TrafficPolicy::locality))
/// prefers instances of the client's own zone.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Locality {
    region: Option<Arc<str>>,
    zone: Option<Arc<str>>,
}

// === impl Locality ===

impl Locality {
    /// A locality of a region and a zone; empty strings count as unknown.
    pub fn new(region: impl AsRef<str>, zone: impl AsRef<str>) -> Self {
        let known = |s: &str| (!s.is_empty()).then(|| Arc::from(s));
        Locality {
            region: known(region.as_ref()),
            zone: known(zone.as_ref()),
        }
    }

    /// The region, if known.
    pub fn region(&self) -> Option<&str> {
        self.region.as_deref()
    }

    /// The zone, if known.
    pub fn zone(&self) -> Option<&str> {
        self.zone.as_deref()
    }

    /// Whether neither the region nor the zone is known.
    pub fn is_unknown(&self) -> bool {
        self.region.is_none() && self.zone.is_none()
    }
}

// === impl Instance ===

impl Instance {
    /// An instance reachable at `host:port`. `host` is an IP address (IPv6 without
    /// brackets) or a DNS name.
    pub fn new(key: InstanceKey, host: impl Into<String>, port: u16) -> Self {
        let mut host = host.into();
        if host.starts_with('[') && host.ends_with(']') {
            host = host[1..host.len() - 1].to_owned();
        }
        Instance {
            key,
            host,
            port,
            tags: Vec::new(),
            meta: BTreeMap::new(),
            weight: 1,
            locality: Locality::default(),
        }
    }

    /// Sets the tags.
    #[must_use]
    pub fn with_tags(mut self, tags: Vec<String>) -> Self {
        self.tags = tags;
        self
    }

    /// Sets the metadata.
    #[must_use]
    pub fn with_meta(mut self, meta: BTreeMap<String, String>) -> Self {
        self.meta = meta;
        self
    }

    /// Sets the weight the registry gives this instance (default 1).
    #[must_use]
    pub fn with_weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }

    /// Sets where the instance runs (default: unknown).
    #[must_use]
    pub fn with_locality(mut self, locality: Locality) -> Self {
        self.locality = locality;
        self
    }

    /// Where the instance runs, as the registry reported it. A balancer that routes
    /// by zone also reads the zone from metadata when this is unknown (see
    /// [`TrafficPolicy::zone_meta_keys`](crate::balance::TrafficPolicy::zone_meta_keys)).
    pub fn locality(&self) -> &Locality {
        &self.locality
    }

    /// The instance's identity.
    pub fn key(&self) -> &InstanceKey {
        &self.key
    }

    /// The instance id.
    pub fn id(&self) -> &str {
        self.key.id()
    }

    /// The host: an IP address (IPv6 unbracketed) or a DNS name.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The tags.
    pub fn tags(&self) -> &[String] {
        &self.tags
    }

    /// The metadata.
    pub fn meta(&self) -> &BTreeMap<String, String> {
        &self.meta
    }

    /// The weight the registry gives this instance.
    pub fn weight(&self) -> u32 {
        self.weight
    }

    /// `host:port`, with an IPv6 host in brackets, as a URI authority wants it.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The socket address, when the host is an IP address.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        let ip: IpAddr = self.host.parse().ok()?;
        Some(SocketAddr::new(ip, self.port))
    }
}

impl fmt::Debug for Instance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Instance")
            .field("key", &self.key)
            .field("addr", &self.authority())
            .field("tags", &self.tags)
            .field("meta", &self.meta)
            .field("weight", &self.weight)
            .field("locality", &self.locality)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_hosts_are_bracketed_in_the_authority() {
        let i = Instance::new(InstanceKey::new("n1", "a"), "::1", 50051);
        assert_eq!(i.authority(), "[::1]:50051");
        assert_eq!(i.socket_addr(), Some("[::1]:50051".parse().unwrap()));
        let i = Instance::new(InstanceKey::new("n1", "a"), "[::1]", 50051);
        assert_eq!(i.host(), "::1");
    }

    #[test]
    fn hostnames_have_no_socket_addr() {
        let i = Instance::new(InstanceKey::new("", "a"), "echo.internal", 80);
        assert_eq!(i.authority(), "echo.internal:80");
        assert_eq!(i.socket_addr(), None);
    }

    #[test]
    fn key_displays_node_and_id() {
        assert_eq!(InstanceKey::new("n1", "a").to_string(), "n1/a");
        assert_eq!(InstanceKey::new("", "a").to_string(), "a");
    }
}
