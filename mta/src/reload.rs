//! Re-reading the configuration on SIGHUP (`systemctl reload`), on the main thread.
//!
//! The file is loaded and checked exactly as at start, the TLS certificate and key
//! are loaded again (a renewal changes the files, not the configuration), and only
//! when all of that succeeded is anything changed: a bad file leaves the running
//! configuration whole and says why in one ERROR line. What only a restart can
//! change keeps its running value (`config/reload.rs`) and is named in one WARN
//! line; the rest is put in force by swapping two pointers: the sessions' [`Live`]
//! and the settings delivery and the admin socket read ([`Current`]). Sessions and
//! delivery attempts under way keep the snapshot they started with.
//!
//! ```text
//!  SIGHUP ─► Config::load ─► validate ─► keep_restart_only ─► tls::server_config
//!              (any error: ERROR line, reloads_total{result="failed"}, nothing changed)
//!         ─► Current<Settings>::set (delivery, admin) ─► Current<Live>::set (sessions)
//!         ─► connection caps, log level, certificate expiry gauge ─► WARN? INFO
//! ```

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;

use crate::config::{Config, Settings, TlsConfig};
use crate::current::Current;
use crate::inbound::Inbound;
use crate::limits::ConnectionLimiter;
use crate::session::{Live, Shared};
use crate::signer::Signer;
use crate::tenants::Tenants;
use crate::tls;

/// What a reload replaces, and what it needs to build the replacements.
pub struct Reloader {
    /// `None`: started on the dev defaults, which a reload takes again (the
    /// certificate files are still re-read).
    pub path: Option<PathBuf>,
    pub shared: Arc<Shared>,
    pub settings: Arc<Current<Settings>>,
    pub limiter: Arc<ConnectionLimiter>,
    pub tenants: Option<Arc<Tenants>>,
    /// Whether the metrics endpoint is on (the certificate expiry gauge).
    pub metrics: bool,
    /// The certificate and key files as last loaded ([`tls_files`]).
    pub tls_files: Vec<u8>,
}

impl Reloader {
    /// Reloads, or keeps everything as it is and says why.
    pub fn reload(&mut self) {
        match self.try_reload() {
            Ok(()) => crate::metrics::config_reload("ok"),
            Err(e) => {
                crate::metrics::config_reload("failed");
                // One line, whatever a parser's message holds.
                let error: Vec<String> = format!("{e:#}")
                    .lines()
                    .map(|l| l.trim().to_string())
                    .collect();
                tracing::error!(
                    path = %self.path_text(),
                    error = %error.join(" "),
                    "configuration reload failed: the running configuration stays in force"
                );
            }
        }
    }

    fn path_text(&self) -> String {
        self.path
            .as_ref()
            .map_or_else(|| "(dev defaults)".into(), |p| p.display().to_string())
    }

    fn try_reload(&mut self) -> Result<()> {
        let config = match &self.path {
            Some(path) => Config::load(path)?,
            None => Config::default(),
        };
        let mut settings = config.validate()?;
        let running = self.settings.get();
        let mut changes = settings.keep_restart_only(&running);
        let server_tls = tls::server_config(&settings.raw.tls, &settings.raw.hostname)?;
        let files = tls_files(&settings.raw.tls);
        if !changes.live.contains(&"tls") && files != self.tls_files {
            changes.live.push("tls");
        }
        self.tls_files = files;
        // Everything was checked: from here on nothing fails.
        let settings = Arc::new(settings);
        self.settings.set(Arc::clone(&settings));
        self.shared.live.set(Arc::new(Live {
            settings: Arc::clone(&settings),
            api_tls: tls::api_config(&server_tls),
            tls: server_tls,
            signer: Signer::new(Arc::clone(&settings), self.tenants.clone()),
            inbound: Inbound::new(Arc::clone(&settings)),
        }));
        let limits = &settings.raw.limits;
        self.limiter
            .set_caps(limits.max_connections, limits.max_connections_per_ip);
        way2mail_daemon::logging::apply(&settings.raw.log);
        if self.metrics {
            crate::metrics::certificate_expiry(&settings.raw.tls.cert);
        }
        if !changes.restart.is_empty() {
            tracing::warn!(
                keys = %changes.restart.join(" "),
                "configuration reload: these keys changed but only a restart applies them; \
                 their running values stay in force"
            );
        }
        let changed = if changes.live.is_empty() {
            "nothing".to_string()
        } else {
            changes.live.join(" ")
        };
        tracing::info!(path = %self.path_text(), changed, "configuration reloaded");
        Ok(())
    }
}

/// The certificate and key files as they are now, to tell a renewal on disk from
/// an unchanged certificate; unreadable files read as empty (loading them is what
/// reports the error).
pub fn tls_files(tls: &TlsConfig) -> Vec<u8> {
    let mut bytes = std::fs::read(&tls.cert).unwrap_or_default();
    bytes.extend(std::fs::read(&tls.key).unwrap_or_default());
    bytes
}
