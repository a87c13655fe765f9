//! The daemon's configuration: TOML, every key with a documented default (the dev
//! defaults), validated once at start. Parsing goes through `way2mail_daemon::config` so
//! that an error names the key (`limits.max_recipients: invalid type ...`), and
//! [`Config::validate`] checks what types cannot (addresses, CIDRs, ranges).
//! Timeouts and delays are read into `Duration`s as the file is parsed (the keys
//! keep their `_secs`/`_ms` names); nothing past the parse converts them.
//!
//! ```text
//!   mod.rs        [runtime] [[listener]] [relay] [tls] [spool] [limits],
//!                 Config::validate → Settings (what the daemon runs on)
//!   timeouts.rs   [timeouts]: the deadlines SMTP clients work against
//!   delivery.rs   [delivery] [shaping] [[route]] [[egress]]
//!   control.rs    [control] [auth]
//!   authn.rs      [dkim] [inbound]
//!   admin.rs      [admin]
//!   retention.rs  [retention]
//!   reload.rs     what a reload applies live and what waits for a restart
//! ```
//!
//! docs/configuration.md is the reference for every key; keep the two in step.

pub mod admin;
pub mod authn;
pub mod control;
pub mod delivery;
pub mod feedback;
pub mod handover;
pub mod reload;
pub mod retention;
pub mod scan;
pub mod timeouts;
pub mod webhooks;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use std::collections::HashMap;

use way2mail_mta::outbound::route::Routes;
use way2mail_smtp::client::Credentials;
use way2mail_smtp::relay::RelayPolicy;

use self::admin::{AdminConfig, AdminSettings};
use self::authn::{DkimConfig, InboundConfig};
use self::control::{AuthConfig, ControlConfig};
use self::delivery::{DeliveryConfig, Egress, EgressConfig, RouteConfig, ShapingConfig};
use self::feedback::{BouncesConfig, FeedbackConfig, ReputationConfig};
use self::retention::RetentionConfig;
use self::scan::ScanConfig;
use self::timeouts::TimeoutsConfig;
use self::webhooks::WebhooksConfig;
use way2mail_daemon::config::millis;
use way2mail_daemon::dns::{DnsConfig, DnsSettings};
use way2mail_smtp::server::{BareLineEndings, Limits, Role};

pub use way2mail_daemon::config::ConfigError;
pub use way2mail_daemon::logging::LogConfig;
pub use way2mail_daemon::metrics::MetricsConfig;

/// `[metrics] listen` when the file does not say.
pub const METRICS_LISTEN: &str = "127.0.0.1:9465";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub hostname: String,
    pub runtime: RuntimeConfig,
    #[serde(rename = "listener")]
    pub listeners: Vec<ListenerConfig>,
    pub relay: RelayConfig,
    pub tls: TlsConfig,
    pub spool: SpoolConfig,
    pub limits: LimitsConfig,
    pub timeouts: TimeoutsConfig,
    pub log: LogConfig,
    pub delivery: DeliveryConfig,
    pub dns: DnsConfig,
    pub shaping: ShapingConfig,
    #[serde(rename = "route")]
    pub routes: Vec<RouteConfig>,
    pub egress: Vec<EgressConfig>,
    pub control: ControlConfig,
    pub auth: AuthConfig,
    pub dkim: DkimConfig,
    pub inbound: InboundConfig,
    pub admin: AdminConfig,
    pub retention: RetentionConfig,
    pub metrics: MetricsConfig,
    pub api: ApiConfig,
    pub webhooks: WebhooksConfig,
    pub bounces: BouncesConfig,
    pub feedback: FeedbackConfig,
    pub reputation: ReputationConfig,
    pub scan: ScanConfig,
    pub handover: self::handover::HandoverConfig,
}

/// `[api]`: the HTTPS API (docs/api.md).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// The API's address as recipients reach it, for one-click unsubscribe links
    /// (`https://mx1.example.com`, or with a port). Empty: `https://<hostname>`.
    pub public_url: String,
}

impl ApiConfig {
    /// The base of the links the API hands out, without a trailing slash.
    pub fn base_url(&self, hostname: &str) -> String {
        if self.public_url.is_empty() {
            format!("https://{hostname}")
        } else {
            self.public_url.trim_end_matches('/').to_string()
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IoChoice {
    Auto,
    IoUring,
    Epoll,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    pub threads: usize,
    pub io: IoChoice,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoleConfig {
    Mx,
    Submission,
    Submissions,
    /// The HTTPS API (TLS only).
    Api,
}

impl From<RoleConfig> for Service {
    fn from(r: RoleConfig) -> Service {
        match r {
            RoleConfig::Mx => Service::Smtp(Role::Mx),
            RoleConfig::Submission => Service::Smtp(Role::Submission),
            RoleConfig::Submissions => Service::Smtp(Role::Submissions),
            RoleConfig::Api => Service::Api,
        }
    }
}

/// What a listener serves: SMTP in one of its roles, or the HTTPS API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Smtp(Role),
    Api,
}

impl Service {
    /// The role's name, as configured.
    pub fn as_str(self) -> &'static str {
        match self {
            Service::Smtp(role) => role.as_str(),
            Service::Api => "api",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    pub address: String,
    pub role: RoleConfig,
    /// Load balancers (networks) whose connections start with a PROXY protocol
    /// v2 header naming the client; the client's address then stands for the
    /// connection's. Empty: no header is read, and one sent is refused.
    #[serde(default)]
    pub proxy_from: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelayConfig {
    pub domains: Vec<String>,
    pub trusted_networks: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub self_signed: bool,
}

/// The smallest `[spool] memory_budget`: below it, almost every message would be
/// larger than the budget and delivery would go one message at a time.
pub const MIN_MEMORY_BUDGET: u64 = 1024 * 1024;

/// The smallest `[spool] cache_size`.
pub const MIN_CACHE_SIZE: u64 = 4 * 1024 * 1024;

/// The smallest `[spool] message_buffer`.
pub const MIN_MESSAGE_BUFFER: u64 = 64 * 1024;

/// What errors and log lines call the spool's master key file.
pub const SPOOL_KEY: &str = "spool key (`[spool] key_file`)";
/// What errors and log lines call a spool master key being rotated out.
pub const PREVIOUS_SPOOL_KEY: &str = "previous spool key (`[spool] previous_key_files`)";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpoolConfig {
    pub path: PathBuf,
    /// The node master key, which wraps the keyring.
    pub key_file: PathBuf,
    /// Master keys being rotated out: a keyring sealed with one of them is
    /// re-wrapped under `key_file` at start.
    pub previous_key_files: Vec<PathBuf>,
    /// The data keys (one per tenant, one for the node's own mail). Empty (the
    /// default): beside the spool directory, `<path>.keyring`; `validate` fills it in.
    pub keyring_file: PathBuf,
    pub min_free_space: u64,
    /// The most message body bytes delivery holds in memory at once (bodies of the
    /// messages out for delivery): the scheduler leases only while under it.
    pub memory_budget: u64,
    /// Message content a session holds in memory while receiving; past it, what
    /// arrived is written to the spool as it comes and read back at the end of data.
    pub message_buffer: u64,
    /// The most memory the end-of-data work on messages larger than
    /// `message_buffer` (authentication checks, signing, spooling) holds at once:
    /// such messages wait for their share, so many large messages arriving together
    /// queue up here instead of all being in memory.
    pub ingest_budget: u64,
    /// sled's page cache, in bytes.
    pub cache_size: u64,
    /// Opening the spool (sled's own recovery, then the check of every record) is
    /// given up, and the daemon exits, after this long without progress.
    #[serde(
        rename = "open_timeout_secs",
        deserialize_with = "way2mail_daemon::config::secs"
    )]
    pub open_timeout: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    pub max_message_size: u64,
    pub max_recipients: usize,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub max_errors: u32,
    pub tarpit_after_errors: u32,
    #[serde(rename = "tarpit_delay_ms", deserialize_with = "millis")]
    pub tarpit_delay: Duration,
    pub max_received_headers: usize,
    /// A bare CR or LF in message content: stored as CRLF, or the message refused.
    pub bare_line_endings: BareLineEndings,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            hostname: system_hostname(),
            runtime: RuntimeConfig::default(),
            listeners: vec![
                listener("127.0.0.1:2525", RoleConfig::Mx),
                listener("127.0.0.1:2587", RoleConfig::Submission),
                listener("127.0.0.1:2465", RoleConfig::Submissions),
                listener("127.0.0.1:2443", RoleConfig::Api),
            ],
            relay: RelayConfig::default(),
            tls: TlsConfig::default(),
            spool: SpoolConfig::default(),
            limits: LimitsConfig::default(),
            timeouts: TimeoutsConfig::default(),
            log: LogConfig::default(),
            delivery: DeliveryConfig::default(),
            dns: DnsConfig::default(),
            shaping: ShapingConfig::default(),
            routes: Vec::new(),
            egress: Vec::new(),
            control: ControlConfig::default(),
            auth: AuthConfig::default(),
            dkim: DkimConfig::default(),
            inbound: InboundConfig::default(),
            admin: AdminConfig::default(),
            retention: RetentionConfig::default(),
            metrics: MetricsConfig::default(),
            api: ApiConfig::default(),
            webhooks: WebhooksConfig::default(),
            bounces: BouncesConfig::default(),
            feedback: FeedbackConfig::default(),
            reputation: ReputationConfig::default(),
            scan: ScanConfig::default(),
            handover: self::handover::HandoverConfig::default(),
        }
    }
}

fn listener(address: &str, role: RoleConfig) -> ListenerConfig {
    ListenerConfig {
        address: address.to_string(),
        role,
        proxy_from: Vec::new(),
    }
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            threads: 0,
            io: IoChoice::Auto,
        }
    }
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            domains: Vec::new(),
            trusted_networks: vec!["127.0.0.0/8".into(), "::1/128".into()],
        }
    }
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            cert: "./var/tls/cert.pem".into(),
            key: "./var/tls/key.pem".into(),
            self_signed: true,
        }
    }
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig {
            path: "./var/spool".into(),
            key_file: "./var/spool.key".into(),
            previous_key_files: Vec::new(),
            keyring_file: PathBuf::new(),
            min_free_space: 100 * 1024 * 1024,
            memory_budget: 256 * 1024 * 1024,
            message_buffer: 128 * 1024,
            ingest_budget: 32 * 1024 * 1024,
            cache_size: way2mail_queue::DEFAULT_CACHE_BYTES,
            open_timeout: Duration::from_secs(20),
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        // The protocol's limits have one set of defaults: the library's.
        let protocol = Limits::default();
        LimitsConfig {
            max_message_size: protocol.max_message_size,
            max_recipients: protocol.max_recipients,
            max_connections: 4096,
            max_connections_per_ip: 64,
            max_errors: protocol.max_errors,
            tarpit_after_errors: protocol.tarpit_after_errors,
            tarpit_delay: protocol.tarpit_delay,
            max_received_headers: protocol.max_received_headers,
            bare_line_endings: protocol.bare_line_endings,
        }
    }
}

/// The name of this host, for the greeting and trace headers.
fn system_hostname() -> String {
    let name = rustix::system::uname();
    let name = name.nodename().to_string_lossy().into_owned();
    if name.is_empty() {
        "localhost".to_string()
    } else {
        name
    }
}

/// A listener after validation.
#[derive(Debug, Clone)]
pub struct Listener {
    pub address: SocketAddr,
    pub service: Service,
    /// `proxy_from`, checked; empty when off.
    pub proxy_from: Arc<way2mail_smtp::Networks>,
}

/// The checked configuration the daemon runs on.
#[derive(Debug, Clone)]
pub struct Settings {
    pub raw: Config,
    pub listeners: Vec<Listener>,
    /// `[limits]` as every session's protocol applies them.
    pub limits: Limits,
    pub relay: Arc<RelayPolicy>,
    pub threads: usize,
    pub egress: Egress,
    /// `[dns]`, checked: every lookup (MX, SPF/DKIM/DMARC/ARC) goes there.
    pub dns: DnsSettings,
    pub routes: Arc<Routes>,
    /// Smart-host credentials by route key (see `delivery::route_key`).
    pub credentials: Arc<HashMap<String, Credentials>>,
    /// `[admin]`, checked; `None` when the admin socket is off.
    pub admin: Option<AdminSettings>,
    /// `[metrics] listen`, checked; `None` when off.
    pub metrics: Option<SocketAddr>,
    /// The bounce classification rules: `[bounces] rules_file`'s, then the built-in.
    pub bounces: Arc<crate::bounces::Rules>,
    /// The `mx` listener's bounce and complaint addresses (`[bounces] domain`,
    /// `[feedback] address`); `None` when neither is set.
    pub intake: Option<Arc<crate::feedback_loop::Addresses>>,
}

impl Config {
    /// Reads and parses a file; the error names the key and the reason.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        way2mail_daemon::config::load(path)
    }

    #[cfg(test)]
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        way2mail_daemon::config::parse(text)
    }

    /// Checks what the types cannot and resolves the derived settings.
    pub fn validate(mut self) -> Result<Settings, ConfigError> {
        self.spool.resolve_keyring()?;
        self.webhooks.validate()?;
        self.scan.validate()?;
        self.handover.check()?;
        let url = &self.api.public_url;
        let host = url.strip_prefix("https://").unwrap_or("");
        if !url.is_empty()
            && (host.is_empty()
                || host.contains(['?', '#', '@'])
                || host.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            return Err(ConfigError::new(
                "api.public_url",
                format!("'{url}' is not an https:// URL (such as https://mx1.example.com)"),
            ));
        }
        if self.spool.open_timeout.is_zero() {
            return Err(ConfigError::new(
                "spool.open_timeout_secs",
                "must be at least 1",
            ));
        }
        if self.spool.memory_budget < MIN_MEMORY_BUDGET {
            return Err(ConfigError::new(
                "spool.memory_budget",
                format!("must be at least {MIN_MEMORY_BUDGET} (1 MiB)"),
            ));
        }
        if self.spool.cache_size < MIN_CACHE_SIZE {
            return Err(ConfigError::new(
                "spool.cache_size",
                format!("must be at least {MIN_CACHE_SIZE} (4 MiB)"),
            ));
        }
        if self.spool.ingest_budget < MIN_MEMORY_BUDGET {
            return Err(ConfigError::new(
                "spool.ingest_budget",
                format!("must be at least {MIN_MEMORY_BUDGET} (1 MiB)"),
            ));
        }
        if !(MIN_MESSAGE_BUFFER..=self.spool.ingest_budget).contains(&self.spool.message_buffer) {
            return Err(ConfigError::new(
                "spool.message_buffer",
                format!(
                    "must be at least {MIN_MESSAGE_BUFFER} (64 KiB) and at most spool.ingest_budget"
                ),
            ));
        }
        validate_hostname(&self.hostname)?;
        let listeners = self.check_listeners()?;
        let relay =
            RelayPolicy::new(&self.relay.domains, &self.relay.trusted_networks).map_err(|e| {
                let key = match e {
                    way2mail_smtp::RelayError::InvalidDomain { .. } => "relay.domains",
                    _ => "relay.trusted_networks",
                };
                ConfigError::new(key, e.to_string())
            })?;
        self.check_limits()?;
        self.timeouts.check()?;
        if self.runtime.threads > 1024 {
            return Err(ConfigError::new(
                "runtime.threads",
                "must be between 0 and 1024",
            ));
        }
        self.log.validate()?;
        let threads = match self.runtime.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        self.delivery.check()?;
        self.shaping.check()?;
        self.control.check()?;
        self.auth.check()?;
        self.inbound.check()?;
        self.retention.check()?;
        self.bounces.check()?;
        self.feedback.check()?;
        self.reputation.check()?;
        let intake = crate::feedback_loop::Addresses::new(
            self.bounces.verp_domain(),
            self.feedback.report_address(),
            self.feedback.dmarc_address(),
        )
        .map(Arc::new);
        let admin = self.admin.check()?;
        let dns = self.dns.validate()?;
        let egress = delivery::check_egress(&self.egress, &self.hostname)?;
        let (routes, credentials) = delivery::check_routes(&self.routes)?;
        let metrics = self.metrics.address(METRICS_LISTEN)?;
        let bounces = if self.bounces.rules_file.as_os_str().is_empty() {
            crate::bounces::Rules::built_in()
        } else {
            crate::bounces::Rules::with_file(&self.bounces.rules_file)
                .map_err(|e| ConfigError::new("bounces.rules_file", e))?
        };
        Ok(Settings {
            bounces: Arc::new(bounces),
            intake,
            metrics,
            limits: self.protocol_limits(),
            raw: self,
            listeners,
            relay: Arc::new(relay),
            threads,
            egress,
            dns,
            routes: Arc::new(routes),
            credentials: Arc::new(credentials),
            admin,
        })
    }

    fn check_listeners(&self) -> Result<Vec<Listener>, ConfigError> {
        if self.listeners.is_empty() {
            return Err(ConfigError::new(
                "listener",
                "at least one listener is required",
            ));
        }
        let mut out: Vec<Listener> = Vec::new();
        for (i, l) in self.listeners.iter().enumerate() {
            let address: SocketAddr = l.address.parse().map_err(|_| {
                ConfigError::new(
                    format!("listener[{i}].address"),
                    format!("'{}' is not an IP:PORT socket address", l.address),
                )
            })?;
            if out.iter().any(|o| o.address == address) {
                return Err(ConfigError::new(
                    format!("listener[{i}].address"),
                    format!("{address} is listed twice"),
                ));
            }
            let proxy_from = way2mail_smtp::Networks::parse(&l.proxy_from).map_err(|e| {
                ConfigError::new(format!("listener[{i}].proxy_from"), e.to_string())
            })?;
            out.push(Listener {
                address,
                service: l.role.into(),
                proxy_from: Arc::new(proxy_from),
            });
        }
        Ok(out)
    }

    fn check_limits(&self) -> Result<(), ConfigError> {
        let l = &self.limits;
        let positive = [
            ("limits.max_message_size", l.max_message_size),
            ("limits.max_recipients", l.max_recipients as u64),
            ("limits.max_connections", l.max_connections as u64),
            (
                "limits.max_connections_per_ip",
                l.max_connections_per_ip as u64,
            ),
            ("limits.max_errors", u64::from(l.max_errors)),
            ("limits.max_received_headers", l.max_received_headers as u64),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(ConfigError::new(key, "must be at least 1"));
            }
        }
        if l.max_recipients < 100 {
            return Err(ConfigError::new(
                "limits.max_recipients",
                "RFC 5321 §4.5.3.1.8 requires accepting at least 100 recipients",
            ));
        }
        Ok(())
    }
}

fn validate_hostname(name: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name
            .split('.')
            .all(|label| !label.is_empty() && label.len() <= 63)
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(ConfigError::new(
            "hostname",
            format!("'{name}' is not a valid host name"),
        ))
    }
}

impl SpoolConfig {
    /// Gives an empty `keyring_file` its default, beside the spool directory.
    pub fn resolve_keyring(&mut self) -> Result<(), ConfigError> {
        if self.keyring_file.as_os_str().is_empty() {
            self.keyring_file = way2mail_seal::Keyring::beside(&self.path).ok_or_else(|| {
                ConfigError::new(
                    "spool.keyring_file",
                    format!(
                        "cannot be put beside spool.path {}; set it",
                        self.path.display()
                    ),
                )
            })?;
        }
        Ok(())
    }

    /// Opens the keyring (creating it, and the master key, on first start), re-wrapping
    /// it when it is still sealed with one of `previous_key_files`.
    pub fn open_keyring(&self) -> anyhow::Result<way2mail_seal::Keyring> {
        use anyhow::Context as _;
        use way2mail_seal::{Keyring, MasterKey};
        // The key's errors name it and its file.
        let master = MasterKey::load_or_create_named(&self.key_file, SPOOL_KEY)?;
        let previous = self
            .previous_key_files
            .iter()
            .map(|p| MasterKey::load_or_create_named(p, PREVIOUS_SPOOL_KEY))
            .collect::<Result<Vec<_>, _>>()?;
        Keyring::open_bound(&self.path, &self.keyring_file, master, previous)
            .with_context(|| format!("spool.keyring_file {}", self.keyring_file.display()))
    }
}

impl Config {
    /// `[limits]` in the protocol's terms.
    fn protocol_limits(&self) -> Limits {
        let l = &self.limits;
        Limits {
            max_message_size: l.max_message_size,
            max_recipients: l.max_recipients,
            max_errors: l.max_errors,
            tarpit_after_errors: l.tarpit_after_errors,
            tarpit_delay: l.tarpit_delay,
            max_received_headers: l.max_received_headers,
            bare_line_endings: l.bare_line_endings,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_the_dev_defaults() {
        let s = Config::parse("").unwrap().validate().unwrap();
        assert_eq!(s.listeners.len(), 4);
        assert_eq!(s.listeners[3].service, Service::Api);
        assert_eq!(s.listeners[0].address.port(), 2525);
        assert_eq!(s.raw.limits.max_recipients, 1000);
        // The documented [limits] defaults.
        let l = &s.raw.limits;
        assert_eq!(l.max_message_size, 26_214_400);
        assert_eq!((l.max_errors, l.tarpit_after_errors), (10, 3));
        assert_eq!(
            (l.tarpit_delay, l.max_received_headers),
            (Duration::from_millis(1000), 30)
        );
        assert_eq!(s.limits, Limits::default());
        // The documented [timeouts] defaults.
        let t = &s.raw.timeouts;
        assert_eq!(
            [t.command, t.data, t.tls_handshake, t.shutdown_grace].map(|d| d.as_secs()),
            [300, 180, 10, 10]
        );
        assert_eq!(
            s.raw.spool.keyring_file,
            PathBuf::from("./var/spool.keyring")
        );
    }

    #[test]
    fn the_keyring_follows_the_spool_unless_set() {
        let s = Config::parse("[spool]\npath = \"/srv/mail/spool/\"\n")
            .unwrap()
            .validate()
            .unwrap();
        assert_eq!(
            s.raw.spool.keyring_file,
            PathBuf::from("/srv/mail/spool.keyring")
        );
        let s = Config::parse("[spool]\npath = \"/srv/q\"\nkeyring_file = \"/k/ring\"\n")
            .unwrap()
            .validate()
            .unwrap();
        assert_eq!(s.raw.spool.keyring_file, PathBuf::from("/k/ring"));
        let e = Config::parse("[spool]\npath = \"/\"\n")
            .unwrap()
            .validate()
            .unwrap_err();
        assert_eq!(e.key, "spool.keyring_file");
    }

    #[test]
    fn bare_line_endings_normalize_by_default_or_reject() {
        let s = Config::parse("").unwrap().validate().unwrap();
        assert_eq!(s.limits.bare_line_endings, BareLineEndings::Normalize);
        let s = Config::parse("[limits]\nbare_line_endings = \"reject\"\n")
            .unwrap()
            .validate()
            .unwrap();
        assert_eq!(s.limits.bare_line_endings, BareLineEndings::Reject);
        let e = Config::parse("[limits]\nbare_line_endings = \"keep\"\n").unwrap_err();
        assert_eq!(e.key, "limits.bare_line_endings");
        assert!(e.reason.contains("normalize"), "{e}");
    }

    #[test]
    fn spool_open_timeout_defaults_to_20_s_and_is_never_zero() {
        let s = Config::parse("").unwrap().validate().unwrap();
        assert_eq!(s.raw.spool.open_timeout, Duration::from_secs(20));
        let s = Config::parse("[spool]\nopen_timeout_secs = 90\n")
            .unwrap()
            .validate()
            .unwrap();
        assert_eq!(s.raw.spool.open_timeout, Duration::from_secs(90));
        let e = Config::parse("[spool]\nopen_timeout_secs = 0\n")
            .unwrap()
            .validate()
            .unwrap_err();
        assert_eq!(e.key, "spool.open_timeout_secs");
    }

    #[test]
    fn spool_ingest_keys_have_defaults_and_bounds() {
        let s = Config::parse("").expect("parse").validate().expect("valid");
        assert_eq!(s.raw.spool.message_buffer, 131_072);
        assert_eq!(s.raw.spool.ingest_budget, 33_554_432);
        assert_eq!(s.raw.spool.cache_size, 67_108_864);
        for (toml, key) in [
            ("[spool]\ningest_budget = 1000\n", "spool.ingest_budget"),
            ("[spool]\ncache_size = 1000\n", "spool.cache_size"),
            ("[spool]\nmessage_buffer = 1000\n", "spool.message_buffer"),
            (
                "[spool]\ningest_budget = 1048576\nmessage_buffer = 2097152\n",
                "spool.message_buffer",
            ),
        ] {
            let e = Config::parse(toml)
                .expect("parse")
                .validate()
                .expect_err(toml);
            assert_eq!(e.key, key);
        }
    }

    #[test]
    fn spool_memory_budget_defaults_to_256_mib_and_is_at_least_1_mib() {
        let s = Config::parse("").unwrap().validate().unwrap();
        assert_eq!(s.raw.spool.memory_budget, 268_435_456);
        let s = Config::parse("[spool]\nmemory_budget = 1048576\n")
            .unwrap()
            .validate()
            .unwrap();
        assert_eq!(s.raw.spool.memory_budget, 1_048_576);
        let e = Config::parse("[spool]\nmemory_budget = 1048575\n")
            .unwrap()
            .validate()
            .unwrap_err();
        assert_eq!(e.key, "spool.memory_budget");
        let e = Config::parse("[spool]\nmemory_budget = \"64M\"\n").unwrap_err();
        assert_eq!(e.key, "spool.memory_budget");
    }

    #[test]
    fn wrong_type_names_the_key() {
        let e = Config::parse("[limits]\nmax_recipients = \"many\"\n").unwrap_err();
        assert_eq!(e.key, "limits.max_recipients");
    }

    #[test]
    fn unknown_key_names_its_table() {
        let e = Config::parse("[spool]\npaht = \"x\"\n").unwrap_err();
        assert!(e.key.starts_with("spool"), "{e}");
        assert!(e.reason.contains("paht"), "{e}");
    }

    #[test]
    fn bad_listener_address_and_cidr() {
        let e = Config::parse("[[listener]]\naddress = \"nowhere\"\nrole = \"mx\"\n")
            .unwrap()
            .validate()
            .unwrap_err();
        assert_eq!(e.key, "listener[0].address");
        let e = Config::parse("[relay]\ntrusted_networks = [\"10.0.0.0/33\"]\n")
            .unwrap()
            .validate()
            .unwrap_err();
        assert_eq!(e.key, "relay.trusted_networks");
        assert!(e.to_string().contains("10.0.0.0/33"), "{e}");
        let e = Config::parse("[relay]\ndomains = [\"bad domain\"]\n")
            .unwrap()
            .validate()
            .unwrap_err();
        assert_eq!(e.key, "relay.domains", "{e}");
    }

    #[test]
    fn bad_role_and_zero_limits() {
        let e = Config::parse("[[listener]]\naddress = \"127.0.0.1:25\"\nrole = \"smtp\"\n")
            .unwrap_err();
        assert!(e.key.starts_with("listener"), "{e}");
        let e = Config::parse("[limits]\nmax_connections = 0\n")
            .unwrap()
            .validate()
            .unwrap_err();
        assert_eq!(e.key, "limits.max_connections");
        let e = Config::parse("[timeouts]\ndata_secs = 0\n")
            .unwrap()
            .validate()
            .unwrap_err();
        assert_eq!(e.key, "timeouts.data_secs");
        let e = Config::parse("[timeouts]\ncommand_secs = \"5m\"\n").unwrap_err();
        assert_eq!(e.key, "timeouts.command_secs");
    }

    #[test]
    fn timeouts_are_read_as_durations() {
        let s = Config::parse(
            "[timeouts]\ncommand_secs = 7\ndata_secs = 8\ntls_handshake_secs = 9\n\
             shutdown_grace_secs = 0\n[limits]\ntarpit_delay_ms = 250\n",
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
        assert_eq!(s.limits.tarpit_delay, Duration::from_millis(250));
    }
}
