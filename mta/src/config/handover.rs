//! `[handover]`: handing queued mail between nodes (`way2mail-mta drain
//! --handover`, `crate::handover`), over mutual TLS with certificates of one CA.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use way2mail_daemon::config::ConfigError;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HandoverConfig {
    /// Where this node takes mail handed over by a draining peer; empty: it takes
    /// none (it can still hand its own over).
    pub listen: String,
    /// This node's certificate (PEM; chain allowed) and key: the server certificate
    /// on `listen`, and the client certificate when handing over.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The authority that signs every node's certificate (PEM): a peer must show a
    /// certificate it signed, both ways.
    pub ca: PathBuf,
    /// How long one message may take, either side (connect, send, acknowledgement).
    #[serde(
        rename = "timeout_secs",
        deserialize_with = "way2mail_daemon::config::secs"
    )]
    pub timeout: Duration,
}

impl Default for HandoverConfig {
    fn default() -> HandoverConfig {
        HandoverConfig {
            listen: String::new(),
            cert: PathBuf::new(),
            key: PathBuf::new(),
            ca: PathBuf::new(),
            timeout: Duration::from_secs(60),
        }
    }
}

impl HandoverConfig {
    /// Whether the certificate files are named (needed both to listen and to hand over).
    pub fn has_tls(&self) -> bool {
        !self.cert.as_os_str().is_empty()
            && !self.key.as_os_str().is_empty()
            && !self.ca.as_os_str().is_empty()
    }

    /// The checked listen address; `None` when off.
    pub fn check(&self) -> Result<Option<SocketAddr>, ConfigError> {
        if self.timeout.is_zero() {
            return Err(ConfigError::new(
                "handover.timeout_secs",
                "must be at least 1",
            ));
        }
        let listen = self.listen.trim();
        if listen.is_empty() {
            return Ok(None);
        }
        let address: SocketAddr = listen.parse().map_err(|_| {
            ConfigError::new(
                "handover.listen",
                format!("'{listen}' is not an IP:PORT socket address"),
            )
        })?;
        if !self.has_tls() {
            return Err(ConfigError::new(
                "handover.listen",
                "needs handover.cert, handover.key and handover.ca: peers are authenticated \
                 by their certificates",
            ));
        }
        Ok(Some(address))
    }
}
