//! The one registration lifecycle every registry shares: a [`RegistrationHandle`]
//! owns the task that keeps a registration alive, and ends it by
//! [`drain`](RegistrationHandle::drain), [`deregister`](RegistrationHandle::deregister)
//! or drop. A registry only says how, by implementing [`Registrar`]; so can yours.
//!
//! # Health-following
//!
//! A registration may follow a [`HealthSource`]: while it says the instance does not
//! serve, the instance is out of discovery, and it is back once it serves again. etcd
//! and Nacos registrations start with [`RegistrationHandle::following_health`], whose
//! task calls [`Registrar::withdraw`] and [`Registrar::restore`] at each change. Consul
//! carries the status in the TTL check its heartbeat reports (critical takes the
//! instance out of every passing-only discovery), so its heartbeat follows the source
//! itself and its handle starts with [`RegistrationHandle::new`].
//!
//! ```
//! use std::sync::Arc;
//! use tokio_util::sync::CancellationToken;
//! use tonic_discovery::register::{Registrar, RegistrationHandle};
//!
//! /// A toy registry that only logs.
//! #[derive(Debug)]
//! struct Log(&'static str);
//!
//! impl Registrar for Log {
//!     type KeepAlive = (); // nothing to renew
//!
//!     async fn keep_alive(self: Arc<Self>, _: (), stop: CancellationToken) {
//!         stop.cancelled().await;
//!     }
//!     async fn withdraw(&self) -> tonic_discovery::Result<()> {
//!         println!("{} out of discovery", self.0);
//!         Ok(())
//!     }
//!     async fn restore(&self) -> tonic_discovery::Result<()> {
//!         println!("{} back in discovery", self.0);
//!         Ok(())
//!     }
//!     async fn deregister(&self) -> tonic_discovery::Result<()> {
//!         println!("{} removed", self.0);
//!         Ok(())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let handle = RegistrationHandle::new(Log("echo-1"), (), tracing::Span::none());
//! handle.drain(std::time::Duration::from_millis(1)).await.expect("drained");
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::error::Result;

mod follow;
mod health;
#[cfg(feature = "health")]
mod health_adapter;

pub use health::HealthSource;

/// How long the best-effort removal on drop may take, by default.
pub(crate) const DROP_TIMEOUT: Duration = Duration::from_secs(5);

/// What a registry does for one live registration, after it was made.
pub trait Registrar: Send + Sync + 'static {
    /// What the keep-alive task owns (a heartbeat, a lease keeper and its lease):
    /// handed to [`keep_alive`](Self::keep_alive) by value when the handle starts it,
    /// so the registrar shares nothing with its task that only the task uses. `()`
    /// for a registry with nothing to renew.
    type KeepAlive: Send + 'static;

    /// Keeps the registration alive with `state` until `stop` is cancelled;
    /// registries that need nothing wait for `stop`.
    fn keep_alive(
        self: Arc<Self>,
        state: Self::KeepAlive,
        stop: CancellationToken,
    ) -> impl Future<Output = ()> + Send;

    /// Takes the instance out of discovery while it still serves (Consul: its check
    /// turns critical; etcd: its key goes, the lease stays; Nacos: it is deregistered,
    /// its connection stays). A drain calls it after the keep-alive ended; a
    /// [health-following](RegistrationHandle::following_health) handle calls it while
    /// the instance does not serve, and [`restore`](Self::restore) when it serves again.
    fn withdraw(&self) -> impl Future<Output = Result<()>> + Send;

    /// Puts a [withdrawn](Self::withdraw) instance back into discovery (etcd: its key
    /// again, on the current lease; Nacos: it is registered again). Called only by a
    /// [health-following](RegistrationHandle::following_health) handle, and never after
    /// its keep-alive ended.
    ///
    /// Required, so that a following handle can never withdraw an instance for good
    /// by a forgotten implementation.
    fn restore(&self) -> impl Future<Output = Result<()>> + Send;

    /// Removes the registration for good.
    fn deregister(&self) -> impl Future<Output = Result<()>> + Send;

    /// The best-effort removal when the handle is dropped, on a spawned task after the
    /// keep-alive task ended. Default: [`deregister`](Self::deregister) within 5 s.
    fn on_drop(self: Arc<Self>) -> impl Future<Output = ()> + Send {
        async move {
            match tokio::time::timeout(DROP_TIMEOUT, self.deregister()).await {
                Ok(Ok(())) => tracing::info!("deregistered on drop"),
                Ok(Err(e)) => tracing::warn!(error = %e, "deregister on drop failed"),
                Err(_) => tracing::warn!("deregister on drop timed out"),
            }
        }
    }
}

/// A live registration in some registry (`R` says which: the registry's handle types,
/// such as [`consul::RegistrationHandle`](crate::consul::RegistrationHandle), are
/// this type). It owns the task that keeps the registration alive.
///
/// Keep it for as long as the server serves: **dropping it deregisters the instance**,
/// so `client.register(registration).await?;` on its own registers and deregisters at
/// once (the compiler warns: the type is `#[must_use]`). End it with
/// [`drain`](Self::drain) (out of discovery, wait, remove), for instance through
/// [`drain_on`](Self::drain_on) as a server's shutdown signal, or
/// [`deregister`](Self::deregister).
///
/// ```compile_fail
/// # async fn f(consul: tonic_discovery::consul::Client) -> tonic_discovery::Result<()> {
/// # let registration = tonic_discovery::consul::Registration::new("echo", "10.0.0.7:50051".parse().unwrap());
/// // Registered, and deregistered at once: the handle is dropped (a warning, an error here).
/// consul.register(registration).await?;
/// # Ok(())
/// # }
/// ```
///
/// # Drop
///
/// Dropping the handle stops the keep-alive at once and removes the registration
/// best-effort on a spawned task (skipped when no tokio runtime is running); each
/// registry's handle type says what happens when that does not reach the registry.
#[must_use = "dropping a RegistrationHandle deregisters the instance: keep it while the \
              server serves, then `drain` or `deregister` it"]
pub struct RegistrationHandle<R: Registrar> {
    registrar: Arc<R>,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
    /// Set once drained, deregistered or abandoned: nothing left to do on drop.
    ended: bool,
}

// === impl RegistrationHandle ===

impl<R: Registrar> RegistrationHandle<R> {
    /// Starts the keep-alive of a registration that has just been made, with what it
    /// owns (`keep_alive`), on a task spawned on the current tokio runtime (named by
    /// `span` in traces).
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, as `tokio::spawn` does.
    pub fn new(registrar: R, keep_alive: R::KeepAlive, span: tracing::Span) -> Self {
        let registrar = Arc::new(registrar);
        let stop = CancellationToken::new();
        let task = registrar.clone().keep_alive(keep_alive, stop.clone());
        let task = tokio::spawn(task.instrument(span));
        RegistrationHandle {
            registrar,
            stop,
            task: Some(task),
            ended: false,
        }
    }

    /// Like [`new`](Self::new), and follows `health` too: while it says the instance
    /// does not serve, the task has the instance [withdrawn](Registrar::withdraw), and
    /// [restored](Registrar::restore) once it serves again (each change logged at
    /// `INFO`). `published` says whether the registration put the instance into
    /// discovery (a registry that started while the source said not serving did not).
    ///
    /// A failed call is logged at `WARN` and retried with backoff (100 ms up to 5 s),
    /// at once when the health changes again. A callback source is asked every
    /// second. The follower ends with the keep-alive: [`drain`](Self::drain),
    /// [`deregister`](Self::deregister) and drop wait for a call in flight before
    /// they remove the instance, so none lands after the removal.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, as `tokio::spawn` does.
    pub fn following_health(
        registrar: R,
        keep_alive: R::KeepAlive,
        health: HealthSource,
        published: bool,
        span: tracing::Span,
    ) -> Self {
        let registrar = Arc::new(registrar);
        let stop = CancellationToken::new();
        let (r, s) = (registrar.clone(), stop.clone());
        let task = async move {
            let keep_alive = r.clone().keep_alive(keep_alive, s.clone());
            let follow = follow::follow(&*r, health, published, &s);
            tokio::join!(keep_alive, follow);
        };
        RegistrationHandle {
            registrar,
            stop,
            task: Some(tokio::spawn(task.instrument(span))),
            ended: false,
        }
    }

    /// The registry's side of the registration.
    pub fn registrar(&self) -> &R {
        &self.registrar
    }

    /// Stops the keep-alive and removes the registration: discoveries see the
    /// instance go at once.
    ///
    /// # Errors
    ///
    /// The registry's error; see each registry's handle type for what then happens
    /// to the registration.
    pub async fn deregister(mut self) -> Result<()> {
        self.stop_keep_alive().await;
        self.ended = true;
        self.registrar.deregister().await
    }

    /// Drains the instance: stops the keep-alive, takes the instance out of discovery,
    /// waits `grace` for clients to notice and for requests in flight, then removes
    /// the registration. Keep serving during the wait; stop the server afterwards.
    ///
    /// # Errors
    ///
    /// The registry's error when removing (a failure to take the instance out first
    /// is logged and the drain goes on).
    pub async fn drain(mut self, grace: Duration) -> Result<()> {
        self.stop_keep_alive().await;
        self.ended = true;
        if let Err(e) = self.registrar.withdraw().await {
            tracing::warn!(error = %e, "could not take the instance out of discovery");
        }
        tracing::info!(?grace, "draining");
        tokio::time::sleep(grace).await;
        self.registrar.deregister().await
    }

    /// A future for `tonic::transport::Server::serve_with_shutdown`: waits for `signal`,
    /// [drains](Self::drain) for `grace`, then resolves so that the server stops
    /// accepting and finishes the requests in flight. Drain errors are logged.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use tonic::transport::Server;
    /// use tonic_discovery::consul;
    /// # use tonic_discovery_testkit::{EchoService, pb::echo_server::EchoServer};
    ///
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let addr = "10.0.0.7:50051".parse()?;
    /// let consul = consul::Client::from_env()?;
    /// let registration = consul.register(consul::Registration::new("echo", addr)).await?;
    ///
    /// // On Ctrl-C: out of discovery, 5 s for clients to notice, deregistered; then the
    /// // server stops accepting and finishes what is in flight.
    /// let ctrl_c = async {
    ///     let _ = tokio::signal::ctrl_c().await;
    /// };
    /// Server::builder()
    ///     .add_service(EchoServer::new(EchoService::new("echo-1")))
    ///     .serve_with_shutdown(addr, registration.drain_on(ctrl_c, Duration::from_secs(5)))
    ///     .await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn drain_on<F>(self, signal: F, grace: Duration)
    where
        F: Future<Output = ()>,
    {
        signal.await;
        if let Err(e) = self.drain(grace).await {
            tracing::warn!(error = %e, "drain did not deregister");
        }
    }

    /// Stops the keep-alive and leaves the registration behind, as a crashed process
    /// would (it expires as the registry expires it). For tests and demonstrations; a
    /// server going away should [`drain`](Self::drain) or
    /// [`deregister`](Self::deregister).
    pub fn abandon(mut self) {
        self.ended = true;
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }

    async fn stop_keep_alive(&mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl<R: Registrar> Drop for RegistrationHandle<R> {
    fn drop(&mut self) {
        self.stop.cancel();
        if self.ended {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let registrar = self.registrar.clone();
        let task = self.task.take();
        runtime.spawn(async move {
            // The keep-alive ends first: a re-registration it has in flight must not
            // land after the removal.
            if let Some(task) = task {
                let _ = task.await;
            }
            registrar.on_drop().await;
        });
    }
}

impl<R: Registrar + fmt::Debug> fmt::Debug for RegistrationHandle<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.registrar, f)
    }
}
