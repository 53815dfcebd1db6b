//! [`Discovery`]: a shared watch turned into the `Change` stream tower balancers read.

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use futures_core::Stream;
use tokio::sync::watch;
use tokio_util::sync::ReusableBoxFuture;
use tower::discover::Change;
use tracing::{error, info};

use super::Source;
use super::shared::{Watch, Watches};
use super::state::{WatchObserver, WatchState};
use crate::change::SnapshotDiff;
use crate::error::Error;
use crate::instance::{Instance, InstanceKey};

/// The instances of one service, as a stream of changes: a
/// [`tower::discover::Discover`] through tower's blanket impl, for any registry.
///
/// It never yields an error and never ends: registry failures keep the last known
/// set (see [`state`](Self::state)).
///
/// # Drop
///
/// Dropping the last discovery that uses a watch ends the watch's task.
pub struct Discovery {
    service: Arc<str>,
    watch: Arc<Watch>,
    rx: watch::Receiver<WatchState>,
    changed: ReusableBoxFuture<'static, Changed>,
    applied: SnapshotDiff,
    seen_generation: u64,
    pending: VecDeque<Change<InstanceKey, Instance>>,
    ended: bool,
    filter: Option<Filter>,
    keep_last_on_empty: bool,
}

/// A predicate on instances (see [`Discovery::with_filter`]).
pub type Filter = Arc<dyn Fn(&Instance) -> bool + Send + Sync>;

type Changed = (
    Result<(), watch::error::RecvError>,
    watch::Receiver<WatchState>,
);

// === impl Discovery ===

impl Discovery {
    /// A discovery of `service` over a watch of its own running `source`, spawned on
    /// the current tokio runtime (or on first poll when built outside one).
    pub fn new(service: impl Into<String>, source: impl Source) -> Self {
        let service: Arc<str> = service.into().into();
        let span = tracing::info_span!("watch", service = %service);
        let watch = Arc::new(Watch::new(source, &service, span));
        Discovery::from_watch(service, watch)
    }

    /// A discovery of `service` sharing `watches`' live watch for `key`, or starting
    /// one running `source()`.
    pub fn shared<K, S>(
        watches: &Watches<K>,
        key: K,
        service: impl Into<String>,
        source: impl FnOnce() -> S,
    ) -> Self
    where
        K: std::hash::Hash + Eq + Clone,
        S: Source,
    {
        let service: Arc<str> = service.into().into();
        let span = tracing::info_span!("watch", service = %service);
        let watch = watches.subscribe(key, &service, span, source);
        Discovery::from_watch(service, watch)
    }

    fn from_watch(service: Arc<str>, watch: Arc<Watch>) -> Self {
        let mut rx = watch.receiver();
        rx.mark_changed();
        Discovery {
            service,
            changed: ReusableBoxFuture::new(changed(rx.clone())),
            watch,
            rx,
            applied: SnapshotDiff::default(),
            seen_generation: 0,
            pending: VecDeque::new(),
            ended: false,
            filter: None,
            keep_last_on_empty: false,
        }
    }

    /// The watch's state: last known instances, failures, last error, position.
    pub fn state(&self) -> WatchState {
        self.rx.borrow().clone()
    }

    /// An observer of this discovery's watch that outlives moving the discovery into
    /// a balancer.
    pub fn observer(&self) -> WatchObserver {
        WatchObserver {
            rx: self.rx.clone(),
        }
    }

    /// Keeps only the instances `keep` accepts (it runs on every answer, in the
    /// discovery's task; the shared watch and other discoveries of it are unaffected).
    /// An instance that stops matching is removed, one that starts is inserted. With
    /// a filter already set, both must accept.
    #[must_use]
    pub fn with_filter(mut self, keep: impl Fn(&Instance) -> bool + Send + Sync + 'static) -> Self {
        self.filter = Some(match self.filter.take() {
            None => Arc::new(keep),
            Some(first) => Arc::new(move |i: &Instance| first(i) && keep(i)),
        });
        self.seen_generation = 0;
        self
    }

    /// Keeps the last instances when the registry lists none that can serve (after
    /// [`with_filter`](Self::with_filter)), as Nacos SDKs' "push empty protection"
    /// does. Default: off, the set follows the registry, so a service whose last
    /// instance leaves fails fast instead of sending to an instance that is gone.
    ///
    /// Turn it on to ride out a registry that restarts empty: until the services
    /// register again, the old set keeps serving. While the registry is unreachable
    /// the last set is kept either way. Per discovery: the shared watch, its
    /// [`state`](Self::state) and other discoveries of it are unaffected.
    #[must_use]
    pub fn keep_last_on_empty(mut self, keep: bool) -> Self {
        self.keep_last_on_empty = keep;
        self
    }

    /// The service this discovery watches.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// Queues the changes from the latest state, if its set is new.
    fn absorb(&mut self, state: &WatchState) {
        if !state.is_synced() || state.generation() == self.seen_generation {
            return;
        }
        self.seen_generation = state.generation();
        let kept: Vec<Instance>;
        let instances = match &self.filter {
            None => state.instances(),
            Some(keep) => {
                kept = state
                    .instances()
                    .iter()
                    .filter(|i| keep(i))
                    .cloned()
                    .collect();
                &kept
            }
        };
        if instances.is_empty() && self.keep_last_on_empty && !self.applied.is_empty() {
            let kept = self.applied.len();
            info!(service = %self.service, kept, "no instance can serve; keeping the last ones");
            return;
        }
        for change in self.applied.apply_slice(instances) {
            match &change {
                Change::Insert(k, i) => {
                    info!(service = %self.service, key = %k, addr = %i.authority(), "instance added")
                }
                Change::Remove(k) => info!(service = %self.service, key = %k, "instance removed"),
            }
            self.pending.push_back(change);
        }
    }
}

async fn changed(mut rx: watch::Receiver<WatchState>) -> Changed {
    let result = rx.changed().await;
    (result, rx)
}

impl Stream for Discovery {
    type Item = Result<Change<InstanceKey, Instance>, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        this.watch.ensure_started();
        loop {
            if let Some(change) = this.pending.pop_front() {
                return Poll::Ready(Some(Ok(change)));
            }
            if this.ended {
                // Never end while held: a balancer treats the end of discovery as fatal.
                return Poll::Pending;
            }
            let (result, mut rx) = ready!(this.changed.poll(cx));
            if result.is_err() {
                error!(service = %this.service, "watch task ended; keeping the last known instances");
                this.ended = true;
                continue;
            }
            let state = rx.borrow_and_update().clone();
            this.changed.set(changed(rx));
            this.absorb(&state);
        }
    }
}

impl fmt::Debug for Discovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Discovery")
            .field("service", &self.service)
            .field("applied", &self.applied.len())
            .field("pending", &self.pending.len())
            .finish()
    }
}

const _: () = {
    fn assert_discover<D: tower::discover::Discover + Unpin + Send + 'static>() {}
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    fn assert_all() {
        assert_discover::<Discovery>();
        assert_send_sync::<Discovery>();
        assert_send_sync::<WatchState>();
        assert_send_sync::<WatchObserver>();
    }
    let _ = assert_all;
};

#[cfg(test)]
mod tests {
    use futures_util::{FutureExt, StreamExt};

    use super::*;
    use crate::source::StaticList;

    fn instance(id: &str) -> Instance {
        Instance::new(StaticList::key(id), "127.0.0.1", 1)
    }

    /// The next change, if one is ready now.
    fn ready(d: &mut Discovery) -> Option<String> {
        match d.next().now_or_never()? {
            Some(Ok(Change::Insert(k, _))) => Some(format!("+{}", k.id())),
            Some(Ok(Change::Remove(k))) => Some(format!("-{}", k.id())),
            other => panic!("unexpected {other:?}"),
        }
    }

    /// The changes ready now, sorted.
    fn drain(d: &mut Discovery) -> Vec<String> {
        let mut changes: Vec<String> = std::iter::from_fn(|| ready(d)).collect();
        changes.sort();
        changes
    }

    /// Waits (bounded) until the shared watch holds `n` instances.
    async fn published(d: &Discovery, n: usize) {
        let mut observer = d.observer();
        let wait = async {
            while !(observer.state().is_synced() && observer.state().instances().len() == n) {
                assert!(observer.changed().await, "the watch ended");
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(5), wait)
            .await
            .expect("the static list was not published within 5 s");
    }

    #[tokio::test]
    async fn keep_last_on_empty_keeps_the_set_until_the_registry_lists_again() {
        let list = StaticList::new([instance("a:1"), instance("b:1")]);
        let mut kept = list.discovery("svc").keep_last_on_empty(true);
        let mut plain = list.discovery("svc");
        published(&kept, 2).await;
        assert_eq!(drain(&mut kept), ["+a:1", "+b:1"]);
        assert_eq!(drain(&mut plain), ["+a:1", "+b:1"]);
        list.replace([]);
        published(&kept, 0).await;
        assert!(drain(&mut kept).is_empty(), "the empty list is not applied");
        assert_eq!(drain(&mut plain), ["-a:1", "-b:1"]);
        assert!(
            kept.state().instances().is_empty(),
            "the shared state follows the registry"
        );
        list.replace([instance("c:1")]);
        published(&kept, 1).await;
        assert_eq!(drain(&mut kept), ["+c:1", "-a:1", "-b:1"]);
    }
}
