//! TLS for the crate's HTTP clients: rustls with the ring provider, verifying servers against
//! the platform's roots (`SSL_CERT_FILE` / `SSL_CERT_DIR`, else the system store), as reqwest's
//! own rustls setup does, except that the roots are read at the first handshake instead of when
//! the client is built. Reading and parsing them costs about 20 ms of CPU (every file under
//! `/etc/ssl/certs` and the bundle), which a client of a plain-HTTP endpoint (the instance
//! metadata service, a simulator, a local proxy) never needs.

use std::sync::{Arc, Mutex, PoisonError};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// The client TLS configuration every HTTP client of the crate is built with: TLS 1.2 and 1.3,
/// ALPN `h2` then `http/1.1`, and [`PlatformRoots`] as the verifier.
pub(crate) fn client_config() -> Result<rustls::ClientConfig, rustls::Error> {
    let provider = provider();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PlatformRoots::new(provider)))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// The process's default provider, ring unless something installed another first.
fn provider() -> Arc<CryptoProvider> {
    // Installing fails only when a provider is already installed, which is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
    CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()))
}

/// `rustls_platform_verifier`'s verifier, made at the first certificate it is asked to verify.
/// A failure to load the roots (none found) fails that handshake with the loader's error and is
/// tried again at the next one.
#[derive(Debug)]
pub(crate) struct PlatformRoots {
    provider: Arc<CryptoProvider>,
    loaded: Mutex<Option<Arc<rustls_platform_verifier::Verifier>>>,
}

impl PlatformRoots {
    fn new(provider: Arc<CryptoProvider>) -> Self {
        Self {
            provider,
            loaded: Mutex::new(None),
        }
    }

    /// The verifier, reading the platform's roots the first time.
    fn verifier(&self) -> Result<Arc<rustls_platform_verifier::Verifier>, rustls::Error> {
        let mut loaded = self.loaded.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(verifier) = loaded.as_ref() {
            return Ok(Arc::clone(verifier));
        }
        let verifier = Arc::new(rustls_platform_verifier::Verifier::new(Arc::clone(
            &self.provider,
        ))?);
        *loaded = Some(Arc::clone(&verifier));
        Ok(verifier)
    }
}

impl ServerCertVerifier for PlatformRoots {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.verifier()?.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )
    }

    // The handshake's signatures are checked as the platform verifier (WebPKI) checks them,
    // with the provider's algorithms; they need no roots.
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
