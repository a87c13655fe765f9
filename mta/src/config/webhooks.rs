//! `[webhooks]`: how the MTA posts tenants' events to their webhook endpoints
//! (docs/api.md, "Webhooks").

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use way2mail_daemon::config::secs;
use way2mail_daemon::ConfigError;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    /// Post to endpoints whose addresses are loopback, private, link-local, shared
    /// (CGNAT) or otherwise not public: on-premises receivers and tests only.
    pub allow_private: bool,
    /// Accept `http://` endpoints (no TLS). Off: HTTPS only.
    pub allow_http: bool,
    /// PEM file of extra certificate authorities trusted for endpoints, besides
    /// the system's roots (a private CA of on-premises receivers). Empty: none.
    pub ca_file: PathBuf,
    /// One post, connect to answer.
    #[serde(rename = "timeout_secs", deserialize_with = "secs")]
    pub timeout: Duration,
    /// Wait after the first failed post of an event; doubled after each further
    /// failure, up to `retry_max_secs`.
    #[serde(rename = "retry_initial_secs", deserialize_with = "secs")]
    pub retry_initial: Duration,
    #[serde(rename = "retry_max_secs", deserialize_with = "secs")]
    pub retry_max: Duration,
    /// An event not posted this long after it happened is dropped; an endpoint
    /// that took no post at all over that time is disabled and the tenant's
    /// contact told.
    #[serde(rename = "give_up_after_secs", deserialize_with = "secs")]
    pub give_up_after: Duration,
    /// Events per post, at most.
    pub batch_size: usize,
    /// Endpoints posted to at the same time, at most.
    pub parallel: usize,
}

impl Default for WebhooksConfig {
    fn default() -> WebhooksConfig {
        WebhooksConfig {
            allow_private: false,
            allow_http: false,
            ca_file: PathBuf::new(),
            timeout: Duration::from_secs(10),
            retry_initial: Duration::from_secs(30),
            retry_max: Duration::from_secs(3600),
            give_up_after: Duration::from_secs(24 * 3600),
            batch_size: 100,
            parallel: 8,
        }
    }
}

impl WebhooksConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, m: &str| Err(ConfigError::new(format!("webhooks.{key}"), m));
        if !(1..=1000).contains(&self.batch_size) {
            return bad("batch_size", "must be 1 to 1000");
        }
        if !(1..=64).contains(&self.parallel) {
            return bad("parallel", "must be 1 to 64");
        }
        if self.timeout.is_zero() {
            return bad("timeout_secs", "must be at least 1");
        }
        if self.retry_initial.is_zero() {
            return bad("retry_initial_secs", "must be at least 1");
        }
        if self.retry_max < self.retry_initial {
            return bad("retry_max_secs", "must be at least retry_initial_secs");
        }
        if self.give_up_after < self.retry_initial {
            return bad("give_up_after_secs", "must be at least retry_initial_secs");
        }
        Ok(())
    }

    /// The wait before the next post of an event that failed `attempts` times.
    pub fn backoff(&self, attempts: u32) -> Duration {
        let doublings = attempts.saturating_sub(1).min(20);
        self.retry_initial
            .saturating_mul(1u32 << doublings)
            .min(self.retry_max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let c = WebhooksConfig::default();
        let waits: Vec<u64> = (1..=9).map(|a| c.backoff(a).as_secs()).collect();
        assert_eq!(waits, [30, 60, 120, 240, 480, 960, 1920, 3600, 3600]);
        assert_eq!(c.backoff(u32::MAX).as_secs(), 3600);
        assert!(c.validate().is_ok());
        let broken = WebhooksConfig {
            batch_size: 0,
            ..WebhooksConfig::default()
        };
        assert!(broken.validate().is_err());
    }
}
