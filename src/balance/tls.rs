//! TLS towards every instance (rustls with the ring provider).

use std::fmt;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::{BoxError, Error, Result};

/// TLS settings for a [`BalancedChannel`](super::BalancedChannel): the CAs to trust
/// (given as PEM, the platform's trust store, or Mozilla's roots), an optional client
/// identity, and the name to verify instead of each instance's host (instances are
/// usually registered by IP address); or a rustls `ClientConfig` of your own.
///
/// HTTP/2 is negotiated with ALPN.
#[derive(Clone)]
pub struct TlsConfig {
    /// The roots the client config was built from (`None` for a config given whole).
    roots: Option<RootCertStore>,
    identity: Option<(Vec<CertificateDer<'static>>, Arc<PrivateKeyDer<'static>>)>,
    domain: Option<String>,
    client: Arc<ClientConfig>,
}

// === impl TlsConfig ===

impl TlsConfig {
    /// Trusts the CA certificates in `ca_pem` (PEM, one or more).
    ///
    /// # Errors
    ///
    /// When the PEM holds no certificate or one that rustls rejects.
    pub fn new(ca_pem: impl AsRef<[u8]>) -> Result<Self> {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem.as_ref()) {
            let cert = cert.map_err(|e| tls_error("unreadable CA certificate PEM", e))?;
            roots
                .add(cert)
                .map_err(|e| tls_error("CA certificate rejected", e))?;
        }
        if roots.is_empty() {
            return Err(Error::config("TLS: no CA certificate in the PEM"));
        }
        Self::from_roots(roots)
    }

    /// Trusts the platform's trust store (on Linux the system's CA bundle, through
    /// `rustls-native-certs`; `SSL_CERT_FILE` and `SSL_CERT_DIR` are honoured).
    ///
    /// # Errors
    ///
    /// When the store holds no certificate rustls accepts (the errors met reading it
    /// are the source).
    pub fn native_roots() -> Result<Self> {
        let found = rustls_native_certs::load_native_certs();
        let mut roots = RootCertStore::empty();
        let (added, _ignored) = roots.add_parsable_certificates(found.certs);
        if added == 0 {
            let errors: Vec<String> = found.errors.iter().map(ToString::to_string).collect();
            return Err(
                Error::config("TLS: no usable certificate in the platform's trust store")
                    .with_source(BoxError::from(errors.join("; "))),
            );
        }
        Self::from_roots(roots)
    }

    /// Trusts Mozilla's root certificates as compiled into `webpki-roots` (no system
    /// store needed: containers without a CA bundle).
    #[cfg(feature = "tls-webpki-roots")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls-webpki-roots")))]
    pub fn webpki_roots() -> Result<Self> {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        Self::from_roots(roots)
    }

    /// Uses `config` as it is (roots, verifier, client identity, resumption), except
    /// that ALPN offers `h2` only, as gRPC needs. [`Self::domain_name`] still applies;
    /// [`Self::identity`] does not (set it on `config`).
    pub fn from_rustls(config: impl Into<Arc<ClientConfig>>) -> Self {
        let mut client = config.into();
        if client.alpn_protocols != [b"h2".to_vec()] {
            Arc::make_mut(&mut client).alpn_protocols = vec![b"h2".to_vec()];
        }
        TlsConfig {
            roots: None,
            identity: None,
            domain: None,
            client,
        }
    }

    fn from_roots(roots: RootCertStore) -> Result<Self> {
        let client = client_config(&roots, None)?;
        Ok(TlsConfig {
            roots: Some(roots),
            identity: None,
            domain: None,
            client,
        })
    }

    /// Presents this client certificate chain and key (PEM) to every instance.
    ///
    /// # Errors
    ///
    /// When either PEM cannot be read or rustls rejects the pair, or on a config from
    /// [`Self::from_rustls`] (set the identity on that `ClientConfig`).
    pub fn identity(
        mut self,
        cert_pem: impl AsRef<[u8]>,
        key_pem: impl AsRef<[u8]>,
    ) -> Result<Self> {
        let certs = CertificateDer::pem_slice_iter(cert_pem.as_ref())
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| tls_error("unreadable client certificate PEM", e))?;
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_ref())
            .map_err(|e| tls_error("unreadable client key PEM", e))?;
        let identity = (certs, Arc::new(key));
        let Some(roots) = &self.roots else {
            return Err(Error::config(
                "TLS: a config from `from_rustls` takes its client identity from the rustls ClientConfig",
            ));
        };
        self.client = client_config(roots, Some(&identity))?;
        self.identity = Some(identity);
        Ok(self)
    }

    /// Verifies every instance's certificate for `name` and sends it as SNI, instead
    /// of the instance's host. Default: the instance's host.
    #[must_use]
    pub fn domain_name(mut self, name: impl Into<String>) -> Self {
        self.domain = Some(name.into());
        self
    }

    /// Runs the TLS handshake over `tcp` for an instance at `host`.
    pub(crate) async fn connect<T>(&self, host: &str, tcp: T) -> Result<TlsStream<T>, BoxError>
    where
        T: AsyncRead + AsyncWrite + Unpin,
    {
        let name = self.domain.as_deref().unwrap_or(host);
        let server_name = ServerName::try_from(name.to_owned())?;
        let stream = TlsConnector::from(self.client.clone())
            .connect(server_name, tcp)
            .await?;
        Ok(stream)
    }
}

fn client_config(
    roots: &RootCertStore,
    identity: Option<&(Vec<CertificateDer<'static>>, Arc<PrivateKeyDer<'static>>)>,
) -> Result<Arc<ClientConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error("no TLS protocol version", e))?
        .with_root_certificates(roots.clone());
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some((certs, key)) => builder
            .with_client_auth_cert(certs.clone(), key.clone_key())
            .map_err(|e| tls_error("client identity rejected", e))?,
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

fn tls_error(what: &str, e: impl Into<BoxError>) -> Error {
    Error::config(format!("TLS: {what}")).with_source(e)
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig")
            .field("roots", &self.roots.as_ref().map(RootCertStore::len))
            .field("identity", &self.identity.is_some())
            .field("domain", &self.domain)
            .finish()
    }
}
