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

/// A live registration. A background task keeps its lease alive and puts the key again
/// with a new lease whenever the lease is lost (etcd restarted, a partition longer than
/// the TTL, a broken stream), with backoff, forever.
///
/// # Drop
///
/// Dropping the handle stops the task only; the key stays until its lease expires, one
/// TTL later. Call [`deregister`](Self::deregister) or [`drain`](Self::drain) to leave
/// at once.
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
