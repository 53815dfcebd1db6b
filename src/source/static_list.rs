//! [`StaticList`]: a fixed list of instances, or one updated from code, on the same
//! core as the registries (the replacement for tonic's `balance_list`).

use std::fmt;
use std::sync::Arc;

use tokio::sync::watch;

use super::Source;
use super::discovery::Discovery;
use super::shared::Watches;
use super::sink::Sink;
use crate::error::{Error, Result};
use crate::instance::{Instance, InstanceKey};

/// A list of instances kept in code: fixed, or changed at run time with
/// [`insert`](Self::insert), [`remove`](Self::remove) and [`replace`](Self::replace).
/// Every [`discovery`](Self::discovery) of it follows the changes.
///
/// ```
/// use tonic_discovery::source::StaticList;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let list = StaticList::from_addrs(["127.0.0.1:50051", "[::1]:50052"]).expect("addresses");
/// let discovery = list.discovery("echo");
/// // let channel = BalancedChannel::builder("echo").build(discovery)?;
/// list.remove(&StaticList::key("127.0.0.1:50051"));
/// # }
/// ```
#[derive(Clone)]
pub struct StaticList {
    inner: Arc<Inner>,
}

struct Inner {
    set: watch::Sender<Vec<Instance>>,
    watches: Watches<()>,
}

/// The [`Source`] of a [`StaticList`]'s discoveries.
#[derive(Debug)]
pub struct StaticSource {
    rx: watch::Receiver<Vec<Instance>>,
}

// === impl StaticList ===

impl StaticList {
    /// A list of these instances.
    pub fn new(instances: impl IntoIterator<Item = Instance>) -> Self {
        StaticList {
            inner: Arc::new(Inner {
                set: watch::Sender::new(instances.into_iter().collect()),
                watches: Watches::new(),
            }),
        }
    }

    /// A list of `host:port` addresses (`[v6]:port` for IPv6 literals), each keyed by
    /// its address (see [`key`](Self::key)).
    ///
    /// # Errors
    ///
    /// A configuration error naming the first address that is not `host:port` with a
    /// port from 1 to 65535.
    pub fn from_addrs<A: AsRef<str>>(addrs: impl IntoIterator<Item = A>) -> Result<Self> {
        let instances = addrs
            .into_iter()
            .map(|a| instance(a.as_ref()))
            .collect::<Result<Vec<_>>>()?;
        Ok(StaticList::new(instances))
    }

    /// The key an address gets in [`from_addrs`](Self::from_addrs): no node, the
    /// address as the id.
    pub fn key(addr: &str) -> InstanceKey {
        InstanceKey::new("", addr)
    }

    /// Adds `instance`, or replaces the one with its key.
    pub fn insert(&self, instance: Instance) {
        self.inner.set.send_modify(|set| {
            set.retain(|i| i.key() != instance.key());
            set.push(instance);
        });
    }

    /// Removes the instance with `key`, if any.
    pub fn remove(&self, key: &InstanceKey) {
        self.inner.set.send_if_modified(|set| {
            let before = set.len();
            set.retain(|i| i.key() != key);
            set.len() != before
        });
    }

    /// Replaces the whole list.
    pub fn replace(&self, instances: impl IntoIterator<Item = Instance>) {
        self.inner.set.send_replace(instances.into_iter().collect());
    }

    /// The instances now.
    pub fn instances(&self) -> Vec<Instance> {
        self.inner.set.borrow().clone()
    }

    /// A discovery of the list, named `service` in logs; all discoveries of one list
    /// share one watch.
    pub fn discovery(&self, service: impl Into<String>) -> Discovery {
        let rx = self.inner.set.subscribe();
        Discovery::shared(&self.inner.watches, (), service, || StaticSource { rx })
    }
}

/// Parses `host:port` into an instance keyed by the address.
fn instance(addr: &str) -> Result<Instance> {
    let bad = || Error::config(format!("`{addr}` is not host:port"));
    let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() || port == 0 || (host.contains(':') && !addr.starts_with('[')) {
        return Err(bad());
    }
    Ok(Instance::new(StaticList::key(addr), host, port))
}

impl fmt::Debug for StaticList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticList")
            .field("instances", &self.inner.set.borrow().len())
            .finish()
    }
}

// === impl StaticSource ===

impl Source for StaticSource {
    fn registry(&self) -> &'static str {
        "static"
    }

    async fn run(mut self, sink: Sink) {
        loop {
            let set = self.rx.borrow_and_update().clone();
            sink.snapshot(set);
            if self.rx.changed().await.is_err() {
                // The list is gone; its last set stays.
                sink.closed().await;
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_or_say_which_is_wrong() {
        let list = StaticList::from_addrs(["127.0.0.1:1", "[::1]:2", "localhost:3"]).unwrap();
        let hosts: Vec<_> = list
            .instances()
            .iter()
            .map(|i| (i.host().to_owned(), i.port()))
            .collect();
        assert_eq!(
            hosts,
            [
                ("127.0.0.1".into(), 1),
                ("::1".into(), 2),
                ("localhost".into(), 3)
            ]
        );
        for bad in ["127.0.0.1", "h:0", ":80", "::1:80", "h:x", "h:70000"] {
            let err = StaticList::from_addrs([bad]).expect_err(bad);
            assert!(err.is_config() && err.to_string().contains(bad), "{err}");
        }
    }
}
