//! Erasure of a tenant, and its signed receipt.
//!
//! ```text
//!   1. under the writer lock: refuse under legal hold; delete every record sealed
//!      with the tenant's key (account, domains, DKIM keys, credentials,
//!      suppression list and candidates, webhook endpoints); prune the tenant's audit entries
//!      whose detail was never sealed (written before per-tenant keys); keep the
//!      billing record; mark the id erased (never reused; listed in the MTA's
//!      snapshot); commit; then shred the tenant's key: its sealed audit details
//!      and every copy of its records (stale sled pages, backups) are unreadable
//!      from here on
//!   2. no lock: the MTA erases the spool's part (`tenant.erase` on its admin
//!      socket); unreachable, it is pending, and the MTA completes it from the
//!      snapshot's erased list
//!   3. under the writer lock: the receipt (what was removed, what is kept, until
//!      when and why), signed with control's Ed25519 receipt key, kept and audited
//! ```

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, Ed25519KeyPair, KeyPair};
use base64::Engine as _;

use super::context::{Ctx, Failure, Identity};
use super::mta::MtaError;
use super::tenants;
use super::writer::Service;
use crate::audit::AuditLog;
use crate::records::{BillingRecord, ErasedTenant, ReceiptRecord};
use crate::store::{audit_key, TreeName};
use way2mail_wire::mta_admin::{AdminOp, AdminResult, MtaErasure};
use way2mail_wire::protocol::{
    ErasureReceipt, ErrorBody, ReceiptItem, ReceiptSignature, Response, ShreddedKey, TenantInfo,
};

const FORMAT: &str = "way2mail-erasure-receipt 1";
const SIGNING_KEY: &[u8] = b"receipt_signing_key";
const RECEIPT_SEQ_PREFIX: &str = "receipt_seq:";

/// What phase 1 did, for the receipt.
struct Done {
    info: TenantInfo,
    receipt_id: String,
    key_id: Option<String>,
    removed: Vec<ReceiptItem>,
    audit_kept: u64,
    newest_audit_ms: u64,
    incidents: u64,
    billing: BillingRecord,
}

/// `tenant.erase`: `confirm` must repeat the tenant's id.
pub(crate) fn erase(
    service: &Service,
    who: &Identity,
    tenant: &str,
    confirm: &str,
    reason: Option<String>,
) -> Result<Response, ErrorBody> {
    if confirm != tenant {
        return service.locked(who, "tenant.erase", Some(tenant.to_owned()), reason, |_| {
            Err(Failure::invalid(format!(
                "erasure is not confirmed: confirm must repeat the tenant id ({tenant})"
            )))
        });
    }
    erase_tenant(service, who, tenant, reason).map(Response::ErasureReceipt)
}

/// Erases `tenant` (see the module doc) and returns the signed receipt.
pub(crate) fn erase_tenant(
    service: &Service,
    who: &Identity,
    tenant: &str,
    reason: Option<String>,
) -> Result<ErasureReceipt, ErrorBody> {
    let mut done = None;
    service.locked(
        who,
        "tenant.erase",
        Some(tenant.to_owned()),
        reason.clone(),
        |ctx| {
            let d = remove_control_data(ctx, tenant)?;
            ctx.public_detail = true;
            ctx.detail = Some(format!(
                "erased in control ({}); receipt {}",
                d.removed
                    .iter()
                    .map(|i| format!("{} {}", i.count, i.category))
                    .collect::<Vec<_>>()
                    .join(", "),
                d.receipt_id
            ));
            done = Some(d);
            Ok(Response::Done)
        },
    )?;
    let Some(done) = done else {
        return Err(Failure::internal("erasure finished without its record").body);
    };
    // The records are gone; now the key, and with it every copy anywhere.
    let shredded = service.store().keyring().shred(tenant);
    let control_key = ShreddedKey {
        held_by: "control".into(),
        key_id: done.key_id.clone(),
        at_ms: shredded.as_ref().ok().map(|e| e.at_ms),
    };
    let mut pending = Vec::new();
    if let Err(e) = &shredded {
        tracing::error!(%tenant, error = %e, "cannot shred the tenant's key; the sweep retries");
        pending.push(format!(
            "control's key could not be destroyed yet ({e}); the retention sweep retries"
        ));
    }
    let mta = service.mta(|c| {
        c.call(AdminOp::TenantErase {
            tenant: tenant.to_owned(),
        })
    });
    let mta = match mta {
        Ok(AdminResult::Erased(e)) => Ok(e),
        Ok(other) => Err(MtaError::Unexpected(format!("{other:?}"))),
        Err(e) => Err(e),
    };
    if let Err(e) = &mta {
        pending.push(format!(
            "the MTA's spool (queued messages and delivery log): {e}; the MTA erases it \
             and destroys its key when it next reads the policy snapshot"
        ));
    }
    let mut receipt = None;
    service.locked(
        who,
        "tenant.erase",
        Some(tenant.to_owned()),
        reason.clone(),
        |ctx| {
            ctx.public_detail = true;
            let r = build(ctx, &done, control_key, &mta, pending, reason.clone())?;
            let r = sign(ctx, r)?;
            let account = done
                .info
                .retention
                .account_secs
                .unwrap_or(ctx.settings.retention.account_secs);
            ctx.batch.put(
                TreeName::Receipts,
                r.receipt.as_bytes(),
                &ReceiptRecord {
                    receipt: r.clone(),
                    delete_after: ctx.now.saturating_add(account),
                },
            )?;
            ctx.detail = Some(format!(
                "receipt {} issued; MTA: {}",
                r.receipt,
                match &mta {
                    Ok(e) => format!(
                        "{} messages and {} log records erased",
                        e.messages, e.log_records
                    ),
                    Err(_) => "pending".into(),
                }
            ));
            receipt = Some(r.clone());
            Ok(Response::ErasureReceipt(r))
        },
    )?;
    receipt.ok_or_else(|| Failure::internal("receipt not built").body)
}

/// Phase 1: everything control deletes, into the batch.
fn remove_control_data(ctx: &mut Ctx<'_>, tenant: &str) -> Result<Done, Failure> {
    let info = tenants::load(ctx, tenant)?;
    if let Some(h) = &info.legal_hold {
        return Err(Failure::conflict(format!(
            "tenant {tenant} is under legal hold since unix {} ({}): nothing of it may be \
             deleted until the hold is lifted",
            h.since, h.reason
        )));
    }
    let keyring = ctx.store.keyring();
    let key = keyring.existing(tenant);
    let mut removed = Vec::new();
    let item = |category: &str, count: u64| ReceiptItem {
        category: category.to_owned(),
        held_by: "control".into(),
        count,
        until: None,
        why: None,
    };
    if let Some(key) = &key {
        for (tree, category) in [
            (
                TreeName::Tenants,
                "account record (business name, contact, limits, settings)",
            ),
            (TreeName::Domains, "sending domains"),
            (TreeName::DkimKeys, "DKIM private keys"),
            (
                TreeName::Credentials,
                "SMTP credentials and API keys (hashes and metadata)",
            ),
            (TreeName::Suppression, "suppression list entries"),
            (
                TreeName::SuppressionCandidates,
                "suppression candidates (addresses awaiting a second bad-domain failure)",
            ),
            (
                TreeName::Webhooks,
                "webhook endpoints (URLs, events, signing secrets)",
            ),
        ] {
            let keys = ctx.store.keys_sealed_with(tree, key.id())?;
            removed.push(item(category, keys.len() as u64));
            for k in keys {
                ctx.batch.remove(tree, k);
            }
        }
    }
    let (mut sealed, mut pruned, mut newest_audit_ms) = (0u64, 0u64, 0u64);
    for entry in AuditLog::all(ctx.store)? {
        if entry.pruned || entry.tenant.as_deref() != Some(tenant) {
            continue;
        }
        newest_audit_ms = newest_audit_ms.max(entry.at_ms);
        if entry.sealed_detail.is_some() {
            sealed += 1;
        } else if entry.detail.is_some() {
            // Written before per-tenant keys: its detail is readable with the node's
            // key, so only pruning removes it.
            ctx.batch.put(
                TreeName::Audit,
                audit_key(entry.seq),
                &AuditLog::pruned(&entry),
            )?;
            pruned += 1;
        }
    }
    removed.push(item(
        "audit entry details (sealed with the tenant's key, unreadable from now on)",
        sealed,
    ));
    if pruned > 0 {
        removed.push(item(
            "audit entries written before per-tenant keys (pruned whole)",
            pruned,
        ));
    }
    let incidents = ctx
        .store
        .scan::<way2mail_wire::protocol::IncidentInfo>(TreeName::Incidents)?
        .into_iter()
        .filter(|(_, i)| i.tenants.iter().any(|t| t == tenant))
        .count() as u64;
    let d = ctx.settings.retention;
    let account = info.retention.account_secs.unwrap_or(d.account_secs);
    let billing = match ctx
        .store
        .get::<BillingRecord>(TreeName::Billing, tenant.as_bytes())?
    {
        Some(b) => b,
        None => {
            let ended = info.terminated_at.unwrap_or(ctx.now);
            let b = tenants::billing_record(&info, ended, account);
            ctx.batch.put(TreeName::Billing, tenant.as_bytes(), &b)?;
            b
        }
    };
    let receipt_id = next_receipt_id(ctx)?;
    ctx.batch.put(
        TreeName::Erased,
        tenant.as_bytes(),
        &ErasedTenant {
            tenant: tenant.to_owned(),
            erased_at: ctx.now,
            receipt: receipt_id.clone(),
        },
    )?;
    ctx.snapshot_changed = true;
    let audit_kept = AuditLog::all(ctx.store)?
        .iter()
        .filter(|e| !e.pruned && e.tenant.as_deref() == Some(tenant))
        .count() as u64
        - pruned;
    Ok(Done {
        info,
        receipt_id,
        key_id: key.map(|k| k.id().to_string()),
        removed,
        audit_kept,
        newest_audit_ms,
        incidents,
        billing,
    })
}

/// `ER-YYYY-NNNN`, numbered per year.
fn next_receipt_id(ctx: &mut Ctx<'_>) -> Result<String, Failure> {
    // RFC 3339 starts with the four-digit year.
    let year: String = way2mail_smtp::date::rfc3339(ctx.now)
        .chars()
        .take(4)
        .collect();
    let counter = format!("{RECEIPT_SEQ_PREFIX}{year}");
    let seq = ctx
        .store
        .get::<u64>(TreeName::Meta, counter.as_bytes())?
        .unwrap_or(0)
        + 1;
    ctx.batch.put(TreeName::Meta, counter.into_bytes(), &seq)?;
    Ok(format!("ER-{year}-{seq:04}"))
}

fn build(
    ctx: &Ctx<'_>,
    done: &Done,
    control_key: ShreddedKey,
    mta: &Result<MtaErasure, MtaError>,
    pending: Vec<String>,
    reason: Option<String>,
) -> Result<ErasureReceipt, Failure> {
    let d = ctx.settings.retention;
    let security = done
        .info
        .retention
        .security_log_secs
        .unwrap_or(d.security_log_secs);
    let mut removed = done.removed.clone();
    let mut keys = vec![control_key];
    match mta {
        Ok(e) => {
            for (category, count) in [
                ("queued messages (content and recipient lists)", e.messages),
                ("delivery log records", e.log_records),
            ] {
                removed.push(ReceiptItem {
                    category: category.into(),
                    held_by: "mta".into(),
                    count,
                    until: None,
                    why: None,
                });
            }
            keys.push(ShreddedKey {
                held_by: "mta".into(),
                key_id: e.key_id.clone(),
                at_ms: Some(e.erased_at_ms),
            });
        }
        Err(_) => keys.push(ShreddedKey {
            held_by: "mta".into(),
            key_id: None,
            at_ms: None,
        }),
    }
    let kept_item = |category: &str, count: u64, until: Option<u64>, why: &str| ReceiptItem {
        category: category.to_owned(),
        held_by: "control".into(),
        count,
        until,
        why: Some(why.to_owned()),
    };
    let mut kept = vec![kept_item(
        "billing record (business name, billing reference, subscription dates)",
        1,
        Some(done.billing.delete_after),
        &format!(
            "accounting and tax obligations: kept {} after the subscription ended",
            way2mail_daemon::duration::format(
                done.billing
                    .delete_after
                    .saturating_sub(done.billing.terminated_at)
            )
        ),
    )];
    if done.audit_kept > 0 {
        kept.push(kept_item(
            "audit log entries about the tenant (who, what, when; their details are unreadable)",
            done.audit_kept,
            Some(done.newest_audit_ms / 1000 + security),
            &format!(
                "security and access log retention ({}): accountability for every access to the tenant's data",
                way2mail_daemon::duration::format(security)
            ),
        ));
    }
    if done.incidents > 0 {
        kept.push(kept_item(
            "security incident register entries naming the tenant (the addresses notified are erased)",
            done.incidents,
            None,
            "the incident register is kept for accountability to the supervisory authority",
        ));
    }
    kept.push(kept_item(
        "the tenant id",
        1,
        None,
        "never given to another tenant, and names the tenant in the kept records above",
    ));
    kept.push(kept_item(
        "backups taken before the erasure",
        0,
        None,
        "they hold the tenant's records sealed with the destroyed keys only: unreadable, and no restore brings them back",
    ));
    Ok(ErasureReceipt {
        receipt: done.receipt_id.clone(),
        format: FORMAT.into(),
        tenant: done.info.tenant.clone(),
        business_name: done.info.business_name.clone(),
        erased_at: ctx.now,
        requested_by: ctx.who.actor.clone(),
        reason,
        removed,
        kept,
        shredded_keys: keys,
        pending,
        signature: None,
    })
}

/// The receipt key, made on first use (PKCS#8, sealed with the node's key).
fn signing_key(ctx: &mut Ctx<'_>) -> Result<Ed25519KeyPair, Failure> {
    let b64 = base64::engine::general_purpose::STANDARD;
    if let Some(stored) = ctx.store.get::<String>(TreeName::Meta, SIGNING_KEY)? {
        let der = zeroize::Zeroizing::new(
            b64.decode(&stored)
                .map_err(|_| Failure::internal("the receipt key is not base64"))?,
        );
        return Ed25519KeyPair::from_pkcs8(&der)
            .map_err(|_| Failure::internal("the receipt key does not parse"));
    }
    let der = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
        .map_err(|_| Failure::internal("cannot generate the receipt key"))?;
    let pair = Ed25519KeyPair::from_pkcs8(der.as_ref())
        .map_err(|_| Failure::internal("the new receipt key does not parse"))?;
    ctx.batch
        .put(TreeName::Meta, SIGNING_KEY, &b64.encode(der.as_ref()))?;
    Ok(pair)
}

/// The bytes a receipt's signature covers: its JSON without the signature.
pub fn signed_bytes(receipt: &ErasureReceipt) -> Vec<u8> {
    let mut unsigned = receipt.clone();
    unsigned.signature = None;
    // Serializing plain strings, numbers and lists cannot fail.
    serde_json::to_vec(&unsigned).unwrap_or_default()
}

fn sign(ctx: &mut Ctx<'_>, mut receipt: ErasureReceipt) -> Result<ErasureReceipt, Failure> {
    let key = signing_key(ctx)?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let value = key.sign(&signed_bytes(&receipt));
    receipt.signature = Some(ReceiptSignature {
        algorithm: "ed25519".into(),
        public_key: b64.encode(key.public_key().as_ref()),
        value: b64.encode(value.as_ref()),
    });
    Ok(receipt)
}

/// Checks a receipt's signature, with `public_key` (base64) when given, else the key
/// the receipt names.
pub fn verify(receipt: &ErasureReceipt, public_key: Option<&str>) -> Result<(), ReceiptError> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let sig = receipt.signature.as_ref().ok_or(ReceiptError::NotSigned)?;
    if sig.algorithm != "ed25519" {
        return Err(ReceiptError::UnknownAlgorithm(sig.algorithm.clone()));
    }
    if let Some(expected) = public_key {
        if expected.trim() != sig.public_key {
            return Err(ReceiptError::OtherKey);
        }
    }
    let key = b64
        .decode(&sig.public_key)
        .map_err(|_| ReceiptError::KeyNotBase64)?;
    let value = b64
        .decode(&sig.value)
        .map_err(|_| ReceiptError::SignatureNotBase64)?;
    signature::UnparsedPublicKey::new(&signature::ED25519, key)
        .verify(&signed_bytes(receipt), &value)
        .map_err(|_| ReceiptError::Mismatch)
}

/// What is wrong with a receipt's signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReceiptError {
    #[error("the receipt is not signed")]
    NotSigned,
    #[error("unknown signature algorithm {0:?}")]
    UnknownAlgorithm(String),
    #[error("signed with another key than the one given")]
    OtherKey,
    #[error("the public key is not base64")]
    KeyNotBase64,
    #[error("the signature is not base64")]
    SignatureNotBase64,
    #[error(
        "the signature does not match the receipt: it was changed, or not issued with this key"
    )]
    Mismatch,
}

/// `tenant.receipt`.
pub(crate) fn receipt(ctx: &mut Ctx<'_>, tenant: &str) -> Result<Response, Failure> {
    let Some(erased) = tenants::erased(ctx, tenant)? else {
        return Err(Failure::not_found(format!(
            "tenant {} was not erased",
            super::validate::shorten(tenant)
        )));
    };
    let record = ctx
        .store
        .get::<ReceiptRecord>(TreeName::Receipts, erased.receipt.as_bytes())?
        .ok_or_else(|| {
            Failure::not_found(format!(
                "the receipt {} of tenant {tenant} is no longer kept",
                erased.receipt
            ))
        })?;
    ctx.public_detail = true;
    ctx.detail = Some(format!("receipt {}", erased.receipt));
    Ok(Response::ErasureReceipt(record.receipt))
}

/// `receipt.key`.
pub(crate) fn public_key(ctx: &mut Ctx<'_>) -> Result<Response, Failure> {
    let key = signing_key(ctx)?;
    Ok(Response::ReceiptKey {
        algorithm: "ed25519".into(),
        public_key: base64::engine::general_purpose::STANDARD.encode(key.public_key().as_ref()),
    })
}
