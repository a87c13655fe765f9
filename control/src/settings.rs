//! What the control service runs with, checked: the values the daemon's
//! configuration (`server/config.rs`, `server/protection.rs`) produces and the service
//! and its checks read. Plain data, so that the service, the DNS checks and the
//! record suggestions depend on it and not on the configuration code.

use std::path::PathBuf;
use std::time::Duration;

use way2mail_wire::snapshot::TenantLimits;

/// The MTA's admin socket in the dev defaults (`[mta] admin_socket`).
pub(crate) const DEV_MTA_SOCKET: &str = "./var/mta.sock";
/// How long control waits for the MTA's admin socket by default (`[mta] timeout_ms`).
pub(crate) const MTA_TIMEOUT_MS: u64 = 30_000;

#[derive(Debug, Clone)]
pub struct ServiceSettings {
    /// Peers with these uids (no token) may read the policy snapshot: the MTA's user.
    pub service_uids: Vec<u32>,
    /// How long a login session lasts.
    pub session_ttl: Duration,
    /// Limits of a tenant added without explicit ones.
    pub tenant_defaults: TenantLimits,
    /// Where `domain.verify` sends its lookups.
    pub dns: way2mail_daemon::dns::DnsSettings,
    /// What tenant domains must publish to authorise our mail (`[sending]`).
    pub sending: SendingSettings,
    /// Where incident notifications are handed to the MTA (`[notify]`).
    pub notify: crate::notify::NotifySettings,
    /// `[retention]`: the default periods.
    pub retention: way2mail_wire::protocol::RetentionDefaults,
    /// `[mta]`: the MTA's admin socket.
    pub mta: MtaSettings,
    /// `[backup] key_file`.
    pub backup_key_file: PathBuf,
    /// `[blocklists]`: the monitor of the sending addresses.
    pub blocklists: BlocklistSettings,
}

/// The public DNSBLs looked up when `[blocklists] zones` is not set. Each one's
/// terms of use are in docs/configuration.md (`[blocklists]`).
pub const DEFAULT_BLOCKLIST_ZONES: [&str; 6] = [
    "zen.spamhaus.org",
    "b.barracudacentral.org",
    "bl.spamcop.net",
    "dnsbl.sorbs.net",
    "psbl.surriel.com",
    "bl.mailspike.net",
];

/// `[blocklists]`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlocklistSettings {
    /// Whether the periodic check runs (`reputation.check` works either way).
    pub enabled: bool,
    pub check_interval: Duration,
    /// Lowercase DNS names without the trailing dot, each once.
    pub zones: Vec<String>,
}

impl Default for BlocklistSettings {
    fn default() -> BlocklistSettings {
        BlocklistSettings {
            enabled: true,
            check_interval: Duration::from_secs(15 * 60),
            zones: DEFAULT_BLOCKLIST_ZONES.map(str::to_owned).to_vec(),
        }
    }
}

/// `[sending]`: the platform's side of the records tenant domains publish.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SendingSettings {
    /// The MTA's public sending addresses, for `ip4:`/`ip6:` terms in the SPF record.
    pub ips: Vec<std::net::IpAddr>,
    /// An SPF record of the platform's to `include:` (`_spf.way2mail.example`).
    pub spf_include: Option<String>,
    /// `rua=` of the suggested DMARC record (`mailto:dmarc@…`); none when empty.
    pub dmarc_rua: Option<String>,
}

impl Default for ServiceSettings {
    /// The daemon's own user as the service user (MTA and control under one
    /// account in development), 8-hour sessions, default limits.
    fn default() -> ServiceSettings {
        ServiceSettings {
            service_uids: vec![rustix::process::geteuid().as_raw()],
            session_ttl: Duration::from_secs(8 * 3600),
            tenant_defaults: TenantLimits::default(),
            dns: way2mail_daemon::dns::DnsSettings::default(),
            sending: SendingSettings::default(),
            notify: crate::notify::NotifySettings::default(),
            retention: way2mail_wire::protocol::RetentionDefaults::default(),
            mta: MtaSettings::default(),
            backup_key_file: "./var/backup.key".into(),
            blocklists: BlocklistSettings::default(),
        }
    }
}

/// `[mta]`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MtaSettings {
    pub admin_socket: Option<PathBuf>,
    pub timeout: Duration,
}

impl Default for MtaSettings {
    /// The dev default: the MTA's socket under `./var`.
    fn default() -> Self {
        MtaSettings {
            admin_socket: Some(DEV_MTA_SOCKET.into()),
            timeout: Duration::from_millis(MTA_TIMEOUT_MS),
        }
    }
}
