//! [`RegistrationHandle`]: a live Consul registration; [`AgentRegistrar`]: what Consul does
//! for it (the TTL heartbeat, the critical check of a drain, the deregistration).

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::agent::{Agent, CheckStatus};
use super::client::Client;
use super::heartbeat::{Heartbeat, agent_forgot};
use super::payload::Resolved;
use super::register::Registration;
use crate::error::Result;
use crate::register;
use crate::register::HealthSource;

/// A registered service instance. Owns the task that keeps its TTL check passing.
///
/// End it with [`drain`](register::RegistrationHandle::drain) (check critical, wait,
/// deregister) or [`deregister`](register::RegistrationHandle::deregister).
///
/// # Drop
///
/// Dropping the handle stops the heartbeat at once and deregisters best-effort: the
/// deregistration runs on a spawned task bounded by 5 s, and is skipped when no tokio
/// runtime is running. If it does not reach the agent, the TTL check turns critical
/// one TTL later and the agent removes the service after `DeregisterCriticalServiceAfter`.
pub type RegistrationHandle = register::RegistrationHandle<AgentRegistrar>;

/// Consul's side of a [`RegistrationHandle`]: the agent, the registration and its
/// heartbeat.
pub struct AgentRegistrar {
    agent: Arc<dyn Agent>,
    reg: Arc<Resolved>,
}

/// What a Consul registration's keep-alive task owns: the TTL heartbeat (see
/// [`Registrar::KeepAlive`](register::Registrar::KeepAlive)). Made by
/// [`Client::register`].
pub struct KeepAlive(Heartbeat);

impl fmt::Debug for KeepAlive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeepAlive").finish_non_exhaustive()
    }
}

// === impl Client ===

impl Client {
    /// Registers `registration` with the agent, reports its check once, and starts the
    /// heartbeat on a spawned task owned by the returned handle. Keep the handle while
    /// the server serves: dropping it deregisters.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use tonic_discovery::consul::{Client, Registration};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let consul = Client::from_env()?;
    /// let listener = tokio::net::TcpListener::bind("0.0.0.0:50051").await?;
    /// // A wildcard bind is advertised at the address that routes towards the agent.
    /// let registration = Registration::new("echo", listener.local_addr()?)
    ///     .tag("v2")
    ///     .ttl(Duration::from_secs(10));
    /// let handle = consul.register(registration).await?;
    ///
    /// // … serve on `listener` …
    ///
    /// // Out of discovery, 5 s for clients and requests in flight, then deregistered.
    /// handle.drain(Duration::from_secs(5)).await?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// A configuration error (checked before anything is sent), or the agent's refusal
    /// of the registration or of the first check update.
    pub async fn register(&self, registration: Registration) -> Result<RegistrationHandle> {
        let (resolved, health) = registration.resolve(&self.inner.base).await?;
        start(Arc::new(self.clone()), resolved, health).await
    }
}

/// Registers, beats once, and hands the heartbeat to a new handle.
pub(crate) async fn start(
    agent: Arc<dyn Agent>,
    reg: Resolved,
    health: HealthSource,
) -> Result<RegistrationHandle> {
    let reg = Arc::new(reg);
    agent.register(reg.body.clone()).await?;
    let heartbeat = Heartbeat::new(agent.clone(), reg.clone(), health);
    if let Err(e) = heartbeat.beat().await {
        // Leave nothing behind that no handle owns.
        let _ = agent.deregister(&reg.service_id).await;
        return Err(e);
    }
    tracing::info!(service_id = %reg.service_id, address = %reg.address, "registered");
    let span = tracing::info_span!("heartbeat", service_id = %reg.service_id);
    let registrar = AgentRegistrar { agent, reg };
    Ok(RegistrationHandle::new(
        registrar,
        KeepAlive(heartbeat),
        span,
    ))
}

// === impl RegistrationHandle ===

impl RegistrationHandle {
    /// The instance ID registered.
    pub fn id(&self) -> &str {
        &self.registrar().reg.service_id
    }

    /// The service name registered.
    pub fn name(&self) -> &str {
        &self.registrar().reg.name
    }

    /// The ID of the TTL check the heartbeat updates (`service:<id>`).
    pub fn check_id(&self) -> &str {
        &self.registrar().reg.check_id
    }

    /// The address advertised to clients.
    pub fn address(&self) -> SocketAddr {
        self.registrar().reg.address
    }
}

// === impl AgentRegistrar ===

impl register::Registrar for AgentRegistrar {
    type KeepAlive = KeepAlive;

    async fn keep_alive(self: Arc<Self>, KeepAlive(heartbeat): KeepAlive, stop: CancellationToken) {
        tokio::select! {
            () = stop.cancelled() => {}
            () = heartbeat.run() => {}
        }
    }

    async fn withdraw(&self) -> Result<()> {
        let reg = &self.reg;
        self.agent
            .update_ttl(&reg.check_id, CheckStatus::Critical, "draining")
            .await
    }

    /// Reports the TTL check passing again. (Consul registrations follow health in
    /// their heartbeat and start no following handle, so nothing calls this today.)
    async fn restore(&self) -> Result<()> {
        let reg = &self.reg;
        self.agent
            .update_ttl(&reg.check_id, CheckStatus::Passing, "serving")
            .await
    }

    /// Deregisters; a service the agent had already forgotten (404) is no error.
    async fn deregister(&self) -> Result<()> {
        match self.agent.deregister(&self.reg.service_id).await {
            Err(e) if !agent_forgot(&e) => Err(e),
            _ => {
                tracing::info!(service_id = %self.reg.service_id, "deregistered");
                Ok(())
            }
        }
    }
}

const _: () = {
    fn assert_send_sync<T: Send + Sync>() {}
    fn assert_all() {
        assert_send_sync::<RegistrationHandle>();
        assert_send_sync::<Registration>();
        assert_send_sync::<HealthSource>();
    }
    let _ = assert_all;
};

impl fmt::Debug for AgentRegistrar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("consul::RegistrationHandle")
            .field("id", &self.reg.service_id)
            .field("check_id", &self.reg.check_id)
            .field("address", &self.reg.address)
            .field("interval", &self.reg.interval)
            .finish_non_exhaustive()
    }
}
