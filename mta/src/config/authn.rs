//! `[dkim]` (signing tenant mail) and `[inbound]` (SPF/DKIM/DMARC/ARC checks of mail
//! from the internet on the mx listener).

use serde::Deserialize;

use way2mail_daemon::ConfigError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MissingKeys {
    /// Mail from a tenant domain without DKIM keys is refused.
    Refuse,
    /// It is sent unsigned.
    Unsigned,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DkimConfig {
    /// What happens to mail from a tenant domain that has no active DKIM key.
    pub missing_keys: MissingKeys,
}

impl Default for DkimConfig {
    fn default() -> Self {
        DkimConfig {
            missing_keys: MissingKeys::Refuse,
        }
    }
}

/// What to do with a message whose DMARC check failed under a given policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DmarcAction {
    /// `550 5.7.1` at the end of data.
    Reject,
    /// Accept, with a quarantine header for the mailbox side to act on.
    Quarantine,
    /// Accept; only `Authentication-Results:` tells.
    None,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InboundConfig {
    /// Check SPF, DKIM, DMARC and ARC on the mx listener (clients outside the trusted
    /// networks) and add `Authentication-Results:`.
    pub checks: bool,
    /// The authserv-id of our `Authentication-Results:`; empty = `hostname`.
    pub authserv_id: String,
    /// A DMARC failure where the domain's policy is `p=reject`.
    pub dmarc_reject: DmarcAction,
    /// A DMARC failure where the domain's policy is `p=quarantine`.
    pub dmarc_quarantine: DmarcAction,
    /// DNS blocklists the mx listener looks clients up in at connect (clients
    /// outside the trusted networks); empty: none.
    pub dnsbl_zones: Vec<String>,
    /// Where a listed client's mail is refused: `mail` (every `MAIL FROM`) or
    /// `rcpt` (every `RCPT TO` but postmaster).
    pub dnsbl_refuse_at: DnsblStep,
    /// How long a lookup's answer is kept per client address.
    #[serde(
        rename = "dnsbl_cache_secs",
        deserialize_with = "way2mail_daemon::config::secs"
    )]
    pub dnsbl_cache: std::time::Duration,
}

/// `[inbound] dnsbl_refuse_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DnsblStep {
    Mail,
    Rcpt,
}

impl Default for InboundConfig {
    fn default() -> Self {
        InboundConfig {
            checks: true,
            authserv_id: String::new(),
            dmarc_reject: DmarcAction::Reject,
            dmarc_quarantine: DmarcAction::Quarantine,
            dnsbl_zones: Vec::new(),
            dnsbl_refuse_at: DnsblStep::Rcpt,
            dnsbl_cache: std::time::Duration::from_secs(300),
        }
    }
}

impl InboundConfig {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        let id = self.authserv_id.trim();
        if id != self.authserv_id
            || id
                .bytes()
                .any(|b| !(b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_'))
            || id.len() > 253
        {
            return Err(ConfigError::new(
                "inbound.authserv_id",
                format!("{id:?} is not a host name (letters, digits, '.', '-')"),
            ));
        }
        for (i, zone) in self.dnsbl_zones.iter().enumerate() {
            let z = zone.trim_end_matches('.');
            let ok = z.contains('.')
                && z.len() <= 200
                && z.split('.').all(|l| {
                    !l.is_empty()
                        && l.len() <= 63
                        && l.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                });
            if !ok {
                return Err(ConfigError::new(
                    format!("inbound.dnsbl_zones[{i}]"),
                    format!("{zone:?} is not a DNS zone (such as zen.spamhaus.org)"),
                ));
            }
        }
        if self.dnsbl_cache.is_zero() {
            return Err(ConfigError::new(
                "inbound.dnsbl_cache_secs",
                "must be at least 1",
            ));
        }
        Ok(())
    }

    /// The authserv-id to use, given the configured `hostname`.
    pub fn authserv_id<'a>(&'a self, hostname: &'a str) -> &'a str {
        if self.authserv_id.is_empty() {
            hostname
        } else {
            &self.authserv_id
        }
    }
}
