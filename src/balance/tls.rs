//! TLS towards every instance (rustls with the ring provider).

use std::fmt;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::{BoxError, Error, Result};

/// TLS settings for a [`BalancedChannel`](super::BalancedChannel): the CAs to trust,
/// an optional client identity, and the name to verify instead of each instance's
/// host (instances are usually registered by IP address).
///
/// HTTP/2 is negotiated with ALPN.
#[derive(Clone)]
pub struct TlsConfig {
    roots: RootCertStore,
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
        let client = client_config(&roots, None)?;
        Ok(TlsConfig {
            roots,
            identity: None,
            domain: None,
            client,
        })
    }

    /// Presents this client certificate chain and key (PEM) to every instance.
    ///
    /// # Errors
    ///
    /// When either PEM cannot be read or rustls rejects the pair.
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
        self.client = client_config(&self.roots, Some(&identity))?;
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
    pub(crate) async fn connect(
        &self,
        host: &str,
        tcp: TcpStream,
    ) -> Result<TlsStream<TcpStream>, BoxError> {
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
            .field("roots", &self.roots.len())
            .field("identity", &self.identity.is_some())
            .field("domain", &self.domain)
            .finish()
    }
}
