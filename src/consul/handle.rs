//! [`RegistrationHandle`]: a live registration, its heartbeat task, drain and
//! deregistration.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::agent::{Agent, CheckStatus};
use super::client::Client;
use super::health::HealthSource;
use super::heartbeat::{Heartbeat, agent_forgot};
use super::payload::Resolved;
use super::register::Registration;
use crate::error::Result;

/// How long the best-effort deregistration on drop may take.
const DROP_DEREGISTER_TIMEOUT: Duration = Duration::from_secs(5);

/// A registered service instance. Owns the task that keeps its TTL check passing.
///
/// End it with [`drain`](Self::drain) (critical, wait, deregister) or
/// [`deregister`](Self::deregister).
///
/// # Drop
///
/// Dropping the handle stops the heartbeat at once and deregisters best-effort: the
/// deregistration runs on a spawned task bounded by 5 s, and is skipped when no tokio
/// runtime is running. If it does not reach the agent, the TTL check turns critical
/// one TTL later and the agent removes the service after `DeregisterCriticalServiceAfter`.
pub struct RegistrationHandle {
    agent: Arc<dyn Agent>,
    reg: Arc<Resolved>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

// === impl Client ===

impl Client {
    /// Registers `registration` with the agent, reports its check once, and starts the
    /// heartbeat on a spawned task owned by the returned handle.
    ///
    /// # Errors
    ///
    /// A configuration error (checked before anything is sent), or the agent's refusal
    /// of the registration or of the first check update.
    pub async fn register(&self, registration: Registration) -> Result<RegistrationHandle> {
        let (resolved, health) = registration.resolve(&self.inner.base).await?;
        RegistrationHandle::start(Arc::new(self.clone()), resolved, health).await
    }
}

// === impl RegistrationHandle ===

impl RegistrationHandle {
    pub(crate) async fn start(
        agent: Arc<dyn Agent>,
        reg: Resolved,
        health: HealthSource,
    ) -> Result<Self> {
        let reg = Arc::new(reg);
        agent.register(reg.body.clone()).await?;
        let heartbeat = Heartbeat::new(agent.clone(), reg.clone(), health);
        if let Err(e) = heartbeat.beat().await {
            // Leave nothing behind that no handle owns.
            let _ = agent.deregister(&reg.service_id).await;
            return Err(e);
        }
        let (stop, stopped) = oneshot::channel();
        let span = tracing::info_span!("heartbeat", service_id = %reg.service_id);
        let task = tokio::spawn(
            async move {
                tokio::select! {
                    _ = stopped => {}
                    () = heartbeat.run() => {}
                }
            }
            .instrument(span),
        );
        tracing::info!(service_id = %reg.service_id, address = %reg.address, "registered");
        Ok(RegistrationHandle {
            agent,
            reg,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// The instance ID registered.
    pub fn id(&self) -> &str {
        &self.reg.service_id
    }

    /// The service name registered.
    pub fn name(&self) -> &str {
        &self.reg.name
    }

    /// The ID of the TTL check the heartbeat updates (`service:<id>`).
    pub fn check_id(&self) -> &str {
        &self.reg.check_id
    }

    /// The address advertised to clients.
    pub fn address(&self) -> SocketAddr {
        self.reg.address
    }

    /// Stops the heartbeat and removes the service and its checks from the agent.
    ///
    /// # Errors
    ///
    /// The agent's error; a service the agent had already forgotten (404) is not one.
    pub async fn deregister(mut self) -> Result<()> {
        self.stop_heartbeat().await;
        self.remove().await
    }

    /// Drains the instance: stops the heartbeat, turns the check critical so that
    /// discovery drops the instance, waits `grace` for clients to notice, then
    /// deregisters. Keep serving during the wait; stop the server afterwards.
    ///
    /// # Errors
    ///
    /// The agent's error when deregistering (a failure to turn the check critical is
    /// logged and the drain goes on).
    pub async fn drain(mut self, grace: Duration) -> Result<()> {
        self.stop_heartbeat().await;
        let reg = &self.reg;
        let critical = self
            .agent
            .update_ttl(&reg.check_id, CheckStatus::Critical, "draining")
            .await;
        if let Err(e) = critical {
            tracing::warn!(service_id = %reg.service_id, error = %e, "could not mark the check critical");
        }
        tracing::info!(service_id = %reg.service_id, ?grace, "draining");
        tokio::time::sleep(grace).await;
        self.remove().await
    }

    /// A future for `tonic::transport::Server::serve_with_shutdown`: waits for `signal`,
    /// [drains](Self::drain) for `grace`, then resolves so that the server stops
    /// accepting and finishes the requests in flight. Drain errors are logged.
    ///
    /// ```no_run
    /// # async fn demo(client: tonic_discovery::consul::Client, addr: std::net::SocketAddr) -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use tonic_discovery::consul::Registration;
    /// let handle = client.register(Registration::new("echo", addr)).await?;
    /// let shutdown = handle.drain_on(async { let _ = tokio::signal::ctrl_c().await; }, Duration::from_secs(2));
    /// // tonic::transport::Server::builder().add_service(svc).serve_with_shutdown(addr, shutdown).await?;
    /// # drop(shutdown); Ok(()) }
    /// ```
    pub async fn drain_on<F>(self, signal: F, grace: Duration)
    where
        F: Future<Output = ()>,
    {
        signal.await;
        let id = self.reg.service_id.clone();
        if let Err(e) = self.drain(grace).await {
            tracing::warn!(service_id = %id, error = %e, "drain did not deregister");
        }
    }

    /// Stops the heartbeat and leaves the registration behind, as a crashed process
    /// would: the check turns critical one TTL later, and the agent removes the
    /// service after `DeregisterCriticalServiceAfter`. For tests and demonstrations;
    /// a server going away should [`drain`](Self::drain) or
    /// [`deregister`](Self::deregister).
    pub fn abandon(mut self) {
        self.stop.take();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }

    async fn stop_heartbeat(&mut self) {
        self.stop.take();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    async fn remove(&self) -> Result<()> {
        match self.agent.deregister(&self.reg.service_id).await {
            Err(e) if !agent_forgot(&e) => Err(e),
            _ => {
                tracing::info!(service_id = %self.reg.service_id, "deregistered");
                Ok(())
            }
        }
    }
}

impl Drop for RegistrationHandle {
    fn drop(&mut self) {
        if self.stop.take().is_none() {
            return; // drained or deregistered already
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (agent, reg) = (self.agent.clone(), self.reg.clone());
        let task = self.task.take();
        runtime.spawn(async move {
            // Wait for the heartbeat to end first: a re-registration it has in flight
            // must not land after the deregistration.
            if let Some(task) = task {
                let _ = task.await;
            }
            let call = agent.deregister(&reg.service_id);
            match tokio::time::timeout(DROP_DEREGISTER_TIMEOUT, call).await {
                Ok(Ok(())) => tracing::info!(service_id = %reg.service_id, "deregistered on drop"),
                Ok(Err(e)) => tracing::warn!(service_id = %reg.service_id, error = %e, "deregister on drop failed"),
                Err(_) => tracing::warn!(service_id = %reg.service_id, "deregister on drop timed out"),
            }
        });
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

impl fmt::Debug for RegistrationHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("consul::RegistrationHandle")
            .field("id", &self.reg.service_id)
            .field("check_id", &self.reg.check_id)
            .field("address", &self.reg.address)
            .field("interval", &self.reg.interval)
            .finish_non_exhaustive()
    }
}
