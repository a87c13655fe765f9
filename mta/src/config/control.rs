//! `[control]` (where the tenant snapshot comes from and where it is kept) and
//! `[auth]` (how SMTP AUTH failures are slowed down and locked out). An empty
//! `control.socket` turns the whole tenant side off: no AUTH is advertised.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{err, ConfigError};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControlConfig {
    /// The control daemon's Unix socket; empty disables tenants and AUTH.
    pub socket: PathBuf,
    /// The last snapshot received, sealed with the spool key, for starts without control.
    pub snapshot_file: PathBuf,
    pub poll_ms: u64,
    pub timeout_ms: u64,
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig {
            socket: "./var/control.sock".into(),
            snapshot_file: "./var/control-snapshot".into(),
            poll_ms: 500,
            timeout_ms: 2000,
        }
    }
}

impl ControlConfig {
    /// True when the MTA follows a control daemon (and offers AUTH).
    pub fn enabled(&self) -> bool {
        !self.socket.as_os_str().is_empty()
    }

    pub fn poll(&self) -> Duration {
        Duration::from_millis(self.poll_ms)
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if !self.enabled() {
            return Ok(());
        }
        if self.snapshot_file.as_os_str().is_empty() {
            return Err(err(
                "control.snapshot_file",
                "must name a file when control.socket is set",
            ));
        }
        // Below 10 ms the poll is a busy loop against control; above a minute the
        // MTA would keep accepting revoked credentials for too long.
        if !(10..=60_000).contains(&self.poll_ms) {
            return Err(err("control.poll_ms", "must be between 10 and 60000"));
        }
        if !(1..=60_000).contains(&self.timeout_ms) {
            return Err(err("control.timeout_ms", "must be between 1 and 60000"));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Wait before answering a failed AUTH with `535`.
    pub failure_delay_ms: u64,
    /// Failures per client IP, and per username, that start a lockout.
    pub max_failures: u32,
    pub failure_window_secs: u64,
    pub lockout_secs: u64,
    /// Threads checking passwords (argon2), off the SMTP cores.
    pub verify_threads: usize,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            failure_delay_ms: 1000,
            max_failures: 5,
            failure_window_secs: 600,
            lockout_secs: 900,
            verify_threads: 1,
        }
    }
}

impl AuthConfig {
    pub fn failure_delay(&self) -> Duration {
        Duration::from_millis(self.failure_delay_ms)
    }

    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if self.failure_delay_ms > 60_000 {
            return Err(err("auth.failure_delay_ms", "must be at most 60000"));
        }
        let positive = [
            ("auth.max_failures", u64::from(self.max_failures)),
            ("auth.failure_window_secs", self.failure_window_secs),
            ("auth.lockout_secs", self.lockout_secs),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(err(key, "must be at least 1"));
            }
        }
        if !(1..=64).contains(&self.verify_threads) {
            return Err(err("auth.verify_threads", "must be between 1 and 64"));
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
        assert_eq!((c.poll_ms, c.timeout_ms), (500, 2000));
        let a = &s.raw.auth;
        assert_eq!((a.failure_delay_ms, a.max_failures), (1000, 5));
        assert_eq!((a.failure_window_secs, a.lockout_secs), (600, 900));
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
