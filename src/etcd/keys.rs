//! Key layouts: where an instance lives in etcd and how its value is encoded.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::instance::{Instance, InstanceKey};

/// The kratos registry's default namespace.
const KRATOS_NAMESPACE: &str = "/microservices";

/// How instances are laid out in etcd.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum KeyLayout {
    /// etcd's `naming/endpoints` format, read by grpc-go's etcd resolver: key
    /// `<service>/<host:port>`, value `{"Op":0,"Addr":"host:port","Metadata":…}`.
    /// Discovery takes the address from the value, never from the key.
    #[default]
    Endpoints,
    /// The go-kratos layout: key `/microservices/<name>/<id>`, value
    /// `{"id","name","version","metadata","endpoints":["grpc://host:port"]}`. Discovery
    /// uses the first `grpc://` or `grpcs://` endpoint.
    Kratos,
}

/// What a registration publishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Published {
    pub(crate) service: String,
    pub(crate) id: String,
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) meta: BTreeMap<String, String>,
    pub(crate) version: String,
}

impl Published {
    fn authority(&self) -> String {
        Instance::new(InstanceKey::new("", ""), self.host.clone(), self.port).authority()
    }
}

#[derive(Serialize, Deserialize)]
struct EndpointValue {
    #[serde(rename = "Op", default)]
    op: i64,
    #[serde(rename = "Addr")]
    addr: String,
    #[serde(rename = "Metadata", default)]
    metadata: Value,
}

#[derive(Serialize, Deserialize)]
struct KratosValue {
    #[serde(default)]
    id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    metadata: Option<BTreeMap<String, String>>,
    #[serde(default)]
    endpoints: Vec<String>,
}

// === impl KeyLayout ===

impl KeyLayout {
    /// The prefix every key of `service` starts with (ends with `/`, so `echo` does not
    /// match `echo-admin`).
    pub(crate) fn prefix(self, service: &str) -> String {
        match self {
            KeyLayout::Endpoints => format!("{service}/"),
            KeyLayout::Kratos => format!("{KRATOS_NAMESPACE}/{service}/"),
        }
    }

    /// The key of one instance.
    pub(crate) fn key(self, published: &Published) -> String {
        let prefix = self.prefix(&published.service);
        match self {
            KeyLayout::Endpoints => format!("{prefix}{}", published.authority()),
            KeyLayout::Kratos => format!("{prefix}{}", published.id),
        }
    }

    /// The value of one instance.
    pub(crate) fn encode(self, published: &Published) -> Vec<u8> {
        let meta = published.meta.clone();
        let encoded = match self {
            KeyLayout::Endpoints => serde_json::to_vec(&EndpointValue {
                op: 0,
                addr: published.authority(),
                metadata: if meta.is_empty() {
                    Value::Null
                } else {
                    Value::Object(meta.into_iter().map(|(k, v)| (k, v.into())).collect())
                },
            }),
            KeyLayout::Kratos => serde_json::to_vec(&KratosValue {
                id: published.id.clone(),
                name: published.service.clone(),
                version: published.version.clone(),
                metadata: (!meta.is_empty()).then_some(meta),
                endpoints: vec![format!("grpc://{}", published.authority())],
            }),
        };
        // Serializing strings and string maps cannot fail.
        encoded.unwrap_or_default()
    }

    /// Decodes the value stored at `key` into an instance keyed by `key`.
    ///
    /// Never panics, whatever the bytes.
    pub(crate) fn decode(self, service: &str, key: &str, value: &[u8]) -> Result<Instance> {
        let id = InstanceKey::new("", key);
        match self {
            KeyLayout::Endpoints => {
                let v: EndpointValue = serde_json::from_slice(value)
                    .map_err(|e| Error::decode(format!("etcd key `{key}`: not an endpoint"), e))?;
                if v.op != 0 {
                    return Err(undecodable(key, format!("operation {} is not Add", v.op)));
                }
                let (host, port) = split_host_port(&v.addr).map_err(|m| undecodable(key, m))?;
                Ok(with_meta(
                    Instance::new(id, host, port),
                    metadata_map(v.metadata),
                ))
            }
            KeyLayout::Kratos => {
                let v: KratosValue = serde_json::from_slice(value)
                    .map_err(|e| Error::decode(format!("etcd key `{key}`: not an instance"), e))?;
                if !v.name.is_empty() && v.name != service {
                    return Err(undecodable(key, format!("belongs to service `{}`", v.name)));
                }
                let endpoint = v
                    .endpoints
                    .iter()
                    .find_map(|e| e.strip_prefix("grpc://").or(e.strip_prefix("grpcs://")))
                    .ok_or_else(|| undecodable(key, "no grpc:// endpoint".to_owned()))?;
                let authority = endpoint.split(['/', '?']).next().unwrap_or_default();
                let (host, port) = split_host_port(authority).map_err(|m| undecodable(key, m))?;
                Ok(with_meta(
                    Instance::new(id, host, port),
                    v.metadata.unwrap_or_default(),
                ))
            }
        }
    }
}

/// Sets the metadata, and the weight from its `weight` entry (kratos's weighted
/// round robin reads the same key): a number, rounded, from 1 to 10,000; an
/// instance without one (or with one that is not a positive number) weighs 1.
fn with_meta(instance: Instance, meta: BTreeMap<String, String>) -> Instance {
    let weight = meta
        .get("weight")
        .and_then(|w| w.trim().parse::<f64>().ok())
        .filter(|w| w.is_finite() && *w > 0.0)
        // In range by the clamp, so the cast neither truncates nor wraps.
        .map_or(1, |w| {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let w = w.round().clamp(1.0, 10_000.0) as u32;
            w
        });
    instance.with_meta(meta).with_weight(weight)
}

fn undecodable(key: &str, why: String) -> Error {
    Error::decode(format!("etcd key `{key}`: {why}"), why)
}

/// Splits `host:port` or `[v6]:port`.
pub(crate) fn split_host_port(addr: &str) -> std::result::Result<(String, u16), String> {
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| format!("address `{addr}` has no port"))?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port: u16 = port
        .parse()
        .map_err(|_| format!("address `{addr}` has an invalid port"))?;
    if host.is_empty() || port == 0 || host.contains(['[', ']', '/']) {
        return Err(format!("address `{addr}` is not host:port"));
    }
    Ok((host.to_owned(), port))
}

/// Go's `Metadata` is `any`: an object becomes the map (non-string values as JSON
/// text), null nothing, anything else one entry `Metadata`.
fn metadata_map(value: Value) -> BTreeMap<String, String> {
    match value {
        Value::Null => BTreeMap::new(),
        Value::Object(map) => map
            .into_iter()
            .map(|(k, v)| match v {
                Value::String(s) => (k, s),
                other => (k, other.to_string()),
            })
            .collect(),
        Value::String(s) => BTreeMap::from([("Metadata".to_owned(), s)]),
        other => BTreeMap::from([("Metadata".to_owned(), other.to_string())]),
    }
}

#[cfg(test)]
#[path = "keys_tests.rs"]
mod tests;
