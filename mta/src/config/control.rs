//! `[control]` (where the tenant snapshot comes from and where it is kept) and
//! `[auth]` (how SMTP AUTH failures are slowed down and locked out). An empty
//! `control.socket` turns the whole tenant side off: no AUTH is advertised.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use way2mail_daemon::config::{millis, secs};
use way2mail_daemon::ConfigError;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControlConfig {
    /// The control daemon's Unix socket; empty disables tenants and AUTH.
    pub socket: PathBuf,
    /// The last snapshot received, sealed with the spool key, for starts without control.
    pub snapshot_file: PathBuf,
    /// How often control is asked for a newer snapshot.
    #[serde(rename = "poll_ms", deserialize_with = "millis")]
    pub poll: Duration,
    /// For each exchange with control (connect, request, answer).
    #[serde(rename = "timeout_ms", deserialize_with = "millis")]
    pub timeout: Duration,
    /// `/readyz` fails when control has not confirmed the snapshot for this long.
    #[serde(rename = "snapshot_max_age_ms", deserialize_with = "millis")]
    pub snapshot_max_age: Duration,
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig {
            socket: "./var/control.sock".into(),
            snapshot_file: "./var/control-snapshot".into(),
            poll: Duration::from_millis(500),
            timeout: Duration::from_millis(2000),
            snapshot_max_age: Duration::from_secs(30),
        }
    }
}

impl ControlConfig {
    /// True when the MTA follows a control daemon (and offers AUTH).
    pub fn enabled(&self) -> bool {
        !self.socket.as_os_str().is_empty()
    }

    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if !self.enabled() {
            return Ok(());
        }
        if self.snapshot_file.as_os_str().is_empty() {
            return Err(ConfigError::new(
                "control.snapshot_file",
                "must name a file when control.socket is set",
            ));
        }
        // Below 10 ms the poll is a busy loop against control; above a minute the
        // MTA would keep accepting revoked credentials for too long.
        if !(Duration::from_millis(10)..=Duration::from_secs(60)).contains(&self.poll) {
            return Err(ConfigError::new(
                "control.poll_ms",
                "must be between 10 and 60000",
            ));
        }
        if self.snapshot_max_age <= self.poll {
            return Err(ConfigError::new(
                "control.snapshot_max_age_ms",
                "must be longer than control.poll_ms",
            ));
        }
        if !(Duration::from_millis(1)..=Duration::from_secs(60)).contains(&self.timeout) {
            return Err(ConfigError::new(
                "control.timeout_ms",
                "must be between 1 and 60000",
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Wait before answering a failed AUTH with `535`.
    #[serde(rename = "failure_delay_ms", deserialize_with = "millis")]
    pub failure_delay: Duration,
    /// Failures per client IP, and per username, that start a lockout.
    pub max_failures: u32,
    /// Failures count towards `max_failures` for this long.
    #[serde(rename = "failure_window_secs", deserialize_with = "secs")]
    pub failure_window: Duration,
    #[serde(rename = "lockout_secs", deserialize_with = "secs")]
    pub lockout: Duration,
    /// Threads checking passwords (argon2), off the SMTP cores.
    pub verify_threads: usize,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            failure_delay: Duration::from_millis(1000),
            max_failures: 5,
            failure_window: Duration::from_secs(600),
            lockout: Duration::from_secs(900),
            verify_threads: 1,
        }
    }
}

impl AuthConfig {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if self.failure_delay > Duration::from_secs(60) {
            return Err(ConfigError::new(
                "auth.failure_delay_ms",
                "must be at most 60000",
            ));
        }
        if self.max_failures == 0 {
            return Err(ConfigError::new("auth.max_failures", "must be at least 1"));
        }
        for (key, period) in [
            ("auth.failure_window_secs", self.failure_window),
            ("auth.lockout_secs", self.lockout),
        ] {
            if period.is_zero() {
                return Err(ConfigError::new(key, "must be at least 1"));
            }
        }
        if !(1..=64).contains(&self.verify_threads) {
            return Err(ConfigError::new(
                "auth.verify_threads",
                "must be between 1 and 64",
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
        let s = Config::parse("").unwrap().validate().unwrap();
        let c = &s.raw.control;
        assert_eq!(c.socket.to_str(), Some("./var/control.sock"));
        assert_eq!(c.snapshot_file.to_str(), Some("./var/control-snapshot"));
        assert_eq!((c.poll.as_millis(), c.timeout.as_millis()), (500, 2000));
        let a = &s.raw.auth;
        assert_eq!((a.failure_delay.as_millis(), a.max_failures), (1000, 5));
        assert_eq!(
            (a.failure_window.as_secs(), a.lockout.as_secs()),
            (600, 900)
        );
        assert_eq!(a.verify_threads, 1);
        assert!(c.enabled());
    }

    #[test]
    fn empty_socket_disables_control() {
        let s = Config::parse("[control]\nsocket = \"\"\npoll_ms = 0\n")
            .unwrap()
            .validate()
            .unwrap();
        assert!(!s.raw.control.enabled());
    }

    #[test]
    fn bad_values_name_their_key() {
        for (text, key) in [
            ("[control]\npoll_ms = 0\n", "control.poll_ms"),
            ("[control]\npoll_ms = 90000\n", "control.poll_ms"),
            ("[control]\ntimeout_ms = 0\n", "control.timeout_ms"),
            (
                "[control]\nsnapshot_max_age_ms = 400\n",
                "control.snapshot_max_age_ms",
            ),
            ("[control]\nsnapshot_file = \"\"\n", "control.snapshot_file"),
            ("[auth]\nmax_failures = 0\n", "auth.max_failures"),
            (
                "[auth]\nfailure_window_secs = 0\n",
                "auth.failure_window_secs",
            ),
            ("[auth]\nlockout_secs = 0\n", "auth.lockout_secs"),
            ("[auth]\nverify_threads = 0\n", "auth.verify_threads"),
            (
                "[auth]\nfailure_delay_ms = 600000\n",
                "auth.failure_delay_ms",
            ),
        ] {
            let e = Config::parse(text).unwrap().validate().unwrap_err();
            assert_eq!(e.key, key, "{text}: {e}");
        }
        let e = Config::parse("[auth]\nmax_failures = \"five\"\n").unwrap_err();
        assert_eq!(e.key, "auth.max_failures");
        let e = Config::parse("[control]\nsokcet = \"x\"\n").unwrap_err();
        assert!(e.reason.contains("sokcet"), "{e}");
    }
}
