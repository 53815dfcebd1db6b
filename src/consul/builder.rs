//! Configuration of a [`Client`].

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;

use super::client::{Client, ClientInner, DEFAULT_ADDR, Token};
use super::tls::{Pem, TlsOptions};
use crate::error::{Error, Result};

/// Builds a [`Client`]. Created by [`Client::builder`] or [`ClientBuilder::from_env`].
#[must_use]
pub struct ClientBuilder {
    address: String,
    https: bool,
    token: Option<Token>,
    token_file: Option<PathBuf>,
    tls: TlsOptions,
    request_timeout: Duration,
    connect_timeout: Duration,
    pool_max_idle_per_host: usize,
    max_concurrent_watches: Option<usize>,
    error: Option<Error>,
}

// === impl Client ===

impl Client {
    /// A builder for a client of the agent at `address` (`host:port`, `http://host:port`
    /// or `https://host:port`).
    pub fn builder(address: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            address: address.into(),
            https: false,
            token: None,
            token_file: None,
            tls: TlsOptions::default(),
            request_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            pool_max_idle_per_host: 32,
            max_concurrent_watches: None,
            error: None,
        }
    }

    /// A client of the local agent at `127.0.0.1:8500`, made without I/O (see
    /// [`ClientBuilder::build`]).
    ///
    /// # Errors
    ///
    /// As [`ClientBuilder::build`].
    pub fn local() -> Result<Client> {
        Client::builder(DEFAULT_ADDR).build()
    }

    /// A client of the agent at `address` with default options, once the agent
    /// answers (see [`ClientBuilder::connect`]).
    ///
    /// # Errors
    ///
    /// As [`ClientBuilder::connect`].
    pub async fn connect(address: impl Into<String>) -> Result<Client> {
        Client::builder(address).connect().await
    }
}

// === impl ClientBuilder ===

impl ClientBuilder {
    /// The agent's address (`host:port`, `http://…` or `https://…`), replacing the
    /// one given to [`Client::builder`] or read from `CONSUL_HTTP_ADDR`.
    pub fn address(mut self, address: impl Into<String>) -> Self {
        self.address = address.into();
        self
    }

    /// The ACL token, sent in the `X-Consul-Token` header (never in a URL). An empty
    /// string means no token. Default: none.
    pub fn token(mut self, token: impl AsRef<str>) -> Self {
        match Token::new(token.as_ref()) {
            Ok(token) => self.token = token,
            Err(e) => self.error = Some(e),
        }
        self
    }

    /// A file holding the ACL token, read by [`build`](Self::build). It wins over
    /// [`token`](Self::token), as `CONSUL_HTTP_TOKEN_FILE` wins over
    /// `CONSUL_HTTP_TOKEN`. Default: none.
    pub fn token_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.token_file = Some(path.into());
        self
    }

    /// Talk HTTPS even if the address says `http://` or has no scheme
    /// (`CONSUL_HTTP_SSL`). Needs the `tls-ring` feature. Default: false (the
    /// address's scheme decides).
    pub fn https(mut self, https: bool) -> Self {
        self.https = https;
        self
    }

    /// Trust the CA certificates in this PEM text instead of the system's roots.
    /// Repeatable. Default: the system's roots.
    pub fn ca_cert_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls.ca.push(Pem::Text(pem.into()));
        self
    }

    /// Trust the CA certificates in this PEM file (`CONSUL_CACERT`), read by
    /// [`build`](Self::build). Repeatable. Default: the system's roots.
    pub fn ca_cert_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.tls.ca.push(Pem::File(path.into()));
        self
    }

    /// Present this client certificate chain and private key, both PEM text
    /// (mutual TLS). Default: none.
    pub fn client_identity(
        mut self,
        cert_pem: impl Into<Vec<u8>>,
        key_pem: impl Into<Vec<u8>>,
    ) -> Self {
        self.tls.identity = Some((Pem::Text(cert_pem.into()), Pem::Text(key_pem.into())));
        self
    }

    /// Present the client certificate and key in these PEM files
    /// (`CONSUL_CLIENT_CERT`, `CONSUL_CLIENT_KEY`), read by [`build`](Self::build).
    /// Default: none.
    pub fn client_identity_files(
        mut self,
        cert: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
    ) -> Self {
        self.tls.identity = Some((Pem::File(cert.into()), Pem::File(key.into())));
        self
    }

    /// Verify the agent's certificate against this name instead of the address's
    /// host (`CONSUL_TLS_SERVER_NAME`). Default: the address's host.
    pub fn tls_server_name(mut self, name: impl Into<String>) -> Self {
        self.tls.server_name = Some(name.into());
        self
    }

    /// Accept any certificate from the agent (`CONSUL_HTTP_SSL_VERIFY=false`).
    /// Dangerous: anyone on the path can read the token. Default: false.
    pub fn danger_accept_invalid_certs(mut self, accept: bool) -> Self {
        self.tls.accept_invalid_certs = accept;
        self
    }

    /// Timeout of requests that do not block (registration, check updates). Blocking
    /// queries get `wait + wait/16` plus this as a margin. Default: 10 s.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Timeout for establishing a TCP connection to the agent. Default: 5 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How many idle connections to the agent the pool keeps. Over plain HTTP every
    /// live watch holds one connection while it blocks (see
    /// [`max_concurrent_watches`](Self::max_concurrent_watches)); Consul allows 200 per
    /// client address. Default: 32.
    pub fn pool_max_idle_per_host(mut self, max: usize) -> Self {
        self.pool_max_idle_per_host = max;
        self
    }

    /// Caps the blocking reads this client's watches keep in flight at once; further
    /// ones queue (logged at debug level) until one returns. Default: no cap.
    ///
    /// # Connections to the agent
    ///
    /// Over plain HTTP the agent speaks HTTP/1.1 only (Consul serves HTTP/2 only over
    /// TLS, where ALPN selects it). HTTP/1.1 carries one request at a time per
    /// connection and a blocking query is a request that waits up to `wait` for its
    /// answer, so every watch waiting on the agent holds a TCP connection of its own:
    /// 100 watched services are 100 connections, counted against the agent's
    /// `limits.http_max_conns_per_client` (200 by default). This cap bounds them. The
    /// price is freshness: a queued watch learns of a change only once a permit frees
    /// up, so with `wait` = 5 min and more watches than permits a change can wait
    /// minutes; pair a cap with a short [`wait`](super::DiscoveryBuilder::wait). A
    /// watch's first, non-blocking read never queues.
    ///
    /// Over HTTPS (`tls-ring`) the client offers HTTP/2 and the agent accepts it: every
    /// blocking query becomes a stream of one shared connection, and no cap is needed.
    ///
    /// # Errors
    ///
    /// [`build`](Self::build) fails for a cap of 0, which would stall every watch.
    pub fn max_concurrent_watches(mut self, max: usize) -> Self {
        self.max_concurrent_watches = Some(max);
        self
    }

    /// Records the first configuration error, returned by `build`.
    pub(crate) fn fail(mut self, error: Error) -> Self {
        self.error.get_or_insert(error);
        self
    }

    /// Builds the client and checks that the agent answers (`GET /v1/status/leader`,
    /// which needs no ACL permission), so a wrong address or a registry that is not
    /// Consul fails here rather than in the first watch. The same verb as the etcd
    /// and Nacos clients'; use [`build`](Self::build) for a client made without I/O
    /// (like tonic's `Endpoint::connect_lazy`).
    ///
    /// # Errors
    ///
    /// As [`build`](Self::build); a transport or timeout error when the agent does not
    /// answer, an HTTP status error when it refuses, a decode error when what answers
    /// is not Consul (its answer is not a JSON string).
    pub async fn connect(self) -> Result<Client> {
        let client = self.build()?;
        client.status_leader().await?;
        Ok(client)
    }

    /// Builds the client without contacting the agent: every request is its own HTTP
    /// exchange, so a client made while the agent is down works once it is up. Reads
    /// the token and certificate files.
    ///
    /// # Errors
    ///
    /// A configuration error for an address that is not `host:port` or an HTTP(S)
    /// URL, an HTTPS address without the `tls-ring` feature, an unreadable token or
    /// certificate file (named, never its content), a token with characters an HTTP
    /// header cannot carry, or invalid PEM.
    pub fn build(self) -> Result<Client> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let base = parse_address(&self.address, self.https)?;
        let token = match &self.token_file {
            // The message names the file, never the token.
            Some(path) => Token::new(&read_token_file(path)?).map_err(|_| {
                Error::config(format!(
                    "the Consul ACL token from `{}` holds characters an HTTP header cannot \
                     carry (control characters or a line break)",
                    path.display()
                ))
            })?,
            None => self.token,
        };
        let http = reqwest::Client::builder()
            .no_proxy()
            .tcp_nodelay(true)
            .connect_timeout(self.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(self.pool_max_idle_per_host);
        let http = self.tls.apply(http, base.scheme() == "https")?;
        let http = http
            .build()
            .map_err(|e| Error::config("building the HTTP client failed").with_source(e))?;
        let watch_permits = match self.max_concurrent_watches {
            None => None,
            Some(n @ 1..=tokio::sync::Semaphore::MAX_PERMITS) => {
                Some(Arc::new(tokio::sync::Semaphore::new(n)))
            }
            Some(n) => {
                return Err(Error::config(format!(
                    "max_concurrent_watches({n}): the cap must be between 1 and {}",
                    tokio::sync::Semaphore::MAX_PERMITS
                )));
            }
        };
        Ok(Client {
            inner: Arc::new(ClientInner {
                http,
                base,
                token,
                request_timeout: self.request_timeout,
                watches: Default::default(),
                watch_permits,
            }),
        })
    }
}

fn read_token_file(path: &std::path::Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| {
        Error::config(format!(
            "reading the Consul token file `{}` failed",
            path.display()
        ))
        .with_source(e)
    })
}

/// Parses `host:port`, `http://…` or `https://…` the way the official clients read
/// `CONSUL_HTTP_ADDR`; `https` forces the HTTPS scheme as `CONSUL_HTTP_SSL=true` does.
pub(crate) fn parse_address(address: &str, https: bool) -> Result<Url> {
    let address = address.trim();
    if address.is_empty() {
        return Err(Error::config("Consul address is empty"));
    }
    // Never echo credentials: `user:pass@host` would end up in errors and logs.
    let authority = address.split_once("://").map_or(address, |(_, rest)| rest);
    if authority.split('/').next().is_some_and(|a| a.contains('@')) {
        return Err(Error::config(
            "Consul address carries user:password@ credentials; use an ACL token instead",
        ));
    }
    let with_scheme = match address.split_once("://") {
        Some(("http", rest)) if https => format!("https://{rest}"),
        Some(_) => address.to_owned(),
        None if https => format!("https://{address}"),
        None => format!("http://{address}"),
    };
    let url = Url::parse(&with_scheme).map_err(|e| {
        Error::config(format!("Consul address `{address}` is not a URL")).with_source(e)
    })?;
    match url.scheme() {
        "http" | "https" => {}
        other => {
            return Err(Error::config(format!(
                "Consul address `{address}`: unknown protocol scheme `{other}` (use http or https)"
            )));
        }
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(Error::config(format!(
            "Consul address `{address}` has no host"
        )));
    }
    Ok(url)
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("consul::ClientBuilder")
            .field("address", &self.address)
            .field("https", &self.https)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("token_file", &self.token_file)
            .field("tls", &self.tls)
            .field("request_timeout", &self.request_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("pool_max_idle_per_host", &self.pool_max_idle_per_host)
            .field("max_concurrent_watches", &self.max_concurrent_watches)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_the_address_are_refused_without_echo() {
        let e = parse_address("http://user:s3cret@127.0.0.1:8500", false).unwrap_err();
        assert!(e.is_config());
        assert!(!e.to_string().contains("s3cret"), "{e}");
    }

    #[test]
    fn addresses_like_consul_http_addr() {
        let p = |a| parse_address(a, false);
        assert_eq!(
            p("127.0.0.1:8500").unwrap().as_str(),
            "http://127.0.0.1:8500/"
        );
        assert_eq!(p("https://c.example:8501").unwrap().scheme(), "https");
        assert_eq!(p("[::1]:8500").unwrap().as_str(), "http://[::1]:8500/");
        assert!(p("ftp://x:1").unwrap_err().is_config());
        assert!(p("").unwrap_err().is_config());
        assert!(p("http://").unwrap_err().is_config());
    }

    #[test]
    fn a_watch_cap_of_zero_is_refused() {
        let e = Client::builder("127.0.0.1:8500")
            .max_concurrent_watches(0)
            .build()
            .unwrap_err();
        assert!(e.is_config(), "{e}");
        assert!(
            Client::builder("127.0.0.1:8500")
                .max_concurrent_watches(4)
                .build()
                .is_ok()
        );
    }

    #[test]
    fn https_flag_forces_the_scheme() {
        assert_eq!(
            parse_address("c:8501", true).unwrap().as_str(),
            "https://c:8501/"
        );
        assert_eq!(
            parse_address("http://c:8501", true).unwrap().scheme(),
            "https"
        );
    }
}
