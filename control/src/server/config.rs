//! The control daemon's configuration: TOML, every key defaulted to the dev
//! defaults so that no file is needed, validated once at start. Parsing goes
//! through `serde_path_to_error` so that an error names the key
//! (`session_ttl_secs: invalid type ...`), as in the MTA.
//!
//! docs/configuration.md ("way2mail-control") is the reference for every key.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use std::net::IpAddr;

use crate::notify::NotifySettings;
use crate::settings::{BlocklistSettings, SendingSettings};
use way2mail_daemon::dns::{DnsConfig, DnsSettings};
use way2mail_daemon::metrics::MetricsConfig;
use way2mail_wire::snapshot::TenantLimits;

pub use way2mail_daemon::config::ConfigError;
pub use way2mail_daemon::logging::{LogConfig, LogFormat};

/// `[metrics] listen` when the file does not set it (the MTA's is 9465).
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9466";

fn err(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::new(key, reason)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub socket: PathBuf,
    /// Octal permission bits of the socket file (`"0660"`).
    #[serde(deserialize_with = "octal_mode")]
    pub socket_mode: u32,
    pub store: PathBuf,
    /// The node master key: it wraps the keyring.
    pub key_file: PathBuf,
    /// Master keys being rotated out: a keyring sealed with one of them is
    /// re-wrapped under `key_file` at start.
    pub previous_key_files: Vec<PathBuf>,
    /// The data keys: one per tenant, one for the node's own records.
    pub keyring_file: PathBuf,
    /// Peer uids that may fetch the policy snapshot (the MTA's user).
    pub service_uids: Vec<u32>,
    pub session_ttl_secs: u64,
    pub max_connections: usize,
    /// Connections one uid outside `service_uids` may hold; unset: a quarter of
    /// `max_connections`.
    pub max_connections_per_uid: Option<usize>,
    /// Of `max_connections`, how many only `service_uids` may use; unset: an
    /// eighth, at least one (none when `max_connections` is 1).
    pub reserved_connections: Option<usize>,
    pub idle_timeout_secs: u64,
    pub tenant_defaults: TenantDefaultsConfig,
    pub dns: DnsConfig,
    pub sending: SendingConfig,
    pub notify: NotifyConfig,
    pub retention: super::protection::RetentionConfig,
    pub mta: super::protection::MtaConfig,
    pub backup: super::protection::BackupConfig,
    pub blocklists: BlocklistsConfig,
    pub log: LogConfig,
    /// `[metrics] listen`: the HTTP endpoint (`/metrics`, `/healthz`, `/readyz`);
    /// absent: [`DEFAULT_METRICS_LISTEN`]; `""`: off.
    pub metrics: MetricsConfig,
}

/// `[notify]`: how incident notifications reach the local MTA.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// `IP:PORT` of the local MTA's relay (mx) listener; loopback only.
    pub smtp_server: String,
    /// Envelope sender and `From:` of notifications.
    pub from: String,
    /// EHLO name; empty: this host's name.
    pub helo: String,
    pub timeout_ms: u64,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        let d = NotifySettings::default();
        NotifyConfig {
            smtp_server: d.smtp_server.to_string(),
            from: d.from,
            helo: String::new(),
            timeout_ms: u64::try_from(d.timeout.as_millis()).unwrap_or(10_000),
        }
    }
}

impl NotifyConfig {
    fn validate(&self) -> Result<NotifySettings, ConfigError> {
        let server: std::net::SocketAddr = self.smtp_server.trim().parse().map_err(|_| {
            err(
                "notify.smtp_server",
                format!("{:?} is not IP:PORT (127.0.0.1:25)", self.smtp_server),
            )
        })?;
        if !server.ip().is_loopback() {
            return Err(err(
                "notify.smtp_server",
                format!(
                    "{server} is not a loopback address: notifications go in plain SMTP to the \
                     MTA on this host (127.0.0.1 or [::1]), which delivers them onwards with STARTTLS"
                ),
            ));
        }
        if server.port() == 0 {
            return Err(err("notify.smtp_server", "the port must not be 0"));
        }
        let from = self.from.trim();
        if !crate::notify::is_address(from) {
            return Err(err(
                "notify.from",
                format!(
                    "{:?} is not an email address (security@example.net)",
                    self.from
                ),
            ));
        }
        let helo = self.helo.trim();
        let helo = if helo.is_empty() {
            crate::notify::hostname()
        } else if crate::notify::is_helo_name(helo) {
            helo.to_owned()
        } else {
            return Err(err(
                "notify.helo",
                format!("{:?} is not a host name", self.helo),
            ));
        };
        if self.timeout_ms == 0 || self.timeout_ms > 600_000 {
            return Err(err("notify.timeout_ms", "must be 1 to 600000"));
        }
        Ok(NotifySettings {
            smtp_server: server,
            from: from.to_owned(),
            helo,
            timeout: Duration::from_millis(self.timeout_ms),
        })
    }
}

/// `[blocklists]`: the DNSBL monitor of `[sending] ips`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BlocklistsConfig {
    pub enabled: bool,
    #[serde(deserialize_with = "way2mail_daemon::duration::deserialize_secs")]
    pub check_interval: u64,
    pub zones: Vec<String>,
}

/// The shortest `[blocklists] check_interval`: public DNSBLs throttle (or block)
/// clients that ask too often.
pub const MIN_BLOCKLIST_INTERVAL_SECS: u64 = 60;

impl Default for BlocklistsConfig {
    fn default() -> Self {
        let d = BlocklistSettings::default();
        BlocklistsConfig {
            enabled: d.enabled,
            check_interval: d.check_interval.as_secs(),
            zones: d.zones,
        }
    }
}

impl BlocklistsConfig {
    fn validate(&self) -> Result<BlocklistSettings, ConfigError> {
        if self.check_interval < MIN_BLOCKLIST_INTERVAL_SECS {
            return Err(err(
                "blocklists.check_interval",
                "must be at least 1m: public blocklists refuse clients that ask too often",
            ));
        }
        if self.check_interval > 7 * 86_400 {
            return Err(err("blocklists.check_interval", "must be at most 7d"));
        }
        let mut zones: Vec<String> = Vec::with_capacity(self.zones.len());
        for (i, text) in self.zones.iter().enumerate() {
            let zone = text.trim().to_ascii_lowercase();
            let zone = zone.strip_suffix('.').unwrap_or(&zone).to_string();
            if !crate::blocklist::is_zone_name(&zone) {
                return Err(err(
                    format!("blocklists.zones[{i}]"),
                    format!("{text:?} is not a DNS zone name (zen.spamhaus.org)"),
                ));
            }
            if zones.contains(&zone) {
                return Err(err(
                    format!("blocklists.zones[{i}]"),
                    format!("{zone} is listed twice"),
                ));
            }
            zones.push(zone);
        }
        Ok(BlocklistSettings {
            enabled: self.enabled,
            check_interval: Duration::from_secs(self.check_interval),
            zones,
        })
    }
}

/// `[sending]`: what tenant domains publish to authorise the platform's mail.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SendingConfig {
    /// Public IPv4/IPv6 addresses the MTA sends from (SPF `ip4:`/`ip6:`).
    pub ips: Vec<String>,
    /// A domain whose SPF record lists the platform's senders (SPF `include:`).
    pub spf_include: String,
    /// `rua=` address of the suggested DMARC record, e.g. `mailto:dmarc@example.net`.
    pub dmarc_rua: String,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TenantDefaultsConfig {
    pub messages_per_hour: u32,
    pub messages_per_day: u32,
    pub recipients_per_message: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            socket: "./var/control.sock".into(),
            socket_mode: 0o660,
            store: "./var/control".into(),
            key_file: "./var/control.key".into(),
            previous_key_files: Vec::new(),
            keyring_file: PathBuf::new(),
            service_uids: vec![rustix::process::geteuid().as_raw()],
            session_ttl_secs: 8 * 3600,
            max_connections: 64,
            max_connections_per_uid: None,
            reserved_connections: None,
            idle_timeout_secs: 60,
            tenant_defaults: TenantDefaultsConfig::default(),
            dns: DnsConfig::default(),
            sending: SendingConfig::default(),
            notify: NotifyConfig::default(),
            retention: Default::default(),
            mta: Default::default(),
            backup: Default::default(),
            blocklists: BlocklistsConfig::default(),
            log: LogConfig::default(),
            metrics: MetricsConfig::default(),
        }
    }
}

impl Default for TenantDefaultsConfig {
    fn default() -> Self {
        // One set of defaults for tenant limits: the snapshot type's.
        let limits = TenantLimits::default();
        TenantDefaultsConfig {
            messages_per_hour: limits.messages_per_hour,
            messages_per_day: limits.messages_per_day,
            recipients_per_message: limits.recipients_per_message,
        }
    }
}

/// The checked configuration the daemon runs on.
#[derive(Debug, Clone)]
pub struct Settings {
    pub socket: PathBuf,
    pub socket_mode: u32,
    pub store: crate::store::StoreFiles,
    pub service_uids: Vec<u32>,
    pub session_ttl: Duration,
    pub max_connections: usize,
    pub max_connections_per_uid: usize,
    pub reserved_connections: usize,
    pub idle_timeout: Duration,
    pub tenant_defaults: TenantLimits,
    pub dns: DnsSettings,
    pub sending: SendingSettings,
    pub notify: NotifySettings,
    pub retention: way2mail_wire::protocol::RetentionDefaults,
    pub mta: super::protection::MtaSettings,
    pub backup_key_file: PathBuf,
    pub blocklists: BlocklistSettings,
    pub log: LogConfig,
    /// Where the metrics and health endpoint listens; `None`: off.
    pub metrics: Option<std::net::SocketAddr>,
}

impl Config {
    /// Reads and parses a file; the error names the key and the reason.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        way2mail_daemon::config::load(path)
    }

    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        way2mail_daemon::config::parse(text)
    }

    /// Checks what the types cannot.
    pub fn validate(self) -> Result<Settings, ConfigError> {
        let (max_connections_per_uid, reserved_connections) = self.connection_shares()?;
        if self.socket.as_os_str().is_empty() {
            return Err(err("socket", "must not be empty"));
        }
        if self.socket.file_name().is_none() {
            return Err(err("socket", "must name a file"));
        }
        // sun_path holds 108 bytes including the terminating NUL.
        if self.socket.as_os_str().len() > 107 {
            return Err(err(
                "socket",
                "longer than the 107 bytes a Unix socket path may have",
            ));
        }
        if self.socket_mode & 0o600 != 0o600 {
            return Err(err(
                "socket_mode",
                format!(
                    "{:04o} does not let the daemon's own user read and write the socket",
                    self.socket_mode
                ),
            ));
        }
        if self.socket_mode & 0o002 != 0 {
            return Err(err(
                "socket_mode",
                format!(
                    "{:04o} lets every local user connect; use group access (0660)",
                    self.socket_mode
                ),
            ));
        }
        if self.store.as_os_str().is_empty() {
            return Err(err("store", "must not be empty"));
        }
        if self.key_file.as_os_str().is_empty() {
            return Err(err("key_file", "must not be empty"));
        }
        let keyring_file = if self.keyring_file.as_os_str().is_empty() {
            way2mail_seal::Keyring::beside(&self.store).ok_or_else(|| {
                err(
                    "keyring_file",
                    format!(
                        "cannot be put beside store {}; set it",
                        self.store.display()
                    ),
                )
            })?
        } else {
            self.keyring_file
        };
        if self.session_ttl_secs == 0 {
            return Err(err("session_ttl_secs", "must be at least 1"));
        }
        if self.idle_timeout_secs == 0 {
            return Err(err("idle_timeout_secs", "must be at least 1"));
        }
        let d = self.tenant_defaults;
        for (key, value) in [
            ("tenant_defaults.messages_per_hour", d.messages_per_hour),
            ("tenant_defaults.messages_per_day", d.messages_per_day),
            (
                "tenant_defaults.recipients_per_message",
                d.recipients_per_message,
            ),
        ] {
            if value == 0 {
                return Err(err(key, "must be at least 1"));
            }
        }
        self.log.validate()?;
        let dns = self.dns.validate()?;
        let sending = self.sending.validate()?;
        let notify = self.notify.validate()?;
        let retention = self.retention.validate()?;
        let mta = self.mta.validate()?;
        let backup_key_file = self.backup.validate()?;
        let blocklists = self.blocklists.validate()?;
        let metrics = self.metrics.address(DEFAULT_METRICS_LISTEN)?;
        Ok(Settings {
            socket: self.socket,
            socket_mode: self.socket_mode,
            store: crate::store::StoreFiles {
                dir: self.store,
                key_file: self.key_file,
                keyring_file,
                previous_key_files: self.previous_key_files,
            },
            service_uids: self.service_uids,
            session_ttl: Duration::from_secs(self.session_ttl_secs),
            max_connections: self.max_connections,
            max_connections_per_uid,
            reserved_connections,
            idle_timeout: Duration::from_secs(self.idle_timeout_secs),
            tenant_defaults: TenantLimits {
                messages_per_hour: d.messages_per_hour,
                messages_per_day: d.messages_per_day,
                recipients_per_message: d.recipients_per_message,
            },
            dns,
            sending,
            notify,
            retention,
            mta,
            backup_key_file,
            blocklists,
            log: self.log,
            metrics,
        })
    }
}

impl Config {
    /// `max_connections_per_uid` and `reserved_connections`, defaulted and checked
    /// against `max_connections` (at least 1).
    fn connection_shares(&self) -> Result<(usize, usize), ConfigError> {
        let max = self.max_connections;
        if max == 0 {
            return Err(err("max_connections", "must be at least 1"));
        }
        let per_uid = self.max_connections_per_uid.unwrap_or((max / 4).max(1));
        if !(1..=max).contains(&per_uid) {
            return Err(err(
                "max_connections_per_uid",
                format!("must be between 1 and max_connections ({max})"),
            ));
        }
        // Some must stay for everyone else, or only service uids could ever connect.
        let reserved = self
            .reserved_connections
            .unwrap_or((max / 8).max(1).min(max - 1));
        if reserved >= max {
            return Err(err(
                "reserved_connections",
                format!("must be less than max_connections ({max})"),
            ));
        }
        Ok((per_uid, reserved))
    }
}

impl SendingConfig {
    fn validate(&self) -> Result<SendingSettings, ConfigError> {
        let mut ips = Vec::with_capacity(self.ips.len());
        for (i, text) in self.ips.iter().enumerate() {
            let ip = text.parse::<IpAddr>().map_err(|_| {
                err(
                    format!("sending.ips[{i}]"),
                    format!("{text:?} is not an IPv4 or IPv6 address"),
                )
            })?;
            ips.push(ip);
        }
        let include = self.spf_include.trim().to_ascii_lowercase();
        let include = include.strip_suffix('.').unwrap_or(&include).to_string();
        if !include.is_empty()
            && (include.len() > 253
                || include.split('.').count() < 2
                || include.split('.').any(|label| {
                    label.is_empty()
                        || label.len() > 63
                        || !label
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                }))
        {
            return Err(err(
                "sending.spf_include",
                format!("{:?} is not a domain name", self.spf_include),
            ));
        }
        let rua = self.dmarc_rua.trim();
        let one_mailto = rua.starts_with("mailto:") && rua.contains('@');
        if !rua.is_empty() && (!one_mailto || rua.contains([';', ' ', ','])) {
            return Err(err(
                "sending.dmarc_rua",
                format!("{rua:?} is not one mailto: URI (mailto:dmarc@example.net)"),
            ));
        }
        Ok(SendingSettings {
            ips,
            spf_include: (!include.is_empty()).then_some(include),
            dmarc_rua: (!rua.is_empty()).then(|| rua.to_string()),
        })
    }
}

/// Accepts `"0660"` (the documented form) and a TOML integer such as `0o660`.
fn octal_mode<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
    struct ModeVisitor;

    impl Visitor<'_> for ModeVisitor {
        type Value = u32;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an octal mode such as \"0660\"")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<u32, E> {
            let digits = v.strip_prefix("0o").unwrap_or(v);
            let mode = u32::from_str_radix(digits, 8)
                .map_err(|_| E::custom(format!("{v:?} is not an octal mode such as \"0660\"")))?;
            self.visit_u64(u64::from(mode))
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<u32, E> {
            let v = u64::try_from(v).map_err(|_| E::custom("a mode cannot be negative"))?;
            self.visit_u64(v)
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<u32, E> {
            match u32::try_from(v) {
                Ok(mode) if mode <= 0o777 => Ok(mode),
                _ => Err(E::custom(format!(
                    "{v:o} is not a permission mode (at most 0777)"
                ))),
            }
        }
    }

    deserializer.deserialize_any(ModeVisitor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_the_dev_defaults() {
        let s = Config::parse("").expect("parse").validate().expect("valid");
        assert_eq!(s.socket, PathBuf::from("./var/control.sock"));
        assert_eq!(s.store.keyring_file, PathBuf::from("./var/control.keyring"));
        let s = Config::parse("store = \"/srv/control\"")
            .expect("parse")
            .validate()
            .expect("valid");
        assert_eq!(s.store.keyring_file, PathBuf::from("/srv/control.keyring"));
        assert_eq!(s.socket_mode, 0o660);
        assert_eq!(s.session_ttl, Duration::from_secs(28_800));
        assert_eq!(s.max_connections, 64);
        assert_eq!((s.max_connections_per_uid, s.reserved_connections), (16, 8));
        assert_eq!(s.idle_timeout, Duration::from_secs(60));
        assert_eq!(s.tenant_defaults, TenantLimits::default());
        assert_eq!(s.service_uids, vec![rustix::process::geteuid().as_raw()]);
        assert_eq!(s.notify.smtp_server.to_string(), "127.0.0.1:2525");
        assert_eq!(s.notify.from, "security@localhost");
        assert_eq!(s.notify.timeout, Duration::from_secs(10));
        assert!(crate::notify::is_helo_name(&s.notify.helo));
    }

    #[test]
    fn blocklists_keys() {
        let s = Config::parse("").expect("parse").validate().expect("valid");
        assert!(s.blocklists.enabled);
        assert_eq!(s.blocklists.check_interval, Duration::from_secs(900));
        assert!(s.blocklists.zones.contains(&"zen.spamhaus.org".to_string()));
        let s = Config::parse(
            "[blocklists]\nenabled = false\ncheck_interval = \"1h\"\nzones = [\"BL.Example.NET.\"]",
        )
        .expect("parse")
        .validate()
        .expect("valid");
        assert!(!s.blocklists.enabled);
        assert_eq!(s.blocklists.check_interval, Duration::from_secs(3600));
        assert_eq!(s.blocklists.zones, vec!["bl.example.net".to_string()]);
        for (text, key) in [
            ("check_interval = \"30s\"", "blocklists.check_interval"),
            ("check_interval = \"8d\"", "blocklists.check_interval"),
            ("zones = [\"bad zone\"]", "blocklists.zones[0]"),
            ("zones = [\"a.example\", \"a..b\"]", "blocklists.zones[1]"),
            ("zones = [\"localhost\"]", "blocklists.zones[0]"),
            (
                "zones = [\"a.example\", \"A.example\"]",
                "blocklists.zones[1]",
            ),
        ] {
            let e = Config::parse(&format!("[blocklists]\n{text}"))
                .expect("parses")
                .validate()
                .expect_err(text);
            assert_eq!(e.key, key, "{text}: {e}");
        }
    }

    #[test]
    fn metrics_listen() {
        let s = Config::parse("").expect("parse").validate().expect("valid");
        assert_eq!(s.metrics, Some("127.0.0.1:9466".parse().expect("address")));
        let s = Config::parse("[metrics]\nlisten = \"\"")
            .expect("parse")
            .validate()
            .expect("valid");
        assert_eq!(s.metrics, None);
        let s = Config::parse("[metrics]\nlisten = \"[::1]:19466\"")
            .expect("parse")
            .validate()
            .expect("valid");
        assert_eq!(s.metrics, Some("[::1]:19466".parse().expect("address")));
        for text in ["listen = \"localhost:9466\"", "listen = \"127.0.0.1\""] {
            let e = Config::parse(&format!("[metrics]\n{text}"))
                .expect("parses")
                .validate()
                .expect_err(text);
            assert_eq!(e.key, "metrics.listen", "{text}: {e}");
        }
        for (text, key) in [
            ("[metrics]\nlisten = 9466", "metrics.listen"),
            ("[metrics]\nport = 9466", "metrics.port"),
        ] {
            let e = Config::parse(text).expect_err(text);
            assert_eq!(e.key, key, "{text}: {e}");
        }
    }

    #[test]
    fn notify_keys() {
        let s = Config::parse(
            "[notify]\nsmtp_server = \"[::1]:25\"\nfrom = \"sec@way2mail.example\"\nhelo = \"control.example\"\ntimeout_ms = 500",
        )
        .expect("parse")
        .validate()
        .expect("valid");
        assert_eq!(s.notify.smtp_server.to_string(), "[::1]:25");
        assert_eq!(s.notify.from, "sec@way2mail.example");
        assert_eq!(s.notify.helo, "control.example");
        assert_eq!(s.notify.timeout, Duration::from_millis(500));
        for (text, needle) in [
            ("smtp_server = \"192.0.2.1:25\"", "not a loopback address"),
            ("smtp_server = \"localhost:25\"", "not IP:PORT"),
            ("smtp_server = \"127.0.0.1:0\"", "port"),
            ("from = \"security\"", "not an email address"),
            ("from = \"a@b\\r\\nBcc: c@d\"", "not an email address"),
            ("helo = \"bad name\"", "not a host name"),
            ("timeout_ms = 0", "1 to 600000"),
        ] {
            let e = Config::parse(&format!("[notify]\n{text}"))
                .expect("parses")
                .validate()
                .expect_err(text);
            assert!(e.key.starts_with("notify."), "{text}: {e}");
            assert!(e.to_string().contains(needle), "{text}: {e}");
        }
    }

    #[test]
    fn keys_parse() {
        let text = r#"
            socket = "/run/way2mail/control.sock"
            socket_mode = "0640"
            store = "/var/lib/way2mail/control"
            key_file = "/run/credentials/way2mail-control.service/control.key"
            service_uids = [998, 999]
            session_ttl_secs = 3600
            max_connections = 8
            idle_timeout_secs = 5
            [tenant_defaults]
            messages_per_hour = 10
            [log]
            format = "json"
            level = "debug"
        "#;
        let s = Config::parse(text)
            .expect("parse")
            .validate()
            .expect("valid");
        assert_eq!(s.socket_mode, 0o640);
        assert_eq!(s.service_uids, vec![998, 999]);
        assert_eq!(s.tenant_defaults.messages_per_hour, 10);
        assert_eq!(
            s.tenant_defaults.messages_per_day,
            TenantLimits::default().messages_per_day
        );
        assert_eq!(s.log.format, LogFormat::Json);
        // Shares follow max_connections unless set.
        assert_eq!((s.max_connections_per_uid, s.reserved_connections), (2, 1));
        let s = Config::parse("max_connections = 1")
            .expect("parse")
            .validate()
            .expect("valid");
        assert_eq!((s.max_connections_per_uid, s.reserved_connections), (1, 0));
        let s = Config::parse("max_connections_per_uid = 5\nreserved_connections = 0")
            .expect("parse")
            .validate()
            .expect("valid");
        assert_eq!((s.max_connections_per_uid, s.reserved_connections), (5, 0));
        let s = Config::parse("socket_mode = 0o600").expect("parse");
        assert_eq!(s.socket_mode, 0o600);
    }

    #[test]
    fn errors_name_the_key() {
        for (text, key) in [
            ("sockett = \"x\"", "sockett"),
            ("socket_mode = \"rw\"", "socket_mode"),
            ("socket_mode = \"1777\"", "socket_mode"),
            ("session_ttl_secs = \"long\"", "session_ttl_secs"),
            (
                "[tenant_defaults]\nper_minute = 3",
                "tenant_defaults.per_minute",
            ),
            (
                "[tenant_defaults]\nmessages_per_day = -1",
                "tenant_defaults.messages_per_day",
            ),
            ("[log]\nformat = \"xml\"", "log.format"),
        ] {
            let e = Config::parse(text).expect_err(text);
            assert_eq!(e.key, key, "{text}: {e}");
        }
        for (text, key) in [
            ("socket_mode = \"0666\"", "socket_mode"),
            ("socket_mode = \"0060\"", "socket_mode"),
            ("max_connections = 0", "max_connections"),
            ("max_connections_per_uid = 0", "max_connections_per_uid"),
            (
                "max_connections = 4\nmax_connections_per_uid = 5",
                "max_connections_per_uid",
            ),
            (
                "max_connections = 4\nreserved_connections = 4",
                "reserved_connections",
            ),
            ("idle_timeout_secs = 0", "idle_timeout_secs"),
            (
                "[tenant_defaults]\nrecipients_per_message = 0",
                "tenant_defaults.recipients_per_message",
            ),
            ("socket = \"\"", "socket"),
        ] {
            let e = Config::parse(text)
                .expect("parses")
                .validate()
                .expect_err(text);
            assert_eq!(e.key, key, "{text}: {e}");
        }
    }
}
