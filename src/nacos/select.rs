//! Which instances of a Nacos service list get traffic, and how they become
//! [`Instance`]s. Pure logic, tested alone.

use std::collections::BTreeMap;

use nacos_sdk::api::naming::ServiceInstance;

use crate::instance::{Instance, InstanceKey, Locality};

/// The metadata key carrying an instance's cluster.
pub(crate) const CLUSTER_KEY: &str = "nacos.cluster";

/// The cluster an instance is in when it names none.
const DEFAULT_CLUSTER: &str = "DEFAULT";

/// The instances of a service's list that get traffic: healthy, enabled and with a
/// positive weight (what Nacos's own clients select), from every cluster.
pub(crate) fn select(service: &str, list: Vec<ServiceInstance>) -> Vec<Instance> {
    list.into_iter()
        .filter(|i| i.healthy && i.enabled && i.weight > 0.0 && i.weight.is_finite())
        .filter_map(|i| instance(service, i))
        .collect()
}

/// Whether an instance's metadata puts it in one of `clusters`.
pub(crate) fn in_clusters(clusters: &[String], meta: &BTreeMap<String, String>) -> bool {
    meta.get(CLUSTER_KEY).is_some_and(|c| clusters.contains(c))
}

/// The instance, or `None` (with a warning) when the address is unusable.
fn instance(service: &str, i: ServiceInstance) -> Option<Instance> {
    let cluster = i
        .cluster_name
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| DEFAULT_CLUSTER.to_owned());
    // Nacos's own id is `ip#port#cluster#group@@service`; servers that send none are
    // keyed the same way, minus the parts every instance of the list shares.
    let id = match i.instance_id {
        Some(id) if !id.is_empty() => id,
        _ => format!("{}#{}#{cluster}", i.ip, i.port),
    };
    let port = match u16::try_from(i.port) {
        Ok(port) if port != 0 => port,
        _ => {
            tracing::warn!(service, %id, port = i.port, "skipping instance with an invalid port");
            return None;
        }
    };
    if i.ip.is_empty() {
        tracing::warn!(service, %id, "skipping instance without an address");
        return None;
    }
    // A named cluster is where the instance runs (Nacos's clusters are commonly
    // zones); the default cluster says nothing, and a zone in the metadata then
    // applies (see `TrafficPolicy::zone_meta_keys`).
    let locality = if cluster == DEFAULT_CLUSTER {
        Locality::default()
    } else {
        Locality::new("", &cluster)
    };
    let mut meta: BTreeMap<String, String> = i.metadata.into_iter().collect();
    meta.insert(CLUSTER_KEY.to_owned(), cluster);
    Some(
        Instance::new(InstanceKey::new("", id), i.ip, port)
            .with_meta(meta)
            .with_weight(weight(i.weight))
            .with_locality(locality),
    )
}

/// Nacos weights are floats (default 1.0); ours are integers: rounded, at least 1 for
/// any selected instance, at most 10,000.
fn weight(w: f64) -> u32 {
    // In range by the clamp, so the cast neither truncates nor wraps.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let w = w.round().clamp(1.0, 10_000.0) as u32;
    w
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
        let list = vec![sdk("10.0.0.1", 1), unhealthy, disabled, zero, nan, other];

        let all = select("echo", list);
        assert_eq!(
            ids(&all),
            ["10.0.0.1#1#DEFAULT#DEFAULT_GROUP@@echo", "10.0.0.6#1#east"]
        );
        let east: Vec<Instance> = all
            .into_iter()
            .filter(|i| in_clusters(&["east".to_owned()], i.meta()))
            .collect();
        assert_eq!(ids(&east), ["10.0.0.6#1#east"]);
        assert_eq!(east[0].meta()["nacos.cluster"], "east");
        assert_eq!(east[0].meta()["version"], "1");
        assert_eq!(east[0].authority(), "10.0.0.6:1");
    }

    #[test]
    fn unusable_addresses_are_skipped() {
        let list = vec![sdk("10.0.0.1", 0), sdk("10.0.0.1", 70_000), sdk("", 5)];
        assert!(select("echo", list).is_empty());
    }

    #[test]
    fn weights_round_to_integers() {
        assert_eq!(weight(0.01), 1);
        assert_eq!(weight(1.0), 1);
        assert_eq!(weight(2.6), 3);
        assert_eq!(weight(1e12), 10_000);
        let mut heavy = sdk("::1", 9);
        heavy.weight = 5.0;
        let i = instance("echo", heavy).unwrap();
        assert_eq!((i.weight(), i.authority()), (5, "[::1]:9".to_owned()));
    }
}
