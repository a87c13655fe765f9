//! Which retention periods apply to which data key: the sweep's one decision, pure.
//!
//! - the node's own key (mail of no tenant): `[retention]`;
//! - a tenant's key: the periods the control snapshot gives it, else `[retention]`;
//!   nothing at all while the tenant is under legal hold;
//! - with control configured but no snapshot yet, legal holds are unknown, so tenant
//!   keys are left for a later sweep rather than swept on defaults.

use way2mail_seal::{KeyId, TenantKey};

use crate::tenants::Directory;

/// How long one key's data is kept, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Periods {
    pub content_secs: u64,
    pub log_secs: u64,
}

/// What the sweep knows of the tenants' own rules.
#[derive(Debug, Clone, Copy)]
pub enum Rules<'a> {
    /// The MTA runs without control: every key gets the defaults.
    Defaults,
    /// Control is configured but no snapshot arrived yet.
    Unknown,
    Snapshot(&'a Directory),
}

/// One key to sweep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub key_id: KeyId,
    /// `None`: the node's own key.
    pub tenant: Option<String>,
    pub periods: Periods,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub steps: Vec<Step>,
    /// Tenants left alone because they are under legal hold.
    pub on_hold: Vec<String>,
    /// Tenant keys left alone because no snapshot says what applies to them.
    pub unknown: usize,
}

pub fn plan(system: KeyId, tenants: &[TenantKey], rules: Rules<'_>, defaults: Periods) -> Plan {
    let mut plan = Plan {
        steps: vec![Step {
            key_id: system,
            tenant: None,
            periods: defaults,
        }],
        ..Plan::default()
    };
    for t in tenants {
        let periods = match rules {
            Rules::Defaults => defaults,
            Rules::Unknown => {
                plan.unknown += 1;
                continue;
            }
            Rules::Snapshot(directory) => match directory.tenant(&t.tenant) {
                Some(rule) if rule.legal_hold => {
                    plan.on_hold.push(t.tenant.clone());
                    continue;
                }
                Some(rule) => rule.retention.map_or(defaults, |r| Periods {
                    content_secs: r.content_secs,
                    log_secs: r.delivery_log_secs,
                }),
                // A tenant control no longer lists (deleted, not erased).
                None => defaults,
            },
        };
        plan.steps.push(Step {
            key_id: t.key_id,
            tenant: Some(t.tenant.clone()),
            periods,
        });
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenants::directory::tests::snapshot;
    use way2mail_wire::snapshot::MtaRetention;

    const DEFAULTS: Periods = Periods {
        content_secs: 30,
        log_secs: 400,
    };

    fn key(tenant: &str, id: u64) -> TenantKey {
        TenantKey {
            tenant: tenant.into(),
            key_id: KeyId(id),
            created_ms: 0,
        }
    }

    fn keys() -> Vec<TenantKey> {
        vec![
            key("acme", 2),
            key("sleepy", 3),
            key("gone", 4),
            key("deleted", 5),
        ]
    }

    fn step(id: u64, tenant: Option<&str>, content_secs: u64, log_secs: u64) -> Step {
        Step {
            key_id: KeyId(id),
            tenant: tenant.map(str::to_owned),
            periods: Periods {
                content_secs,
                log_secs,
            },
        }
    }

    #[test]
    fn the_snapshot_decides_per_tenant_and_legal_hold_skips_it() {
        let mut s = snapshot(1);
        s.tenants[0].retention = Some(MtaRetention {
            content_secs: 7,
            delivery_log_secs: 90,
        });
        s.tenants[1].legal_hold = true;
        // Retention with legal hold: the hold wins.
        s.tenants[1].retention = s.tenants[0].retention;
        let d = Directory::new(&s);
        let p = plan(KeyId(1), &keys(), Rules::Snapshot(&d), DEFAULTS);
        assert_eq!(
            p.steps,
            vec![
                step(1, None, 30, 400),
                step(2, Some("acme"), 7, 90),
                step(4, Some("gone"), 30, 400),
                step(5, Some("deleted"), 30, 400),
            ]
        );
        assert_eq!(p.on_hold, vec!["sleepy".to_string()]);
        assert_eq!(p.unknown, 0);
    }

    #[test]
    fn without_control_defaults_and_without_a_snapshot_only_the_node_key() {
        let p = plan(KeyId(1), &keys(), Rules::Defaults, DEFAULTS);
        assert_eq!(p.steps.len(), 5);
        assert!(p.steps.iter().all(|s| s.periods == DEFAULTS));
        let p = plan(KeyId(1), &keys(), Rules::Unknown, DEFAULTS);
        assert_eq!(p.steps, vec![step(1, None, 30, 400)]);
        assert_eq!((p.unknown, p.on_hold.len()), (4, 0));
    }
}
