//! `[timeouts]`: the deadlines an SMTP client works against, and how long shutdown
//! waits for messages in flight. They are deadlines, not idle timers: a byte that
//! arrives does not reset them, so a client sending one byte at a time is cut as
//! surely as a silent one (`session/deadlines.rs` applies them). The same
//! `min_data_rate` tells the connection caps which connections are slow enough to be
//! displaced by a newcomer (`limits.rs`).

use std::time::Duration;

use serde::Deserialize;
use way2mail_daemon::config::secs;
use way2mail_daemon::ConfigError;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimeoutsConfig {
    /// A command line must be complete this long after its first byte, and that
    /// first byte must come this long after the previous replies; also bounds
    /// writing each batch of replies.
    #[serde(rename = "command_secs", deserialize_with = "secs")]
    pub command: Duration,
    /// The grace of each stretch of message content (DATA, a BDAT chunk) before
    /// `min_data_rate` applies, and the longest silence inside it.
    #[serde(rename = "data_secs", deserialize_with = "secs")]
    pub data: Duration,
    /// Bytes per second message content must average after the grace; below it over
    /// its life, a connection may be displaced at the connection caps.
    pub min_data_rate: u64,
    /// The longest a connection may last, whatever it does.
    #[serde(rename = "session_secs", deserialize_with = "secs")]
    pub session: Duration,
    /// At the connection caps, younger connections are never displaced.
    #[serde(rename = "displace_after_secs", deserialize_with = "secs")]
    pub displace_after: Duration,
    #[serde(rename = "tls_handshake_secs", deserialize_with = "secs")]
    pub tls_handshake: Duration,
    /// How long a message being received at shutdown may take to finish.
    #[serde(rename = "shutdown_grace_secs", deserialize_with = "secs")]
    pub shutdown_grace: Duration,
}

impl Default for TimeoutsConfig {
    fn default() -> Self {
        TimeoutsConfig {
            command: Duration::from_secs(300),
            data: Duration::from_secs(180),
            // Postfix's smtpd_min_data_rate: 4 kbit/s, slower than any real link.
            min_data_rate: 500,
            session: Duration::from_secs(3600),
            displace_after: Duration::from_secs(10),
            tls_handshake: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

impl TimeoutsConfig {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        let at_least_one = [
            ("timeouts.command_secs", self.command.as_secs()),
            ("timeouts.data_secs", self.data.as_secs()),
            ("timeouts.min_data_rate", self.min_data_rate),
            ("timeouts.session_secs", self.session.as_secs()),
            (
                "timeouts.displace_after_secs",
                self.displace_after.as_secs(),
            ),
            ("timeouts.tls_handshake_secs", self.tls_handshake.as_secs()),
        ];
        for (key, value) in at_least_one {
            if value == 0 {
                return Err(ConfigError::new(key, "must be at least 1"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::Config;

    #[test]
    fn defaults_are_the_documented_ones() {
        let s = Config::parse("").unwrap().validate().unwrap();
        let t = &s.raw.timeouts;
        assert_eq!(
            [
                t.command,
                t.data,
                t.session,
                t.displace_after,
                t.tls_handshake,
                t.shutdown_grace
            ]
            .map(|d| d.as_secs()),
            [300, 180, 3600, 10, 10, 10]
        );
        assert_eq!(t.min_data_rate, 500);
    }

    #[test]
    fn keys_are_read_as_durations() {
        let s = Config::parse(
            "[timeouts]\ncommand_secs = 7\ndata_secs = 8\ntls_handshake_secs = 9\n\
             shutdown_grace_secs = 0\nmin_data_rate = 100\nsession_secs = 60\n\
             displace_after_secs = 2\n",
        )
        .unwrap()
        .validate()
        .unwrap();
        let t = &s.raw.timeouts;
        assert_eq!(
            (t.command, t.data, t.tls_handshake, t.shutdown_grace),
            (
                Duration::from_secs(7),
                Duration::from_secs(8),
                Duration::from_secs(9),
                Duration::ZERO
            )
        );
        assert_eq!(
            (t.min_data_rate, t.session, t.displace_after),
            (100, Duration::from_secs(60), Duration::from_secs(2))
        );
    }

    #[test]
    fn zero_and_wrong_types_name_the_key() {
        for key in [
            "command_secs",
            "data_secs",
            "min_data_rate",
            "session_secs",
            "displace_after_secs",
            "tls_handshake_secs",
        ] {
            let e = Config::parse(&format!("[timeouts]\n{key} = 0\n"))
                .unwrap()
                .validate()
                .unwrap_err();
            assert_eq!(e.key, format!("timeouts.{key}"), "{e}");
        }
        let e = Config::parse("[timeouts]\ncommand_secs = \"5m\"\n").unwrap_err();
        assert_eq!(e.key, "timeouts.command_secs");
        let e = Config::parse("[timeouts]\nmin_data_rate = -1\n").unwrap_err();
        assert_eq!(e.key, "timeouts.min_data_rate");
    }
}
