//! What a discovery knows: the applied instances and the revision they reflect.
//!
//! Pure logic, kept apart from the watch loop so the revision rules are tested alone.

use std::collections::HashMap;

use tower::discover::Change;

use super::keys::KeyLayout;
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

/// The applied set of one service, keyed by etcd key, and the last applied revision.
#[derive(Debug)]
pub(crate) struct WatchState {
    layout: KeyLayout,
    service: String,
    set: HashMap<String, Instance>,
    revision: i64,
}

impl WatchState {
    pub(crate) fn new(layout: KeyLayout, service: String) -> Self {
        WatchState {
            layout,
            service,
            set: HashMap::new(),
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
        let mut next = HashMap::new();
        for (key, value) in kvs {
            if let Some(instance) = self.decode(&key, &value) {
                next.insert(key, instance);
            }
        }
        let mut changes = Vec::new();
        for (key, instance) in &next {
            if self.set.get(key) != Some(instance) {
                changes.push(Change::Insert(instance.key().clone(), instance.clone()));
            }
        }
        for (key, instance) in &self.set {
            if !next.contains_key(key) {
                changes.push(Change::Remove(instance.key().clone()));
            }
        }
        self.set = next;
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
                    Some(instance) => changes.extend(self.insert(key, instance)),
                    None => changes.extend(self.remove(&key)),
                },
                Event::Delete { key, .. } => changes.extend(self.remove(&key)),
            }
        }
        changes
    }

    /// A progress notification: nothing changed up to `revision`.
    pub(crate) fn progress(&mut self, revision: i64) {
        self.revision = self.revision.max(revision);
    }

    fn insert(&mut self, key: String, instance: Instance) -> Option<Change<InstanceKey, Instance>> {
        if self.set.get(&key) == Some(&instance) {
            return None;
        }
        self.set.insert(key, instance.clone());
        Some(Change::Insert(instance.key().clone(), instance))
    }

    fn remove(&mut self, key: &str) -> Option<Change<InstanceKey, Instance>> {
        let instance = self.set.remove(key)?;
        Some(Change::Remove(instance.key().clone()))
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
        let mut keys: Vec<String> = self.set.keys().cloned().collect();
        keys.sort();
        keys
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
