//! The handle of a live registration: its connection, deregistration and drain.

use std::fmt;
use std::time::Duration;

use nacos_sdk::api::naming::NamingService;

use super::client::{Client, call};
use super::register::Registration;
use crate::error::Result;

/// How long the best-effort deregistration on drop may take.
const DROP_TIMEOUT: Duration = Duration::from_secs(5);

/// A live registration: an ephemeral instance held by a connection of its own.
///
/// The SDK keeps the connection up and, after it or the server was lost, registers
/// the instance again by itself (every 3 s until it succeeds). There is no heartbeat
/// to forget: the instance lives exactly as long as the connection and this handle.
///
/// # Drop
///
/// Dropping the handle deregisters the instance best-effort, on a spawned task
/// bounded by 5 s (skipped when no tokio runtime is running). Prefer
/// [`drain`](Self::drain) or [`deregister`](Self::deregister), which report errors.
pub struct RegistrationHandle {
    naming: Option<NamingService>,
    registration: Registration,
    group: String,
    id: String,
    timeout: Duration,
}

// === impl RegistrationHandle ===

impl RegistrationHandle {
    pub(crate) async fn start(client: Client, registration: Registration) -> Result<Self> {
        let group = registration
            .group
            .clone()
            .unwrap_or_else(|| client.group().to_owned());
        let naming = client.config().naming_service().await?;
        let timeout = client.config().request_timeout;
        let register = naming.register_instance(
            registration.service.clone(),
            Some(group.clone()),
            registration.to_sdk(),
        );
        call(timeout, "register instance", register).await?;
        let id = registration.instance_id(&group);
        tracing::info!(%id, "registered in nacos");
        Ok(RegistrationHandle {
            naming: Some(naming),
            registration,
            group,
            id,
            timeout,
        })
    }

    /// Nacos's id of the instance: `ip#port#cluster#group@@service`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The service name.
    pub fn service(&self) -> &str {
        &self.registration.service
    }

    /// The group.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// Deregisters the instance: discoveries see it go at once. The connection closes.
    ///
    /// # Errors
    ///
    /// A transport or timeout error when the server could not be told; the instance then
    /// goes when the server notices the connection is gone.
    pub async fn deregister(mut self) -> Result<()> {
        match self.naming.take() {
            Some(naming) => self.leave(&naming).await,
            None => Ok(()),
        }
    }

    /// Graceful leave: deregisters the instance so discoveries stop sending new
    /// requests, then waits `grace` for requests in flight and for every client to
    /// learn of it, then closes the connection.
    ///
    /// # Errors
    ///
    /// As [`deregister`](Self::deregister); the wait happens either way.
    pub async fn drain(mut self, grace: Duration) -> Result<()> {
        let Some(naming) = self.naming.take() else {
            return Ok(());
        };
        let left = self.leave(&naming).await;
        tokio::time::sleep(grace).await;
        drop(naming);
        left
    }

    async fn leave(&self, naming: &NamingService) -> Result<()> {
        let deregister = naming.deregister_instance(
            self.registration.service.clone(),
            Some(self.group.clone()),
            self.registration.to_sdk(),
        );
        call(self.timeout, "deregister instance", deregister).await?;
        tracing::info!(id = %self.id, "deregistered from nacos");
        Ok(())
    }
}

impl Drop for RegistrationHandle {
    fn drop(&mut self) {
        let Some(naming) = self.naming.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (service, group, instance, id) = (
            self.registration.service.clone(),
            self.group.clone(),
            self.registration.to_sdk(),
            self.id.clone(),
        );
        runtime.spawn(async move {
            let deregister = naming.deregister_instance(service, Some(group), instance);
            match call(DROP_TIMEOUT, "deregister instance", deregister).await {
                Ok(()) => tracing::info!(%id, "deregistered on drop"),
                Err(e) => tracing::warn!(%id, error = %e, "deregister on drop failed"),
            }
        });
    }
}

impl fmt::Debug for RegistrationHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("nacos::RegistrationHandle")
            .field("id", &self.id)
            .finish()
    }
}
