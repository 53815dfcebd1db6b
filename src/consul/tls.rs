//! TLS towards the Consul agent: rustls on the ring provider, behind `tls-ring`.

use std::fmt;
use std::path::PathBuf;

use crate::error::{Error, Result};

/// PEM given inline or as a file read when the client is built.
#[derive(Clone)]
pub(crate) enum Pem {
    Text(Vec<u8>),
    File(PathBuf),
}

impl Pem {
    #[cfg_attr(not(feature = "tls-ring"), allow(dead_code))]
    fn load(&self, what: &str) -> Result<Vec<u8>> {
        match self {
            Pem::Text(pem) => Ok(pem.clone()),
            Pem::File(path) => std::fs::read(path).map_err(|e| {
                Error::config(format!(
                    "reading the {what} file `{}` failed",
                    path.display()
                ))
                .with_source(e)
            }),
        }
    }
}

impl fmt::Debug for Pem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // Keys are secrets: show the size only.
            Pem::Text(pem) => write!(f, "<{} bytes of PEM>", pem.len()),
            Pem::File(path) => fmt::Debug::fmt(path, f),
        }
    }
}

/// The TLS settings of a client.
#[derive(Debug, Clone, Default)]
pub(crate) struct TlsOptions {
    pub(crate) ca: Vec<Pem>,
    pub(crate) identity: Option<(Pem, Pem)>,
    pub(crate) server_name: Option<String>,
    pub(crate) accept_invalid_certs: bool,
}

impl TlsOptions {
    /// Configures `builder`'s TLS. With the `tls-ring` feature every client gets a
    /// preconfigured rustls config (reqwest has no provider of its own then).
    #[cfg(feature = "tls-ring")]
    pub(crate) fn apply(
        &self,
        builder: reqwest::ClientBuilder,
        https: bool,
    ) -> Result<reqwest::ClientBuilder> {
        let config = if https {
            rustls_impl::client_config(self)?
        } else {
            rustls_impl::unused_config()?
        };
        Ok(builder.use_preconfigured_tls(config))
    }

    /// Without a TLS feature an HTTPS address is a configuration error.
    #[cfg(not(feature = "tls-ring"))]
    pub(crate) fn apply(
        &self,
        builder: reqwest::ClientBuilder,
        https: bool,
    ) -> Result<reqwest::ClientBuilder> {
        if https {
            return Err(Error::config(
                "an https Consul address needs the `tls-ring` feature of tonic-discovery",
            ));
        }
        Ok(builder)
    }
}

#[cfg(feature = "tls-ring")]
mod rustls_impl;
