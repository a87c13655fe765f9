//! `MAIL FROM:` (RFC 5321 §4.1.1.2): opens a transaction after the sequence, TLS,
//! spool and parameter checks. Parameters: `SIZE` (RFC 1870), `BODY` (RFC 6152),
//! `SMTPUTF8` (RFC 6531), `RET` and `ENVID` (RFC 3461). After HELO no parameter is
//! allowed, since none was advertised. On submission with tenants, an untrusted client
//! must authenticate first (`530 5.7.0`), and an authenticated tenant's sender is
//! checked by its policy, whose refusal is the reply.

use crate::{BodyType, Ret};

use super::command::Params;
use super::dsn;
use super::state::{SessionState, Transaction};
use super::{Role, SpoolState};
use crate::path::Path;
use crate::reply::{self, EnhancedCode, Reply};

/// The parameters of one MAIL command.
#[derive(Debug, Default)]
struct MailParams {
    size: Option<u64>,
    body: Option<BodyType>,
    smtputf8: bool,
    ret: Option<Ret>,
    envid: Option<String>,
}

impl SessionState {
    pub(super) fn mail(&mut self, path: Path<'_>, params: Params<'_>) -> Reply {
        let Some(greeting) = &self.greeting else {
            return reply::BAD_SEQUENCE_HELO;
        };
        if self.params.role == Role::Submission && !self.tls_active {
            return reply::MUST_STARTTLS;
        }
        if self.auth_required() {
            return reply::AUTH_REQUIRED;
        }
        if self.tx.is_some() {
            return reply::BAD_SEQUENCE_NESTED;
        }
        if let Some(b) = self
            .params
            .blocked
            .as_ref()
            .filter(|b| b.at == super::BlockedAt::Mail)
        {
            return b.reply.clone();
        }
        match self.spool {
            SpoolState::Ready => {}
            SpoolState::DiskLow => return reply::DISK_LOW,
            SpoolState::Unhealthy => {
                let text = format!(
                    "{} Service not available, closing channel",
                    self.params.hostname
                );
                return Reply::owned(421, EnhancedCode::new(4, 3, 2), text);
            }
        }
        let p = match mail_params(params, greeting.extended) {
            Ok(p) => p,
            Err(r) => return r,
        };
        if path.is_utf8() && !p.smtputf8 {
            return reply::NEEDS_SMTPUTF8;
        }
        if p.size
            .is_some_and(|s| s > self.params.limits.max_message_size)
        {
            return reply::TOO_BIG;
        }
        if let Some((policy, grant)) = self.tenant() {
            if let Err(r) = policy.check_sender(grant, path.address) {
                return r;
            }
        }
        self.tx = Some(Transaction {
            sender: path.address.to_string(),
            body_type: p.body.unwrap_or_default(),
            smtputf8: p.smtputf8,
            ret: p.ret,
            envid: p.envid,
            size_hint: p.size,
            recipients: Vec::new(),
            rcpt_attempted: false,
            chunks: None,
            intake: false,
        });
        reply::SENDER_OK
    }
}

fn mail_params(params: Params<'_>, extended: bool) -> Result<MailParams, Reply> {
    let mut p = MailParams::default();
    let (mut size, mut body, mut utf8, mut ret, mut envid) = (false, false, false, false, false);
    for param in params {
        let param = param?;
        if !extended {
            return Err(reply::PARAM_UNKNOWN);
        }
        let k = param.keyword;
        let v = param.value;
        if k.eq_ignore_ascii_case("SIZE") {
            dsn::once(&mut size)?;
            p.size = Some(parse_size(v)?);
        } else if k.eq_ignore_ascii_case("BODY") {
            dsn::once(&mut body)?;
            p.body = Some(match v {
                Some(v) if v.eq_ignore_ascii_case("7BIT") => BodyType::SevenBit,
                Some(v) if v.eq_ignore_ascii_case("8BITMIME") => BodyType::EightBitMime,
                _ => {
                    return Err(Reply::new(
                        501,
                        EnhancedCode::new(5, 5, 4),
                        "BODY must be 7BIT or 8BITMIME",
                    ))
                }
            });
        } else if k.eq_ignore_ascii_case("SMTPUTF8") {
            dsn::once(&mut utf8)?;
            if v.is_some() {
                return Err(Reply::new(
                    501,
                    EnhancedCode::new(5, 5, 4),
                    "SMTPUTF8 takes no value",
                ));
            }
            p.smtputf8 = true;
        } else if k.eq_ignore_ascii_case("RET") {
            dsn::once(&mut ret)?;
            p.ret = Some(dsn::parse_ret(v)?);
        } else if k.eq_ignore_ascii_case("ENVID") {
            dsn::once(&mut envid)?;
            p.envid = Some(dsn::parse_envid(v)?);
        } else {
            return Err(reply::PARAM_UNKNOWN);
        }
    }
    Ok(p)
}

/// `SIZE=digits`; a number too large for u64 is still a size (and over any limit).
fn parse_size(v: Option<&str>) -> Result<u64, Reply> {
    match v {
        Some(v) if v.bytes().all(|b| b.is_ascii_digit()) => Ok(v.parse().unwrap_or(u64::MAX)),
        _ => Err(Reply::new(
            501,
            EnhancedCode::new(5, 5, 4),
            "SIZE must be a number",
        )),
    }
}
