//! [`HealthSource`]: whether the instance serves, as its registration follows it.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

/// Whether the instance serves (`true`) or not (`false`), as its registration follows
/// it: Consul's TTL heartbeat reports passing or critical; etcd and Nacos take the
/// instance out of discovery while it does not serve (the registration and its lease or
/// connection stay) and put it back once it serves again.
///
/// A change seen through [`HealthSource::watch`] (or the `tonic_health` adapter) is
/// applied at once; a callback is asked at each Consul heartbeat, and every second by
/// etcd and Nacos registrations.
#[derive(Clone)]
pub struct HealthSource {
    kind: Kind,
}

#[derive(Clone)]
enum Kind {
    /// A status that never changes: `true` for [`HealthSource::always_passing`], or the
    /// last value of a watch whose sender is gone.
    Fixed(bool),
    Watch(watch::Receiver<bool>),
    Callback(Arc<dyn Fn() -> bool + Send + Sync>),
}

// === impl HealthSource ===

impl HealthSource {
    /// Always serving: the registration only says the process is alive. The default of
    /// every registry's `Registration`.
    pub fn always_passing() -> Self {
        HealthSource {
            kind: Kind::Fixed(true),
        }
    }

    /// Follows a `watch` channel; a change is applied without waiting for the next
    /// heartbeat or poll. When the sender is dropped, the last value stays.
    pub fn watch(receiver: watch::Receiver<bool>) -> Self {
        HealthSource {
            kind: Kind::Watch(receiver),
        }
    }

    /// Asks `healthy` at every Consul heartbeat, and every second for etcd and Nacos.
    /// It must be quick and must not block.
    pub fn from_fn(healthy: impl Fn() -> bool + Send + Sync + 'static) -> Self {
        HealthSource {
            kind: Kind::Callback(Arc::new(healthy)),
        }
    }

    /// Follows what a `tonic_health` reporter says about `service` (`""` for the whole
    /// server): SERVING is serving, anything else is not. A change is applied at once.
    ///
    /// Spawns a small forwarding task that ends when every clone of the returned source
    /// (and the registration holding it) is gone.
    ///
    /// # Errors
    ///
    /// A configuration error when the reporter has never been told about `service`.
    #[cfg(feature = "health")]
    #[cfg_attr(docsrs, doc(cfg(feature = "health")))]
    pub async fn tonic_health(
        reporter: &tonic_health::server::HealthReporter,
        service: &str,
    ) -> crate::Result<Self> {
        super::health_adapter::follow(reporter, service).await
    }

    /// The status now.
    pub(crate) fn healthy(&self) -> bool {
        match &self.kind {
            Kind::Fixed(healthy) => *healthy,
            Kind::Watch(rx) => *rx.borrow(),
            Kind::Callback(f) => f(),
        }
    }

    /// Resolves when the status may have changed; never, for sources without
    /// notifications or whose sender is gone.
    pub(crate) async fn changed(&mut self) {
        if let Kind::Watch(rx) = &mut self.kind {
            if rx.changed().await.is_ok() {
                return;
            }
            // The sender is gone: keep the last value and stop listening.
            let last = *rx.borrow();
            self.kind = Kind::Fixed(last);
        }
        std::future::pending::<()>().await;
    }

    /// Resolves when the status may have changed, counting a callback as possibly
    /// changed after each `poll`: a watch when it changes, a callback after `poll`,
    /// a fixed status never.
    pub(crate) async fn next(&mut self, poll: Duration) {
        match self.kind {
            Kind::Callback(_) => tokio::time::sleep(poll).await,
            Kind::Fixed(_) | Kind::Watch(_) => self.changed().await,
        }
    }
}

impl Default for HealthSource {
    /// [`HealthSource::always_passing`].
    fn default() -> Self {
        HealthSource::always_passing()
    }
}

impl From<watch::Receiver<bool>> for HealthSource {
    /// Same as [`HealthSource::watch`].
    fn from(receiver: watch::Receiver<bool>) -> Self {
        HealthSource::watch(receiver)
    }
}

impl fmt::Debug for HealthSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            Kind::Fixed(true) => "always_passing",
            Kind::Fixed(false) => "never_passing",
            Kind::Watch(_) => "watch",
            Kind::Callback(_) => "callback",
        };
        f.debug_tuple("HealthSource").field(&kind).finish()
    }
}

const _: () = {
    fn assert_send_sync<T: Send + Sync>() {}
    let _ = assert_send_sync::<HealthSource>;
};

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use tokio::time::{Instant, timeout};

    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn next_follows_a_watch_and_keeps_its_last_value() {
        let (tx, rx) = watch::channel(true);
        let mut source = HealthSource::watch(rx);
        tx.send_replace(false);
        timeout(SEC, source.next(SEC)).await.expect("a change");
        assert!(!source.healthy());
        drop(tx);
        assert!(timeout(10 * SEC, source.next(SEC)).await.is_err());
        assert!(!source.healthy());
        assert_eq!(format!("{source:?}"), r#"HealthSource("never_passing")"#);
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn next_polls_a_callback_and_never_wakes_a_fixed_status() {
        let flag = Arc::new(AtomicBool::new(true));
        let f = flag.clone();
        let mut source = HealthSource::from_fn(move || f.load(Ordering::Relaxed));
        let start = Instant::now();
        source.next(SEC).await;
        assert_eq!(start.elapsed(), SEC);
        flag.store(false, Ordering::Relaxed);
        assert!(!source.healthy());

        let mut always = HealthSource::default();
        assert!(timeout(10 * SEC, always.next(SEC)).await.is_err());
        assert!(always.healthy());
    }
}
