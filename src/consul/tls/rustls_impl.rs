//! rustls client configs on the ring provider.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use super::TlsOptions;
use crate::error::{Error, Result};

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A config that is never used to connect (plain-HTTP clients), so reqwest does not
/// look for a process-wide provider.
pub(super) fn unused_config() -> Result<ClientConfig> {
    Ok(ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(tls_error)?
        .with_root_certificates(RootCertStore::empty())
        .with_no_client_auth())
}

pub(super) fn client_config(opts: &TlsOptions) -> Result<ClientConfig> {
    let provider = provider();
    let verifier = verifier(opts, provider.clone())?;
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(tls_error)?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match &opts.identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let certs = certs(&cert.load("client certificate")?, "client certificate")?;
            let key = PrivateKeyDer::from_pem_slice(&key.load("client key")?)
                .map_err(|e| Error::config("client key: no PEM private key").with_source(e))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(tls_error)?
        }
    };
    // reqwest leaves a preconfigured config's ALPN alone: offer HTTP/2 ourselves, so
    // the agent multiplexes every blocking query over one connection.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

fn verifier(
    opts: &TlsOptions,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn ServerCertVerifier>> {
    if opts.accept_invalid_certs {
        return Ok(Arc::new(AcceptAny(
            provider.signature_verification_algorithms,
        )));
    }
    let roots = roots(opts)?;
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| Error::config("building the TLS verifier failed").with_source(e))?;
    Ok(match &opts.server_name {
        None => webpki,
        Some(name) => {
            let name = ServerName::try_from(name.clone()).map_err(|e| {
                Error::config(format!("TLS server name `{name}` is invalid")).with_source(e)
            })?;
            Arc::new(FixedName {
                inner: webpki,
                name,
            })
        }
    })
}

fn roots(opts: &TlsOptions) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    if opts.ca.is_empty() {
        let native = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(native.certs);
        if roots.is_empty() {
            return Err(Error::config(
                "no CA certificate given and no system roots found",
            ));
        }
        return Ok(roots);
    }
    for ca in &opts.ca {
        for cert in certs(&ca.load("CA certificate")?, "CA certificate")? {
            roots
                .add(cert)
                .map_err(|e| Error::config("invalid CA certificate").with_source(e))?;
        }
    }
    Ok(roots)
}

fn certs(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::config(format!("{what}: invalid PEM")).with_source(e))?;
    if certs.is_empty() {
        return Err(Error::config(format!("{what}: no certificate in the PEM")));
    }
    Ok(certs)
}

fn tls_error(e: rustls::Error) -> Error {
    Error::config("TLS configuration rejected").with_source(e)
}

/// Verifies against a configured name instead of the URL's host
/// (`CONSUL_TLS_SERVER_NAME`).
#[derive(Debug)]
struct FixedName {
    inner: Arc<WebPkiServerVerifier>,
    name: ServerName<'static>,
}

impl ServerCertVerifier for FixedName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Accepts any certificate but still checks handshake signatures
/// (`CONSUL_HTTP_SSL_VERIFY=false`).
#[derive(Debug)]
struct AcceptAny(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}
