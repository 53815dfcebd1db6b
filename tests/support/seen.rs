//! What a consumer of a discovery has been told, applied as a balancer would.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use tokio::task::JoinHandle;
use tonic_discovery::{Instance, InstanceKey};
use tower::discover::Change;

/// A discovery that counts its consecutive failures.
pub trait Failing {
    fn failures(&self) -> u32;
}

impl Failing for tonic_discovery::source::Discovery {
    fn failures(&self) -> u32 {
        self.state().consecutive_failures()
    }
}

/// The applied set of a discovery, kept by a task; faults (error items, redundant
/// removes, an end of the stream) are recorded for [`Seen::assert_clean`].
pub struct Seen {
    set: Arc<Mutex<HashMap<InstanceKey, Instance>>>,
    failures: Arc<AtomicU32>,
    faults: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl Seen {
    pub fn follow<D, E>(mut discovery: D) -> Seen
    where
        D: Stream<Item = Result<Change<InstanceKey, Instance>, E>>
            + Failing
            + Send
            + Unpin
            + 'static,
        E: std::fmt::Display,
    {
        let set = Arc::new(Mutex::new(HashMap::new()));
        let faults = Arc::new(Mutex::new(Vec::new()));
        let failures = Arc::new(AtomicU32::new(0));
        let (s, f, failed) = (set.clone(), faults.clone(), failures.clone());
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(5));
            loop {
                let item = tokio::select! {
                    item = discovery.next() => item,
                    _ = tick.tick() => {
                        failed.store(discovery.failures(), Ordering::Relaxed);
                        continue;
                    }
                };
                let Some(item) = item else { break };
                match item {
                    Ok(Change::Insert(k, i)) => {
                        s.lock().unwrap().insert(k, i);
                    }
                    Ok(Change::Remove(k)) => {
                        if s.lock().unwrap().remove(&k).is_none() {
                            f.lock().unwrap().push(format!("redundant remove of {k}"));
                        }
                    }
                    Err(e) => f.lock().unwrap().push(format!("error item: {e}")),
                }
            }
            f.lock().unwrap().push("discovery ended".to_owned());
        });
        Seen {
            set,
            failures,
            faults,
            task,
        }
    }

    /// The discovery's consecutive failures, as last sampled.
    pub fn failures(&self) -> u32 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Instance id → `host:port`.
    pub fn addrs(&self) -> BTreeMap<String, String> {
        self.set
            .lock()
            .unwrap()
            .iter()
            .map(|(k, i)| (k.id().to_owned(), i.authority()))
            .collect()
    }

    /// The instance ids, sorted.
    pub fn keys(&self) -> Vec<String> {
        self.addrs().into_keys().collect()
    }

    /// `host:port` of every instance, sorted.
    pub fn authorities(&self) -> Vec<String> {
        let mut out: Vec<String> = self.addrs().into_values().collect();
        out.sort();
        out
    }

    /// The instance at `host:port`, if seen.
    pub fn at(&self, authority: &str) -> Option<Instance> {
        let set = self.set.lock().unwrap();
        set.values().find(|i| i.authority() == authority).cloned()
    }

    /// Metadata of the instance at `host:port` (empty if not seen).
    pub fn meta(&self, authority: &str) -> BTreeMap<String, String> {
        self.at(authority)
            .map(|i| i.meta().clone())
            .unwrap_or_default()
    }

    /// Errors, redundant removes or an end of the stream: none may happen.
    pub fn assert_clean(&self) {
        let faults = self.faults.lock().unwrap();
        assert!(faults.is_empty(), "discovery misbehaved: {faults:?}");
    }
}

impl Drop for Seen {
    fn drop(&mut self) {
        self.task.abort();
    }
}
