//! From a [`Registration`] to the agent's register payload: the instance ID, the
//! advertised address and the JSON `ServiceDefinition`.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use reqwest::Url;
use serde_json::{Map, Value, json};

use super::register::{ExtraCheck, Registration};
use crate::error::Result;
use crate::register::HealthSource;
use crate::validate;

/// A registration with everything settled: what the heartbeat and the handle need.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    pub(crate) name: String,
    pub(crate) service_id: String,
    pub(crate) check_id: String,
    pub(crate) address: SocketAddr,
    pub(crate) ttl: Duration,
    pub(crate) interval: Duration,
    pub(crate) body: Bytes,
}

// === impl Registration ===

impl Registration {
    /// Validates, picks the advertised address (looking at the route towards `agent`
    /// for a wildcard bind) and builds the payload.
    pub(crate) async fn resolve(self, agent: &Url) -> Result<(Resolved, HealthSource)> {
        let reg = self.validate()?;
        // Once per registration: re-registrations after an agent restart reuse the
        // payload and do not come back here.
        validate::warn_if_not_dns("consul", &reg.name);
        let default_port = agent.port_or_known_default().unwrap_or(8500);
        let address =
            validate::address::advertised(reg.bind, reg.advertise, agent.as_str(), default_port)
                .await?;
        let resolved = reg.resolve_with(address);
        Ok((resolved, reg.health))
    }

    /// The payload for an instance advertised at `address`.
    pub(crate) fn resolve_with(&self, address: SocketAddr) -> Resolved {
        let service_id = self.id.clone().unwrap_or_else(|| self.default_id());
        let check_id = format!("service:{service_id}");
        let body = self.body(&service_id, &check_id, address);
        Resolved {
            name: self.name.clone(),
            service_id,
            check_id,
            address,
            ttl: self.ttl,
            interval: self.heartbeat_every(),
            body: Bytes::from(body.to_string()),
        }
    }

    /// `<name>-<hostname>-<port>`, the hostname cut so the ID stays within bounds.
    fn default_id(&self) -> String {
        let host = gethostname::gethostname();
        let host = validate::sanitize_label(&host.to_string_lossy());
        let room = validate::MAX_ID_LEN - self.name.len() - 7;
        let host = &host[..host.len().min(room)];
        format!(
            "{}-{}-{}",
            self.name,
            host.trim_end_matches('-'),
            self.bind.port()
        )
    }

    /// The JSON `ServiceDefinition` for `PUT /v1/agent/service/register`.
    pub(crate) fn body(&self, service_id: &str, check_id: &str, address: SocketAddr) -> Value {
        let mut body = json!({
            "ID": service_id,
            "Name": self.name,
            "Tags": self.tags,
            "Address": address.ip().to_string(),
            "Port": address.port(),
            "Meta": self.meta,
            "EnableTagOverride": false,
            "Check": self.ttl_check(check_id),
        });
        if let Some((passing, warning)) = self.weights {
            body["Weights"] = json!({ "Passing": passing, "Warning": warning });
        }
        if let Some(locality) = &self.locality {
            body["Locality"] = json!({
                "Region": locality.region().unwrap_or_default(),
                "Zone": locality.zone().unwrap_or_default(),
            });
        }
        if !self.extra_checks.is_empty() {
            let checks = self.extra_checks.iter();
            let checks = checks.map(|c| extra_check(c, service_id, address));
            body["Checks"] = Value::Array(checks.collect());
        }
        body
    }

    fn ttl_check(&self, check_id: &str) -> Value {
        json!({
            "CheckID": check_id,
            "Name": format!("Service '{}' heartbeat", self.name),
            "TTL": go_duration(self.ttl),
            "DeregisterCriticalServiceAfter": go_duration(self.deregister_after),
        })
    }
}

fn extra_check(check: &ExtraCheck, service_id: &str, address: SocketAddr) -> Value {
    let mut c = Map::new();
    match check {
        ExtraCheck::Http { url, interval } => {
            c.insert(
                "CheckID".into(),
                format!("service:{service_id}:http").into(),
            );
            c.insert("Name".into(), "HTTP check".into());
            c.insert("HTTP".into(), url.as_str().into());
            c.insert("Interval".into(), go_duration(*interval).into());
        }
        ExtraCheck::Grpc { service, interval } => {
            let target = if service.is_empty() {
                address.to_string()
            } else {
                format!("{address}/{service}")
            };
            c.insert(
                "CheckID".into(),
                format!("service:{service_id}:grpc").into(),
            );
            c.insert("Name".into(), "gRPC health check".into());
            c.insert("GRPC".into(), target.into());
            c.insert("Interval".into(), go_duration(*interval).into());
        }
    }
    Value::Object(c)
}

/// A duration as Go's `time.ParseDuration` reads it: `10s`, `1500ms`, `250us`.
pub(crate) fn go_duration(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else if d.subsec_nanos().is_multiple_of(1_000_000) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}ns", d.as_nanos())
    }
}

#[cfg(test)]
#[path = "payload_tests.rs"]
mod tests;
