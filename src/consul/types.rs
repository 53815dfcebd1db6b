//! Serde structs for Consul's `/v1/health/service/:service` answer, and their mapping
//! to [`Instance`]s.
//!
//! Decoding is as tolerant as Consul's Go decoders: missing fields take their default,
//! `null` lists and maps are empty, an absent `Port` is 0, unknown fields are ignored,
//! and service tagged addresses accept `Address`/`address` keys.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Deserializer};

use crate::error::{Error, Result};
use crate::instance::{Instance, InstanceKey};

/// Which address of an instance to dial.
///
/// The default is the service address, falling back to the node address, as every
/// Consul client does. A tagged address (`lan`, `wan`, `lan_ipv4`, …) is looked up in
/// the service's tagged addresses, then the node's; an instance without it falls back
/// to the default.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum AddressKind {
    /// `Service.Address`, else `Node.Address`.
    #[default]
    Service,
    /// The tagged address with this key, else the default.
    Tagged(String),
}

// === impl AddressKind ===

impl AddressKind {
    /// The `lan` tagged address.
    pub fn lan() -> Self {
        AddressKind::Tagged("lan".to_owned())
    }

    /// The `wan` tagged address.
    pub fn wan() -> Self {
        AddressKind::Tagged("wan".to_owned())
    }

    /// The tagged address named `key` (e.g. `lan_ipv4`, `wan_ipv6`).
    pub fn tagged(key: impl Into<String>) -> Self {
        AddressKind::Tagged(key.into())
    }
}

/// One element of the `/v1/health/service` answer.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ServiceEntry {
    #[serde(rename = "Node", deserialize_with = "nullable")]
    pub(crate) node: Node,
    #[serde(rename = "Service", deserialize_with = "nullable")]
    pub(crate) service: Service,
    #[serde(rename = "Checks", deserialize_with = "nullable")]
    pub(crate) checks: Vec<Check>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Node {
    #[serde(rename = "Node", deserialize_with = "nullable")]
    pub(crate) node: String,
    #[serde(rename = "Address", deserialize_with = "nullable")]
    pub(crate) address: String,
    #[serde(rename = "TaggedAddresses", deserialize_with = "nullable")]
    pub(crate) tagged_addresses: HashMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Service {
    #[serde(rename = "ID", deserialize_with = "nullable")]
    pub(crate) id: String,
    #[serde(rename = "Service", deserialize_with = "nullable")]
    pub(crate) service: String,
    #[serde(rename = "Tags", deserialize_with = "nullable")]
    pub(crate) tags: Vec<String>,
    #[serde(rename = "Address", deserialize_with = "nullable")]
    pub(crate) address: String,
    #[serde(rename = "TaggedAddresses", deserialize_with = "nullable")]
    pub(crate) tagged_addresses: HashMap<String, ServiceAddress>,
    #[serde(rename = "Meta", deserialize_with = "nullable")]
    pub(crate) meta: BTreeMap<String, String>,
    /// Go's `int`; absent (omitempty) means 0. Range-checked when mapped.
    #[serde(rename = "Port", deserialize_with = "nullable")]
    pub(crate) port: i64,
    #[serde(rename = "Weights", deserialize_with = "nullable")]
    pub(crate) weights: Weights,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ServiceAddress {
    #[serde(rename = "Address", alias = "address", deserialize_with = "nullable")]
    pub(crate) address: String,
    #[serde(rename = "Port", alias = "port", deserialize_with = "nullable")]
    pub(crate) port: i64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Weights {
    #[serde(rename = "Passing", deserialize_with = "nullable")]
    pub(crate) passing: i64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Check {
    #[serde(rename = "CheckID", deserialize_with = "nullable")]
    pub(crate) check_id: String,
    #[serde(rename = "Status", deserialize_with = "nullable")]
    pub(crate) status: String,
}

/// `null` decodes as the default, as Go's decoder leaves a nil slice or map.
fn nullable<'de, D, T>(d: D) -> std::result::Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

// === impl ServiceEntry ===

impl ServiceEntry {
    /// True when every check, service or node level, passes (what `?passing` keeps).
    pub(crate) fn is_passing(&self) -> bool {
        self.checks.iter().all(|c| c.status == "passing")
    }

    /// The instance this entry describes, or `None` (with the reason) when its port
    /// is outside `0..=65535` or it has no address at all.
    pub(crate) fn to_instance(&self, kind: &AddressKind) -> std::result::Result<Instance, String> {
        let (host, port) = self.dial_address(kind);
        let port = u16::try_from(port).map_err(|_| format!("port {port} out of range"))?;
        if host.is_empty() {
            return Err("no service or node address".to_owned());
        }
        // Consul accepts services without a port (0); nothing can dial them.
        if port == 0 {
            return Err("no port".to_owned());
        }
        // Consul always sets an ID; without one, entries would share a key.
        if self.service.id.is_empty() {
            return Err("no service ID".to_owned());
        }
        let key = InstanceKey::new(self.node.node.as_str(), self.service.id.as_str());
        let weight = u32::try_from(self.service.weights.passing.max(1)).unwrap_or(u32::MAX);
        Ok(Instance::new(key, host, port)
            .with_tags(self.service.tags.clone())
            .with_meta(self.service.meta.clone())
            .with_weight(weight))
    }

    fn dial_address(&self, kind: &AddressKind) -> (&str, i64) {
        let svc = &self.service;
        if let AddressKind::Tagged(key) = kind {
            if let Some(a) = svc
                .tagged_addresses
                .get(key)
                .filter(|a| !a.address.is_empty())
            {
                let port = if a.port != 0 { a.port } else { svc.port };
                return (&a.address, port);
            }
            if let Some(a) = self
                .node
                .tagged_addresses
                .get(key)
                .filter(|a| !a.is_empty())
            {
                return (a, svc.port);
            }
        }
        if svc.address.is_empty() {
            (&self.node.address, svc.port)
        } else {
            (&svc.address, svc.port)
        }
    }
}

/// Decodes a `/v1/health/service` body into instances.
///
/// Entries that are not passing are dropped when `passing_only` is set (the server
/// already filters with `?passing`; this guards against agents that do not). Entries
/// without a usable address are skipped with a warning rather than failing the
/// whole snapshot.
///
/// # Errors
///
/// A decode error when the body is not a JSON array of entries.
pub(crate) fn decode_health(
    body: &[u8],
    kind: &AddressKind,
    passing_only: bool,
) -> Result<Vec<Instance>> {
    let entries: Vec<ServiceEntry> = serde_json::from_slice::<Option<Vec<ServiceEntry>>>(body)
        .map_err(|e| Error::decode("health service answer", e))?
        .unwrap_or_default();
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries {
        if passing_only && !entry.is_passing() {
            continue;
        }
        match entry.to_instance(kind) {
            Ok(instance) => out.push(instance),
            Err(reason) => tracing::warn!(
                node = %entry.node.node,
                service_id = %entry.service.id,
                %reason,
                "skipping undialable Consul instance"
            ),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
