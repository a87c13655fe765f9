//! Builds the policy snapshot for the MTA from the tenants, domains, DKIM keys and
//! credentials trees: every tenant with its status, sorted domains, limits,
//! unrevoked SMTP users (argon2id hashes only) and, per domain, whether it may send,
//! its active DKIM signing keys (the only place private keys leave the store) and
//! its BIMI selector; the digests of the suppressed addresses; and the enabled
//! webhook endpoints with their signing secrets (the only place those leave the
//! store after the answer that made them).

use std::collections::BTreeMap;

use super::context::{now_ms, Ctx, Failure};
use crate::error::Error;
use crate::records::{CredentialRecord, DkimKeyRecord, ErasedTenant, META_SNAPSHOT_VERSION};
use crate::store::{suppression_prefix, Store, TreeName};
use way2mail_wire::protocol::{
    CredentialKind, DkimKeyState, DomainInfo, Response, SuppressionEntry, TenantInfo,
};
use way2mail_wire::snapshot::{
    suppression_hash, ApiKey, SendingDomain, SigningKey, SmtpUser, Snapshot, SnapshotTenant,
};

/// The snapshot as the store holds it now. Call under the writer lock so the
/// version matches the content.
pub(crate) fn build(
    store: &Store,
    retention: &way2mail_wire::protocol::RetentionDefaults,
) -> Result<Snapshot, Error> {
    let version = store
        .get::<u64>(TreeName::Meta, META_SNAPSHOT_VERSION)?
        .unwrap_or(0);
    let mut tenants: BTreeMap<String, SnapshotTenant> = store
        .scan::<TenantInfo>(TreeName::Tenants)?
        .into_iter()
        .map(|(_, t)| {
            let suppressed = store
                .scan_prefix::<SuppressionEntry>(
                    TreeName::Suppression,
                    &suppression_prefix(&t.tenant),
                )?
                .into_iter()
                .map(|(_, e)| suppression_hash(&e.address))
                .collect();
            let entry = SnapshotTenant {
                tenant: t.tenant.clone(),
                status: t.status,
                domains: Vec::new(),
                limits: t.limits,
                smtp_users: Vec::new(),
                sending: Vec::new(),
                retention: Some(super::retention::mta_view(retention, &t)),
                legal_hold: t.legal_hold.is_some(),
                suppressed,
                api_keys: Vec::new(),
                list_unsubscribe: t.list_unsubscribe,
                sending_paused: t.sending_paused.is_some(),
                webhooks: super::webhooks::snapshot_view(store, &t.tenant)?,
            };
            Ok((t.tenant, entry))
        })
        .collect::<Result<_, Error>>()?;
    // Trees iterate in key order, so domains come out sorted.
    for (_, domain) in store.scan::<DomainInfo>(TreeName::Domains)? {
        if let Some(t) = tenants.get_mut(&domain.tenant) {
            t.sending.push(sending(store, &domain)?);
            t.domains.push(domain.domain);
        }
    }
    for (_, c) in store.scan::<CredentialRecord>(TreeName::Credentials)? {
        if c.revoked_at.is_some() {
            continue;
        }
        let Some(t) = tenants.get_mut(&c.tenant) else {
            continue;
        };
        match c.kind {
            CredentialKind::Smtp => t.smtp_users.push(SmtpUser {
                username: c.username,
                credential_id: c.id,
                password_hash: c.secret_hash,
            }),
            CredentialKind::Api => t.api_keys.push(ApiKey {
                prefix: c.username,
                credential_id: c.id,
                key_hash: c.secret_hash,
            }),
        }
    }
    let mut tenants: Vec<SnapshotTenant> = tenants.into_values().collect();
    for t in &mut tenants {
        t.smtp_users.sort_by(|a, b| a.username.cmp(&b.username));
        t.api_keys.sort_by(|a, b| a.prefix.cmp(&b.prefix));
    }
    Ok(Snapshot {
        version,
        generated_at_ms: now_ms(),
        tenants,
        erased: store
            .scan::<ErasedTenant>(TreeName::Erased)?
            .into_iter()
            .map(|(_, e)| e.tenant)
            .collect(),
    })
}

/// One domain as the MTA sends from it: the active keys with their private halves.
/// An active key without its private record fails the build, like any unreadable
/// record: the MTA keeps its last snapshot rather than sign with a partial set.
fn sending(store: &Store, domain: &DomainInfo) -> Result<SendingDomain, Error> {
    let mut dkim = Vec::new();
    for key in domain
        .dkim
        .iter()
        .filter(|k| k.state == DkimKeyState::Active)
    {
        let store_key = store.dkim_key(&domain.domain, &key.selector);
        let record = store
            .get::<DkimKeyRecord>(TreeName::DkimKeys, &store_key)?
            .ok_or_else(|| Error::Corrupt {
                tree: TreeName::DkimKeys.as_str(),
                key: format!("{}/{}", domain.domain, key.selector),
                reason: "missing: the domain lists this key as active".into(),
            })?;
        dkim.push(SigningKey {
            selector: key.selector.clone(),
            algorithm: key.algorithm,
            private_key: record.private_key.clone(),
        });
    }
    Ok(SendingDomain {
        domain: domain.domain.clone(),
        may_send: domain.may_send(),
        dkim,
        bimi_selector: domain.bimi.as_ref().map(|b| b.selector.clone()),
    })
}

pub(crate) fn get(ctx: &mut Ctx<'_>) -> Result<Response, Failure> {
    let snapshot = build(ctx.store, &ctx.settings.retention)?;
    ctx.detail = Some(format!(
        "snapshot version {} ({} tenants)",
        snapshot.version,
        snapshot.tenants.len()
    ));
    Ok(Response::Snapshot(snapshot))
}
