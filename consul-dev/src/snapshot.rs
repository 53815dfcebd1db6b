//! Snapshots of the registry's state, saved and restored in process: what
//! `consul snapshot save` and `consul snapshot restore` do to a cluster, for tests
//! of clients that must survive the index going backwards.

use std::fmt;

use tokio::time::Instant;

use crate::store::Store;
use crate::store::model::{Check, CheckKind};
use crate::{ConsulDev, checks, session};

/// The registry's state at one moment: catalog, checks, KV, sessions, prepared
/// queries and every index. From [`ConsulDev::snapshot`], for
/// [`ConsulDev::restore`].
#[derive(Clone)]
pub struct Snapshot {
    store: Store,
}

// === impl Snapshot ===

impl Snapshot {
    /// The registry's index when the snapshot was taken.
    pub fn index(&self) -> u64 {
        self.store.index
    }
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshot")
            .field("index", &self.store.index)
            .field("services", &self.store.services.len())
            .field("checks", &self.store.checks.len())
            .field("kv", &self.store.kv.len())
            .finish_non_exhaustive()
    }
}

// === impl ConsulDev ===

impl ConsulDev {
    /// Saves the registry's state, as `consul snapshot save` does.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            store: self.shared.store().clone(),
        }
    }

    /// Replaces the registry's state with `snapshot`, as restoring an older
    /// snapshot does: the index goes back to the snapshot's and counts on from
    /// there, and every blocking query waiting now returns at once with the
    /// restored state and its lower index (queries arriving later block as usual,
    /// also on an index above the restored one, as in Consul). TTL checks and
    /// sessions get a fresh TTL from now, the agent's HTTP, gRPC and TCP checks of
    /// the snapshot run again; fault rules and the request log are kept.
    pub fn restore(&self, snapshot: &Snapshot) {
        let node = self.shared.cfg.node_name.clone();
        let now = Instant::now();
        let local: Vec<Check> = self.shared.write(|s| {
            let epoch = s.epoch + 1;
            *s = snapshot.store.clone();
            // A new epoch ends the waits of the queries blocked now.
            s.epoch = epoch;
            for check in s.checks.values_mut() {
                if let (CheckKind::Ttl(ttl), Some(_)) = (&check.kind, check.ttl_deadline) {
                    check.ttl_deadline = Some(now + *ttl);
                }
            }
            session::restart_ttls(s, now);
            s.checks
                .values()
                .filter(|c| c.node == node)
                .cloned()
                .collect()
        });
        self.shared.abort_runners();
        for check in &local {
            checks::start_runner(&self.shared, check);
        }
    }
}
