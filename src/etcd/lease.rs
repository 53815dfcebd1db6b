//! The keep-alive task: renews the lease, and registers again with a new lease
//! whenever it is lost; and the [`Publication`] lock that orders every write of the
//! key.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{LeaseKeepAliveStream, LeaseKeeper, PutOptions};
use tokio::sync::{Mutex, watch};

use super::client::{Client, map_error};
use super::register::Registration;
use crate::backoff::{Backoff, BackoffState};
use crate::error::{Error, Result};
use crate::telemetry::RegistrationMetrics;

/// A granted lease.
#[derive(Debug, Clone, Copy)]
pub(super) struct Lease {
    pub(super) id: i64,
    pub(super) ttl: Duration,
}

/// A third of the TTL, as etcd's Go client does, but not below 500 ms.
pub(super) fn keep_alive_interval(ttl: Duration) -> Duration {
    (ttl / 3).max(Duration::from_millis(500))
}

/// Whether the instance should be in discovery (its key in etcd), behind the one lock
/// that every write of the key takes: the keeper's [`establish`] after a lost lease,
/// and the health follower's withdrawal (delete) and restoration (put on the current
/// lease).
///
/// Why one lock: without it, a restoration could read lease L1 just before the keeper
/// notices L1 is lost, the keeper could grant L2, put the key on it and revoke L1, and
/// only then the restoration's put on L1 would land: a put on a revoked lease fails,
/// but one that lands between the keeper's put and its revoke moves the key onto L1,
/// and the revoke then deletes it while L2 lives on with nothing on it. Under the lock
/// the two are ordered: a restoration before `establish` is followed by its put on the
/// new lease (`desired` is then true), one after it reads the new lease, since the
/// keeper publishes the lease id before it lets go. A withdrawal likewise sets
/// `desired` to false first, so a later `establish` grants a lease and leaves the key
/// out. (A write our side gave up on after the request timeout may still land later;
/// the lock cannot order that one.)
pub(super) type Publication = Mutex<bool>;

/// Grants a lease, puts the key with it when `publish` says so, and revokes the lease
/// it replaces.
pub(super) async fn establish(
    client: &Client,
    reg: &Registration,
    old: Option<i64>,
    publish: bool,
) -> Result<Lease> {
    let mut etcd = client.etcd();
    let ttl = i64::try_from(reg.ttl.as_secs()).unwrap_or(i64::MAX);
    let grant = client
        .call("lease grant", etcd.lease_grant(ttl, None))
        .await?;
    if !grant.error().is_empty() || grant.ttl() <= 0 {
        let message = format!("etcd lease grant refused: {}", grant.error());
        return Err(Error::unavailable(message));
    }
    if publish {
        put_key(client, reg, grant.id()).await?;
    }
    if let Some(old) = old {
        // The key now hangs on the new lease; the old one, if still alive, holds nothing.
        let _ = client.call("lease revoke", etcd.lease_revoke(old)).await;
    }
    let granted = Duration::from_secs(u64::try_from(grant.ttl()).unwrap_or(1));
    Ok(Lease {
        id: grant.id(),
        ttl: granted,
    })
}

/// Puts the instance key on `lease`.
pub(super) async fn put_key(client: &Client, reg: &Registration, lease: i64) -> Result<()> {
    let mut etcd = client.etcd();
    let value = reg.layout.encode(&reg.published);
    let options = PutOptions::new().with_lease(lease);
    client
        .call("put", etcd.put(reg.key(), value, Some(options)))
        .await
        .map(drop)
}

/// Owns the registration's lease for the life of the task.
pub(super) struct Keeper {
    pub(super) client: Client,
    pub(super) registration: Arc<Registration>,
    pub(super) lease_tx: watch::Sender<Option<i64>>,
    pub(super) publication: Arc<Publication>,
    pub(super) metrics: RegistrationMetrics,
}

impl Keeper {
    /// Runs forever: keeps `lease` alive, and when it is lost registers again with
    /// backoff. Ends only when the caller drops the future.
    pub(super) async fn run(self, mut lease: Lease) {
        let interval = keep_alive_interval(self.registration.ttl);
        let backoff = self
            .registration
            .backoff
            .unwrap_or_else(|| Backoff::new(Duration::from_millis(100), interval));
        let mut retry = BackoffState::new(backoff);
        loop {
            let held = tokio::time::Instant::now();
            let lost = self.keep_alive(lease).await;
            self.metrics.heartbeat_failed();
            tracing::warn!(error = %lost, lease = lease.id, "etcd lease lost; registering again");
            self.lease_tx.send_replace(None);
            if held.elapsed() >= interval {
                retry.reset();
            } else {
                // Lost before its first renewal: something refuses the keep-alive
                // itself, so granting and putting again at once would spin.
                tokio::time::sleep(retry.next_delay()).await;
            }
            lease = loop {
                match self.establish(lease.id).await {
                    Ok(new) => {
                        self.metrics.reregistered();
                        break new;
                    }
                    Err(e) => {
                        let delay = retry.next_delay();
                        tracing::debug!(error = %e, ?delay, "etcd registration failed");
                        tokio::time::sleep(delay).await;
                    }
                }
            };
        }
    }

    /// A new lease in place of `old`, with the key on it if the instance should be in
    /// discovery; the new id is published before the lock is released (see
    /// [`Publication`]).
    async fn establish(&self, old: i64) -> Result<Lease> {
        let desired = self.publication.lock().await;
        let lease = establish(&self.client, &self.registration, Some(old), *desired).await?;
        self.lease_tx.send_replace(Some(lease.id));
        tracing::info!(
            lease = lease.id,
            published = *desired,
            "etcd registration restored"
        );
        Ok(lease)
    }

    /// Keeps `lease` alive until it is lost; returns why.
    async fn keep_alive(&self, lease: Lease) -> Error {
        let mut etcd = self.client.etcd();
        let opened = self
            .client
            .call("lease keep-alive", etcd.lease_keep_alive(lease.id))
            .await;
        match opened {
            Ok(channel) => renew(channel, lease, &self.metrics).await,
            Err(e) => e,
        }
    }
}

/// One lease's keep-alive stream: send a renewal, read the answer's TTL.
pub(super) trait Renewals {
    /// Sends one renewal.
    fn send(&mut self) -> impl Future<Output = Result<()>> + Send;
    /// The next answer's TTL in seconds; `None` when the stream ended.
    fn answer(&mut self) -> impl Future<Output = Option<Result<i64>>> + Send;
}

impl Renewals for (LeaseKeeper, LeaseKeepAliveStream) {
    async fn send(&mut self) -> Result<()> {
        self.0
            .keep_alive()
            .await
            .map_err(|e| map_error("lease keep-alive", e))
    }

    async fn answer(&mut self) -> Option<Result<i64>> {
        match self.1.message().await {
            Ok(Some(answer)) => Some(Ok(answer.ttl())),
            Ok(None) => None,
            Err(e) => Some(Err(map_error("lease keep-alive stream", e))),
        }
    }
}

/// Sends a renewal every interval and checks each answer; returns when the lease is
/// gone (TTL 0), no answer comes in time, or the stream breaks.
pub(super) async fn renew(
    mut channel: impl Renewals,
    lease: Lease,
    metrics: &RegistrationMetrics,
) -> Error {
    let interval = keep_alive_interval(lease.ttl);
    // The lease runs `ttl` from the last renewal; an answer later than that is too late.
    let patience = lease.ttl.saturating_sub(interval);
    loop {
        tokio::time::sleep(interval).await;
        if let Err(e) = channel.send().await {
            return e;
        }
        match tokio::time::timeout(patience, channel.answer()).await {
            Ok(Some(Ok(ttl))) if ttl > 0 => metrics.heartbeat(),
            Ok(Some(Ok(_))) => return Error::unavailable("etcd says the lease is gone (TTL 0)"),
            Ok(Some(Err(e))) => return e,
            Ok(None) => return Error::closed("etcd ended the keep-alive stream"),
            Err(_) => return Error::timeout(format!("no keep-alive answer within {patience:?}")),
        }
    }
}

#[cfg(test)]
#[path = "lease_tests.rs"]
mod tests;
