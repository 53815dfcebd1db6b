//! JSON renderings of nodes, services and checks: PascalCase keys, `[]` never
//! `null`, Consul's omitempty rules, Go duration strings.

use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::store::model::{Check, CheckKind, Node, Service};

// === impl Node ===

impl Node {
    pub(crate) fn to_json(&self) -> Value {
        json!({
            "ID": self.id,
            "Node": self.name,
            "Address": self.address,
            "Datacenter": self.datacenter,
            "TaggedAddresses": self.tagged_addresses,
            "Meta": self.meta,
            "CreateIndex": self.create_index,
            "ModifyIndex": self.modify_index,
        })
    }
}

/// The shape [`Service::to_json`] renders: serde_json's map keeps keys sorted, so the
/// two shapes differ only in which fields they carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ServiceView<'a> {
    /// `structs.NodeService`: `Port` omitted when zero, `Proxy` and `Connect` always,
    /// the raft indexes.
    Node,
    /// `api.AgentService`: `Port` always, `Proxy` for proxies and gateways only,
    /// `Connect` for native services only, the agent's datacenter.
    Agent {
        /// The agent's datacenter.
        datacenter: &'a str,
    },
}

// === impl Service ===

impl Service {
    fn weights_json(&self) -> Value {
        json!({ "Passing": self.weights.0.max(1), "Warning": self.weights.1 })
    }

    fn proxy_json(&self) -> Value {
        self.proxy
            .clone()
            .unwrap_or_else(|| json!({ "Mode": "", "MeshGateway": {}, "Expose": {} }))
    }

    /// The service as `structs.NodeService` (health entries, `/v1/catalog/node/:n`) or
    /// as `api.AgentService` (`/v1/agent/services`): one field list, the view deciding
    /// the fields the two shapes render differently.
    pub(crate) fn to_json(&self, view: ServiceView<'_>) -> Value {
        let agent = matches!(view, ServiceView::Agent { .. });
        let mut m = Map::new();
        if !self.kind.is_empty() {
            m.insert("Kind".into(), json!(self.kind));
        }
        m.insert("ID".into(), json!(self.id));
        m.insert("Service".into(), json!(self.name));
        m.insert("Tags".into(), json!(self.tags));
        m.insert("Address".into(), json!(self.address));
        if !self.tagged_addresses.is_empty() {
            m.insert("TaggedAddresses".into(), json!(self.tagged_addresses));
        }
        m.insert("Meta".into(), json!(self.meta));
        // `NodeService` omits a zero port; `AgentService` always has one.
        if agent || self.port != 0 {
            m.insert("Port".into(), json!(self.port));
        }
        if !self.socket_path.is_empty() {
            m.insert("SocketPath".into(), json!(self.socket_path));
        }
        m.insert("Weights".into(), self.weights_json());
        m.insert("EnableTagOverride".into(), json!(self.enable_tag_override));
        if let Some(l) = &self.locality {
            m.insert("Locality".into(), l.clone());
        }
        match view {
            ServiceView::Node => {
                m.insert("Proxy".into(), self.proxy_json());
                m.insert("Connect".into(), self.connect.clone().unwrap_or(json!({})));
                m.insert("CreateIndex".into(), json!(self.create_index));
                m.insert("ModifyIndex".into(), json!(self.modify_index));
            }
            ServiceView::Agent { datacenter } => {
                // `buildAgentService`: Proxy only for proxies and gateways, Connect
                // only for native services.
                let proxied = self.kind == "connect-proxy" || self.kind.ends_with("-gateway");
                if proxied {
                    m.insert("Proxy".into(), self.proxy_json());
                }
                let native = self
                    .connect
                    .as_ref()
                    .and_then(|c| c["Native"].as_bool())
                    .unwrap_or(false);
                if native {
                    m.insert("Connect".into(), json!({ "Native": true }));
                }
                m.insert("Datacenter".into(), json!(datacenter));
            }
        }
        Value::Object(m)
    }

    /// `ServiceNode`, as in `/v1/catalog/service/:s`.
    pub(crate) fn to_catalog_json(&self, node: &Node) -> Value {
        let mut m = Map::new();
        m.insert("ID".into(), json!(node.id));
        m.insert("Node".into(), json!(node.name));
        m.insert("Address".into(), json!(node.address));
        m.insert("Datacenter".into(), json!(node.datacenter));
        m.insert("TaggedAddresses".into(), json!(node.tagged_addresses));
        m.insert("NodeMeta".into(), json!(node.meta));
        m.insert("ServiceKind".into(), json!(self.kind));
        m.insert("ServiceID".into(), json!(self.id));
        m.insert("ServiceName".into(), json!(self.name));
        m.insert("ServiceTags".into(), json!(self.tags));
        m.insert("ServiceAddress".into(), json!(self.address));
        if !self.tagged_addresses.is_empty() {
            m.insert(
                "ServiceTaggedAddresses".into(),
                json!(self.tagged_addresses),
            );
        }
        m.insert("ServiceWeights".into(), self.weights_json());
        m.insert("ServiceMeta".into(), json!(self.meta));
        m.insert("ServicePort".into(), json!(self.port));
        m.insert("ServiceSocketPath".into(), json!(self.socket_path));
        m.insert(
            "ServiceEnableTagOverride".into(),
            json!(self.enable_tag_override),
        );
        m.insert("ServiceProxy".into(), self.proxy_json());
        m.insert(
            "ServiceConnect".into(),
            self.connect.clone().unwrap_or(json!({})),
        );
        if let Some(l) = &self.locality {
            m.insert("ServiceLocality".into(), l.clone());
        }
        m.insert("CreateIndex".into(), json!(self.create_index));
        m.insert("ModifyIndex".into(), json!(self.modify_index));
        Value::Object(m)
    }
}

// === impl Check ===

impl Check {
    fn type_name(&self) -> &'static str {
        match &self.kind {
            CheckKind::Ttl(_) => "ttl",
            CheckKind::Http { .. } => "http",
            CheckKind::Grpc { .. } => "grpc",
            CheckKind::Tcp(_) => "tcp",
            CheckKind::Script(_) => "script",
            CheckKind::Alias { .. } => "alias",
            CheckKind::Unrun(kind) => kind,
            CheckKind::Manual => "",
        }
    }

    fn definition_json(&self) -> Value {
        let mut m = Map::new();
        match &self.kind {
            CheckKind::Http {
                url,
                method,
                header,
                body,
                tls_skip_verify,
            } => {
                m.insert("HTTP".into(), json!(url));
                if !method.is_empty() {
                    m.insert("Method".into(), json!(method));
                }
                if !header.is_empty() {
                    m.insert("Header".into(), json!(header));
                }
                if !body.is_empty() {
                    m.insert("Body".into(), json!(body));
                }
                if *tls_skip_verify {
                    m.insert("TLSSkipVerify".into(), json!(true));
                }
            }
            CheckKind::Grpc { target, use_tls } => {
                m.insert("GRPC".into(), json!(target));
                m.insert("GRPCUseTLS".into(), json!(use_tls));
            }
            CheckKind::Tcp(addr) => {
                m.insert("TCP".into(), json!(addr));
            }
            CheckKind::Script(args) => {
                m.insert("ScriptArgs".into(), json!(args));
            }
            CheckKind::Alias { service, node } => {
                for (key, value) in [("AliasNode", node), ("AliasService", service)] {
                    if !value.is_empty() {
                        m.insert(key.into(), json!(value));
                    }
                }
            }
            CheckKind::Ttl(_) | CheckKind::Unrun(_) | CheckKind::Manual => {}
        }
        let durations = [
            ("Interval", self.interval),
            ("Timeout", self.timeout),
            ("DeregisterCriticalServiceAfter", self.deregister_after),
        ];
        for (key, d) in durations {
            if let Some(d) = d {
                m.insert(key.into(), json!(go_duration(d)));
            }
        }
        Value::Object(m)
    }

    /// `HealthCheck`, as in health and agent check lists.
    pub(crate) fn to_json(&self, service_tags: &[String]) -> Value {
        json!({
            "Node": self.node,
            "CheckID": self.id,
            "Name": self.name,
            "Status": self.status.as_str(),
            "Notes": self.notes,
            "Output": self.output,
            "ServiceID": self.service_id,
            "ServiceName": self.service_name,
            "ServiceTags": service_tags,
            "Type": self.type_name(),
            "Interval": self.interval.map(go_duration).unwrap_or_default(),
            "Timeout": self.timeout.map(go_duration).unwrap_or_default(),
            "ExposedPort": 0,
            "Definition": self.definition_json(),
            "CreateIndex": self.create_index,
            "ModifyIndex": self.modify_index,
        })
    }
}

/// Formats a duration as Go's `time.Duration.String()` does (`1m30s`, `250ms`, `0s`).
pub(crate) fn go_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_owned();
    }
    if nanos < 1_000_000_000 {
        let (unit, div) = match nanos {
            n if n < 1_000 => return format!("{n}ns"),
            n if n < 1_000_000 => ("µs", 1_000f64),
            _ => ("ms", 1_000_000f64),
        };
        return format!("{}{unit}", trim_float(nanos as f64 / div));
    }
    let secs_total = d.as_secs();
    let (h, m) = (secs_total / 3600, (secs_total / 60) % 60);
    let s = (secs_total % 60) as f64 + f64::from(d.subsec_nanos()) / 1e9;
    let s = trim_float(s);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, m) => format!("{m}m{s}s"),
        (h, m) => format!("{h}h{m}m{s}s"),
    }
}

fn trim_float(f: f64) -> String {
    let s = format!("{f:.9}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_durations_like_go() {
        assert_eq!(go_duration(Duration::from_secs(10)), "10s");
        assert_eq!(go_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(go_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::ZERO), "0s");
    }
}
