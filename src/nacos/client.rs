//! Connection to a Nacos server (or cluster) through `nacos-sdk`'s naming client.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nacos_sdk::api::naming::{NamingService, NamingServiceBuilder};
use nacos_sdk::api::props::ClientProps;

use super::auth::Login;
use super::discovery::DiscoveryBuilder;
use super::handle::RegistrationHandle;
use super::register::Registration;
use super::subscription::Lanes;
use crate::error::{Error, Result};

/// The shared watches of one client's discoveries, one per (group, service): the SDK
/// keeps one server-side subscription per (group, service) and connection, so how a
/// subscription is followed (resync interval, backoff) is the client's setting.
pub(crate) type WatchMap = crate::source::Watches<(String, String)>;

/// Nacos's default namespace (its id is `public`, also spelled as empty).
pub(crate) const DEFAULT_NAMESPACE: &str = "public";
/// Nacos's default group.
pub(crate) const DEFAULT_GROUP: &str = "DEFAULT_GROUP";

/// A client of a Nacos server: the naming half, shared by discoveries.
///
/// Cheap to clone. Holds one `nacos-sdk` naming connection (gRPC, to the server's HTTP
/// port + 1000 unless [`ClientBuilder::grpc_port`] says otherwise), which the SDK
/// reconnects by itself; subscriptions and registrations made through it are redone
/// by the SDK after a reconnection. Every registration gets a connection of its own
/// (see [`Client::register`]).
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    naming: NamingService,
    config: Config,
    /// The live subscriptions, one per (group, service), shared by every discovery of
    /// it whatever its clusters and filters.
    watches: WatchMap,
    /// Orders a subscription's subscribe after the unsubscribe of the one before it.
    lanes: Lanes,
    /// Registration connections whose instance was deregistered, by (group, service),
    /// for the next registration of the same service. The SDK gives no way to close a
    /// connection, so they are reused instead of opened anew.
    idle: Mutex<HashMap<(String, String), Vec<NamingService>>>,
    /// Deregistrations being retried in the background.
    leaving: AtomicUsize,
}

/// Builds a [`Client`]. Created by [`Client::builder`].
#[must_use]
pub struct ClientBuilder {
    config: Config,
    error: Option<Error>,
}

/// What a client connects with; kept to open one connection per registration.
#[derive(Clone)]
pub(crate) struct Config {
    servers: Vec<String>,
    pub(crate) namespace: String,
    pub(crate) group: String,
    credentials: Option<(String, Secret)>,
    /// Built from `credentials` when connecting, shared by every connection.
    login: Option<Arc<Login>>,
    cache_dir: Option<PathBuf>,
    grpc_port: Option<u16>,
    app_name: Option<String>,
    pub(crate) request_timeout: Duration,
    /// How the client's subscriptions are followed (see `ClientBuilder::resync_interval`).
    pub(crate) resync: Duration,
    pub(crate) watch_backoff: crate::Backoff,
    connect_timeout: Duration,
}

/// A password that never shows in `Debug` output or logs.
#[derive(Clone)]
struct Secret(String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

// === impl Client ===

impl Client {
    /// A builder for a client of the Nacos server(s) at `url`:
    /// `nacos://HOST:PORT[,HOST:PORT…][?namespace=NS&group=GROUP]`, or the bare
    /// `HOST:PORT[,HOST:PORT…]`. `PORT` is the HTTP port (8848 by default in Nacos); the
    /// SDK talks gRPC to `PORT + 1000`.
    pub fn builder(url: impl AsRef<str>) -> ClientBuilder {
        let mut config = Config {
            servers: Vec::new(),
            namespace: String::new(),
            group: DEFAULT_GROUP.to_owned(),
            credentials: None,
            login: None,
            cache_dir: None,
            grpc_port: None,
            app_name: None,
            request_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            resync: Duration::from_secs(30),
            watch_backoff: crate::source::DEFAULT_BACKOFF,
        };
        let error = parse_url(url.as_ref(), &mut config).err();
        ClientBuilder { config, error }
    }

    /// A client with default options; see [`Client::builder`] for the URL syntax.
    ///
    /// # Errors
    ///
    /// As [`ClientBuilder::connect`].
    pub async fn connect(url: impl AsRef<str>) -> Result<Client> {
        Client::builder(url).connect().await
    }

    /// A builder for the discovery of `service` in the client's namespace and group.
    pub fn discovery(&self, service: impl Into<String>) -> DiscoveryBuilder {
        DiscoveryBuilder::new(self.clone(), service.into())
    }

    /// Registers an ephemeral instance on a connection of its own and keeps it there
    /// until the returned handle is dropped, deregistered or drained.
    ///
    /// Nacos ties an ephemeral instance to the gRPC connection that registered it (and
    /// one connection holds one instance per service), so each live registration has
    /// its own connection; a connection whose instance was deregistered serves the next
    /// registration of the same service. When the connection or the server is lost, the
    /// SDK reconnects and registers the instance again by itself (it retries every 3 s).
    ///
    /// # Errors
    ///
    /// A configuration error for an invalid registration (checked before anything is
    /// sent); a transport or timeout error when the server cannot be reached or refuses
    /// the instance.
    pub async fn register(&self, registration: Registration) -> Result<RegistrationHandle> {
        // Validated (and a name DNS cannot carry warned about) as it is resolved.
        super::handle::start(self.clone(), registration).await
    }

    /// The server addresses (`host:port`, HTTP ports).
    pub fn servers(&self) -> &[String] {
        &self.inner.config.servers
    }

    /// The namespace id (empty for Nacos's default `public` namespace).
    pub fn namespace(&self) -> &str {
        &self.inner.config.namespace
    }

    /// The group used when a discovery or registration names none.
    pub fn group(&self) -> &str {
        &self.inner.config.group
    }

    pub(crate) fn naming(&self) -> &NamingService {
        &self.inner.naming
    }

    pub(crate) fn config(&self) -> &Config {
        &self.inner.config
    }

    pub(crate) fn lanes(&self) -> &Lanes {
        &self.inner.lanes
    }

    pub(crate) fn watches(&self) -> &WatchMap {
        &self.inner.watches
    }

    /// A connection for a registration of `service` in `group`: an idle one, or a new one.
    pub(crate) async fn registration_connection(
        &self,
        group: &str,
        service: &str,
    ) -> Result<NamingService> {
        let key = (group.to_owned(), service.to_owned());
        let idle = self
            .inner
            .idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(&key)
            .and_then(Vec::pop);
        match idle {
            Some(naming) => Ok(naming),
            None => self.inner.config.naming_service().await,
        }
    }

    /// How many deregistrations that failed (or were left to a dropped handle) are
    /// still being retried in the background. A process that wants its instances gone
    /// before it exits waits for 0.
    pub fn pending_deregistrations(&self) -> usize {
        self.inner.leaving.load(Ordering::Relaxed)
    }

    /// Counts a deregistration retried in the background, until the returned guard drops.
    pub(crate) fn leaving(&self) -> impl Drop + Send + 'static {
        struct Leaving(Client);
        impl Drop for Leaving {
            fn drop(&mut self) {
                self.0.inner.leaving.fetch_sub(1, Ordering::Relaxed);
            }
        }
        self.inner.leaving.fetch_add(1, Ordering::Relaxed);
        Leaving(self.clone())
    }

    /// Takes back a connection whose instance is deregistered.
    pub(crate) fn return_connection(&self, group: &str, service: &str, naming: NamingService) {
        let mut idle = self.inner.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.entry((group.to_owned(), service.to_owned()))
            .or_default()
            .push(naming);
    }
}

/// Runs one SDK call under `timeout`, mapping its error to ours.
pub(crate) async fn call<T, F>(timeout: Duration, what: &str, fut: F) -> Result<T>
where
    F: Future<Output = nacos_sdk::api::error::Result<T>>,
{
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(Error::transport(format!("nacos {what}"), e)),
        Err(_) => Err(Error::timeout(format!("nacos {what} after {timeout:?}"))),
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("nacos::Client")
            .field("servers", &self.inner.config.servers)
            .field("namespace", &self.inner.config.namespace)
            .field("group", &self.inner.config.group)
            .field("watches", &self.inner.watches.len())
            .finish()
    }
}

// === impl ClientBuilder ===

impl ClientBuilder {
    /// The namespace id. Default: the URL's `namespace`, else Nacos's `public`.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.config.namespace = namespace.into();
        self
    }

    /// The group used when a discovery or registration names none. Default: the URL's
    /// `group`, else `DEFAULT_GROUP`.
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.config.group = group.into();
        self
    }

    /// Logs in with a user name and password (a server with auth enabled), once for
    /// the client and all its connections, and again before the access token expires. The password goes in a form body, never in a
    /// URL, and appears in no `Debug` output or log (the SDK's own login plugin, which
    /// logs it, is not used).
    pub fn credentials(mut self, username: impl Into<String>, password: impl Into<String>) -> Self {
        self.config.credentials = Some((username.into(), Secret(password.into())));
        self
    }

    /// Where the SDK keeps its on-disk copy of service lists. Default: the SDK's,
    /// `$HOME/nacos`.
    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.config.cache_dir = Some(dir.into());
        self
    }

    /// The server's gRPC port, when it is not the HTTP port + 1000.
    pub fn grpc_port(mut self, port: u16) -> Self {
        self.config.grpc_port = Some(port);
        self
    }

    /// The application name the SDK reports to the server.
    pub fn app_name(mut self, name: impl Into<String>) -> Self {
        self.config.app_name = Some(name.into());
        self
    }

    /// How often each subscription's list is read again without a push from the
    /// server, repairing a lost one. Default: 30 s.
    ///
    /// A client setting, not a discovery's: the SDK keeps one server-side subscription
    /// per (group, service) and connection, so every discovery of a service on one
    /// client shares its subscription, and with it how the subscription is followed.
    pub fn resync_interval(mut self, interval: Duration) -> Self {
        self.config.resync = interval.max(Duration::from_millis(10));
        self
    }

    /// Delay between queries of a subscription while the server fails. Default:
    /// [`DEFAULT_BACKOFF`](crate::source::DEFAULT_BACKOFF) (100 ms to 5 s). A client
    /// setting for the reason [`resync_interval`](Self::resync_interval) is.
    pub fn watch_backoff(mut self, backoff: crate::Backoff) -> Self {
        self.config.watch_backoff = backoff;
        self
    }

    /// The bound on each request to the server (queries, registration,
    /// deregistration). Default: 5 s.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.config.request_timeout = timeout;
        self
    }

    /// The bound on connecting (the SDK's first health check). Default: 5 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout = timeout;
        self
    }

    /// Connects to the server.
    ///
    /// The SDK's settings come from this builder only: its `NACOS_CLIENT_*`
    /// environment variables are not read, and it keeps the instance lists the server
    /// sends as they are (empty ones included: see
    /// [`DiscoveryBuilder::keep_last_on_empty`]).
    ///
    /// # Errors
    ///
    /// A configuration error for a bad URL; a transport or timeout error when the
    /// server does not answer.
    pub async fn connect(mut self) -> Result<Client> {
        if let Some(e) = self.error {
            return Err(e);
        }
        // One login for the client and all its registration connections.
        if let Some((user, password)) = self.config.credentials.take() {
            let login = Login::new(user, password.0, self.config.request_timeout);
            self.config.login = Some(Arc::new(login));
        }
        normalise_namespace(&mut self.config.namespace);
        let naming = self.config.naming_service().await?;
        Ok(Client {
            inner: Arc::new(Inner {
                naming,
                config: self.config,
                watches: WatchMap::default(),
                lanes: Lanes::default(),
                idle: Mutex::default(),
                leaving: AtomicUsize::new(0),
            }),
        })
    }
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("nacos::ClientBuilder")
            .field("servers", &self.config.servers)
            .field("namespace", &self.config.namespace)
            .field("group", &self.config.group)
            .field("user", &self.config.credentials.as_ref().map(|c| &c.0))
            .finish()
    }
}

// === impl Config ===

impl Config {
    /// Opens a naming connection.
    pub(crate) async fn naming_service(&self) -> Result<NamingService> {
        let mut props = ClientProps::new()
            .env_first(false)
            .server_addr(self.servers.join(","))
            .namespace(self.namespace.clone())
            .naming_push_empty_protection(false)
            .naming_load_cache_at_start(false);
        if let Some(port) = self.grpc_port {
            props = props.remote_grpc_port(port);
        }
        if let Some(dir) = &self.cache_dir {
            props = props.cache_dir(dir.clone());
        }
        if let Some(name) = &self.app_name {
            props = props.app_name(name.clone());
        }
        let mut builder = NamingServiceBuilder::new(props);
        if let Some(login) = &self.login {
            builder = builder.with_auth_plugin(login.clone());
        }
        let what = format!("connect to {}", self.servers.join(","));
        call(self.connect_timeout, &what, builder.build()).await
    }
}

/// Nacos's default namespace is named `public` and spelled empty; we keep it empty.
fn normalise_namespace(namespace: &mut String) {
    if namespace == DEFAULT_NAMESPACE {
        namespace.clear();
    }
}

/// Reads `nacos://HOST:PORT[,…][?namespace=…&group=…]` or `HOST:PORT[,…]` into `config`.
fn parse_url(url: &str, config: &mut Config) -> Result<()> {
    let rest = url.strip_prefix("nacos://").unwrap_or(url);
    // Only the host part is ever shown: the query may carry anything.
    let shown = rest.split('?').next().unwrap_or_default();
    if shown.contains('@') {
        return Err(Error::config(
            "nacos URL: credentials in the URL (user:password@) are not accepted; \
             use ClientBuilder::credentials",
        ));
    }
    let bad = |why: &str| Err(Error::config(format!("nacos URL `{shown}`: {why}")));
    if rest.contains("://") {
        return bad("expected nacos://HOST:PORT[,HOST:PORT][?namespace=NS&group=GROUP]");
    }
    let (hosts, query) = match rest.split_once('?') {
        Some((hosts, query)) => (hosts, Some(query)),
        None => (rest, None),
    };
    let hosts = hosts.trim_end_matches('/');
    for host in hosts.split(',') {
        let Some((name, port)) = host.rsplit_once(':') else {
            return bad(&format!("`{host}` has no port"));
        };
        if name.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
            return bad(&format!("`{host}` is not HOST:PORT"));
        }
        config.servers.push(host.to_owned());
    }
    for pair in query.into_iter().flat_map(|q| q.split('&')) {
        if pair.is_empty() {
            continue;
        }
        match pair.split_once('=') {
            Some(("namespace", v)) => config.namespace = v.to_owned(),
            Some(("group", v)) if !v.is_empty() => config.group = v.to_owned(),
            _ => {
                let key = pair.split('=').next().unwrap_or_default();
                return bad(&format!(
                    "unknown parameter `{key}` (namespace and group are known)"
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(url: &str) -> Result<Config> {
        let b = Client::builder(url);
        match b.error {
            Some(e) => Err(e),
            None => Ok(b.config),
        }
    }

    #[test]
    fn urls() {
        let c = parsed("nacos://127.0.0.1:8848").unwrap();
        assert_eq!(c.servers, ["127.0.0.1:8848"]);
        assert_eq!(
            (c.namespace.as_str(), c.group.as_str()),
            ("", DEFAULT_GROUP)
        );

        let c = parsed("nacos://a:1,b:2/?namespace=dev&group=RPC").unwrap();
        assert_eq!(c.servers, ["a:1", "b:2"]);
        assert_eq!((c.namespace.as_str(), c.group.as_str()), ("dev", "RPC"));

        let mut c = parsed("[::1]:8848?namespace=public").unwrap();
        assert_eq!(c.servers, ["[::1]:8848"]);
        normalise_namespace(&mut c.namespace);
        assert_eq!(c.namespace, "");

        for bad in [
            "nacos://",
            "nacos://host",
            "nacos://host:0",
            "nacos://host:http",
            "http://host:8848",
            "nacos://h:1?cluster=x",
            "nacos://h:1,",
        ] {
            let e = parsed(bad).err().unwrap_or_else(|| panic!("{bad} parsed"));
            assert!(e.is_config(), "{bad}: {e}");
            let host = bad
                .trim_start_matches("nacos://")
                .split('?')
                .next()
                .unwrap();
            assert!(e.to_string().contains(host), "{e}");
        }
    }

    #[test]
    fn url_errors_show_no_credentials() {
        let e = parsed("nacos://h:1?password=s3cret-value").err().unwrap();
        assert!(e.to_string().contains("`password`"), "{e}");
        assert!(!e.to_string().contains("s3cret"), "{e}");
        let e = parsed("nacos://user:s3cret-value@h:1").err().unwrap();
        assert!(e.is_config() && !e.to_string().contains("s3cret"), "{e}");
    }

    #[test]
    fn password_stays_out_of_debug() {
        let b = Client::builder("nacos://h:1").credentials("nacos", "hunter2-secret");
        let shown = format!("{b:?} {:?}", b.config.credentials);
        let login = Login::new(
            "nacos".into(),
            "hunter2-secret".into(),
            Duration::from_secs(1),
        );
        let shown = format!("{shown} {login:?}");
        assert!(!shown.contains("hunter2-secret"), "{shown}");
        assert!(shown.contains("nacos"), "{shown}");
    }
}
