//! Who the caller is and how operators get in and out: session tokens (stored only
//! as their SHA-256), `hello`, `bootstrap` of the first admin, `login` with password
//! and TOTP, `logout`.

use aws_lc_rs::digest;

use super::context::{now_secs, Ctx, Failure, Identity};
use super::validate;
use super::writer::Service;
use crate::error::Error;
use crate::metrics::LoginResult;
use crate::rbac::{Op, Subject};
use crate::records::{OperatorRecord, SessionRecord};
use crate::store::{hex, TreeName};
use crate::totp;
use way2mail_daemon::Caller;
use way2mail_seal::password;
use way2mail_wire::protocol::{ErrorCode, Response, Role, VERSION};

/// Longest token looked up; real ones are 64 hex characters.
const MAX_TOKEN_LEN: usize = 256;
const SESSION_EXPIRED: &str = "session expired, run `way2mail login`";
const LOGIN_FAILED: &str = "login failed: wrong name, password or TOTP code";
const MIN_BOOTSTRAP_PASSWORD: usize = 12;

fn session_key(token: &str) -> Vec<u8> {
    digest::digest(&digest::SHA256, token.as_bytes())
        .as_ref()
        .to_vec()
}

/// Resolves the token, if any. A bad token fails every operation except `hello`
/// and `login`, which then fall back to the peer credentials.
pub(crate) fn identify(
    service: &Service,
    caller: &Caller,
    token: Option<&str>,
    op: Op,
) -> Result<Identity, Failure> {
    let peer = Identity::peer(caller, service.settings());
    let Some(token) = token else {
        return Ok(peer);
    };
    let tolerant = matches!(op, Op::Hello | Op::Login);
    match session_operator(service, token)? {
        Some((operator, key)) => Ok(Identity {
            actor: format!("operator:{}", operator.name),
            subject: Subject::Operator(operator.role),
            role: Some(operator.role),
            session_key: Some(key),
        }),
        None if tolerant => Ok(peer),
        None => Err(Failure::new(ErrorCode::Unauthenticated, SESSION_EXPIRED)),
    }
}

/// The operator behind a live session, and the session's key.
fn session_operator(
    service: &Service,
    token: &str,
) -> Result<Option<(OperatorRecord, Vec<u8>)>, Failure> {
    if token.is_empty() || token.len() > MAX_TOKEN_LEN {
        return Ok(None);
    }
    let key = session_key(token);
    let Some(session) = service
        .store()
        .get::<SessionRecord>(TreeName::Sessions, &key)?
    else {
        return Ok(None);
    };
    if session.expires_at <= now_secs() {
        return Ok(None);
    }
    // The role is read now, not at login: a role change or removal takes effect at once.
    let operator = service
        .store()
        .get::<OperatorRecord>(TreeName::Operators, session.operator.as_bytes())?;
    Ok(operator.map(|o| (o, key)))
}

pub(crate) fn hello(who: &Identity) -> Response {
    Response::Hello {
        daemon_version: env!("CARGO_PKG_VERSION").to_owned(),
        protocol_versions: vec![VERSION],
        caller: who.actor.clone(),
    }
}

/// The result of the argon2 check done before the writer lock: which stored hash
/// the password matched, if any.
pub(crate) struct PasswordCheck {
    matched_hash: Option<String>,
}

pub(crate) fn check_password(service: &Service, name: &str, password: &str) -> PasswordCheck {
    let record = match validate::operator_name(name) {
        Ok(name) => service
            .store()
            .get::<OperatorRecord>(TreeName::Operators, name.as_bytes())
            .ok()
            .flatten(),
        Err(_) => None,
    };
    match record {
        Some(r) if password::verify(password, &r.password_hash) => PasswordCheck {
            matched_hash: Some(r.password_hash),
        },
        Some(_) => PasswordCheck { matched_hash: None },
        None => {
            // Same argon2 cost as a wrong password, so names cannot be probed by timing.
            if let Some(dummy) = dummy_hash(service) {
                password::verify(password, dummy);
            }
            PasswordCheck { matched_hash: None }
        }
    }
}

fn dummy_hash(service: &Service) -> Option<&str> {
    if service.dummy_hash.get().is_none() {
        let secret = password::generate_password().ok()?;
        let hash = password::hash(&secret).ok()?;
        let _ = service.dummy_hash.set(hash);
    }
    service.dummy_hash.get().map(String::as_str)
}

/// `login`. A failure leaves in `failed_as` which check failed (for the metrics;
/// the caller is told the same `login_failed` whatever it was); left as it was
/// when something else went wrong.
pub(crate) fn login(
    ctx: &mut Ctx<'_>,
    name: &str,
    code: &str,
    check: PasswordCheck,
    failed_as: &mut LoginResult,
) -> Result<Response, Failure> {
    ctx.detail = Some(format!("name tried: {:?}", validate::shorten(name)));
    let failed = || Failure::new(ErrorCode::LoginFailed, LOGIN_FAILED);
    let Some(matched) = check.matched_hash else {
        *failed_as = LoginResult::BadPassword;
        return Err(failed());
    };
    // Re-read under the writer lock: the TOTP step and the record may have moved
    // since the password check.
    let Some(mut operator) = ctx
        .store
        .get::<OperatorRecord>(TreeName::Operators, name.as_bytes())?
    else {
        *failed_as = LoginResult::BadPassword;
        return Err(failed());
    };
    if !password::secrets_equal(operator.password_hash.as_bytes(), matched.as_bytes()) {
        *failed_as = LoginResult::BadPassword;
        return Err(failed());
    }
    let Some(step) = totp::verify(
        &operator.totp_secret,
        code.trim(),
        ctx.now,
        operator.last_totp_step,
    )?
    else {
        ctx.detail = Some(format!(
            "name tried: {:?}; wrong, stale or reused TOTP code",
            operator.name
        ));
        *failed_as = LoginResult::BadTotp;
        return Err(failed());
    };

    operator.last_totp_step = Some(step);
    operator.last_login_at = Some(ctx.now);
    let token = new_token()?;
    let expires_at = ctx.now + ctx.settings.session_ttl.as_secs();
    ctx.batch
        .put(TreeName::Operators, operator.name.as_bytes(), &operator)?;
    ctx.batch.put(
        TreeName::Sessions,
        session_key(&token),
        &SessionRecord {
            operator: operator.name.clone(),
            created_at: ctx.now,
            expires_at,
        },
    )?;
    prune_expired_sessions(ctx)?;
    ctx.actor_override = Some((format!("operator:{}", operator.name), Some(operator.role)));
    ctx.detail = Some(format!("session until {expires_at}"));
    Ok(Response::LoggedIn {
        token,
        role: operator.role,
        expires_at,
    })
}

fn new_token() -> Result<String, Failure> {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes)
        .map_err(|_| Failure::from(Error::Crypto("random generator".into())))?;
    Ok(hex(&bytes))
}

/// Expired sessions are dropped at each login, so the tree does not grow forever.
fn prune_expired_sessions(ctx: &mut Ctx<'_>) -> Result<(), Failure> {
    for (key, session) in ctx.store.scan::<SessionRecord>(TreeName::Sessions)? {
        if session.expires_at <= ctx.now {
            ctx.batch.remove(TreeName::Sessions, key);
        }
    }
    Ok(())
}

pub(crate) fn logout(ctx: &mut Ctx<'_>) -> Result<Response, Failure> {
    match &ctx.who.session_key {
        Some(key) => {
            ctx.batch.remove(TreeName::Sessions, key.clone());
            Ok(Response::Done)
        }
        None => Err(Failure::new(
            ErrorCode::Unauthenticated,
            "no session to end",
        )),
    }
}

/// Creates the first admin with the password root chose. The answer's `password`
/// is empty: the caller already knows it, and it is not sent back over the socket.
pub(crate) fn bootstrap(
    ctx: &mut Ctx<'_>,
    name: &str,
    password: &str,
) -> Result<Response, Failure> {
    let operators = ctx.store.scan::<OperatorRecord>(TreeName::Operators)?;
    if operators.iter().any(|(_, o)| o.role == Role::Admin) {
        return Err(Failure::conflict(
            "an admin already exists: bootstrap only creates the first one (ask an admin for `way2mail operator add`)",
        ));
    }
    let name = validate::operator_name(name)?;
    let length = password.chars().count();
    if length < MIN_BOOTSTRAP_PASSWORD || password.len() > password::MAX_PASSWORD_LEN {
        return Err(Failure::invalid(format!(
            "the admin password must be {MIN_BOOTSTRAP_PASSWORD} to {} characters",
            password::MAX_PASSWORD_LEN
        )));
    }
    if operators.iter().any(|(_, o)| o.name == name) {
        return Err(Failure::exists(format!("operator {name} already exists")));
    }
    ctx.detail = Some(format!("created admin {name}"));
    super::operators::create(ctx, name, Role::Admin, password, String::new())
}
