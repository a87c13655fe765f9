//! Loading the server certificate, or creating a self-signed one when the operator
//! allowed it and none exists yet.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;

use crate::config::TlsConfig;

/// Builds the rustls server configuration: TLS 1.2 and 1.3, aws-lc-rs, no client
/// certificates.
pub fn server_config(tls: &TlsConfig, hostname: &str) -> Result<Arc<ServerConfig>> {
    if tls.self_signed && !tls.cert.exists() && !tls.key.exists() {
        generate_self_signed(&tls.cert, &tls.key, hostname)?;
        tracing::warn!(
            cert = %tls.cert.display(),
            "generated a self-signed TLS certificate; set [tls] cert/key for production"
        );
    }
    let certs = read_certs(&tls.cert, "tls.cert")?;
    let key = read_key(&tls.key, "tls.key")?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("tls.cert/tls.key: the key does not match the certificate or is unsupported")?;
    // SMTP has no ALPN; session resumption through tickets helps clients that
    // reconnect often (submission from applications).
    config.send_tls13_tickets = 2;
    Ok(Arc::new(config))
}

/// The certificates in the PEM file `path` (at least one); `key` names the setting
/// in errors.
pub fn read_certs(path: &Path, key: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("{key}: cannot read {}", path.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("{key}: {} is not valid PEM", path.display()))?;
    if certs.is_empty() {
        bail!("{key}: {} holds no certificate", path.display());
    }
    Ok(certs)
}

/// The private key in the PEM file `path`; `key` names the setting in errors.
pub fn read_key(path: &Path, key: &str) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path)
        .with_context(|| format!("{key}: cannot read a private key from {}", path.display()))
}

/// The API listeners' configuration: the SMTP one (same certificate, versions and
/// provider) with ALPN, which SMTP must not offer.
pub fn api_config(smtp: &ServerConfig) -> Arc<ServerConfig> {
    let mut config = smtp.clone();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}

fn generate_self_signed(cert_path: &Path, key_path: &Path, hostname: &str) -> Result<()> {
    let mut names = vec![hostname.to_string(), "localhost".to_string()];
    names.dedup();
    names.push("127.0.0.1".to_string());
    names.push("::1".to_string());
    let generated = rcgen::generate_simple_self_signed(names)
        .context("generating a self-signed certificate")?;
    for path in [cert_path, key_path] {
        if let Some(dir) = path.parent() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .with_context(|| format!("creating {}", dir.display()))?;
        }
    }
    write_new(cert_path, generated.cert.pem().as_bytes(), 0o644)?;
    write_new(
        key_path,
        generated.signing_key.serialize_pem().as_bytes(),
        0o600,
    )?;
    Ok(())
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}
