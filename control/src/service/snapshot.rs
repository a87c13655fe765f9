//! Builds the policy snapshot for the MTA from the tenants, domains and
//! credentials trees: every tenant with its status, sorted domains, limits and
//! unrevoked SMTP users (argon2id hashes only).

use std::collections::BTreeMap;

use super::context::{now_ms, Ctx, Failure};
use crate::error::Error;
use crate::protocol::{CredentialKind, DomainInfo, Response, TenantInfo};
use crate::records::{CredentialRecord, META_SNAPSHOT_VERSION};
use crate::snapshot::{SmtpUser, Snapshot, SnapshotTenant};
use crate::store::{Store, TreeName};

/// The snapshot as the store holds it now. Call under the writer lock so the
/// version matches the content.
pub(crate) fn build(store: &Store) -> Result<Snapshot, Error> {
    let version = store
        .get::<u64>(TreeName::Meta, META_SNAPSHOT_VERSION)?
        .unwrap_or(0);
    let mut tenants: BTreeMap<String, SnapshotTenant> = store
        .scan::<TenantInfo>(TreeName::Tenants)?
        .into_iter()
        .map(|(_, t)| {
            let entry = SnapshotTenant {
                tenant: t.tenant.clone(),
                status: t.status,
                domains: Vec::new(),
                limits: t.limits,
                smtp_users: Vec::new(),
            };
            (t.tenant, entry)
        })
        .collect();
    // Trees iterate in key order, so domains come out sorted.
    for (_, domain) in store.scan::<DomainInfo>(TreeName::Domains)? {
        if let Some(t) = tenants.get_mut(&domain.tenant) {
            t.domains.push(domain.domain);
        }
    }
    for (_, c) in store.scan::<CredentialRecord>(TreeName::Credentials)? {
        if c.kind != CredentialKind::Smtp || c.revoked_at.is_some() {
            continue;
        }
        if let Some(t) = tenants.get_mut(&c.tenant) {
            t.smtp_users.push(SmtpUser {
                username: c.username,
                credential_id: c.id,
                password_hash: c.secret_hash,
            });
        }
    }
    let mut tenants: Vec<SnapshotTenant> = tenants.into_values().collect();
    for t in &mut tenants {
        t.smtp_users.sort_by(|a, b| a.username.cmp(&b.username));
    }
    Ok(Snapshot {
        version,
        generated_at_ms: now_ms(),
        tenants,
    })
}

pub(crate) fn get(ctx: &mut Ctx<'_>) -> Result<Response, Failure> {
    let snapshot = build(ctx.store)?;
    ctx.detail = Some(format!(
        "snapshot version {} ({} tenants)",
        snapshot.version,
        snapshot.tenants.len()
    ));
    Ok(Response::Snapshot(snapshot))
}
