//! The state store: nodes, services and checks of the catalog (the agent's own
//! node included), the raft-like index, the per-service indexes and the
//! "last extinction" index that Consul keeps for blocking queries.
//!
//! The store's leaf types are its submodules: `model` (nodes, services, checks),
//! `records` (what the endpoint families keep: KV entries, sessions, config entries,
//! autopilot) and `render` (their JSON shapes). Nothing here depends on an endpoint.

pub(crate) mod model;
pub(crate) mod records;
pub(crate) mod render;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use tokio::time::Instant;

use crate::store::model::{Check, CheckStatus, Node, Service};

/// Everything the registry knows. Always used behind the `Shared` mutex; cloned
/// whole for a snapshot.
#[derive(Debug, Clone, Default)]
pub(crate) struct Store {
    /// The raft-like index: bumped on every write.
    pub(crate) index: u64,
    /// Bumped when the index is reset, as a snapshot restore: ends blocking waits.
    pub(crate) epoch: u64,
    pub(crate) nodes: BTreeMap<String, Node>,
    /// Keyed by (node, service ID).
    pub(crate) services: BTreeMap<(String, String), Service>,
    /// The (node, service ID) keys of each service name's instances, kept with
    /// `services` by `upsert_service` and `remove_service`: per-service reads and
    /// index checks then cost the service's size, not the catalog's.
    by_name: BTreeMap<String, BTreeSet<(String, String)>>,
    /// The check IDs of each (node, service ID), `""` for node checks, kept with
    /// `checks` by `put_check` and `take_check`.
    checks_by_target: BTreeMap<(String, String), BTreeSet<String>>,
    /// Keyed by (node, check ID).
    pub(crate) checks: BTreeMap<(String, String), Check>,
    /// Index of the last write touching each service name.
    pub(crate) service_index: BTreeMap<String, u64>,
    /// Index of the last time a service name lost its last instance.
    pub(crate) extinction: u64,
    /// KV entries keyed by key.
    pub(crate) kv: BTreeMap<String, crate::store::records::KvEntry>,
    /// Index of the last KV write (deletes included).
    pub(crate) kv_index: u64,
    /// Sessions keyed by ID.
    pub(crate) sessions: BTreeMap<String, crate::store::records::Session>,
    /// Index of the last session write.
    pub(crate) session_index: u64,
    /// The last user events fired, oldest first.
    pub(crate) events: Vec<serde_json::Value>,
    /// Prepared queries, as stored definitions.
    pub(crate) queries: Vec<serde_json::Value>,
    /// Config entries keyed by (kind, name).
    pub(crate) config: BTreeMap<(String, String), crate::store::records::ConfigEntry>,
    /// Index of the last config-entry write.
    pub(crate) config_index: u64,
    /// Network coordinates sent with `/v1/coordinate/update`, keyed by (node, segment).
    pub(crate) coordinates: BTreeMap<(String, String), Value>,
    /// The autopilot configuration once set (Consul's defaults until then).
    pub(crate) autopilot: Option<crate::store::records::Autopilot>,
}

// === impl Store ===

impl Store {
    /// Starts a write: bumps and returns the new index.
    pub(crate) fn bump(&mut self) -> u64 {
        self.index += 1;
        self.index
    }

    /// Records a write touching `service` at the current index.
    pub(crate) fn touch_service(&mut self, service: &str) {
        self.service_index.insert(service.to_owned(), self.index);
        if !self.has_instances(service) {
            self.extinction = self.index;
        }
    }

    /// Whether service `name` has any instance.
    fn has_instances(&self, name: &str) -> bool {
        self.by_name.get(name).is_some_and(|keys| !keys.is_empty())
    }

    fn unindex_name(&mut self, name: &str, key: &(String, String)) {
        if let Some(keys) = self.by_name.get_mut(name) {
            keys.remove(key);
            if keys.is_empty() {
                self.by_name.remove(name);
            }
        }
    }

    /// Records a write touching every service on `node` (node checks, node updates).
    pub(crate) fn touch_node(&mut self, node: &str) {
        let names: BTreeSet<String> = self
            .services
            .values()
            .filter(|s| s.node == node)
            .map(|s| s.name.clone())
            .collect();
        for name in names {
            self.service_index.insert(name, self.index);
        }
    }

    /// The index a blocking query on `service` reports (Consul's `maxIndexForService`).
    pub(crate) fn index_for_service(&self, service: &str) -> u64 {
        if !self.has_instances(service) {
            return self.extinction.max(1);
        }
        self.service_index
            .get(service)
            .copied()
            .unwrap_or(self.index)
            .max(1)
    }

    /// Inserts or replaces a node; a changed node touches its services.
    pub(crate) fn upsert_node(&mut self, mut node: Node) {
        let idx = self.bump();
        node.modify_index = idx;
        node.create_index = self.nodes.get(&node.name).map_or(idx, |n| n.create_index);
        let name = node.name.clone();
        self.nodes.insert(name.clone(), node);
        self.touch_node(&name);
    }

    /// Inserts or replaces a service (keeping its create index).
    pub(crate) fn upsert_service(&mut self, mut svc: Service) {
        let key = (svc.node.clone(), svc.id.clone());
        let old = self.services.get(&key);
        if let Some(old) = old {
            // An identical re-registration is no write, as the agent's sync skips it.
            (svc.create_index, svc.modify_index) = (old.create_index, old.modify_index);
            if *old == svc {
                return;
            }
        }
        let old_name = old.map(|s| s.name.clone());
        let idx = self.bump();
        svc.create_index = old_name.as_ref().map_or(idx, |_| svc.create_index);
        svc.modify_index = idx;
        let name = svc.name.clone();
        if let Some(old) = &old_name {
            self.unindex_name(old, &key);
        }
        self.by_name
            .entry(name.clone())
            .or_default()
            .insert(key.clone());
        self.services.insert(key, svc);
        if let Some(old) = old_name.filter(|o| *o != name) {
            self.touch_service(&old);
        }
        self.touch_service(&name);
    }

    /// Inserts or replaces a check. Keeps status and output of an existing check of
    /// the same ID unless `keep_status` is false.
    pub(crate) fn upsert_check(&mut self, mut check: Check, keep_status: bool) {
        let key = (check.node.clone(), check.id.clone());
        if let Some(old) = self.checks.get(&key) {
            check.create_index = old.create_index;
            check.modify_index = old.modify_index;
            if keep_status {
                check.status = old.status;
                check.output = old.output.clone();
                check.critical_since = old.critical_since;
            }
            let mut same = check.clone();
            (same.ttl_deadline, same.critical_since) = (old.ttl_deadline, old.critical_since);
            if *old == same {
                // Unchanged definition: only the TTL timer restarts.
                self.put_check(key, check);
                return;
            }
        }
        let idx = self.bump();
        if check.modify_index == 0 {
            check.create_index = idx;
        }
        check.modify_index = idx;
        if check.status != CheckStatus::Critical {
            check.critical_since = None;
        } else if check.critical_since.is_none() {
            check.critical_since = Some(Instant::now());
        }
        self.touch_check_target(&check.node, &check.service_id);
        self.put_check(key, check);
    }

    /// Inserts a check under `key`, keeping `checks_by_target` in step.
    fn put_check(&mut self, key: (String, String), check: Check) {
        let target = (check.node.clone(), check.service_id.clone());
        if let Some(old) = self.checks.insert(key.clone(), check) {
            self.untarget(&(old.node, old.service_id), &key.1);
        }
        self.checks_by_target
            .entry(target)
            .or_default()
            .insert(key.1);
    }

    /// The IDs of the checks of service `id` on `node` (`""`: the node's own).
    pub(crate) fn check_ids_of(&self, node: &str, id: &str) -> Vec<String> {
        self.checks_by_target
            .get(&(node.to_owned(), id.to_owned()))
            .map(|ids| ids.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Removes the check under `key`, keeping `checks_by_target` in step.
    fn take_check(&mut self, key: &(String, String)) -> Option<Check> {
        let check = self.checks.remove(key)?;
        self.untarget(&(check.node.clone(), check.service_id.clone()), &key.1);
        Some(check)
    }

    fn untarget(&mut self, target: &(String, String), id: &str) {
        if let Some(ids) = self.checks_by_target.get_mut(target) {
            ids.remove(id);
            if ids.is_empty() {
                self.checks_by_target.remove(target);
            }
        }
    }

    fn touch_check_target(&mut self, node: &str, service_id: &str) {
        if service_id.is_empty() {
            self.touch_node(node);
        } else if let Some(s) = self.services.get(&(node.to_owned(), service_id.to_owned())) {
            let name = s.name.clone();
            self.touch_service(&name);
        }
    }

    /// Sets a check's status and output. Only a status change is a write (bumps
    /// the index and wakes queries).
    pub(crate) fn set_check_status(
        &mut self,
        node: &str,
        id: &str,
        status: CheckStatus,
        output: &str,
    ) -> bool {
        let key = (node.to_owned(), id.to_owned());
        let Some(check) = self.checks.get(&key) else {
            return false;
        };
        if check.status == status {
            // Output-only changes reach the catalog lazily in Consul
            // (`check_update_interval`): no index change, no wake-up.
            if let Some(check) = self.checks.get_mut(&key) {
                check.output = output.to_owned();
            }
            return true;
        }
        let idx = self.bump();
        let Some(check) = self.checks.get_mut(&key) else {
            return false;
        };
        if status == CheckStatus::Critical && check.status != CheckStatus::Critical {
            check.critical_since = Some(Instant::now());
        } else if status != CheckStatus::Critical {
            check.critical_since = None;
        }
        check.status = status;
        check.output = output.to_owned();
        check.modify_index = idx;
        let service_id = check.service_id.clone();
        self.touch_check_target(node, &service_id);
        true
    }

    /// Removes a check; returns whether it existed.
    pub(crate) fn remove_check(&mut self, node: &str, id: &str) -> Option<Check> {
        let check = self.take_check(&(node.to_owned(), id.to_owned()))?;
        self.bump();
        self.touch_check_target(node, &check.service_id);
        Some(check)
    }

    /// Removes a service and its checks; returns the removed checks' IDs.
    pub(crate) fn remove_service(&mut self, node: &str, id: &str) -> Option<Vec<String>> {
        let key = (node.to_owned(), id.to_owned());
        let svc = self.services.remove(&key)?;
        self.unindex_name(&svc.name, &key);
        self.bump();
        let ids: Vec<String> = self
            .checks_by_target
            .get(&key)
            .map(|ids| ids.iter().cloned().collect())
            .unwrap_or_default();
        for cid in &ids {
            self.take_check(&(node.to_owned(), cid.clone()));
        }
        self.touch_service(&svc.name);
        Some(ids)
    }

    /// Removes a node with its services and checks.
    pub(crate) fn remove_node(&mut self, node: &str) -> bool {
        if self.nodes.remove(node).is_none() {
            return false;
        }
        self.coordinates.retain(|(n, _), _| n != node);
        let ids: Vec<String> = self
            .services
            .keys()
            .filter(|(n, _)| n == node)
            .map(|(_, id)| id.clone())
            .collect();
        for id in ids {
            self.remove_service(node, &id);
        }
        let keys: Vec<(String, String)> = self
            .checks
            .keys()
            .filter(|(n, _)| n == node)
            .cloned()
            .collect();
        for key in &keys {
            self.take_check(key);
        }
        self.bump();
        true
    }

    /// Instances of service `name` on every node, in (node, ID) order.
    pub(crate) fn instances<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Service> {
        self.by_name
            .get(name)
            .into_iter()
            .flatten()
            .filter_map(|key| self.services.get(key))
    }

    /// The Connect-capable instances of `name`: `connect-proxy` services whose
    /// `Proxy.DestinationServiceName` is `name`, and Connect-native instances of it.
    pub(crate) fn connect_instances<'a>(
        &'a self,
        name: &'a str,
    ) -> impl Iterator<Item = &'a Service> {
        self.services.values().filter(move |s| {
            let proxy_to = s.kind == "connect-proxy"
                && s.proxy
                    .as_ref()
                    .and_then(|p| p["DestinationServiceName"].as_str())
                    == Some(name);
            let native = s.name == name
                && s.connect.as_ref().and_then(|c| c["Native"].as_bool()) == Some(true);
            proxy_to || native
        })
    }

    /// The node's checks followed by the instance's own, as Consul's
    /// `parseCheckServiceNodes` lists them.
    pub(crate) fn checks_for(&self, svc: &Service) -> Vec<&Check> {
        let node = (svc.node.clone(), String::new());
        let own = (svc.node.clone(), svc.id.clone());
        [node, own]
            .iter()
            .filter_map(|target| self.checks_by_target.get(target))
            .flatten()
            .filter_map(|id| self.checks.get(&(svc.node.clone(), id.clone())))
            .collect()
    }

    /// Resets the index to `to` as after a restart with older data; ends blocking waits.
    pub(crate) fn reset_index(&mut self, to: u64) {
        // Consul reports index 0 as 1; storing 1 keeps the next write's index (2)
        // distinct from the state answered right after the reset, as in Consul,
        // where one index never stands for two states. Storing 0 would answer the
        // reset state and the next write both with index 1, and a client blocked on
        // 1 would never wake.
        let to = to.max(1);
        self.index = to;
        self.epoch += 1;
        self.extinction = self.extinction.min(to);
        for v in self.service_index.values_mut() {
            *v = (*v).min(to);
        }
        self.kv_index = self.kv_index.min(to);
    }

    /// Tags of a service, for `ServiceTags` on its checks.
    pub(crate) fn service_tags(&self, node: &str, service_id: &str) -> Vec<String> {
        self.services
            .get(&(node.to_owned(), service_id.to_owned()))
            .map(|s| s.tags.clone())
            .unwrap_or_default()
    }

    /// Renders a service's check list for responses.
    pub(crate) fn render_checks(&self, checks: &[&Check]) -> Value {
        Value::Array(
            checks
                .iter()
                .map(|c| c.to_json(&self.service_tags(&c.node, &c.service_id)))
                .collect(),
        )
    }
}
