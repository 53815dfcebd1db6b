//! The handle of a live registration: its connection, deregistration and drain.

use std::fmt;
use std::time::Duration;

use nacos_sdk::api::naming::NamingService;
use tracing::Instrument;

use super::client::{Client, call};
use super::register::Registration;
use crate::backoff::{Backoff, BackoffState};
use crate::error::Result;

/// A live registration: an ephemeral instance held by a connection of its own.
///
/// The SDK keeps the connection up and, after it or the server was lost, registers
/// the instance again by itself (every 3 s until it succeeds). There is no heartbeat
/// to forget: the instance lives exactly as long as this handle.
///
/// # Deregistration that fails
///
/// While a deregistration has not reached the server, the SDK would register the
/// instance again at its next reconnection. So a failed deregistration (the server is
/// down, say) is retried in the background, with backoff up to 5 s, until the server
/// takes it; [`deregister`](Self::deregister) still reports the first failure.
///
/// # Drop
///
/// Dropping the handle deregisters the instance on a spawned task, retried as above
/// (skipped when no tokio runtime is running). Prefer [`drain`](Self::drain) or
/// [`deregister`](Self::deregister), which report errors.
pub struct RegistrationHandle {
    leave: Option<Leave>,
    id: String,
}

/// Everything needed to take the instance out of Nacos.
struct Leave {
    client: Client,
    naming: NamingService,
    registration: Registration,
    group: String,
}

// === impl RegistrationHandle ===

impl RegistrationHandle {
    pub(crate) async fn start(client: Client, registration: Registration) -> Result<Self> {
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
        Ok(RegistrationHandle {
            leave: Some(leave),
            id,
        })
    }

    /// Nacos's id of the instance: `ip#port#cluster#group@@service`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Deregisters the instance: discoveries see it go at once.
    ///
    /// # Errors
    ///
    /// A transport or timeout error when the server could not be told; the
    /// deregistration is then retried in the background.
    pub async fn deregister(mut self) -> Result<()> {
        match self.leave.take() {
            Some(leave) => leave.once().await,
            None => Ok(()),
        }
    }

    /// Graceful leave: deregisters the instance so discoveries stop sending new
    /// requests, then waits `grace` for requests in flight and for every client to
    /// learn of it.
    ///
    /// Nacos servers batch their pushes (500 ms in Nacos and rnacos), so clients learn
    /// of the deregistration 0.5 to 1.1 s later (measured against rnacos: p99 1.07 s to
    /// the last request): give a `grace` of at least 2 s.
    ///
    /// # Errors
    ///
    /// As [`deregister`](Self::deregister); the wait happens either way.
    pub async fn drain(mut self, grace: Duration) -> Result<()> {
        let left = match self.leave.take() {
            Some(leave) => leave.once().await,
            None => Ok(()),
        };
        tokio::time::sleep(grace).await;
        left
    }
}

impl Drop for RegistrationHandle {
    fn drop(&mut self) {
        if let Some(leave) = self.leave.take() {
            leave.retire();
        }
    }
}

impl fmt::Debug for RegistrationHandle {
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
