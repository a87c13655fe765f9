//! Client-side TLS for outbound STARTTLS. Two configurations: opportunistic TLS
//! encrypts without authenticating the peer (RFC 7435: most MX certificates would not
//! verify, and refusing them would only push mail to plaintext), and required TLS
//! verifies the peer's certificate against the system's trusted roots.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn builder() -> rustls::ConfigBuilder<ClientConfig, rustls::WantsVerifier> {
    // Both versions are in the provider's defaults; the expect names that invariant.
    ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("aws-lc-rs supports TLS 1.2 and 1.3")
}

/// Required TLS: the peer must present a certificate valid for its name.
pub fn verified() -> Arc<ClientConfig> {
    verified_with(&[])
}

/// [`verified`], trusting the `extra` authorities besides the system's roots.
pub fn verified_with(extra: &[CertificateDer<'static>]) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    let (_, unusable) = roots.add_parsable_certificates(extra.iter().cloned());
    if unusable > 0 {
        tracing::warn!(unusable, "some extra trusted certificates are not usable");
    }
    let found = rustls_native_certs::load_native_certs();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 && extra.is_empty() {
        tracing::warn!(
            "no trusted root certificates found: routes with tls = \"required\" cannot deliver"
        );
    }
    Arc::new(
        builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// Opportunistic TLS: any certificate is accepted, the handshake is still checked.
pub fn opportunistic() -> Arc<ClientConfig> {
    let verifier = Arc::new(AnyCertificate(provider()));
    Arc::new(
        builder()
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth(),
    )
}

/// Accepts whatever certificate the peer shows, but still verifies that the peer
/// holds its key (the handshake signature), so the session is encrypted to someone.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

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
            &self.0.signature_verification_algorithms,
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
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
