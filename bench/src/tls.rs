//! TLS set-up for benchmarking: rustls with the aws-lc-rs provider, TLS 1.2 and 1.3.
//!
//! The client trusts any certificate, through [`BenchmarkOnlyNoCertificateCheck`]:
//! a load generator talks to test servers with throwaway certificates, and what it
//! measures is the cost of the handshake and encryption, not of trust. Handshake
//! signatures are still verified, so the TLS work done matches a real client's.
//! The sink serves a self-signed certificate generated at start-up. The HTTPS client
//! of the `api` subcommand can instead check the server against a PEM file.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{aws_lc_rs, CryptoProvider};
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use tokio_rustls::{TlsAcceptor, TlsConnector};

const VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

fn provider() -> Arc<CryptoProvider> {
    Arc::new(aws_lc_rs::default_provider())
}

/// Accepts every server certificate. FOR BENCHMARKING ONLY: never use it where the
/// peer's identity matters.
#[derive(Debug)]
pub struct BenchmarkOnlyNoCertificateCheck {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for BenchmarkOnlyNoCertificateCheck {
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
        rustls::crypto::verify_tls12_signature(
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
        rustls::crypto::verify_tls13_signature(
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

/// A client connector that does not check certificates (see module docs).
pub fn benchmark_connector() -> anyhow::Result<TlsConnector> {
    Ok(TlsConnector::from(Arc::new(unchecked_client_config()?)))
}

fn unchecked_client_config() -> anyhow::Result<rustls::ClientConfig> {
    let provider = provider();
    let verifier = Arc::new(BenchmarkOnlyNoCertificateCheck {
        provider: provider.clone(),
    });
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(VERSIONS)
        .context("TLS client versions")?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

/// A client connector for HTTPS that offers `alpn` (e.g. `h2` or `http/1.1`).
/// Without `ca_file` it does not check certificates, as [`benchmark_connector`];
/// with it, the server's certificate must chain to one of the PEM certificates in
/// that file (a self-signed server certificate itself will do) and name the server.
pub fn https_connector(ca_file: Option<&Path>, alpn: &[&[u8]]) -> anyhow::Result<TlsConnector> {
    let mut config = match ca_file {
        None => unchecked_client_config()?,
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(path)
                .with_context(|| format!("reading {}", path.display()))?;
            for cert in certs {
                let cert = cert.with_context(|| format!("a certificate in {}", path.display()))?;
                roots
                    .add(cert)
                    .with_context(|| format!("a certificate in {}", path.display()))?;
            }
            if roots.is_empty() {
                bail!("no PEM certificate in {}", path.display());
            }
            rustls::ClientConfig::builder_with_provider(provider())
                .with_protocol_versions(VERSIONS)
                .context("TLS client versions")?
                .with_root_certificates(roots)
                .with_no_client_auth()
        }
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(TlsConnector::from(Arc::new(config)))
}

/// A server acceptor with a fresh self-signed certificate for `hostname`.
pub fn self_signed_acceptor(hostname: &str) -> anyhow::Result<TlsAcceptor> {
    let names = vec![hostname.to_string(), "localhost".to_string()];
    let certified =
        rcgen::generate_simple_self_signed(names).context("generating self-signed certificate")?;
    let cert = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .context("TLS server versions")?
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .context("TLS server certificate")?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The name to present in SNI for `server` (`host:port`, `[v6]:port`, or an address).
pub fn server_name(server: &str) -> anyhow::Result<ServerName<'static>> {
    let host = match server.rsplit_once(':') {
        Some((host, port)) if port.parse::<u16>().is_ok() => host,
        _ => server,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string()).with_context(|| format!("bad TLS server name {host:?}"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn server_names() {
        assert!(matches!(
            server_name("127.0.0.1:25").unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(
            server_name("[::1]:25").unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(
            server_name("mx.example:2525").unwrap(),
            ServerName::DnsName(_)
        ));
        assert!(server_name("bad name:25").is_err());
    }

    #[test]
    fn configs_build() {
        benchmark_connector().unwrap();
        self_signed_acceptor("sink.localhost").unwrap();
        https_connector(None, &[b"h2"]).unwrap();
    }

    #[test]
    fn ca_file_is_read() {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let dir = std::env::temp_dir().join(format!("way2mail-bench-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("ca.pem");
        std::fs::write(&good, certified.cert.pem()).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "no certificate here\n").unwrap();
        https_connector(Some(&good), &[b"http/1.1"]).unwrap();
        assert!(https_connector(Some(&empty), &[]).is_err());
        assert!(https_connector(Some(&dir.join("missing.pem")), &[]).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
