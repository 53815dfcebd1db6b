//! The handle of a live registration: its connection, health-following,
//! deregistration and drain.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nacos_sdk::api::naming::NamingService;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::client::{Client, call};
use super::register::Registration;
use crate::backoff::{Backoff, BackoffState};
use crate::error::Result;
use crate::register;

/// A live registration: an ephemeral instance held by a connection of its own.
///
/// The SDK keeps the connection up and, after it or the server was lost, registers
/// the instance again by itself (every 3 s until it succeeds). There is no heartbeat
/// to forget: the instance lives exactly as long as this handle.
///
/// It follows the registration's [`health`](super::Registration::health) too: while
/// the instance does not serve, it is deregistered (the connection stays, and the SDK
/// forgets the instance, so a reconnection does not bring it back), and registered
/// again once it serves.
///
/// [`drain`](register::RegistrationHandle::drain) deregisters the instance, then
/// waits `grace`, then deregisters it for good and returns the connection. Nacos
/// servers batch their pushes (500 ms in Nacos and rnacos), so clients learn of the
/// deregistration 0.5 to 1.1 s later (measured against rnacos: p99 1.07 s to the last
/// request): give a `grace` of at least 2 s.
///
/// # Deregistration that fails
///
/// While a deregistration has not reached the server, the SDK would register the
/// instance again at its next reconnection. So a final deregistration that fails (the
/// server is down, say) is retried in the background, with backoff up to 5 s, until
/// the server takes it; [`deregister`](register::RegistrationHandle::deregister) and
/// `drain` still report the first failure. (A drain's first deregistration is only
/// logged when it fails: the final one after the grace tries again.)
///
/// # Drop
///
/// Dropping the handle deregisters the instance on a spawned task, retried as above
/// (skipped when no tokio runtime is running).
pub type RegistrationHandle = register::RegistrationHandle<NamingRegistrar>;

/// Nacos's side of a [`RegistrationHandle`]: the instance's connection, and what to
/// register and deregister on it.
pub struct NamingRegistrar {
    id: String,
    connection: Connection,
    /// Set by the final deregistration (or the drop): from then on the connection
    /// belongs to it, and is returned to the client once the server took it.
    ended: AtomicBool,
}

/// The registration's own connection and what it registers.
#[derive(Clone)]
struct Connection {
    client: Client,
    naming: NamingService,
    registration: Registration,
    group: String,
}

/// Takes a connection of its own for the instance, registers the instance unless the
/// health source says it does not serve, and hands both to a new handle.
pub(crate) async fn start(
    client: Client,
    registration: Registration,
) -> Result<RegistrationHandle> {
    let mut registration = registration.resolve(client.servers()).await?;
    let health = std::mem::take(&mut registration.health);
    let group = registration
        .group
        .clone()
        .unwrap_or_else(|| client.group().to_owned());
    let naming = client
        .registration_connection(&group, &registration.service)
        .await?;
    let id = registration.instance_id(&group);
    let connection = Connection {
        client,
        naming,
        registration,
        group,
    };
    let publish = health.healthy();
    if publish {
        if let Err(e) = connection.register().await {
            // The SDK keeps retrying a registration that failed; take it back.
            connection.retire();
            return Err(e);
        }
        tracing::info!(%id, "registered in nacos");
    } else {
        tracing::info!(%id, "not serving: registers in nacos once serving");
    }
    let span = tracing::info_span!("nacos_registration", %id);
    let registrar = NamingRegistrar {
        id,
        connection,
        ended: AtomicBool::new(false),
    };
    let handle = RegistrationHandle::following_health(registrar, (), health, publish, span);
    Ok(handle)
}

// === impl RegistrationHandle ===

impl RegistrationHandle {
    /// Nacos's id of the instance: `ip#port#cluster#group@@service`.
    pub fn id(&self) -> &str {
        &self.registrar().id
    }
}

// === impl NamingRegistrar ===

impl register::Registrar for NamingRegistrar {
    type KeepAlive = ();

    async fn keep_alive(self: Arc<Self>, (): (), stop: CancellationToken) {
        // The SDK's connection keeps the instance; nothing to renew.
        stop.cancelled().await;
    }

    /// Deregisters the instance; the connection stays, for a
    /// [`restore`](register::Registrar::restore) or the final deregistration.
    async fn withdraw(&self) -> Result<()> {
        if self.ended.load(Ordering::Acquire) {
            return Ok(());
        }
        self.connection.deregister().await
    }

    /// Registers the instance again on its connection.
    async fn restore(&self) -> Result<()> {
        if self.ended.load(Ordering::Acquire) {
            return Ok(());
        }
        self.connection.register().await
    }

    /// Deregisters the instance for good (retried in the background when it fails)
    /// and returns its connection to the client.
    async fn deregister(&self) -> Result<()> {
        if self.ended.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.connection.clone().once().await
    }

    async fn on_drop(self: Arc<Self>) {
        if !self.ended.swap(true, Ordering::AcqRel) {
            self.connection.clone().retire();
        }
    }
}

impl fmt::Debug for NamingRegistrar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("nacos::RegistrationHandle")
            .field("id", &self.id)
            .finish()
    }
}

// === impl Connection ===

impl Connection {
    async fn register(&self) -> Result<()> {
        let register = self.naming.register_instance(
            self.registration.service.clone(),
            Some(self.group.clone()),
            self.registration.to_sdk(),
        );
        call(
            self.client.config().request_timeout,
            "register instance",
            register,
        )
        .await
    }

    async fn deregister(&self) -> Result<()> {
        let deregister = self.naming.deregister_instance(
            self.registration.service.clone(),
            Some(self.group.clone()),
            self.registration.to_sdk(),
        );
        call(
            self.client.config().request_timeout,
            "deregister instance",
            deregister,
        )
        .await
    }

    /// One attempt; on failure the attempts go on in the background.
    async fn once(self) -> Result<()> {
        match self.deregister().await {
            Ok(()) => {
                self.done();
                Ok(())
            }
            Err(e) => {
                self.retire();
                Err(e)
            }
        }
    }

    /// Deregisters on a spawned task, retrying until the server takes it.
    fn retire(self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let span = tracing::info_span!("nacos_deregister", service = %self.registration.service);
        let leaving = self.client.leaving();
        runtime.spawn(
            async move {
                let mut retry = BackoffState::new(Backoff::new(
                    Duration::from_millis(100),
                    Duration::from_secs(5),
                ));
                loop {
                    match self.deregister().await {
                        Ok(()) => break,
                        Err(e) => {
                            let delay = retry.next_delay();
                            tracing::warn!(error = %e, ?delay, "deregistration failed; retrying");
                            tokio::time::sleep(delay).await;
                        }
                    }
                }
                self.done();
                drop(leaving);
            }
            .instrument(span),
        );
    }

    fn done(self) {
        tracing::info!(service = %self.registration.service, "deregistered from nacos");
        let Connection {
            client,
            naming,
            registration,
            group,
        } = self;
        client.return_connection(&group, &registration.service, naming);
    }
}
