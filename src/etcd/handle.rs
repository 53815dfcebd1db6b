//! The handle of a live registration: its keep-alive task, deregistration and drain.

use std::fmt;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::client::Client;
use super::lease::{Keeper, establish};
use super::register::Registration;
use crate::error::Result;

/// How long the best-effort deregistration on drop may take.
const DROP_TIMEOUT: Duration = Duration::from_secs(5);

/// A live registration. A background task keeps its lease alive and puts the key again
/// with a new lease whenever the lease is lost (etcd restarted, a partition longer than
/// the TTL, a broken stream), with backoff, forever.
///
/// # Drop
///
/// Dropping the handle stops the keep-alive at once and revokes the lease best-effort
/// (which deletes the key): on a spawned task bounded by 5 s, skipped when no tokio
/// runtime is running. If that does not reach etcd, the key goes when the lease
/// expires, one TTL later. Prefer [`drain`](Self::drain) or
/// [`deregister`](Self::deregister), which report errors.
pub struct RegistrationHandle {
    client: Client,
    key: String,
    lease: watch::Receiver<Option<i64>>,
    cancel: CancellationToken,
    task: Option<JoinHandle<()>>,
}

// === impl RegistrationHandle ===

impl RegistrationHandle {
    pub(crate) async fn start(client: Client, registration: Registration) -> Result<Self> {
        let registration = registration.validate()?;
        let lease = establish(&client, &registration, None).await?;
        let (lease_tx, lease_rx) = watch::channel(Some(lease.id));
        let cancel = CancellationToken::new();
        let key = registration.key();
        let span = tracing::info_span!("etcd_registration", key = %key);
        let token = cancel.clone();
        let keeper = Keeper {
            client: client.clone(),
            registration,
            lease_tx,
        };
        let task = tokio::spawn(
            async move {
                tokio::select! {
                    () = token.cancelled() => {}
                    () = keeper.run(lease) => {}
                }
            }
            .instrument(span),
        );
        Ok(RegistrationHandle {
            client,
            key,
            lease: lease_rx,
            cancel,
            task: Some(task),
        })
    }

    /// The etcd key of this registration.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The current lease, or `None` while the task is registering again after losing it.
    pub fn lease_id(&self) -> Option<i64> {
        *self.lease.borrow()
    }

    /// Stops the keep-alive task, revokes the lease and deletes the key: discoveries
    /// see the instance go at once.
    ///
    /// # Errors
    ///
    /// A transport or timeout error when the key could not be deleted; the key then
    /// goes when its lease expires.
    pub async fn deregister(mut self) -> Result<()> {
        let lease = self.stop().await;
        self.leave(lease).await
    }

    /// Graceful leave: stops the keep-alive task, deletes the key so discoveries stop
    /// sending new requests, waits `grace` for requests in flight, then revokes the lease.
    ///
    /// # Errors
    ///
    /// As [`deregister`](Self::deregister).
    pub async fn drain(mut self, grace: Duration) -> Result<()> {
        let lease = self.stop().await;
        self.delete_key().await?;
        tokio::time::sleep(grace).await;
        self.leave(lease).await
    }

    async fn stop(&mut self) -> Option<i64> {
        self.cancel.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        self.lease_id()
    }

    async fn leave(&self, lease: Option<i64>) -> Result<()> {
        if let Some(id) = lease {
            let mut etcd = self.client.etcd();
            if let Err(e) = self
                .client
                .call("lease revoke", etcd.lease_revoke(id))
                .await
            {
                tracing::debug!(error = %e, "revoking the lease failed; deleting the key");
            }
        }
        self.delete_key().await
    }

    async fn delete_key(&self) -> Result<()> {
        let mut etcd = self.client.etcd();
        self.client
            .call("delete", etcd.delete(self.key.as_str(), None))
            .await
            .map(drop)
    }
}

impl Drop for RegistrationHandle {
    fn drop(&mut self) {
        self.cancel.cancel();
        // Deregistered or drained already.
        if self.task.is_none() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (client, key, lease_rx) = (self.client.clone(), self.key.clone(), self.lease.clone());
        let task = self.task.take();
        runtime.spawn(async move {
            // Wait for the keep-alive task to end first: a lease it is granting or a key
            // it is putting must not land after the revoke. Then read the lease it left.
            if let Some(task) = task {
                let _ = task.await;
            }
            let lease = *lease_rx.borrow();
            let mut etcd = client.etcd();
            let revoke = async {
                match lease {
                    Some(id) => etcd.lease_revoke(id).await.map(drop),
                    None => etcd.delete(key.clone(), None).await.map(drop),
                }
            };
            match tokio::time::timeout(DROP_TIMEOUT, revoke).await {
                Ok(Ok(())) => tracing::info!(%key, "deregistered on drop"),
                Ok(Err(e)) => tracing::warn!(%key, error = %e, "deregister on drop failed"),
                Err(_) => tracing::warn!(%key, "deregister on drop timed out"),
            }
        });
    }
}

impl fmt::Debug for RegistrationHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("etcd::RegistrationHandle")
            .field("key", &self.key)
            .field("lease", &self.lease_id())
            .finish()
    }
}
