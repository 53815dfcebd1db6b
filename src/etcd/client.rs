//! Connection to an etcd cluster.

use std::fmt;
use std::time::Duration;

use etcd_client::ConnectOptions;

use super::discovery::DiscoveryBuilder;
use super::handle::RegistrationHandle;
use super::register::Registration;
use crate::error::{Error, Result};

/// etcd's default `--grpc-keepalive-min-time`: a client that pings more often is sent
/// GOAWAY (`too_many_pings`), which kills every stream.
const MIN_PING_INTERVAL: Duration = Duration::from_secs(5);

/// A client of an etcd cluster (API v3), shared by discoveries and registrations.
///
/// Cheap to clone. Connecting is lazy: [`ClientBuilder::connect`] succeeds while etcd
/// is down (unless a user is set, which needs a token) and the first request fails.
#[derive(Clone)]
pub struct Client {
    inner: etcd_client::Client,
    endpoints: Vec<String>,
    request_timeout: Duration,
    /// The live discovery watches, one per (service, layout, backoff).
    pub(crate) watches:
        std::sync::Arc<crate::source::Watches<(String, super::KeyLayout, crate::Backoff)>>,
}

/// Builds a [`Client`]. Created by [`Client::builder`].
#[must_use]
pub struct ClientBuilder {
    endpoints: String,
    keep_alive: (Duration, Duration),
    request_timeout: Duration,
    connect_timeout: Duration,
    require_leader: bool,
    user: Option<(String, String)>,
    /// A setting from the environment that cannot be honoured, reported by `connect`.
    error: Option<Error>,
}

// === impl Client ===

impl Client {
    /// A builder for a client of the etcd members at `endpoints`: comma-separated
    /// `host:port`, `http://host:port` or `etcd://host:port` entries; an `etcd://` URL may
    /// list several hosts (`etcd://10.0.0.1:2379,10.0.0.2:2379`).
    pub fn builder(endpoints: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            endpoints: endpoints.into(),
            keep_alive: (Duration::from_secs(10), Duration::from_secs(5)),
            request_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(3),
            require_leader: true,
            user: None,
            error: None,
        }
    }

    /// A client with default options; see [`Client::builder`] for the endpoint syntax.
    ///
    /// # Errors
    ///
    /// As [`ClientBuilder::connect`].
    pub async fn connect(endpoints: impl Into<String>) -> Result<Client> {
        Client::builder(endpoints).connect().await
    }

    /// A builder for the discovery of `service`.
    pub fn discovery(&self, service: impl Into<String>) -> DiscoveryBuilder {
        DiscoveryBuilder::new(self.clone(), service.into())
    }

    /// Registers an instance and keeps its lease alive from a background task until the
    /// returned handle is dropped, deregistered or drained.
    ///
    /// # Errors
    ///
    /// A transport, status or timeout error when the first lease grant or put fails;
    /// later failures are retried by the task.
    pub async fn register(&self, registration: Registration) -> Result<RegistrationHandle> {
        super::handle::start(self.clone(), registration).await
    }

    /// The endpoints this client talks to, as URLs.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    pub(crate) fn etcd(&self) -> etcd_client::Client {
        self.inner.clone()
    }

    /// Runs one request under the client's request timeout.
    pub(crate) async fn call<T, F>(&self, what: &str, fut: F) -> Result<T>
    where
        F: Future<Output = Result<T, etcd_client::Error>>,
    {
        match tokio::time::timeout(self.request_timeout, fut).await {
            Ok(result) => result.map_err(|e| map_error(what, e)),
            Err(_) => Err(Error::timeout(format!(
                "etcd {what} after {:?}",
                self.request_timeout
            ))),
        }
    }
}

/// Maps an etcd-client error to ours. Every failure of a request is a transport error
/// whose source carries the gRPC status (etcd reports a lost lease, a compacted
/// revision or a missing leader as statuses).
pub(crate) fn map_error(what: &str, e: etcd_client::Error) -> Error {
    Error::transport(format!("etcd {what}"), e)
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("etcd::Client")
            .field("endpoints", &self.endpoints)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

// === impl ClientBuilder ===

impl ClientBuilder {
    /// HTTP/2 keep-alive: a ping every `interval`, the connection is dropped when no
    /// answer comes within `timeout`. This is how a silent network cut breaks the watch.
    /// An interval below etcd's 5 s minimum is raised to 5 s. Default: 10 s, 5 s.
    pub fn keep_alive(mut self, interval: Duration, timeout: Duration) -> Self {
        self.keep_alive = (interval.max(MIN_PING_INTERVAL), timeout);
        self
    }

    /// Timeout of each request (grant, put, get, revoke; opening a watch or a
    /// keep-alive stream). Default: 5 s.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Timeout for establishing a connection to a member. Default: 3 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Whether requests and watches fail on a member that has no leader, rather than
    /// hang. Default: true.
    pub fn require_leader(mut self, require: bool) -> Self {
        self.require_leader = require;
        self
    }

    /// The endpoints, replacing those given to [`Client::builder`] or read from
    /// `ETCDCTL_ENDPOINTS` (same syntax).
    pub fn endpoints(mut self, endpoints: impl Into<String>) -> Self {
        self.endpoints = endpoints.into();
        self
    }

    /// Authenticates as `username` with `password` (etcd's auth, a token per
    /// connection). The same name as the Nacos client's. Default: no authentication.
    pub fn credentials(mut self, username: impl Into<String>, password: impl Into<String>) -> Self {
        self.user = Some((username.into(), password.into()));
        self
    }

    /// A builder configured from the environment as `etcdctl` reads it:
    ///
    /// | variable | meaning |
    /// |---|---|
    /// | `ETCDCTL_ENDPOINTS` | comma-separated endpoints; default `127.0.0.1:2379` |
    /// | `ETCDCTL_USER` | `username:password`, or `username` with `ETCDCTL_PASSWORD` (alone: an empty password, where `etcdctl` would prompt) |
    /// | `ETCDCTL_PASSWORD` | the password, when `ETCDCTL_USER` holds none |
    ///
    /// Empty variables count as unset; setters called afterwards override them.
    /// `ETCDCTL_CACERT`, `ETCDCTL_CERT` and `ETCDCTL_KEY` ask for TLS, which this
    /// client does not speak yet: [`connect`](Self::connect) then fails, naming the
    /// variable, rather than talking plaintext to a cluster that expects TLS.
    pub fn from_env() -> ClientBuilder {
        from_lookup(|name| std::env::var(name).ok())
    }

    /// Connects (lazily, see [`Client`]).
    ///
    /// # Errors
    ///
    /// A configuration error for an empty or malformed endpoint list; a transport error
    /// when authentication fails.
    pub async fn connect(self) -> Result<Client> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let endpoints = parse_endpoints(&self.endpoints)?;
        let (interval, timeout) = self.keep_alive;
        let mut options = ConnectOptions::new()
            .with_keep_alive(interval, timeout)
            .with_keep_alive_while_idle(true)
            .with_connect_timeout(self.connect_timeout)
            .with_require_leader(self.require_leader);
        if let Some((name, password)) = self.user {
            options = options.with_user(name, password);
        }
        let inner = etcd_client::Client::connect(&endpoints, Some(options))
            .await
            .map_err(|e| map_error("connect", e))?;
        Ok(Client {
            inner,
            endpoints,
            request_timeout: self.request_timeout,
            watches: Default::default(),
        })
    }
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("etcd::ClientBuilder")
            .field("endpoints", &self.endpoints)
            .field("keep_alive", &self.keep_alive)
            .field("request_timeout", &self.request_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("require_leader", &self.require_leader)
            .field("user", &self.user.as_ref().map(|(name, _)| name))
            .field("error", &self.error)
            .finish()
    }
}

/// [`ClientBuilder::from_env`] over any lookup, so tests need not touch the process
/// environment.
pub(crate) fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> ClientBuilder {
    let var = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
    let mut b =
        Client::builder(var("ETCDCTL_ENDPOINTS").unwrap_or_else(|| "127.0.0.1:2379".to_owned()));
    if let Some(user) = var("ETCDCTL_USER") {
        b = match (user.split_once(':'), var("ETCDCTL_PASSWORD")) {
            (Some((name, password)), _) => b.credentials(name, password),
            (None, Some(password)) => b.credentials(user, password),
            (None, None) => b.credentials(user, ""),
        };
    }
    if let Some(name) = ["ETCDCTL_CACERT", "ETCDCTL_CERT", "ETCDCTL_KEY"]
        .into_iter()
        .find(|name| var(name).is_some())
    {
        b.error = Some(Error::config(format!(
            "{name} is set, but TLS towards etcd is not supported yet"
        )));
    }
    b
}

/// Parses a comma-separated endpoint list into `http://host:port` URLs.
pub(crate) fn parse_endpoints(list: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for (n, entry) in list.split(',').map(str::trim).enumerate() {
        let rest = match entry.split_once("://") {
            Some(("etcd" | "http", rest)) => rest,
            Some(("https", _)) => {
                return Err(Error::config(format!(
                    "etcd endpoint `{entry}`: TLS towards etcd is not supported yet"
                )));
            }
            Some((scheme, _)) if n == 0 => {
                return Err(Error::config(format!(
                    "etcd endpoint `{entry}`: unknown scheme `{scheme}` (use etcd or http)"
                )));
            }
            _ => entry,
        };
        let authority = rest.trim_end_matches('/');
        let valid = authority
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !valid || authority.contains('/') {
            return Err(Error::config(format!(
                "etcd endpoint `{entry}` is not host:port"
            )));
        }
        out.push(format!("http://{authority}"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn the_environment_is_read_as_etcdctl_reads_it() {
        let b = from_lookup(env(&[]));
        assert_eq!(b.endpoints, "127.0.0.1:2379");
        assert!(b.user.is_none() && b.error.is_none());

        let b = from_lookup(env(&[
            ("ETCDCTL_ENDPOINTS", "10.0.0.1:2379,10.0.0.2:2379"),
            ("ETCDCTL_USER", "root:s3cret"),
        ]));
        assert_eq!(b.endpoints, "10.0.0.1:2379,10.0.0.2:2379");
        assert_eq!(b.user, Some(("root".to_owned(), "s3cret".to_owned())));

        let b = from_lookup(env(&[
            ("ETCDCTL_USER", "app"),
            ("ETCDCTL_PASSWORD", "p4ssw0rd"),
        ]));
        assert_eq!(b.user, Some(("app".to_owned(), "p4ssw0rd".to_owned())));
        // The password never shows in the builder's Debug.
        assert!(!format!("{b:?}").contains("p4ssw0rd"), "{b:?}");

        // Empty counts as unset.
        let b = from_lookup(env(&[("ETCDCTL_ENDPOINTS", " "), ("ETCDCTL_USER", "")]));
        assert_eq!(b.endpoints, "127.0.0.1:2379");
        assert!(b.user.is_none());
    }

    #[tokio::test]
    async fn tls_asked_by_the_environment_is_refused_by_name() {
        let err = from_lookup(env(&[("ETCDCTL_CACERT", "/etc/etcd/ca.pem")]))
            .connect()
            .await
            .unwrap_err();
        assert!(err.is_config(), "{err:?}");
        assert!(err.to_string().contains("ETCDCTL_CACERT"), "{err}");
    }

    #[test]
    fn endpoints_accept_urls_and_lists() {
        assert_eq!(
            parse_endpoints("etcd://127.0.0.1:2379,127.0.0.1:22379").unwrap(),
            ["http://127.0.0.1:2379", "http://127.0.0.1:22379"]
        );
        assert_eq!(
            parse_endpoints("http://[::1]:2379/").unwrap(),
            ["http://[::1]:2379"]
        );
        for bad in [
            "",
            "etcd://",
            "127.0.0.1",
            "ftp://a:1",
            "a:1/x",
            "https://a:1",
            "a:99999",
        ] {
            assert!(parse_endpoints(bad).unwrap_err().is_config(), "{bad}");
        }
    }
}
