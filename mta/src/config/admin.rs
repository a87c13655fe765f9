//! `[admin]`: the admin socket through which control (and only the uids in
//! `allowed_uids`) reaches the spool: tenant inventory, export and erasure, the
//! retention sweep on demand, backup dumps. An empty `socket` turns it off.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use way2mail_daemon::config::secs;
use way2mail_daemon::ConfigError;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// The admin socket's path; empty turns it off.
    pub socket: PathBuf,
    /// Octal permission bits of the socket file (`"0660"`).
    pub socket_mode: String,
    /// Peer uids that may connect (control's user).
    pub allowed_uids: Vec<u32>,
    /// Whether root is served too (`way2mail-mta spool …` run as root on the host).
    pub allow_root: bool,
    pub max_connections: usize,
    #[serde(rename = "idle_timeout_secs", deserialize_with = "secs")]
    pub idle_timeout: Duration,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            socket: "./var/mta.sock".into(),
            socket_mode: "0660".into(),
            allowed_uids: vec![rustix::process::geteuid().as_raw()],
            allow_root: true,
            max_connections: 8,
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// `[admin]`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminSettings {
    pub socket: PathBuf,
    pub socket_mode: u32,
    /// `allowed_uids`, and root when `allow_root`.
    pub allowed_uids: Vec<u32>,
    pub max_connections: usize,
    pub idle_timeout: Duration,
}

impl AdminConfig {
    /// The checked settings; `None` when the socket is off.
    pub(super) fn check(&self) -> Result<Option<AdminSettings>, ConfigError> {
        if self.socket.as_os_str().is_empty() {
            return Ok(None);
        }
        if self.socket.file_name().is_none() {
            return Err(ConfigError::new("admin.socket", "must name a file"));
        }
        // sun_path holds 108 bytes including the terminating NUL.
        if self.socket.as_os_str().len() > 107 {
            return Err(ConfigError::new(
                "admin.socket",
                "longer than the 107 bytes a Unix socket path may have",
            ));
        }
        let socket_mode = octal_mode(&self.socket_mode)?;
        if socket_mode & 0o600 != 0o600 {
            return Err(ConfigError::new(
                "admin.socket_mode",
                format!("{socket_mode:04o} does not let the daemon's own user read and write the socket"),
            ));
        }
        if socket_mode & 0o007 != 0 {
            return Err(ConfigError::new(
                "admin.socket_mode",
                format!("{socket_mode:04o} gives other users access; use group access (0660)"),
            ));
        }
        if self.allowed_uids.is_empty() {
            return Err(ConfigError::new(
                "admin.allowed_uids",
                "must name at least one uid (set admin.socket = \"\" to turn the socket off)",
            ));
        }
        if !(1..=256).contains(&self.max_connections) {
            return Err(ConfigError::new(
                "admin.max_connections",
                "must be between 1 and 256",
            ));
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&self.idle_timeout) {
            return Err(ConfigError::new(
                "admin.idle_timeout_secs",
                "must be between 1 and 3600",
            ));
        }
        let mut allowed_uids = self.allowed_uids.clone();
        if self.allow_root && !allowed_uids.contains(&0) {
            allowed_uids.push(0);
        }
        Ok(Some(AdminSettings {
            socket: self.socket.clone(),
            socket_mode,
            allowed_uids,
            max_connections: self.max_connections,
            idle_timeout: self.idle_timeout,
        }))
    }
}

/// `"0660"` (or `"0o660"`, `"660"`) into permission bits, at most 0777.
fn octal_mode(text: &str) -> Result<u32, ConfigError> {
    let digits = text.strip_prefix("0o").unwrap_or(text);
    match u32::from_str_radix(digits, 8) {
        Ok(mode) if mode <= 0o777 && !digits.is_empty() => Ok(mode),
        _ => Err(ConfigError::new(
            "admin.socket_mode",
            format!("{text:?} is not an octal permission mode such as \"0660\""),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::super::Config;

    #[test]
    fn defaults_are_the_documented_ones() {
        let s = Config::parse("").unwrap().validate().unwrap();
        let a = s.admin.expect("on by default");
        assert_eq!(a.socket.to_str(), Some("./var/mta.sock"));
        assert_eq!(a.socket_mode, 0o660);
        let me = rustix::process::geteuid().as_raw();
        let expected = if me == 0 { vec![0] } else { vec![me, 0] };
        assert_eq!(a.allowed_uids, expected, "the daemon's uid, and root");
        assert_eq!((a.max_connections, a.idle_timeout.as_secs()), (8, 60));
    }

    #[test]
    fn keys_are_parsed() {
        let s = Config::parse(
            "[admin]\nsocket = \"/run/x/mta.sock\"\nsocket_mode = \"0600\"\n\
             allowed_uids = [0, 998]\nmax_connections = 2\nidle_timeout_secs = 5\n",
        )
        .unwrap()
        .validate()
        .unwrap();
        let a = s.admin.expect("on");
        assert_eq!(a.socket_mode, 0o600);
        assert_eq!(a.allowed_uids, vec![0, 998]);
        assert_eq!((a.max_connections, a.idle_timeout.as_secs()), (2, 5));
        let s = Config::parse("[admin]\nallowed_uids = [998]\nallow_root = false\n")
            .unwrap()
            .validate()
            .unwrap();
        assert_eq!(s.admin.expect("on").allowed_uids, vec![998]);
        let s = Config::parse("[admin]\nallowed_uids = [998]\n")
            .unwrap()
            .validate()
            .unwrap();
        assert_eq!(s.admin.expect("on").allowed_uids, vec![998, 0]);
    }

    #[test]
    fn an_empty_socket_turns_the_admin_socket_off() {
        let s = Config::parse("[admin]\nsocket = \"\"\nallowed_uids = []\n")
            .unwrap()
            .validate()
            .unwrap();
        assert!(s.admin.is_none());
    }

    #[test]
    fn bad_values_name_their_key() {
        let long = format!("[admin]\nsocket = \"/{}\"\n", "s".repeat(120));
        for (text, key) in [
            ("[admin]\nsocket = \"/\"\n", "admin.socket"),
            (long.as_str(), "admin.socket"),
            ("[admin]\nsocket_mode = \"rw\"\n", "admin.socket_mode"),
            ("[admin]\nsocket_mode = \"\"\n", "admin.socket_mode"),
            ("[admin]\nsocket_mode = \"1777\"\n", "admin.socket_mode"),
            ("[admin]\nsocket_mode = \"0460\"\n", "admin.socket_mode"),
            ("[admin]\nsocket_mode = \"0666\"\n", "admin.socket_mode"),
            ("[admin]\nallowed_uids = []\n", "admin.allowed_uids"),
            ("[admin]\nmax_connections = 0\n", "admin.max_connections"),
            (
                "[admin]\nidle_timeout_secs = 0\n",
                "admin.idle_timeout_secs",
            ),
        ] {
            let e = Config::parse(text).unwrap().validate().unwrap_err();
            assert_eq!(e.key, key, "{text}: {e}");
        }
        let e = Config::parse("[admin]\nallowed_uids = [-1]\n").unwrap_err();
        assert!(e.key.starts_with("admin.allowed_uids"), "{e}");
    }
}
