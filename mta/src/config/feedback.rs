//! `[bounces]`, `[feedback]` and `[reputation]`: what receivers tell us about
//! tenant mail, and what follows from it (docs/bounces.md, docs/feedback.md).

use std::path::PathBuf;

use serde::Deserialize;
use way2mail_daemon::config::ConfigError;

/// `[bounces]`: how failures are classified, and where asynchronous bounces of
/// tenant mail come back.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BouncesConfig {
    /// The operator's classification rules, checked before the built-in ones.
    /// Empty: the built-in rules only.
    pub rules_file: PathBuf,
    /// The VERP domain: tenant mail leaves with the envelope sender
    /// `b-TOKEN@<domain>`, and the `mx` listener takes the bounces sent there.
    /// Its MX record must point at this node, and its SPF record must allow the
    /// sending addresses. Empty: tenant mail keeps its own envelope sender.
    pub domain: String,
}

/// `[feedback]`: complaint reports (ARF, RFC 5965) from mailbox providers'
/// feedback loops.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeedbackConfig {
    /// The address registered with the providers' feedback loops; the `mx`
    /// listener takes the reports sent to it. Empty: no complaint intake.
    pub address: String,
    /// Where DMARC aggregate reports for tenant domains come (the `mailto:` of
    /// control's `[sending] dmarc_rua`, which tenant domains publish as `rua=`);
    /// the `mx` listener takes the reports sent to it and keeps them sealed per
    /// tenant. Empty: no DMARC report intake.
    pub dmarc_address: String,
    /// DMARC reports kept per tenant at most; past it new ones are refused (`452`)
    /// until retention removes old ones. Anyone can send reports: this bounds what
    /// a flood can store for one tenant.
    pub dmarc_max_reports: u64,
}

impl Default for FeedbackConfig {
    fn default() -> FeedbackConfig {
        FeedbackConfig {
            address: String::new(),
            dmarc_address: String::new(),
            dmarc_max_reports: 100_000,
        }
    }
}

/// `[reputation]`: the tenant reputation guard.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReputationConfig {
    /// Pause a tenant whose hard bounces over accepted recipients in the last
    /// 24 h exceed this share. 0 turns the bounce threshold off.
    pub max_bounce_rate: f64,
    /// Pause a tenant whose complaints over accepted recipients in the last 24 h
    /// exceed this share (the large mailbox providers' ceiling for bulk senders is
    /// 0.3 %). 0 turns the complaint threshold off.
    pub max_complaint_rate: f64,
    /// Recipients accepted in the window before either rate counts.
    pub min_volume: u64,
}

impl Default for ReputationConfig {
    fn default() -> ReputationConfig {
        ReputationConfig {
            max_bounce_rate: 0.05,
            max_complaint_rate: 0.003,
            min_volume: 200,
        }
    }
}

impl ReputationConfig {
    pub fn check(&self) -> Result<(), ConfigError> {
        for (key, v) in [
            ("reputation.max_bounce_rate", self.max_bounce_rate),
            ("reputation.max_complaint_rate", self.max_complaint_rate),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(ConfigError::new(
                    key,
                    "must be a share between 0 and 1 (0.05 is 5 %)",
                ));
            }
        }
        Ok(())
    }
}

impl BouncesConfig {
    /// The VERP domain, lower-cased; `None` when off.
    pub fn verp_domain(&self) -> Option<String> {
        let d = self.domain.trim().trim_end_matches('.');
        (!d.is_empty()).then(|| d.to_ascii_lowercase())
    }

    pub fn check(&self) -> Result<(), ConfigError> {
        if let Some(d) = self.verp_domain() {
            if !is_domain(&d) {
                return Err(ConfigError::new(
                    "bounces.domain",
                    format!("'{d}' is not a domain name (such as bounces.example.com)"),
                ));
            }
        }
        Ok(())
    }
}

impl FeedbackConfig {
    /// The complaint report address, lower-cased; `None` when off.
    pub fn report_address(&self) -> Option<String> {
        address(&self.address)
    }

    /// The DMARC report address, lower-cased (a `mailto:` dropped); `None` when off.
    pub fn dmarc_address(&self) -> Option<String> {
        address(self.dmarc_address.trim().trim_start_matches("mailto:"))
    }

    pub fn check(&self) -> Result<(), ConfigError> {
        for (key, a) in [
            ("feedback.address", self.report_address()),
            ("feedback.dmarc_address", self.dmarc_address()),
        ] {
            let Some(a) = a else { continue };
            let ok = a
                .rsplit_once('@')
                .is_some_and(|(local, domain)| !local.is_empty() && is_domain(domain))
                && !a.chars().any(|c| c.is_whitespace() || "<>\",;".contains(c));
            if !ok {
                return Err(ConfigError::new(
                    key,
                    format!("'{a}' is not an address (such as fbl@example.com)"),
                ));
            }
        }
        if self.dmarc_max_reports == 0 {
            return Err(ConfigError::new(
                "feedback.dmarc_max_reports",
                "must be at least 1",
            ));
        }
        if self.report_address().is_some() && self.report_address() == self.dmarc_address() {
            return Err(ConfigError::new(
                "feedback.dmarc_address",
                "must differ from feedback.address: complaint and DMARC reports are read apart",
            ));
        }
        Ok(())
    }
}

fn address(a: &str) -> Option<String> {
    let a = a.trim();
    (!a.is_empty()).then(|| a.to_ascii_lowercase())
}

/// A plausible DNS name: dot-separated labels of letters, digits and hyphens.
fn is_domain(d: &str) -> bool {
    d.len() <= 253
        && d.contains('.')
        && d.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_and_addresses_are_checked() {
        let b = |d: &str| BouncesConfig {
            domain: d.into(),
            ..BouncesConfig::default()
        };
        assert_eq!(b("").verp_domain(), None);
        assert_eq!(
            b("Bounces.Example.COM.").verp_domain().as_deref(),
            Some("bounces.example.com")
        );
        assert!(b("bounces.example").check().is_ok());
        assert!(b("not a domain").check().is_err());
        assert!(b("nodot").check().is_err());
        let f = |a: &str| FeedbackConfig {
            address: a.into(),
            ..FeedbackConfig::default()
        };
        assert!(f("").check().is_ok());
        assert!(f("fbl@example.com").check().is_ok());
        assert!(f("fbl").check().is_err());
        assert!(f("<fbl@example.com>").check().is_err());
        let d = |a: &str| FeedbackConfig {
            address: "fbl@example.com".into(),
            dmarc_address: a.into(),
            ..FeedbackConfig::default()
        };
        assert_eq!(
            d("mailto:DMARC@Example.com").dmarc_address().as_deref(),
            Some("dmarc@example.com")
        );
        assert!(d("mailto:dmarc@example.com").check().is_ok());
        assert!(d("dmarc@example.com,x@example.com").check().is_err());
        assert!(
            d("FBL@example.com").check().is_err(),
            "the same address twice"
        );
        let r = ReputationConfig {
            max_bounce_rate: 1.5,
            ..ReputationConfig::default()
        };
        assert!(r.check().is_err());
        assert!(ReputationConfig::default().check().is_ok());
    }
}
