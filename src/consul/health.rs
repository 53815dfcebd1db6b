//! [`HealthSource`]: where the heartbeat takes the status it reports.

use std::fmt;
use std::sync::Arc;

use tokio::sync::watch;

/// Where the TTL heartbeat takes the status it reports: `true` reports passing, `false`
/// critical.
///
/// A change seen through [`HealthSource::watch`] (or the `tonic_health` adapter) is
/// reported at once; a callback is asked at each heartbeat.
#[derive(Clone)]
pub struct HealthSource {
    kind: Kind,
}

#[derive(Clone)]
enum Kind {
    Always,
    Watch(watch::Receiver<bool>),
    Callback(Arc<dyn Fn() -> bool + Send + Sync>),
}

// === impl HealthSource ===

impl HealthSource {
    /// Always passing: the heartbeat only says the process is alive.
    pub fn always_passing() -> Self {
        HealthSource { kind: Kind::Always }
    }

    /// Follows a `watch` channel; a change is reported without waiting for the next
    /// heartbeat. When the sender is dropped, the last value stays.
    pub fn watch(receiver: watch::Receiver<bool>) -> Self {
        HealthSource {
            kind: Kind::Watch(receiver),
        }
    }

    /// Asks `healthy` at every heartbeat. It must be quick and must not block.
    pub fn from_fn(healthy: impl Fn() -> bool + Send + Sync + 'static) -> Self {
        HealthSource {
            kind: Kind::Callback(Arc::new(healthy)),
        }
    }

    /// Follows what a `tonic_health` reporter says about `service` (`""` for the whole
    /// server): SERVING reports passing, anything else critical. A change is reported at
    /// once.
    ///
    /// Spawns a small forwarding task that ends when every clone of the returned source
    /// (and the heartbeat holding it) is gone.
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
            Kind::Always => true,
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
            self.kind = if last {
                Kind::Always
            } else {
                Kind::Callback(Arc::new(|| false))
            };
        }
        std::future::pending::<()>().await;
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
            Kind::Always => "always_passing",
            Kind::Watch(_) => "watch",
            Kind::Callback(_) => "callback",
        };
        f.debug_tuple("HealthSource").field(&kind).finish()
    }
}
