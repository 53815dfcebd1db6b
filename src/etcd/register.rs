//! Self-registration: a lease, the instance key put with it, and a task that keeps the
//! lease alive and registers again whenever it is lost.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use etcd_client::{LeaseKeepAliveStream, LeaseKeeper, PutOptions};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::client::{Client, map_error};
use super::keys::{KeyLayout, Published};
use crate::backoff::{Backoff, BackoffState};
use crate::error::{Error, Result};

/// etcd grants leases in whole seconds and raises shorter TTLs to its minimum
/// (1.5 × election timeout, 2 s with default settings).
const MIN_TTL: Duration = Duration::from_secs(2);

/// One instance to register. Created by [`Registration::builder`].
#[derive(Clone)]
pub struct Registration {
    published: Published,
    layout: KeyLayout,
    ttl: Duration,
    backoff: Option<Backoff>,
}

/// Builds a [`Registration`].
#[must_use]
pub struct RegistrationBuilder {
    published: Published,
    layout: KeyLayout,
    ttl: Duration,
    backoff: Option<Backoff>,
    id_set: bool,
}

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

#[derive(Debug, Clone, Copy)]
struct Lease {
    id: i64,
    ttl: Duration,
}

// === impl Registration ===

impl Registration {
    /// A registration of `service` reachable at `addr`.
    ///
    /// The service name may hold ASCII letters, digits, `-`, `_`, `.` and, for the
    /// endpoints layout, `/` between non-empty segments (`foo/bar/my-service`).
    pub fn builder(service: impl Into<String>, addr: SocketAddr) -> RegistrationBuilder {
        let service = service.into();
        let host = addr.ip().to_string();
        RegistrationBuilder {
            published: Published {
                id: format!("{service}-{}-{}", host, addr.port()),
                service,
                host,
                port: addr.port(),
                meta: BTreeMap::new(),
                version: String::new(),
            },
            layout: KeyLayout::default(),
            ttl: Duration::from_secs(10),
            backoff: None,
            id_set: false,
        }
    }

    /// The etcd key this registration writes.
    pub fn key(&self) -> String {
        self.layout.key(&self.published)
    }

    /// The lease TTL.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// How often the lease is kept alive: a third of the TTL, as etcd's Go client does.
    pub fn keep_alive_interval(&self) -> Duration {
        keep_alive_interval(self.ttl)
    }
}

fn keep_alive_interval(ttl: Duration) -> Duration {
    (ttl / 3).max(Duration::from_millis(500))
}

impl fmt::Debug for Registration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("etcd::Registration")
            .field("key", &self.key())
            .field("ttl", &self.ttl)
            .finish()
    }
}

// === impl RegistrationBuilder ===

impl RegistrationBuilder {
    /// The instance id, used in the key of the kratos layout (the endpoints layout
    /// keys by address). Default: `<service>-<ip>-<port>`.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.published.id = id.into();
        self.id_set = true;
        self
    }

    /// The lease TTL: how long the key outlives a crashed instance. Rounded up to whole
    /// seconds, at least 2 s (etcd's minimum). Default: 10 s.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
        self.ttl = Duration::from_secs(secs).max(MIN_TTL);
        self
    }

    /// Adds a metadata entry. Default: none.
    pub fn meta(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.published.meta.insert(key.into(), value.into());
        self
    }

    /// The version published in the kratos layout. Default: empty.
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.published.version = version.into();
        self
    }

    /// Where the instance lives in etcd. Default: [`KeyLayout::Endpoints`].
    pub fn layout(mut self, layout: KeyLayout) -> Self {
        self.layout = layout;
        self
    }

    /// Delay between attempts to register again after the lease was lost.
    /// Default: 100 ms up to the keep-alive interval, so a registration is back within
    /// about one interval of etcd returning.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = Some(backoff);
        self
    }

    /// Validates the registration.
    ///
    /// # Errors
    ///
    /// A configuration error for an invalid service name or id, an unspecified IP
    /// address (`0.0.0.0`, `::`) or port 0.
    pub fn build(self) -> Result<Registration> {
        let p = &self.published;
        validate_name(&p.service, self.layout == KeyLayout::Endpoints)?;
        if self.id_set {
            validate_name(&p.id, false).map_err(|_| {
                Error::config(format!("instance id `{}` is not a valid key segment", p.id))
            })?;
        }
        let ip_unspecified = p
            .host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_unspecified());
        if ip_unspecified || p.port == 0 {
            return Err(Error::config(format!(
                "cannot register `{}:{}`: other hosts need a concrete IP address and port",
                p.host, p.port
            )));
        }
        Ok(Registration {
            published: self.published,
            layout: self.layout,
            ttl: self.ttl,
            backoff: self.backoff,
        })
    }
}

impl fmt::Debug for RegistrationBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("etcd::RegistrationBuilder")
            .field("service", &self.published.service)
            .field("ttl", &self.ttl)
            .field("layout", &self.layout)
            .finish()
    }
}

/// Service name rules for etcd keys.
// TODO(lead): unify with `src/validate.rs` of the Consul registration once merged; etcd
// names may contain `/` (Go endpoints targets such as `foo/bar/my-service`) and `_`.
fn validate_name(name: &str, allow_slash: bool) -> Result<()> {
    let bad = |why: &str| Err(Error::config(format!("service name `{name}` {why}")));
    if name.is_empty() || name.len() > 256 {
        return bad("must have 1 to 256 characters");
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if let Some(c) = name
        .chars()
        .find(|&c| !(allowed(c) || (allow_slash && c == '/')))
    {
        return bad(&format!("contains `{c}`"));
    }
    if name.split('/').any(str::is_empty) {
        return bad("has an empty `/` segment");
    }
    Ok(())
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

// === the keep-alive task ===

/// Grants a lease, puts the key with it, and revokes the lease it replaces.
async fn establish(client: &Client, reg: &Registration, old: Option<i64>) -> Result<Lease> {
    let mut etcd = client.etcd();
    let ttl = i64::try_from(reg.ttl.as_secs()).unwrap_or(i64::MAX);
    let grant = client
        .call("lease grant", etcd.lease_grant(ttl, None))
        .await?;
    if !grant.error().is_empty() || grant.ttl() <= 0 {
        let message = format!("etcd lease grant refused: {}", grant.error());
        return Err(Error::unavailable(message));
    }
    let value = reg.layout.encode(&reg.published);
    let options = PutOptions::new().with_lease(grant.id());
    client
        .call("put", etcd.put(reg.key(), value, Some(options)))
        .await?;
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

struct Keeper {
    client: Client,
    registration: Registration,
    lease_tx: watch::Sender<Option<i64>>,
}

impl Keeper {
    async fn run(self, mut lease: Lease) {
        let interval = keep_alive_interval(self.registration.ttl);
        let backoff = self
            .registration
            .backoff
            .unwrap_or_else(|| Backoff::new(Duration::from_millis(100), interval));
        let mut retry = BackoffState::new(backoff);
        loop {
            let lost = self.keep_alive(lease).await;
            tracing::warn!(error = %lost, lease = lease.id, "etcd lease lost; registering again");
            self.lease_tx.send_replace(None);
            lease = loop {
                match establish(&self.client, &self.registration, Some(lease.id)).await {
                    Ok(new) => break new,
                    Err(e) => {
                        let delay = retry.next_delay();
                        tracing::debug!(error = %e, ?delay, "etcd registration failed");
                        tokio::time::sleep(delay).await;
                    }
                }
            };
            retry.reset();
            tracing::info!(lease = lease.id, "etcd registration restored");
            self.lease_tx.send_replace(Some(lease.id));
        }
    }

    /// Keeps `lease` alive until it is lost; returns why.
    async fn keep_alive(&self, lease: Lease) -> Error {
        let mut etcd = self.client.etcd();
        let opened = self
            .client
            .call("lease keep-alive", etcd.lease_keep_alive(lease.id))
            .await;
        match opened {
            Ok((keeper, stream)) => renew(keeper, stream, lease).await,
            Err(e) => e,
        }
    }
}

/// Sends a keep-alive every interval and checks each answer; returns when the lease
/// is gone (TTL 0), no answer comes in time, or the stream breaks.
async fn renew(mut keeper: LeaseKeeper, mut stream: LeaseKeepAliveStream, lease: Lease) -> Error {
    let interval = keep_alive_interval(lease.ttl);
    // The lease has `ttl` since the last renewal; an answer later than that is too late.
    let patience = lease.ttl.saturating_sub(interval);
    loop {
        tokio::time::sleep(interval).await;
        if let Err(e) = keeper.keep_alive().await {
            return map_error("lease keep-alive", e);
        }
        match tokio::time::timeout(patience, stream.message()).await {
            Ok(Ok(Some(answer))) if answer.ttl() > 0 => {}
            Ok(Ok(Some(_))) => return Error::unavailable("etcd says the lease is gone (TTL 0)"),
            Ok(Ok(None)) => return Error::closed("etcd ended the keep-alive stream"),
            Ok(Err(e)) => return map_error("lease keep-alive stream", e),
            Err(_) => return Error::timeout(format!("no keep-alive answer within {patience:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> SocketAddr {
        "10.0.0.1:50051".parse().unwrap()
    }

    #[test]
    fn names_follow_key_rules() {
        for ok in ["echo", "greet.rpc", "foo/bar/my-service", "a_b"] {
            Registration::builder(ok, addr()).build().unwrap();
        }
        for bad in ["", "/echo", "echo/", "a//b", "é", "a b", "a\n"] {
            let e = Registration::builder(bad, addr()).build().unwrap_err();
            assert!(e.is_config(), "{bad}: {e}");
        }
        let kratos = Registration::builder("a/b", addr()).layout(KeyLayout::Kratos);
        assert!(kratos.build().unwrap_err().is_config());
        let id = Registration::builder("a", addr()).id("x/y");
        assert!(id.build().unwrap_err().is_config());
    }

    #[test]
    fn unspecified_addresses_are_refused() {
        for bad in ["0.0.0.0:1", "[::]:1", "10.0.0.1:0"] {
            let e = Registration::builder("a", bad.parse().unwrap())
                .build()
                .unwrap_err();
            assert!(e.is_config(), "{bad}");
        }
    }

    #[test]
    fn ttl_is_whole_seconds_and_at_least_the_minimum() {
        let ttl = |d| {
            Registration::builder("a", addr())
                .ttl(d)
                .build()
                .unwrap()
                .ttl()
        };
        assert_eq!(ttl(Duration::from_millis(100)), MIN_TTL);
        assert_eq!(ttl(Duration::from_millis(2500)), Duration::from_secs(3));
        let r = Registration::builder("a", addr()).build().unwrap();
        assert_eq!(r.ttl(), Duration::from_secs(10));
        assert_eq!(r.keep_alive_interval(), Duration::from_secs(10) / 3);
        assert_eq!(r.key(), "a/10.0.0.1:50051");
    }
}
