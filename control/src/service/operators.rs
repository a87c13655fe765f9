//! Operator accounts (admin only): add with a generated password and TOTP secret,
//! list, change role, remove. The last admin can neither lose the role nor be
//! removed, so the control plane always has someone who can manage it.

use super::context::{Ctx, Failure};
use super::validate;
use crate::records::{OperatorRecord, SessionRecord};
use crate::store::TreeName;
use crate::totp;
use way2mail_seal::password;
use way2mail_wire::protocol::{OperatorInfo, Response, Role};

fn load(ctx: &Ctx<'_>, name: &str) -> Result<OperatorRecord, Failure> {
    ctx.store
        .get::<OperatorRecord>(TreeName::Operators, name.as_bytes())?
        .ok_or_else(|| {
            Failure::not_found(format!(
                "operator {} does not exist",
                validate::shorten(name)
            ))
        })
}

fn admin_count(ctx: &Ctx<'_>) -> Result<usize, Failure> {
    Ok(ctx
        .store
        .scan::<OperatorRecord>(TreeName::Operators)?
        .iter()
        .filter(|(_, o)| o.role == Role::Admin)
        .count())
}

pub(crate) fn add(ctx: &mut Ctx<'_>, name: &str, role: Role) -> Result<Response, Failure> {
    let name = validate::operator_name(name)?;
    if ctx
        .store
        .get::<OperatorRecord>(TreeName::Operators, name.as_bytes())?
        .is_some()
    {
        return Err(Failure::exists(format!("operator {name} already exists")));
    }
    let password = password::generate_password()?;
    ctx.detail = Some(format!(
        "created operator {name} with role {}",
        role.as_str()
    ));
    create(ctx, name, role, &password, password.to_string())
}

/// Writes a new operator with `password` and a fresh TOTP secret, and answers with
/// the secrets to show once (`shown_password` is empty when the caller chose it).
pub(super) fn create(
    ctx: &mut Ctx<'_>,
    name: &str,
    role: Role,
    password: &str,
    shown_password: String,
) -> Result<Response, Failure> {
    let totp_secret = totp::generate_secret()?;
    let record = OperatorRecord {
        name: name.to_owned(),
        role,
        password_hash: password::hash(password)?,
        totp_secret: totp_secret.clone(),
        created_at: ctx.now,
        last_login_at: None,
        last_totp_step: None,
    };
    ctx.batch
        .put(TreeName::Operators, name.as_bytes(), &record)?;
    Ok(Response::OperatorCreated {
        name: name.to_owned(),
        role,
        password: shown_password,
        totp_uri: totp::uri(name, &totp_secret),
        totp_secret,
    })
}

pub(crate) fn list(ctx: &mut Ctx<'_>) -> Result<Response, Failure> {
    let operators: Vec<OperatorInfo> = ctx
        .store
        .scan::<OperatorRecord>(TreeName::Operators)?
        .iter()
        .map(|(_, o)| o.info())
        .collect();
    Ok(Response::Operators { operators })
}

pub(crate) fn set_role(ctx: &mut Ctx<'_>, name: &str, role: Role) -> Result<Response, Failure> {
    let mut record = load(ctx, name)?;
    if record.role == role {
        ctx.detail = Some(format!(
            "operator {name} already has role {}",
            role.as_str()
        ));
        return Ok(Response::Done);
    }
    if record.role == Role::Admin && admin_count(ctx)? <= 1 {
        return Err(Failure::conflict(format!(
            "{name} is the last admin: add another admin before changing this role"
        )));
    }
    ctx.detail = Some(format!(
        "operator {name} role {} -> {}",
        record.role.as_str(),
        role.as_str()
    ));
    record.role = role;
    ctx.batch
        .put(TreeName::Operators, name.as_bytes(), &record)?;
    Ok(Response::Done)
}

/// Removes the operator and ends all of their sessions.
pub(crate) fn remove(ctx: &mut Ctx<'_>, name: &str) -> Result<Response, Failure> {
    let record = load(ctx, name)?;
    if record.role == Role::Admin && admin_count(ctx)? <= 1 {
        return Err(Failure::conflict(format!(
            "{name} is the last admin and cannot be removed"
        )));
    }
    ctx.batch.remove(TreeName::Operators, name.as_bytes());
    let mut ended = 0;
    for (key, session) in ctx.store.scan::<SessionRecord>(TreeName::Sessions)? {
        if session.operator == name {
            ctx.batch.remove(TreeName::Sessions, key);
            ended += 1;
        }
    }
    ctx.detail = Some(format!(
        "removed operator {name} (role {}), ended {ended} sessions",
        record.role.as_str()
    ));
    Ok(Response::Done)
}
