//! TLS client side of the tests: a rustls config (aws-lc-rs provider, passed explicitly)
//! whose only trust root is the certificate the daemon generated for itself, so a passing
//! handshake also proves the certificate covers `localhost` and 127.0.0.1.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

/// Reads a PEM file the daemon wrote.
pub fn load_pem_cert(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// A client config trusting exactly the certificates in `cert_pem`.
pub fn client_config(cert_pem: &[u8]) -> anyhow::Result<Arc<ClientConfig>> {
    let mut roots = RootCertStore::empty();
    let mut count = 0;
    for cert in CertificateDer::pem_slice_iter(cert_pem) {
        roots
            .add(cert.context("parsing a PEM certificate")?)
            .context("adding the daemon's certificate as a trust root")?;
        count += 1;
    }
    anyhow::ensure!(count > 0, "no certificate in the PEM data");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("choosing TLS versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
