//! Configuration of a [`Client`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;

use super::client::{Client, ClientInner, DEFAULT_ADDR, Token};
use crate::error::{Error, Result};

/// Builds a [`Client`]. Created by [`Client::builder`].
#[must_use]
pub struct ClientBuilder {
    address: String,
    token: Option<Token>,
    request_timeout: Duration,
    connect_timeout: Duration,
    error: Option<Error>,
}

// === impl Client ===

impl Client {
    /// A builder for a client of the agent at `address` (`host:port`, `http://host:port`
    /// or `https://host:port`).
    pub fn builder(address: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            address: address.into(),
            token: None,
            request_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            error: None,
        }
    }

    /// A client of the local agent at `127.0.0.1:8500`.
    pub fn local() -> Result<Client> {
        Client::builder(DEFAULT_ADDR).build()
    }
}

// === impl ClientBuilder ===

impl ClientBuilder {
    /// The ACL token, sent in the `X-Consul-Token` header (never in a URL). An empty
    /// string means no token. Default: none.
    pub fn token(mut self, token: impl AsRef<str>) -> Self {
        self.token = Token::new(token.as_ref());
        self
    }

    /// Timeout of requests that do not block (registration, check updates). Blocking
    /// queries get `wait + wait/16` plus a margin instead. Default: 10 s.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Timeout for establishing a TCP connection to the agent. Default: 5 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Builds the client.
    ///
    /// # Errors
    ///
    /// A configuration error for an address that is not `host:port` or an HTTP(S) URL.
    pub fn build(self) -> Result<Client> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let base = parse_address(&self.address)?;
        let http = reqwest::Client::builder()
            .no_proxy()
            .tcp_nodelay(true)
            .connect_timeout(self.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .build()
            .map_err(|e| Error::config("building the HTTP client failed").with_source(e))?;
        Ok(Client {
            inner: Arc::new(ClientInner {
                http,
                base,
                token: self.token,
                request_timeout: self.request_timeout,
            }),
        })
    }
}

/// Parses `host:port`, `http://…` or `https://…` the way the official clients read
/// `CONSUL_HTTP_ADDR`.
pub(crate) fn parse_address(address: &str) -> Result<Url> {
    let address = address.trim();
    if address.is_empty() {
        return Err(Error::config("Consul address is empty"));
    }
    let with_scheme = if address.contains("://") {
        address.to_owned()
    } else {
        format!("http://{address}")
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
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_like_consul_http_addr() {
        assert_eq!(
            parse_address("127.0.0.1:8500").unwrap().as_str(),
            "http://127.0.0.1:8500/"
        );
        assert_eq!(
            parse_address("https://c.example:8501").unwrap().scheme(),
            "https"
        );
        assert!(parse_address("ftp://x:1").unwrap_err().is_config());
        assert!(parse_address("").unwrap_err().is_config());
        assert!(parse_address("http://").unwrap_err().is_config());
    }
}
