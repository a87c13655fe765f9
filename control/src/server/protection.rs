//! The data-protection tables of control's configuration: `[retention]` (the
//! default periods, overridable per tenant), `[mta]` (the MTA's admin socket, for
//! the spool's part of exports, erasures, reports, sweeps and backups) and
//! `[backup]` (the key sealing backups). docs/configuration.md has every key.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use way2mail_daemon::config::ConfigError;
use way2mail_daemon::duration;
use way2mail_wire::protocol::RetentionDefaults;

pub use crate::settings::MtaSettings;
use crate::settings::{DEV_MTA_SOCKET, MTA_TIMEOUT_MS};

fn err(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::new(key, reason)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    #[serde(deserialize_with = "duration::deserialize_secs")]
    pub content: u64,
    #[serde(deserialize_with = "duration::deserialize_secs")]
    pub delivery_log: u64,
    #[serde(deserialize_with = "duration::deserialize_secs")]
    pub security_log: u64,
    #[serde(deserialize_with = "duration::deserialize_secs")]
    pub account: u64,
    #[serde(deserialize_with = "duration::deserialize_secs")]
    pub termination_grace: u64,
    #[serde(deserialize_with = "duration::deserialize_secs")]
    pub sweep_interval: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        let d = RetentionDefaults::default();
        RetentionConfig {
            content: d.content_secs,
            delivery_log: d.delivery_log_secs,
            security_log: d.security_log_secs,
            account: d.account_secs,
            termination_grace: d.termination_grace_secs,
            sweep_interval: d.sweep_interval_secs,
        }
    }
}

impl RetentionConfig {
    pub fn validate(&self) -> Result<RetentionDefaults, ConfigError> {
        for (key, secs) in [
            ("retention.content", self.content),
            ("retention.delivery_log", self.delivery_log),
            ("retention.security_log", self.security_log),
            ("retention.account", self.account),
            ("retention.sweep_interval", self.sweep_interval),
        ] {
            if secs == 0 {
                return Err(err(key, "must be at least 1s"));
            }
        }
        if self.sweep_interval > 7 * 86_400 {
            return Err(err("retention.sweep_interval", "must be at most 7d"));
        }
        Ok(RetentionDefaults {
            content_secs: self.content,
            delivery_log_secs: self.delivery_log,
            security_log_secs: self.security_log,
            account_secs: self.account,
            termination_grace_secs: self.termination_grace,
            sweep_interval_secs: self.sweep_interval,
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MtaConfig {
    /// The MTA's admin socket; empty: no MTA (exports and erasures cover control's
    /// data only and say so).
    pub admin_socket: PathBuf,
    pub timeout_ms: u64,
}

impl Default for MtaConfig {
    fn default() -> Self {
        MtaConfig {
            admin_socket: DEV_MTA_SOCKET.into(),
            timeout_ms: MTA_TIMEOUT_MS,
        }
    }
}

impl MtaConfig {
    pub fn validate(&self) -> Result<MtaSettings, ConfigError> {
        if self.timeout_ms == 0 || self.timeout_ms > 3_600_000 {
            return Err(err("mta.timeout_ms", "must be 1 to 3600000"));
        }
        Ok(MtaSettings {
            admin_socket: Some(self.admin_socket.clone()).filter(|p| !p.as_os_str().is_empty()),
            timeout: Duration::from_millis(self.timeout_ms),
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackupConfig {
    /// 32 random bytes sealing backups; created 0600 when missing.
    pub key_file: PathBuf,
}

impl Default for BackupConfig {
    fn default() -> Self {
        BackupConfig {
            key_file: "./var/backup.key".into(),
        }
    }
}

impl BackupConfig {
    pub fn validate(&self) -> Result<PathBuf, ConfigError> {
        if self.key_file.as_os_str().is_empty() {
            return Err(err("backup.key_file", "must not be empty"));
        }
        Ok(self.key_file.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_parse_and_are_checked() {
        let c: RetentionConfig = way2mail_daemon::config::parse(
            "content = \"7d\"\ndelivery_log = \"13h\"\nsweep_interval = \"10m\"\n",
        )
        .expect("parse");
        let d = c.validate().expect("valid");
        assert_eq!(
            (d.content_secs, d.delivery_log_secs, d.sweep_interval_secs),
            (7 * 86_400, 13 * 3_600, 600)
        );
        assert_eq!(d.account_secs, 3_650 * 86_400);
        let e = way2mail_daemon::config::parse::<RetentionConfig>("content = \"a week\"\n")
            .expect_err("bad");
        assert!(e.to_string().contains("content"), "{e}");
        let zero: RetentionConfig =
            way2mail_daemon::config::parse("security_log = \"0d\"\n").expect("parse");
        assert_eq!(
            zero.validate().expect_err("zero").key,
            "retention.security_log"
        );
    }
}
