//! Which instances of a Nacos service list get traffic, and how they become
//! [`Instance`]s. Pure logic, tested alone.

use std::collections::BTreeMap;
use std::sync::Arc;

use nacos_sdk::api::naming::ServiceInstance;

use crate::instance::{Instance, InstanceKey, Locality};

/// One instance as the server listed it, reduced to what discovery reads. Comparable,
/// so an unchanged list wakes nobody.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Record {
    pub(crate) id: Arc<str>,
    pub(crate) ip: String,
    pub(crate) port: i32,
    pub(crate) weight: f64,
    pub(crate) healthy: bool,
    pub(crate) enabled: bool,
    pub(crate) cluster: String,
    pub(crate) metadata: BTreeMap<String, String>,
}

impl Record {
    pub(crate) fn from_sdk(instance: ServiceInstance) -> Self {
        let cluster = instance
            .cluster_name
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| "DEFAULT".to_owned());
        // Nacos's own id is `ip#port#cluster#group@@service`; servers that send none are
        // keyed the same way, minus the parts every instance of the list shares.
        let id = match instance.instance_id {
            Some(id) if !id.is_empty() => id,
            _ => format!("{}#{}#{cluster}", instance.ip, instance.port),
        };
        Record {
            id: id.into(),
            ip: instance.ip,
            port: instance.port,
            weight: instance.weight,
            healthy: instance.healthy,
            enabled: instance.enabled,
            cluster,
            metadata: instance.metadata.into_iter().collect(),
        }
    }

    /// Serves traffic: healthy, enabled and with a positive weight (what Nacos's own
    /// clients select), in one of `clusters` when any are given.
    pub(crate) fn selected(&self, clusters: &[String]) -> bool {
        self.healthy
            && self.enabled
            && self.weight > 0.0
            && self.weight.is_finite()
            && (clusters.is_empty() || clusters.contains(&self.cluster))
    }

    /// The instance, or `None` (with a warning) when the address is unusable.
    pub(crate) fn instance(&self, service: &str) -> Option<Instance> {
        let port = match u16::try_from(self.port) {
            Ok(port) if port != 0 => port,
            _ => {
                tracing::warn!(service, id = %self.id, port = self.port, "skipping instance with an invalid port");
                return None;
            }
        };
        if self.ip.is_empty() {
            tracing::warn!(service, id = %self.id, "skipping instance without an address");
            return None;
        }
        let mut meta = self.metadata.clone();
        meta.insert("nacos.cluster".to_owned(), self.cluster.clone());
        // A named cluster is where the instance runs (Nacos's clusters are commonly
        // zones); the default cluster says nothing, and a zone in the metadata then
        // applies (see `BalancedChannelBuilder::zone_meta_key`).
        let locality = if self.cluster.is_empty() || self.cluster == DEFAULT_CLUSTER {
            Locality::default()
        } else {
            Locality::new("", &self.cluster)
        };
        Some(
            Instance::new(InstanceKey::new("", self.id.clone()), self.ip.clone(), port)
                .with_meta(meta)
                .with_weight(weight(self.weight))
                .with_locality(locality),
        )
    }
}

/// The cluster an instance is in when it names none.
const DEFAULT_CLUSTER: &str = "DEFAULT";

/// Nacos weights are floats (default 1.0); ours are integers: rounded, at least 1 for
/// any selected instance, at most 10,000.
fn weight(w: f64) -> u32 {
    // In range by the clamp, so the cast neither truncates nor wraps.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let w = w.round().clamp(1.0, 10_000.0) as u32;
    w
}

/// The instances of `records` that get traffic.
pub(crate) fn select(service: &str, records: &[Record], clusters: &[String]) -> Vec<Instance> {
    records
        .iter()
        .filter(|r| r.selected(clusters))
        .filter_map(|r| r.instance(service))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn sdk(ip: &str, port: i32) -> ServiceInstance {
        ServiceInstance {
            instance_id: Some(format!("{ip}#{port}#DEFAULT#DEFAULT_GROUP@@echo")),
            ip: ip.to_owned(),
            port,
            cluster_name: Some("DEFAULT".to_owned()),
            metadata: HashMap::from([("version".to_owned(), "1".to_owned())]),
            ..ServiceInstance::default()
        }
    }

    fn ids(instances: &[Instance]) -> Vec<&str> {
        let mut ids: Vec<&str> = instances.iter().map(Instance::id).collect();
        ids.sort_unstable();
        ids
    }

    #[test]
    fn only_healthy_enabled_weighted_instances_in_the_clusters() {
        let mut unhealthy = sdk("10.0.0.2", 1);
        unhealthy.healthy = false;
        let mut disabled = sdk("10.0.0.3", 1);
        disabled.enabled = false;
        let mut zero = sdk("10.0.0.4", 1);
        zero.weight = 0.0;
        let mut nan = sdk("10.0.0.5", 1);
        nan.weight = f64::NAN;
        let mut other = sdk("10.0.0.6", 1);
        other.cluster_name = Some("east".to_owned());
        other.instance_id = None;
        let records: Vec<Record> = [sdk("10.0.0.1", 1), unhealthy, disabled, zero, nan, other]
            .into_iter()
            .map(Record::from_sdk)
            .collect();

        let all = select("echo", &records, &[]);
        assert_eq!(
            ids(&all),
            ["10.0.0.1#1#DEFAULT#DEFAULT_GROUP@@echo", "10.0.0.6#1#east"]
        );
        let east = select("echo", &records, &["east".to_owned()]);
        assert_eq!(ids(&east), ["10.0.0.6#1#east"]);
        assert_eq!(east[0].meta()["nacos.cluster"], "east");
        assert_eq!(east[0].meta()["version"], "1");
        assert_eq!(east[0].authority(), "10.0.0.6:1");
    }

    #[test]
    fn unusable_addresses_are_skipped() {
        let records: Vec<Record> = [sdk("10.0.0.1", 0), sdk("10.0.0.1", 70_000), sdk("", 5)]
            .into_iter()
            .map(Record::from_sdk)
            .collect();
        assert!(select("echo", &records, &[]).is_empty());
    }

    #[test]
    fn weights_round_to_integers() {
        assert_eq!(weight(0.01), 1);
        assert_eq!(weight(1.0), 1);
        assert_eq!(weight(2.6), 3);
        assert_eq!(weight(1e12), 10_000);
        let mut heavy = sdk("::1", 9);
        heavy.weight = 5.0;
        let i = Record::from_sdk(heavy).instance("echo").unwrap();
        assert_eq!((i.weight(), i.authority()), (5, "[::1]:9".to_owned()));
    }
}
