//! `[scan]`: content scanning with rspamd (docs/scanning.md).

use std::time::Duration;

use serde::Deserialize;
use way2mail_daemon::ConfigError;

/// What becomes of a message when rspamd cannot be asked (down, slow, garbled).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// Queue it unscanned.
    Accept,
    /// `451 4.7.1` (API: 503): the client tries again later.
    Tempfail,
}

/// The kinds of mail a `[scan]` can cover, by the door they came in by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScanRole {
    /// Mail from the internet (the `mx` listeners).
    Mx,
    /// Submission on port 587 (`submission` listeners).
    Submission,
    /// Implicit-TLS submission (`submissions` listeners).
    Submissions,
    /// `POST /v1/messages` and `/v1/messages/raw`.
    Api,
}

impl ScanRole {
    pub fn as_str(self) -> &'static str {
        match self {
            ScanRole::Mx => "mx",
            ScanRole::Submission => "submission",
            ScanRole::Submissions => "submissions",
            ScanRole::Api => "api",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScanConfig {
    /// rspamd's normal worker (`http://127.0.0.1:11333`). Empty: no scanning.
    pub rspamd: String,
    /// One scan, connect to answer.
    #[serde(rename = "timeout_ms")]
    pub timeout_ms: u64,
    /// What a failed scan does to the message.
    pub on_failure: OnFailure,
    /// Which mail is scanned.
    pub roles: Vec<ScanRole>,
    /// Messages larger than this are not scanned (rspamd's own default limit).
    pub max_size: u64,
    /// At or above this score a message is queued held for review. `None`: off.
    pub hold_score: Option<f64>,
}

impl Default for ScanConfig {
    fn default() -> ScanConfig {
        ScanConfig {
            rspamd: String::new(),
            timeout_ms: 5000,
            on_failure: OnFailure::Accept,
            roles: vec![ScanRole::Submission, ScanRole::Submissions, ScanRole::Api],
            max_size: 10 * 1024 * 1024,
            hold_score: None,
        }
    }
}

impl ScanConfig {
    pub fn enabled(&self) -> bool {
        !self.rspamd.is_empty()
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, m: String| Err(ConfigError::new(format!("scan.{key}"), m));
        if self.enabled() && crate::scan::Target::parse(&self.rspamd).is_none() {
            return bad(
                "rspamd",
                format!(
                    "'{}' is not an http:// URL with a host and port (such as http://127.0.0.1:11333)",
                    self.rspamd
                ),
            );
        }
        if !(1..=600_000).contains(&self.timeout_ms) {
            return bad("timeout_ms", "must be 1 to 600000".into());
        }
        if self.max_size == 0 {
            return bad("max_size", "must be at least 1".into());
        }
        if let Some(s) = self.hold_score {
            if !s.is_finite() {
                return bad("hold_score", "must be a number".into());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_config_defaults_and_validation() {
        let c = ScanConfig::default();
        assert!(!c.enabled());
        assert!(c.validate().is_ok());
        let bad = ScanConfig {
            rspamd: "https://x".into(),
            ..ScanConfig::default()
        };
        assert!(bad.validate().is_err());
        let good = ScanConfig {
            rspamd: "http://127.0.0.1:11333".into(),
            hold_score: Some(6.0),
            ..ScanConfig::default()
        };
        assert!(good.validate().is_ok());
        let zero = ScanConfig {
            timeout_ms: 0,
            ..ScanConfig::default()
        };
        assert!(zero.validate().is_err());
    }
}
