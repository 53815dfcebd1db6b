//! Turning full snapshots of a service into the changes a balancer needs.
//!
//! Registries answer with the whole instance list, and an answer is no guarantee of
//! a change (Consul wakes blocking queries for unrelated writes). [`SnapshotDiff`] keeps
//! the set the consumer has seen and emits only real differences.

use std::borrow::Cow;
use std::collections::HashMap;

use tower::discover::Change;

use crate::instance::{Instance, InstanceKey};

/// Turns full snapshots of a service's instances into the `tower::discover::Change`s
/// a balancer needs: what every discovery of this crate does with a registry's answers,
/// for registries it does not cover.
///
/// It remembers the set the consumer has been told about. Each snapshot is compared in
/// place, entry by entry: unchanged instances cost a lookup and are neither copied nor
/// reported.
///
/// ```
/// use tonic_discovery::{Instance, InstanceKey, SnapshotDiff};
/// use tower::discover::Change;
///
/// let a = Instance::new(InstanceKey::new("", "a"), "10.0.0.1", 50051);
/// let b = Instance::new(InstanceKey::new("", "b"), "10.0.0.2", 50051);
/// let mut diff = SnapshotDiff::new();
/// assert_eq!(diff.apply([a.clone(), b.clone()]).len(), 2);
/// assert!(diff.apply([b.clone(), a.clone()]).is_empty());
/// let changes = diff.apply([b]);
/// assert!(matches!(&changes[..], [Change::Remove(key)] if key.id() == "a"));
/// ```
#[derive(Debug, Default)]
pub struct SnapshotDiff {
    // foldhash rather than SipHash: the diff hashes every key of every snapshot, and
    // its per-process random seed keeps registry-chosen keys from colliding on purpose.
    set: HashMap<InstanceKey, Slot, foldhash::fast::RandomState>,
    /// The number of the snapshot being applied; a slot not stamped with it is gone.
    round: u64,
}

#[derive(Debug)]
struct Slot {
    instance: Instance,
    /// The last round that listed the key.
    seen: u64,
    /// The last round that changed the instance.
    written: u64,
}

impl SnapshotDiff {
    /// An empty set.
    pub fn new() -> Self {
        SnapshotDiff::default()
    }

    /// Diffs `snapshot` against the applied set, updates the set, and returns the
    /// changes: first an `Insert` for every new or changed instance, then a `Remove`
    /// for every instance that is gone. Inserting before removing means a replacement
    /// never leaves the balancer empty in between.
    ///
    /// If the snapshot lists a key twice, the last entry wins.
    pub fn apply(
        &mut self,
        snapshot: impl IntoIterator<Item = Instance>,
    ) -> Vec<Change<InstanceKey, Instance>> {
        self.apply_cow(snapshot.into_iter().map(Cow::Owned))
    }

    /// As [`apply`](Self::apply), for a snapshot held elsewhere: only new or changed
    /// instances are cloned.
    pub fn apply_slice(&mut self, snapshot: &[Instance]) -> Vec<Change<InstanceKey, Instance>> {
        self.apply_cow(snapshot.iter().map(Cow::Borrowed))
    }

    fn apply_cow<'a>(
        &mut self,
        snapshot: impl Iterator<Item = Cow<'a, Instance>>,
    ) -> Vec<Change<InstanceKey, Instance>> {
        self.round = self.round.wrapping_add(1);
        let round = self.round;
        // Keys written in this round, with what the consumer had before (None: new).
        let mut written: Vec<(InstanceKey, Option<Instance>)> = Vec::new();
        let mut distinct = 0;
        for instance in snapshot {
            match self.set.get_mut(instance.key()) {
                Some(slot) => {
                    distinct += usize::from(slot.seen != round);
                    slot.seen = round;
                    if slot.instance != *instance {
                        let old = std::mem::replace(&mut slot.instance, instance.into_owned());
                        // A key listed twice keeps the value from before the snapshot.
                        if slot.written != round {
                            slot.written = round;
                            written.push((slot.instance.key().clone(), Some(old)));
                        }
                    }
                }
                None => {
                    distinct += 1;
                    let instance = instance.into_owned();
                    written.push((instance.key().clone(), None));
                    self.set.insert(
                        instance.key().clone(),
                        Slot {
                            instance,
                            seen: round,
                            written: round,
                        },
                    );
                }
            }
        }
        let mut changes = Vec::with_capacity(written.len());
        for (key, before) in written {
            if let Some(slot) = self.set.get(&key)
                && before.as_ref() != Some(&slot.instance)
            {
                changes.push(Change::Insert(key, slot.instance.clone()));
            }
        }
        // Every key still applied was in the snapshot: nothing to remove.
        if self.set.len() > distinct {
            self.set.retain(|key, slot| {
                let live = slot.seen == round;
                if !live {
                    changes.push(Change::Remove(key.clone()));
                }
                live
            });
        }
        changes
    }

    /// How many instances the consumer has been told about.
    pub fn len(&self) -> usize {
        self.set.len()
    }

    /// True when the consumer has been told about no instance.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
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
        let mut a = SnapshotDiff::default();
        assert_eq!(keys(&a.apply([inst("a", 1), inst("b", 2)])), ["+a", "+b"]);
        assert!(a.apply([inst("b", 2), inst("a", 1)]).is_empty());
    }

    #[test]
    fn reinserts_changed_port_and_removes_gone() {
        let mut a = SnapshotDiff::default();
        a.apply([inst("a", 1), inst("b", 2)]);
        assert_eq!(keys(&a.apply([inst("a", 9)])), ["+a", "-b"]);
    }

    #[test]
    fn reinserts_changed_metadata() {
        let mut a = SnapshotDiff::default();
        a.apply([inst("a", 1)]);
        let meta = BTreeMap::from([("zone".to_owned(), "b".to_owned())]);
        assert_eq!(keys(&a.apply([inst("a", 1).with_meta(meta)])), ["+a"]);
    }

    #[test]
    fn inserts_come_before_removes() {
        let mut a = SnapshotDiff::default();
        a.apply([inst("a", 1)]);
        let changes = a.apply([inst("b", 1)]);
        assert!(matches!(changes[0], Change::Insert(..)));
        assert!(matches!(changes[1], Change::Remove(..)));
    }

    #[test]
    fn empty_snapshot_removes_everything() {
        let mut a = SnapshotDiff::default();
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
            let mut applied = SnapshotDiff::default();
            let mut balancer: HashMap<InstanceKey, Instance> = HashMap::new();
            for (n, snapshot) in snapshots.into_iter().enumerate() {
                let mut expected: HashMap<InstanceKey, Instance> = HashMap::new();
                for i in &snapshot {
                    expected.insert(i.key().clone(), i.clone());
                }
                let changes = if n % 2 == 0 {
                    applied.apply_slice(&snapshot)
                } else {
                    applied.apply(snapshot)
                };
                for change in changes {
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
