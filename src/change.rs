//! Turning full snapshots of a service into the changes a balancer needs.
//!
//! Registries answer with the whole instance list, and an answer is no guarantee of
//! a change (Consul wakes blocking queries for unrelated writes). [`Applied`] keeps
//! the set the consumer has seen and emits only real differences.

// Used by the registries; a build with neither (e.g. `tls-ring` alone) has no caller.
#![cfg_attr(
    not(any(feature = "consul", feature = "etcd", feature = "nacos")),
    allow(dead_code)
)]

use std::collections::HashMap;

use tower::discover::Change;

use crate::instance::{Instance, InstanceKey};

/// The set of instances a consumer has been told about.
#[derive(Debug, Default)]
pub(crate) struct Applied {
    set: HashMap<InstanceKey, Instance>,
}

impl Applied {
    /// Diffs `snapshot` against the applied set, updates the set, and returns the
    /// changes: first an `Insert` for every new or changed instance, then a `Remove`
    /// for every instance that is gone. Inserting before removing means a replacement
    /// never leaves the balancer empty in between.
    ///
    /// If the snapshot lists a key twice, the last entry wins.
    pub(crate) fn apply(
        &mut self,
        snapshot: impl IntoIterator<Item = Instance>,
    ) -> Vec<Change<InstanceKey, Instance>> {
        let mut next: HashMap<InstanceKey, Instance> = HashMap::with_capacity(self.set.len());
        for instance in snapshot {
            next.insert(instance.key().clone(), instance);
        }
        let mut changes = Vec::new();
        for (key, instance) in &next {
            if self.set.get(key) != Some(instance) {
                changes.push(Change::Insert(key.clone(), instance.clone()));
            }
        }
        for key in self.set.keys() {
            if !next.contains_key(key) {
                changes.push(Change::Remove(key.clone()));
            }
        }
        self.set = next;
        changes
    }

    /// Applies one new or changed instance (etcd applies watch events one by one); `None` when it is already applied as is.
    #[cfg_attr(not(feature = "etcd"), allow(dead_code))]
    pub(crate) fn insert(&mut self, instance: Instance) -> Option<Change<InstanceKey, Instance>> {
        if self.set.get(instance.key()) == Some(&instance) {
            return None;
        }
        let key = instance.key().clone();
        self.set.insert(key.clone(), instance.clone());
        Some(Change::Insert(key, instance))
    }

    /// Removes one instance; `None` when it is not applied.
    #[cfg_attr(not(feature = "etcd"), allow(dead_code))]
    pub(crate) fn remove(&mut self, key: &InstanceKey) -> Option<Change<InstanceKey, Instance>> {
        self.set.remove(key)?;
        Some(Change::Remove(key.clone()))
    }

    /// The applied keys, sorted.
    #[cfg(test)]
    pub(crate) fn keys(&self) -> Vec<&InstanceKey> {
        let mut keys: Vec<_> = self.set.keys().collect();
        keys.sort();
        keys
    }

    #[cfg_attr(not(any(feature = "consul", feature = "nacos")), allow(dead_code))]
    pub(crate) fn len(&self) -> usize {
        self.set.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn inst(id: &str, port: u16) -> Instance {
        Instance::new(InstanceKey::new("n", id), "127.0.0.1", port)
    }

    fn keys(changes: &[Change<InstanceKey, Instance>]) -> Vec<String> {
        let mut out: Vec<String> = changes
            .iter()
            .map(|c| match c {
                Change::Insert(k, _) => format!("+{}", k.id()),
                Change::Remove(k) => format!("-{}", k.id()),
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn ignores_unchanged_snapshot() {
        let mut a = Applied::default();
        assert_eq!(keys(&a.apply([inst("a", 1), inst("b", 2)])), ["+a", "+b"]);
        assert!(a.apply([inst("b", 2), inst("a", 1)]).is_empty());
    }

    #[test]
    fn reinserts_changed_port_and_removes_gone() {
        let mut a = Applied::default();
        a.apply([inst("a", 1), inst("b", 2)]);
        assert_eq!(keys(&a.apply([inst("a", 9)])), ["+a", "-b"]);
    }

    #[test]
    fn reinserts_changed_metadata() {
        let mut a = Applied::default();
        a.apply([inst("a", 1)]);
        let meta = BTreeMap::from([("zone".to_owned(), "b".to_owned())]);
        assert_eq!(keys(&a.apply([inst("a", 1).with_meta(meta)])), ["+a"]);
    }

    #[test]
    fn inserts_come_before_removes() {
        let mut a = Applied::default();
        a.apply([inst("a", 1)]);
        let changes = a.apply([inst("b", 1)]);
        assert!(matches!(changes[0], Change::Insert(..)));
        assert!(matches!(changes[1], Change::Remove(..)));
    }

    #[test]
    fn empty_snapshot_removes_everything() {
        let mut a = Applied::default();
        a.apply([inst("a", 1), inst("b", 1)]);
        assert_eq!(keys(&a.apply([])), ["-a", "-b"]);
        assert_eq!(a.len(), 0);
    }

    fn arb_snapshot() -> impl Strategy<Value = Vec<Instance>> {
        prop::collection::vec((0u8..8, 1u16..4, prop::bool::ANY), 0..8).prop_map(|v| {
            v.into_iter()
                .map(|(id, port, tagged)| {
                    let tags = if tagged { vec!["t".to_owned()] } else { vec![] };
                    inst(&format!("i{id}"), port).with_tags(tags)
                })
                .collect()
        })
    }

    proptest! {
        /// Replaying the emitted changes onto a map always yields the last snapshot,
        /// and no change is redundant.
        #[test]
        fn changes_replay_to_the_last_snapshot(snapshots in prop::collection::vec(arb_snapshot(), 1..12)) {
            let mut applied = Applied::default();
            let mut balancer: HashMap<InstanceKey, Instance> = HashMap::new();
            for snapshot in snapshots {
                let mut expected: HashMap<InstanceKey, Instance> = HashMap::new();
                for i in &snapshot {
                    expected.insert(i.key().clone(), i.clone());
                }
                for change in applied.apply(snapshot) {
                    match change {
                        Change::Insert(k, v) => {
                            prop_assert_ne!(balancer.get(&k), Some(&v), "redundant insert");
                            balancer.insert(k, v);
                        }
                        Change::Remove(k) => {
                            prop_assert!(balancer.remove(&k).is_some(), "redundant remove");
                        }
                    }
                }
                prop_assert_eq!(&balancer, &expected);
            }
        }
    }
}
