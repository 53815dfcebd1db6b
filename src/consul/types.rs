//! Serde structs for Consul's `/v1/health/service/:service` answer, and their mapping
//! to [`Instance`]s.
//!
//! Decoding is as tolerant as Consul's Go decoders: missing fields take their default,
//! `null` lists and maps are empty, an absent `Port` is 0, unknown fields are ignored,
//! and service tagged addresses accept `Address`/`address` keys.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use crate::error::{Error, Result};
use crate::instance::{Instance, InstanceKey, Locality};

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

/// One element of the `/v1/health/service` answer, borrowing from the body.
///
/// Only what discovery reads is decoded: strings are borrowed where the JSON has no
/// escapes, tagged addresses stay raw until a tagged [`AddressKind`] asks for them,
/// and the checks fold into one "all passing" flag. Everything else is skipped.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ServiceEntry<'a> {
    #[serde(rename = "Node", borrow, deserialize_with = "nullable")]
    pub(crate) node: Node<'a>,
    #[serde(rename = "Service", borrow, deserialize_with = "nullable")]
    pub(crate) service: Service<'a>,
    #[serde(rename = "Checks")]
    pub(crate) checks: AllPassing,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Node<'a> {
    #[serde(rename = "Node", borrow, deserialize_with = "cow_str")]
    pub(crate) node: Cow<'a, str>,
    #[serde(rename = "Address", borrow, deserialize_with = "cow_str")]
    pub(crate) address: Cow<'a, str>,
    #[serde(rename = "TaggedAddresses", borrow)]
    pub(crate) tagged_addresses: Option<&'a RawValue>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Service<'a> {
    #[serde(rename = "ID", borrow, deserialize_with = "cow_str")]
    pub(crate) id: Cow<'a, str>,
    #[serde(rename = "Tags", deserialize_with = "nullable")]
    pub(crate) tags: Vec<String>,
    #[serde(rename = "Address", borrow, deserialize_with = "cow_str")]
    pub(crate) address: Cow<'a, str>,
    #[serde(rename = "TaggedAddresses", borrow)]
    pub(crate) tagged_addresses: Option<&'a RawValue>,
    #[serde(rename = "Meta", deserialize_with = "nullable")]
    pub(crate) meta: BTreeMap<String, String>,
    /// Go's `int`; absent (omitempty) means 0. Range-checked when mapped.
    #[serde(rename = "Port", deserialize_with = "nullable")]
    pub(crate) port: i64,
    #[serde(rename = "Weights", deserialize_with = "nullable")]
    pub(crate) weights: Weights,
    /// Consul 1.17+; absent (omitempty) before.
    #[serde(rename = "Locality", deserialize_with = "nullable")]
    pub(crate) locality: ServiceLocality,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ServiceLocality {
    #[serde(rename = "Region", deserialize_with = "nullable")]
    pub(crate) region: String,
    #[serde(rename = "Zone", deserialize_with = "nullable")]
    pub(crate) zone: String,
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
    #[serde(rename = "Warning", deserialize_with = "nullable")]
    pub(crate) warning: i64,
}

/// Whether every check of an entry (service or node level) passes, and whether any
/// is critical (neither passing nor warning); `null` or no checks count as passing,
/// as `?passing` keeps such entries.
#[derive(Debug)]
pub(crate) struct AllPassing(pub(crate) bool, pub(crate) bool);

impl Default for AllPassing {
    fn default() -> Self {
        AllPassing(true, false)
    }
}

impl<'de> Deserialize<'de> for AllPassing {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Checks;
        impl<'de> Visitor<'de> for Checks {
            type Value = AllPassing;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of checks or null")
            }
            fn visit_unit<E: de::Error>(self) -> std::result::Result<AllPassing, E> {
                Ok(AllPassing::default())
            }
            fn visit_none<E: de::Error>(self) -> std::result::Result<AllPassing, E> {
                Ok(AllPassing::default())
            }
            fn visit_seq<A: SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<AllPassing, A::Error> {
                let (mut all, mut critical) = (true, false);
                while let Some(check) = seq.next_element::<CheckStatus<'de>>()? {
                    all &= check.status == "passing";
                    critical |= check.status != "passing" && check.status != "warning";
                }
                Ok(AllPassing(all, critical))
            }
        }
        d.deserialize_any(Checks)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct CheckStatus<'a> {
    #[serde(rename = "Status", borrow, deserialize_with = "cow_str")]
    status: Cow<'a, str>,
}

/// `null` decodes as the default, as Go's decoder leaves a nil slice or map.
fn nullable<'de, D, T>(d: D) -> std::result::Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A string, borrowed from the body when it has no escapes; `null` is empty.
fn cow_str<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Cow<'de, str>, D::Error> {
    struct Str;
    impl<'de> Visitor<'de> for Str {
        type Value = Cow<'de, str>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string or null")
        }
        fn visit_borrowed_str<E: de::Error>(
            self,
            v: &'de str,
        ) -> std::result::Result<Self::Value, E> {
            Ok(Cow::Borrowed(v))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Self::Value, E> {
            Ok(Cow::Owned(v.to_owned()))
        }
        fn visit_string<E: de::Error>(self, v: String) -> std::result::Result<Self::Value, E> {
            Ok(Cow::Owned(v))
        }
        fn visit_unit<E: de::Error>(self) -> std::result::Result<Self::Value, E> {
            Ok(Cow::Borrowed(""))
        }
        fn visit_none<E: de::Error>(self) -> std::result::Result<Self::Value, E> {
            Ok(Cow::Borrowed(""))
        }
    }
    d.deserialize_any(Str)
}

/// Decodes raw tagged addresses (a JSON object or `null`) into a map. An undecodable
/// one counts as none, with a warning: the instance is dialled at its default address.
fn tagged<'a, T: Deserialize<'a>>(raw: Option<&'a RawValue>, whose: &str) -> HashMap<String, T> {
    let Some(raw) = raw else {
        return HashMap::new();
    };
    match serde_json::from_str::<Option<HashMap<String, T>>>(raw.get()) {
        Ok(map) => map.unwrap_or_default(),
        Err(e) => {
            tracing::warn!(error = %e, "undecodable {whose} tagged addresses; using the default address");
            HashMap::new()
        }
    }
}

// === impl ServiceEntry ===

impl ServiceEntry<'_> {
    /// True when every check, service or node level, passes (what `?passing` keeps).
    pub(crate) fn is_passing(&self) -> bool {
        self.checks.0
    }

    /// True when no check is critical: every check passes or warns.
    pub(crate) fn is_passing_or_warning(&self) -> bool {
        !self.checks.1
    }

    /// The instance this entry describes, or `None` (with the reason) when its port
    /// is outside `0..=65535` or it has no address at all.
    pub(crate) fn into_instance(self, kind: &AddressKind) -> std::result::Result<Instance, String> {
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
        let key = InstanceKey::new(&*self.node.node, &*self.service.id);
        // An instance whose checks warn weighs `Weights.Warning` (Consul's DNS and
        // prepared queries do the same); absent weights count as 1.
        let weights = &self.service.weights;
        let weight = if self.is_passing() {
            weights.passing
        } else {
            weights.warning
        };
        let weight = u32::try_from(weight.max(1)).unwrap_or(u32::MAX);
        let locality = &self.service.locality;
        Ok(Instance::new(key, host, port)
            .with_tags(self.service.tags)
            .with_meta(self.service.meta)
            .with_weight(weight)
            .with_locality(Locality::new(&locality.region, &locality.zone)))
    }

    fn dial_address(&self, kind: &AddressKind) -> (String, i64) {
        let svc = &self.service;
        if let AddressKind::Tagged(key) = kind {
            let service = tagged::<ServiceAddress>(svc.tagged_addresses, "service");
            if let Some(a) = service.get(key).filter(|a| !a.address.is_empty()) {
                let port = if a.port != 0 { a.port } else { svc.port };
                return (a.address.clone(), port);
            }
            let node = tagged::<String>(self.node.tagged_addresses, "node");
            if let Some(a) = node.get(key).filter(|a| !a.is_empty()) {
                return (a.clone(), svc.port);
            }
        }
        if svc.address.is_empty() {
            (self.node.address.clone().into_owned(), svc.port)
        } else {
            (svc.address.clone().into_owned(), svc.port)
        }
    }
}

/// Decodes a `/v1/health/service/:service` answer into instances, as a
/// [`Discovery`](super::Discovery) does, keeping the entries `filter` admits.
/// Entries without a usable address, port or ID are skipped with a warning rather
/// than failing the whole snapshot.
///
/// Not part of the API: public for the crate's benchmarks only, and may change in
/// any release.
///
/// # Errors
///
/// A decode error when the body is not a JSON array of entries.
#[doc(hidden)]
pub fn decode_health(
    body: &[u8],
    kind: &AddressKind,
    filter: HealthFilter,
) -> Result<Vec<Instance>> {
    decode_health_keeping(body, kind, filter)
}

/// Which instances a Consul discovery yields, by the worst status of their checks.
/// Set with [`DiscoveryBuilder::health`](super::DiscoveryBuilder::health).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum HealthFilter {
    /// Only instances whose checks all pass (`?passing`). The default, and what
    /// Consul's DNS interface and every Consul client library serve.
    #[default]
    Passing,
    /// Instances whose checks pass or warn (none critical), those that warn with
    /// their `Weights.Warning` as weight. The query goes without `?passing`;
    /// critical instances are dropped as the answer is decoded.
    PassingOrWarning,
    /// Every registered instance, critical ones included (no `?passing`).
    Any,
}

pub(crate) fn decode_health_keeping(
    body: &[u8],
    kind: &AddressKind,
    keep: HealthFilter,
) -> Result<Vec<Instance>> {
    let entries: Vec<ServiceEntry<'_>> =
        serde_json::from_slice::<Option<Vec<ServiceEntry<'_>>>>(body)
            .map_err(|e| Error::decode("health service answer", e))?
            .unwrap_or_default();
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries {
        let kept = match keep {
            HealthFilter::Passing => entry.is_passing(),
            HealthFilter::PassingOrWarning => entry.is_passing_or_warning(),
            HealthFilter::Any => true,
        };
        if !kept {
            continue;
        }
        let (node, id) = (entry.node.node.clone(), entry.service.id.clone());
        match entry.into_instance(kind) {
            Ok(instance) => out.push(instance),
            Err(reason) => tracing::warn!(
                node = %node,
                service_id = %id,
                %reason,
                "skipping undialable Consul instance"
            ),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
