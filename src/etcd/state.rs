//! What the watch of one prefix knows: the revision it has applied, and how a read or
//! a watch response becomes what the registry says (a snapshot, or inserts and
//! removes). The set itself is kept by the core ([`Sink`](crate::source::Sink)).
//!
//! Pure logic, kept apart from the watch loop so the revision rules are tested alone.

use std::collections::BTreeMap;

use super::keys::KeyLayout;
use crate::instance::{Instance, InstanceKey};

/// One watch event, reduced to what a follower needs (discovery, service config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Event {
    Put {
        key: String,
        mod_revision: i64,
        value: Vec<u8>,
    },
    Delete {
        key: String,
        mod_revision: i64,
    },
}

impl Event {
    fn mod_revision(&self) -> i64 {
        match self {
            Event::Put { mod_revision, .. } | Event::Delete { mod_revision, .. } => *mod_revision,
        }
    }
}

/// Keeps the events after revision `applied` and advances it to the last of them.
/// Events at or below it were applied already (a resumed watch, or etcd 3.4 repeating
/// them). All events of one revision arrive in one response, so `applied` moves once
/// per response, after all of its events are kept.
pub(crate) fn newer(applied: &mut i64, events: Vec<Event>) -> Vec<Event> {
    let floor = *applied;
    let kept: Vec<Event> = events
        .into_iter()
        .filter(|event| event.mod_revision() > floor)
        .collect();
    if let Some(last) = kept.iter().map(Event::mod_revision).max() {
        *applied = last;
    }
    kept
}

/// What one watch response says, net of its events: each key is either inserted (new
/// or changed) or removed, never both, so the two lists apply in any order.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Delta {
    pub(crate) inserts: Vec<Instance>,
    pub(crate) removes: Vec<InstanceKey>,
}

/// The revision one prefix watch has applied, and the decoding of its keys (an
/// instance's key is its etcd key).
#[derive(Debug)]
pub(crate) struct Cursor {
    layout: KeyLayout,
    service: String,
    revision: i64,
}

impl Cursor {
    pub(crate) fn new(layout: KeyLayout, service: String) -> Self {
        Cursor {
            layout,
            service,
            revision: 0,
        }
    }

    /// The last applied revision; a watch resumes at the next one.
    pub(crate) fn revision(&self) -> i64 {
        self.revision
    }

    /// A full read of the prefix taken at `revision`: the whole set now (keys that do
    /// not decode are skipped).
    pub(crate) fn resync(
        &mut self,
        revision: i64,
        kvs: impl IntoIterator<Item = (String, Vec<u8>)>,
    ) -> Vec<Instance> {
        let set = kvs
            .into_iter()
            .filter_map(|(key, value)| self.decode(&key, &value))
            .collect();
        self.revision = revision;
        set
    }

    /// The events of one watch response, net per key (the last event of a key wins).
    /// Events at or below the last applied revision are dropped ([`newer`]). A put
    /// that no longer decodes removes the key.
    pub(crate) fn apply(&mut self, events: Vec<Event>) -> Delta {
        let mut net: BTreeMap<String, Option<Instance>> = BTreeMap::new();
        for event in newer(&mut self.revision, events) {
            match event {
                Event::Put { key, value, .. } => {
                    let instance = self.decode(&key, &value);
                    net.insert(key, instance);
                }
                Event::Delete { key, .. } => {
                    net.insert(key, None);
                }
            }
        }
        let mut delta = Delta::default();
        for (key, instance) in net {
            match instance {
                Some(instance) => delta.inserts.push(instance),
                None => delta.removes.push(InstanceKey::new("", key)),
            }
        }
        delta
    }

    /// A progress notification: nothing changed up to `revision`.
    pub(crate) fn progress(&mut self, revision: i64) {
        self.revision = self.revision.max(revision);
    }

    fn decode(&self, key: &str, value: &[u8]) -> Option<Instance> {
        match self.layout.decode(&self.service, key, value) {
            Ok(instance) => Some(instance),
            Err(e) => {
                tracing::warn!(service = %self.service, error = %e, "skipping etcd key");
                None
            }
        }
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
