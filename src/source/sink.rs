//! [`Sink`]: where a [`Source`](super::Source) reports what it sees.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::state::WatchState;
use crate::backoff::Backoff;
use crate::instance::{Instance, InstanceKey};
use crate::telemetry::WatchMetrics;

/// Where a [`Source`](super::Source) reports: snapshots or deltas of the set, and
/// failures. Every method publishes to the discoveries sharing the watch at once.
///
/// A snapshot or delta that leaves the set as it was still counts as an answer
/// (clearing the failure count) but wakes no discovery.
pub struct Sink {
    tx: watch::Sender<WatchState>,
    metrics: WatchMetrics,
    registry: &'static str,
    backoff: Backoff,
}

// === impl Sink ===

impl Sink {
    pub(crate) fn new(
        tx: watch::Sender<WatchState>,
        metrics: WatchMetrics,
        registry: &'static str,
        backoff: Backoff,
    ) -> Self {
        Sink {
            tx,
            metrics,
            registry,
            backoff,
        }
    }

    /// A sink of its own and a receiver of what it publishes, for a source's unit
    /// tests.
    #[cfg(test)]
    pub(crate) fn detached(registry: &'static str) -> (Self, watch::Receiver<WatchState>) {
        let (tx, rx) = watch::channel(WatchState::default());
        let metrics = WatchMetrics::new(registry, "test");
        (Sink::new(tx, metrics, "test", super::DEFAULT_BACKOFF), rx)
    }

    /// The whole set now. A key listed twice keeps its last entry.
    pub fn snapshot(&self, instances: impl IntoIterator<Item = Instance>) {
        let mut set: Vec<Instance> = instances.into_iter().collect();
        set.sort_by(|a, b| a.key().cmp(b.key()));
        // Sorted and stable: of equal keys, keep the last.
        set.reverse();
        set.dedup_by(|a, b| a.key() == b.key());
        set.reverse();
        self.publish(|current| (!same(current, &set)).then_some(set));
    }

    /// One instance is new or changed.
    pub fn insert(&self, instance: Instance) {
        self.publish(|current| {
            let at = current.binary_search_by(|i| i.key().cmp(instance.key()));
            match at {
                Ok(i) if current[i] == instance => None,
                Ok(i) => {
                    let mut set = current.to_vec();
                    set[i] = instance;
                    Some(set)
                }
                Err(i) => {
                    let mut set = Vec::with_capacity(current.len() + 1);
                    set.extend_from_slice(&current[..i]);
                    set.push(instance);
                    set.extend_from_slice(&current[i..]);
                    Some(set)
                }
            }
        });
    }

    /// One instance is gone.
    pub fn remove(&self, key: &InstanceKey) {
        self.publish(|current| {
            let i = current.binary_search_by(|i| i.key().cmp(key)).ok()?;
            let mut set = current.to_vec();
            set.remove(i);
            Some(set)
        });
    }

    /// Several deltas at once, published together.
    pub fn apply(&self, inserts: Vec<Instance>, removes: Vec<InstanceKey>) {
        self.publish(|current| {
            let mut set: BTreeMap<&InstanceKey, &Instance> =
                current.iter().map(|i| (i.key(), i)).collect();
            for key in &removes {
                set.remove(key);
            }
            for i in &inserts {
                set.insert(i.key(), i);
            }
            let next: Vec<Instance> = set.into_values().cloned().collect();
            (!same(current, &next)).then_some(next)
        });
    }

    /// The registry answered and nothing changed.
    pub fn unchanged(&self) {
        self.publish(|_| None);
    }

    /// Sets the registry's cursor (see [`WatchState::position`]).
    pub fn set_position(&self, position: u64) {
        self.tx.send_if_modified(|s| {
            let changed = s.position != position;
            s.position = position;
            changed
        });
    }

    /// A read failed; the set stays. Records the failure (state and metrics), logs it
    /// with the registry's name, the failures in a row and the instances kept, and
    /// returns how long to wait before the next attempt: the source's
    /// [`backoff`](super::Source::backoff) after that many failures in a row (any
    /// answer starts the sequence again).
    pub fn retry_later(&self, error: impl fmt::Display) -> Duration {
        let error = error.to_string();
        let failures = self.failed(&error);
        let delay = self.backoff.delay(failures);
        let kept = self.tx.borrow().instances.len();
        tracing::warn!(
            registry = self.registry,
            %error,
            failures,
            kept,
            retry_in = ?delay,
            "registry read failed; keeping the last known instances"
        );
        delay
    }

    /// A read failed; the set stays. Returns the number of failures in a row. Records
    /// only: [`retry_later`](Self::retry_later) also logs and says how long to wait.
    pub fn failed(&self, error: impl fmt::Display) -> u32 {
        let mut failures = 0;
        self.metrics.failed();
        self.tx.send_modify(|s| {
            s.last_error = Some(error.to_string());
            s.consecutive_failures = s.consecutive_failures.saturating_add(1);
            failures = s.consecutive_failures;
        });
        failures
    }

    /// The state the discoveries see.
    pub fn state(&self) -> WatchState {
        self.tx.borrow().clone()
    }

    /// Whether every discovery and observer using the watch is gone.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Resolves when every discovery and observer using the watch is gone.
    pub async fn closed(&self) {
        self.tx.closed().await;
    }

    /// Applies `next(current set)` (a new set, or `None` when it stays) as a success.
    fn publish(&self, next: impl FnOnce(&[Instance]) -> Option<Vec<Instance>>) {
        self.metrics.answered();
        self.tx.send_modify(|s| {
            if let Some(set) = next(&s.instances) {
                s.instances = set.into();
                s.generation += 1;
            } else if !s.synced {
                // The first answer is news even when empty.
                s.generation += 1;
            }
            s.synced = true;
            s.answers += 1;
            s.last_error = None;
            s.last_success = Some(Instant::now());
            s.consecutive_failures = 0;
        });
    }
}

fn same(a: &[Instance], b: &[Instance]) -> bool {
    a == b
}

impl fmt::Debug for Sink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.tx.borrow();
        f.debug_struct("Sink")
            .field("instances", &state.instances.len())
            .field("generation", &state.generation)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(id: &str) -> Instance {
        Instance::new(InstanceKey::new("", id), "127.0.0.1", 1)
    }

    #[test]
    fn retry_later_follows_the_backoff_and_an_answer_restarts_it() {
        let (mut sink, rx) = Sink::detached("test");
        sink.backoff =
            Backoff::new(Duration::from_millis(10), Duration::from_millis(40)).jitter(0.0);
        sink.snapshot([instance("a")]);
        let delays: Vec<_> = (0..4).map(|_| sink.retry_later("down")).collect();
        let ms = Duration::from_millis;
        assert_eq!(delays, [ms(10), ms(20), ms(40), ms(40)]);
        assert_eq!(rx.borrow().consecutive_failures(), 4);
        assert_eq!(rx.borrow().last_error(), Some("down"));
        assert_eq!(rx.borrow().instances().len(), 1, "a failure keeps the set");
        sink.unchanged();
        assert_eq!(sink.retry_later("down again"), ms(10));
    }
}
