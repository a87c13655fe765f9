//! Credential operations: SMTP users (unique usernames, generated passwords) and
//! API keys (`w2m_<prefix>_<secret>`). The secret is returned once and stored only
//! as an argon2id hash; revoking keeps the record, with `revoked_at`, for the
//! record's sake.

use super::context::{Ctx, Failure};
use super::{tenants, validate};
use crate::records::CredentialRecord;
use crate::store::{hex, Store, TreeName};
use way2mail_seal::password;
use way2mail_wire::protocol::{CredentialInfo, CredentialKind, Response};

pub(crate) fn add(
    ctx: &mut Ctx<'_>,
    tenant: &str,
    kind: CredentialKind,
    username: Option<&str>,
    description: Option<&str>,
) -> Result<Response, Failure> {
    let owner = tenants::load_live(ctx, tenant)?;
    let description = match description {
        Some(d) => Some(validate::text("description", d, true)?).filter(|d| !d.is_empty()),
        None => None,
    };
    let existing = ctx.store.scan::<CredentialRecord>(TreeName::Credentials)?;
    let taken = |kind: CredentialKind, name: &str| {
        existing
            .iter()
            .any(|(_, c)| c.kind == kind && c.revoked_at.is_none() && c.username == name)
    };
    let (username, secret) = match kind {
        CredentialKind::Smtp => {
            let Some(name) = username else {
                return Err(Failure::invalid("an SMTP credential needs a username"));
            };
            let name = validate::smtp_username(name)?;
            if taken(CredentialKind::Smtp, name) {
                return Err(Failure::exists(format!(
                    "SMTP username {name} is already in use"
                )));
            }
            (name.to_owned(), password::generate_password()?)
        }
        CredentialKind::Api => {
            if username.is_some() {
                return Err(Failure::invalid(
                    "an API key has no username: its public prefix is generated",
                ));
            }
            let (prefix, key) = password::generate_api_key()?;
            if taken(CredentialKind::Api, &prefix) {
                // 36^8 prefixes: a collision is a broken random generator, not bad luck.
                return Err(Failure::internal(
                    "generated API key prefix collides; try again",
                ));
            }
            (prefix, key)
        }
    };
    let mut id_bytes = [0u8; 8];
    aws_lc_rs::rand::fill(&mut id_bytes)
        .map_err(|_| Failure::internal("random generator failed"))?;
    let record = CredentialRecord {
        id: format!("cr_{}", hex(&id_bytes)),
        tenant: owner.tenant,
        kind,
        username,
        description,
        secret_hash: password::hash(&secret)?,
        created_at: ctx.now,
        revoked_at: None,
    };
    ctx.batch.put_tenant(
        TreeName::Credentials,
        &record.tenant,
        record.id.as_bytes(),
        &record,
    )?;
    ctx.snapshot_changed = true;
    let info = record.info();
    ctx.detail = Some(format!(
        "created {} credential {} ({})",
        kind_name(kind),
        info.id,
        info.username
    ));
    Ok(Response::CredentialCreated {
        credential: info,
        secret: secret.to_string(),
    })
}

fn kind_name(kind: CredentialKind) -> &'static str {
    match kind {
        CredentialKind::Smtp => "smtp",
        CredentialKind::Api => "api",
    }
}

pub(crate) fn list(ctx: &mut Ctx<'_>, tenant: Option<&str>) -> Result<Response, Failure> {
    if let Some(t) = tenant {
        tenants::load(ctx, t)?;
    }
    let credentials = owned_by(ctx.store, tenant)?;
    ctx.detail = Some(format!("{} credentials", credentials.len()));
    Ok(Response::Credentials { credentials })
}

/// What is known of the credentials of `tenant` (of every tenant with `None`),
/// secrets aside.
pub(crate) fn owned_by(
    store: &Store,
    tenant: Option<&str>,
) -> Result<Vec<CredentialInfo>, Failure> {
    Ok(store
        .scan::<CredentialRecord>(TreeName::Credentials)?
        .into_iter()
        .map(|(_, c)| c)
        .filter(|c| tenant.is_none_or(|t| c.tenant == t))
        .map(|c| c.info())
        .collect())
}

pub(crate) fn revoke(ctx: &mut Ctx<'_>, id: &str) -> Result<Response, Failure> {
    let Some(mut record) = ctx
        .store
        .get::<CredentialRecord>(TreeName::Credentials, id.as_bytes())?
    else {
        return Err(Failure::not_found(format!(
            "credential {} does not exist",
            validate::shorten(id)
        )));
    };
    ctx.tenant = Some(record.tenant.clone());
    if record.revoked_at.is_some() {
        return Err(Failure::conflict(format!(
            "credential {id} is already revoked"
        )));
    }
    record.revoked_at = Some(ctx.now);
    ctx.batch.put_tenant(
        TreeName::Credentials,
        &record.tenant,
        record.id.as_bytes(),
        &record,
    )?;
    ctx.snapshot_changed = true;
    ctx.detail = Some(format!(
        "revoked {} credential {id} ({})",
        kind_name(record.kind),
        record.username
    ));
    Ok(Response::Done)
}
