//! The registry-agnostic core: a [`Source`] watches one service and reports what it
//! sees through a [`Sink`]; everything else is shared by every registry.
//!
//! ```text
//! Source (Consul blocking queries, etcd watch, Nacos push, DNS, a static list, yours)
//!   └─ Sink ─▶ shared watch: one per (registry, query), its WatchState in a
//!              tokio::sync::watch channel (last set, failures, generation)
//!                └─▶ Discovery (one per consumer): diffs the set it has seen
//!                     against the latest (SnapshotDiff) and yields Change::Insert /
//!                     Change::Remove; never an error, never the end
//!                       └─▶ BalancedChannel (or any tower balancer)
//! ```
//!
//! The core owns, once for all registries:
//! - **sharing**: [`Watches`] keeps one running watch per key (a registry's query
//!   options), however many discoveries and channels use it, and stops it when the
//!   last one drops;
//! - **diffing**: each [`Discovery`] turns the shared set into changes;
//! - **outages**: a failed read never empties the set; the discovery never errors
//!   and never ends, so a balancer keeps routing to the last known instances;
//! - **status**: one [`WatchState`] (instances, failures, last error, last success,
//!   generation, the registry's position) and one [`WatchObserver`];
//! - **task ownership**: the watch runs on a task owned by the shared handle and is
//!   aborted when the last discovery drops.
//!
//! # Bring your own registry
//!
//! Implement [`Source`] (an async loop that reports to its [`Sink`]) and build a
//! [`Discovery`] from it:
//!
//! ```
//! use std::time::Duration;
//! use tonic_discovery::source::{Discovery, Sink, Source};
//! use tonic_discovery::{Instance, InstanceKey};
//!
//! /// A toy registry: two instances, then a third.
//! struct Toy;
//!
//! impl Source for Toy {
//!     async fn run(self, sink: Sink) {
//!         let instance = |id: &str, port| Instance::new(InstanceKey::new("", id), "127.0.0.1", port);
//!         sink.snapshot([instance("a", 50051), instance("b", 50052)]);
//!         tokio::time::sleep(Duration::from_millis(10)).await;
//!         sink.insert(instance("c", 50053));
//!         // Keep watching until every discovery is dropped.
//!         sink.closed().await;
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use futures_util::StreamExt;
//! let mut discovery = Discovery::new("toy", Toy);
//! let mut seen = Vec::new();
//! while seen.len() < 3 {
//!     if let Some(Ok(tower::discover::Change::Insert(key, _))) = discovery.next().await {
//!         seen.push(key.id().to_owned());
//!     }
//! }
//! assert_eq!(seen, ["a", "b", "c"]);
//! // Hand `discovery` to `BalancedChannel::builder("toy").build(discovery)`.
//! # }
//! ```

mod config;
mod discovery;
#[cfg(feature = "dns")]
mod dns;
#[cfg_attr(not(any(feature = "etcd", feature = "nacos")), allow(dead_code))]
pub(crate) mod meta_filter;
pub(crate) mod shared;
mod sink;
mod state;
mod static_list;

use std::future::Future;
use std::time::Duration;

use crate::backoff::Backoff;

pub use config::{ConfigUpdate, ServiceConfigWatch};
pub use discovery::{Discovery, Filter};
#[cfg(feature = "dns")]
#[cfg_attr(docsrs, doc(cfg(feature = "dns")))]
pub use dns::{Dns, DnsBuilder};
pub use shared::Watches;
pub use sink::Sink;
pub use state::{WatchObserver, WatchState};
pub use static_list::{StaticList, StaticSource};

/// A registry's watch of one service.
///
/// [`run`](Self::run) reads the registry and reports every change through the
/// [`Sink`]: full snapshots ([`Sink::snapshot`]) or deltas ([`Sink::insert`],
/// [`Sink::remove`]) as the registry gives them, and failures
/// ([`Sink::retry_later`], which records and logs the failure and says how long to
/// wait, following [`backoff`](Self::backoff)). It should not return while the sink is
/// open: wait as told after a failure (the last set stays meanwhile) and end when
/// [`Sink::closed`] resolves, or simply run until the task is aborted, which happens
/// when the last discovery using the watch drops.
pub trait Source: Send + 'static {
    /// Watches the service, reporting to `sink`.
    fn run(self, sink: Sink) -> impl Future<Output = ()> + Send + 'static;

    /// The registry's name in metrics (the `registry` label of the watch metrics).
    /// Default: `custom`.
    fn registry(&self) -> &'static str {
        "custom"
    }

    /// How long to wait between attempts while the registry fails, as
    /// [`Sink::retry_later`] answers. Default: [`DEFAULT_BACKOFF`]. A source that
    /// overrides it says why.
    fn backoff(&self) -> Backoff {
        DEFAULT_BACKOFF
    }
}

/// The failure backoff of every source that does not say otherwise: 100 ms doubling
/// to 5 s, jitter 0.2. The first retry comes quickly, as most failures are one lost
/// connection or a registry restarting; the 5 s cap bounds how stale the set may stay
/// after the registry is back, and the jitter keeps a fleet from retrying in step.
/// etcd and Nacos use it; Consul and DNS override it (see their builders).
pub const DEFAULT_BACKOFF: Backoff =
    Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
