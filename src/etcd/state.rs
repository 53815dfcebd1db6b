//! What a discovery knows: the applied instances and the revision they reflect.
//!
//! Pure logic, kept apart from the watch loop so the revision rules are tested alone.

use tower::discover::Change;

use super::keys::KeyLayout;
use crate::change::SnapshotDiff;
use crate::instance::{Instance, InstanceKey};

/// One watch event, reduced to what discovery needs.
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

/// The applied set of one service (an instance's key is its etcd key), and the last
/// applied revision.
#[derive(Debug)]
pub(crate) struct WatchState {
    layout: KeyLayout,
    service: String,
    applied: SnapshotDiff,
    revision: i64,
}

impl WatchState {
    pub(crate) fn new(layout: KeyLayout, service: String) -> Self {
        WatchState {
            layout,
            service,
            applied: SnapshotDiff::default(),
            revision: 0,
        }
    }

    /// The last applied revision; a watch resumes at the next one.
    pub(crate) fn revision(&self) -> i64 {
        self.revision
    }

    /// Replaces the set with a full read of the prefix taken at `revision`, and returns
    /// the difference: inserts (new or changed) first, then removes.
    pub(crate) fn resync(
        &mut self,
        revision: i64,
        kvs: impl IntoIterator<Item = (String, Vec<u8>)>,
    ) -> Vec<Change<InstanceKey, Instance>> {
        let next: Vec<Instance> = kvs
            .into_iter()
            .filter_map(|(key, value)| self.decode(&key, &value))
            .collect();
        let changes = self.applied.apply(next);
        self.revision = revision;
        changes
    }

    /// Applies the events of one watch response. Events at or below the last applied
    /// revision were applied already (a resumed watch, or etcd 3.4 repeating them) and
    /// are dropped. All events of one revision arrive in one response, so the revision
    /// advances once, after the whole response.
    pub(crate) fn apply(&mut self, events: Vec<Event>) -> Vec<Change<InstanceKey, Instance>> {
        let floor = self.revision;
        let mut changes = Vec::new();
        for event in events {
            let revision = event.mod_revision();
            if revision <= floor {
                continue;
            }
            self.revision = self.revision.max(revision);
            match event {
                Event::Put { key, value, .. } => match self.decode(&key, &value) {
                    Some(instance) => changes.extend(self.applied.insert(instance)),
                    None => changes.extend(self.applied.remove(&InstanceKey::new("", key))),
                },
                Event::Delete { key, .. } => {
                    changes.extend(self.applied.remove(&InstanceKey::new("", key)));
                }
            }
        }
        changes
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

    #[cfg(test)]
    pub(crate) fn keys(&self) -> Vec<String> {
        self.applied
            .keys()
            .into_iter()
            .map(|k| k.id().to_owned())
            .collect()
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
