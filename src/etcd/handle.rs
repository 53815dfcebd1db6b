//! [`RegistrationHandle`]: a live etcd registration; [`LeaseRegistrar`]: what etcd does for
//! it (the lease keeper, the key deleted by a drain or while not serving and put back
//! when serving again, the lease revoked at the end).

use std::fmt;
use std::sync::Arc;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::client::Client;
use super::lease::{Keeper, Lease, Publication, establish, put_key};
use super::register::Registration;
use crate::error::Result;
use crate::register;

/// A live registration. A background task keeps its lease alive and puts the key again
/// with a new lease whenever the lease is lost (etcd restarted, a partition longer than
/// the TTL, a broken stream), with backoff, forever.
///
/// It follows the registration's [`health`](super::Registration::health) too: while
/// the instance does not serve, its key is deleted (the lease stays, so nothing else
/// changes), and put back on the current lease once it serves again. A lease lost
/// meanwhile is replaced without putting the key.
///
/// [`drain`](register::RegistrationHandle::drain) deletes the key (discoveries stop
/// sending new requests), waits, then revokes the lease;
/// [`deregister`](register::RegistrationHandle::deregister) revokes the lease and
/// deletes the key at once.
///
/// # Drop
///
/// Dropping the handle stops the keep-alive at once and revokes the lease best-effort
/// (which deletes the key): on a spawned task bounded by 5 s, skipped when no tokio
/// runtime is running. If that does not reach etcd, the key goes when the lease
/// expires, one TTL later.
pub type RegistrationHandle = register::RegistrationHandle<LeaseRegistrar>;

/// etcd's side of a [`RegistrationHandle`]: the key, its lease and the lease keeper.
pub struct LeaseRegistrar {
    client: Client,
    key: String,
    registration: Arc<Registration>,
    lease: watch::Receiver<Option<i64>>,
    /// Shared with the keeper: orders every write of the key.
    publication: Arc<Publication>,
}

/// What an etcd registration's keep-alive task owns: the lease keeper and the lease
/// (see [`Registrar::KeepAlive`](register::Registrar::KeepAlive)). Made by
/// registering.
pub struct KeepAlive {
    keeper: Keeper,
    lease: Lease,
}

impl fmt::Debug for KeepAlive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeepAlive").finish_non_exhaustive()
    }
}

/// Grants a lease, puts the key with it unless the health source says the instance
/// does not serve, and hands the keeper and the health to a new handle.
pub(crate) async fn start(
    client: Client,
    registration: Registration,
) -> Result<RegistrationHandle> {
    let mut registration = registration.resolve(client.endpoints()).await?;
    let health = std::mem::take(&mut registration.health);
    let publish = health.healthy();
    let lease = establish(&client, &registration, None, publish).await?;
    let (lease_tx, lease_rx) = watch::channel(Some(lease.id));
    let key = registration.key();
    let span = tracing::info_span!("etcd_registration", key = %key);
    let registration = Arc::new(registration);
    let publication = Arc::new(Publication::new(publish));
    let keeper = Keeper {
        client: client.clone(),
        registration: registration.clone(),
        lease_tx,
        publication: publication.clone(),
        metrics: crate::telemetry::RegistrationMetrics::new(
            "etcd",
            &registration.published.service,
        ),
    };
    let registrar = LeaseRegistrar {
        client,
        key,
        registration,
        lease: lease_rx,
        publication,
    };
    let keep_alive = KeepAlive { keeper, lease };
    let handle = RegistrationHandle::following_health(registrar, keep_alive, health, publish, span);
    Ok(handle)
}

// === impl RegistrationHandle ===

impl RegistrationHandle {
    /// The etcd key of this registration.
    pub fn key(&self) -> &str {
        &self.registrar().key
    }

    /// The current lease, or `None` while the task is registering again after losing it.
    pub fn lease_id(&self) -> Option<i64> {
        *self.registrar().lease.borrow()
    }
}

// === impl LeaseRegistrar ===

impl register::Registrar for LeaseRegistrar {
    type KeepAlive = KeepAlive;

    async fn keep_alive(self: Arc<Self>, state: KeepAlive, stop: CancellationToken) {
        let KeepAlive { keeper, lease } = state;
        tokio::select! {
            () = stop.cancelled() => {}
            () = keeper.run(lease) => {}
        }
    }

    /// Deletes the key; the lease stays, and a new one replacing it leaves the key out
    /// until [`restore`](register::Registrar::restore).
    async fn withdraw(&self) -> Result<()> {
        let mut desired = self.publication.lock().await;
        *desired = false;
        self.delete_key().await
    }

    /// Puts the key again on the current lease; while the keeper is replacing a lost
    /// lease, its new lease gets the key.
    async fn restore(&self) -> Result<()> {
        let mut desired = self.publication.lock().await;
        *desired = true;
        // Read under the lock: the keeper publishes a new lease before releasing it.
        let lease = *self.lease.borrow();
        match lease {
            Some(lease) => put_key(&self.client, &self.registration, lease).await,
            None => Ok(()),
        }
    }

    /// Revokes the lease (deleting the key), and deletes the key in case the lease
    /// was lost.
    ///
    /// # Errors
    ///
    /// A transport or timeout error when the key could not be deleted; the key then
    /// goes when its lease expires.
    async fn deregister(&self) -> Result<()> {
        let mut desired = self.publication.lock().await;
        *desired = false;
        let lease = *self.lease.borrow();
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
}

impl LeaseRegistrar {
    async fn delete_key(&self) -> Result<()> {
        let mut etcd = self.client.etcd();
        self.client
            .call("delete", etcd.delete(self.key.as_str(), None))
            .await
            .map(drop)
    }
}

impl fmt::Debug for LeaseRegistrar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("etcd::RegistrationHandle")
            .field("key", &self.key)
            .field("lease", &*self.lease.borrow())
            .finish()
    }
}
