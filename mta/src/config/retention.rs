//! `[retention]`: how long the MTA keeps mail of no tenant (and of tenants the
//! control snapshot gives no retention for), and how often the sweep runs. Tenants'
//! own periods come with the snapshot.
//!
//! The two retention periods stay whole seconds, the unit of the snapshot's
//! periods and of the stored timestamps they are measured against; the sweep
//! interval is a timer, read as a `Duration`.

use std::time::Duration;

use serde::{Deserialize, Deserializer};
use way2mail_daemon::duration;
use way2mail_daemon::ConfigError;

/// Periods written as `"30d"`, `"12h"`, … (`way2mail_daemon::duration`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Queued content of mail of no tenant (and of tenants without a retention in
    /// the snapshot), counted from acceptance.
    #[serde(rename = "content", deserialize_with = "duration::deserialize_secs")]
    pub content_secs: u64,
    /// Delivery log records of that mail, counted from the outcome.
    #[serde(
        rename = "delivery_log",
        deserialize_with = "duration::deserialize_secs"
    )]
    pub delivery_log_secs: u64,
    /// How often the sweep runs (also once at start).
    #[serde(deserialize_with = "interval")]
    pub sweep_interval: Duration,
}

/// Serde: a period (`"1h"`) as a `Duration`.
fn interval<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    duration::deserialize_secs(d).map(Duration::from_secs)
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            content_secs: 30 * 86_400,
            delivery_log_secs: 400 * 86_400,
            sweep_interval: Duration::from_secs(3_600),
        }
    }
}

impl RetentionConfig {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        // A zero period would delete mail the moment it is accepted.
        for (key, value) in [
            ("retention.content", self.content_secs),
            ("retention.delivery_log", self.delivery_log_secs),
        ] {
            if value == 0 {
                return Err(ConfigError::new(key, "must be at least 1s"));
            }
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(7 * 86_400))
            .contains(&self.sweep_interval)
        {
            return Err(ConfigError::new(
                "retention.sweep_interval",
                "must be between 1s and 7d",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::Config;

    #[test]
    fn defaults_are_the_documented_ones() {
        let r = Config::parse("").unwrap().validate().unwrap().raw.retention;
        assert_eq!(r.content_secs, 30 * 86_400);
        assert_eq!(r.delivery_log_secs, 400 * 86_400);
        assert_eq!(r.sweep_interval.as_secs(), 3_600);
    }

    #[test]
    fn periods_are_parsed() {
        let r = Config::parse(
            "[retention]\ncontent = \"2s\"\ndelivery_log = \"7y\"\nsweep_interval = \"30m\"\n",
        )
        .unwrap()
        .validate()
        .unwrap()
        .raw
        .retention;
        assert_eq!(
            (
                r.content_secs,
                r.delivery_log_secs,
                r.sweep_interval.as_secs()
            ),
            (2, 7 * 365 * 86_400, 1_800)
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        for (text, key) in [
            ("[retention]\ncontent = \"0d\"\n", "retention.content"),
            (
                "[retention]\ndelivery_log = \"0s\"\n",
                "retention.delivery_log",
            ),
            (
                "[retention]\nsweep_interval = \"8d\"\n",
                "retention.sweep_interval",
            ),
        ] {
            let e = Config::parse(text).unwrap().validate().unwrap_err();
            assert_eq!(e.key, key, "{text}: {e}");
        }
        let e = Config::parse("[retention]\ncontent = \"30 days\"\n").unwrap_err();
        assert_eq!(e.key, "retention.content");
        assert!(e.reason.contains("is not a period"), "{e}");
        // A bare number has no unit: seconds or days would be a guess.
        let e = Config::parse("[retention]\nsweep_interval = 60\n").unwrap_err();
        assert_eq!(e.key, "retention.sweep_interval", "{e}");
    }
}
