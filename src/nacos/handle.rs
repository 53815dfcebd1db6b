//! The handle of a live registration: its connection, deregistration and drain.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use nacos_sdk::api::naming::NamingService;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::client::{Client, call};
use super::register::Registration;
use crate::backoff::{Backoff, BackoffState};
use crate::error::{Error, Result};
use crate::register;

/// A live registration: an ephemeral instance held by a connection of its own.
///
/// The SDK keeps the connection up and, after it or the server was lost, registers
/// the instance again by itself (every 3 s until it succeeds). There is no heartbeat
/// to forget: the instance lives exactly as long as this handle.
///
/// [`drain`](register::RegistrationHandle::drain) deregisters the instance, then
/// waits `grace`. Nacos servers batch their pushes (500 ms in Nacos and rnacos), so
/// clients learn of the deregistration 0.5 to 1.1 s later (measured against rnacos:
/// p99 1.07 s to the last request): give a `grace` of at least 2 s.
///
/// # Deregistration that fails
///
/// While a deregistration has not reached the server, the SDK would register the
/// instance again at its next reconnection. So a failed deregistration (the server is
/// down, say) is retried in the background, with backoff up to 5 s, until the server
/// takes it; [`deregister`](register::RegistrationHandle::deregister) and `drain`
/// still report the first failure.
///
/// # Drop
///
/// Dropping the handle deregisters the instance on a spawned task, retried as above
/// (skipped when no tokio runtime is running).
pub type RegistrationHandle = register::RegistrationHandle<Registrar>;

/// Nacos's side of a [`RegistrationHandle`]: what it takes to deregister the instance.
pub struct Registrar {
    id: String,
    leave: Mutex<Option<Leave>>,
    /// The error of a withdrawal that failed, reported by the deregistration after it.
    withdraw_error: Mutex<Option<Error>>,
}

/// Everything needed to take the instance out of Nacos.
struct Leave {
    client: Client,
    naming: NamingService,
    registration: Registration,
    group: String,
}

/// Registers the instance on a connection of its own and hands it to a new handle.
pub(crate) async fn start(
    client: Client,
    registration: Registration,
) -> Result<RegistrationHandle> {
    let group = registration
        .group
        .clone()
        .unwrap_or_else(|| client.group().to_owned());
    let naming = client
        .registration_connection(&group, &registration.service)
        .await?;
    let register = naming.register_instance(
        registration.service.clone(),
        Some(group.clone()),
        registration.to_sdk(),
    );
    let registered = call(
        client.config().request_timeout,
        "register instance",
        register,
    )
    .await;
    let id = registration.instance_id(&group);
    let leave = Leave {
        client,
        naming,
        registration,
        group,
    };
    if let Err(e) = registered {
        // The SDK keeps retrying a registration that failed; take it back.
        leave.retire();
        return Err(e);
    }
    tracing::info!(%id, "registered in nacos");
    let span = tracing::info_span!("nacos_registration", %id);
    let registrar = Registrar {
        id,
        leave: Mutex::new(Some(leave)),
        withdraw_error: Mutex::new(None),
    };
    Ok(RegistrationHandle::new(registrar, span))
}

// === impl RegistrationHandle ===

impl RegistrationHandle {
    /// Nacos's id of the instance: `ip#port#cluster#group@@service`.
    pub fn id(&self) -> &str {
        &self.registrar().id
    }
}

// === impl Registrar ===

impl register::Registrar for Registrar {
    async fn keep_alive(self: Arc<Self>, stop: CancellationToken) {
        // The SDK's connection keeps the instance; nothing to renew.
        stop.cancelled().await;
    }

    /// Deregisters the instance (retried in the background when it fails).
    async fn withdraw(&self) -> Result<()> {
        let Some(leave) = self.take_leave() else {
            return Ok(());
        };
        match leave.once().await {
            Ok(()) => Ok(()),
            Err(e) => {
                let note = Error::transport(
                    "deregistration failed; retrying in the background",
                    e.to_string(),
                );
                // The drain reports the error itself, after its wait.
                *self
                    .withdraw_error
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(e);
                Err(note)
            }
        }
    }

    /// Deregisters the instance unless a withdrawal did (then reports its error).
    async fn deregister(&self) -> Result<()> {
        if let Some(e) = self
            .withdraw_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            return Err(e);
        }
        match self.take_leave() {
            Some(leave) => leave.once().await,
            None => Ok(()),
        }
    }

    async fn on_drop(self: Arc<Self>) {
        if let Some(leave) = self.take_leave() {
            leave.retire();
        }
    }
}

impl Registrar {
    fn take_leave(&self) -> Option<Leave> {
        self.leave
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

impl fmt::Debug for Registrar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("nacos::RegistrationHandle")
            .field("id", &self.id)
            .finish()
    }
}

// === impl Leave ===

impl Leave {
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
        let Leave {
            client,
            naming,
            registration,
            group,
        } = self;
        client.return_connection(&group, &registration.service, naming);
    }
}
