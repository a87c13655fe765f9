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
}

impl Default for InboundConfig {
    fn default() -> Self {
        InboundConfig {
            checks: true,
            authserv_id: String::new(),
            dmarc_reject: DmarcAction::Reject,
            dmarc_quarantine: DmarcAction::Quarantine,
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
