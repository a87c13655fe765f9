//! `RCPT TO:` (RFC 5321 §4.1.1.3): adds a recipient to the open transaction after
//! the parameter (`NOTIFY`, `ORCPT`), SMTPUTF8, limit and relay checks. Relay rule:
//! our own domains (and bare `postmaster`) from anyone, any other domain only from
//! a trusted network or an authenticated tenant; everything else is `550 5.7.1`, so
//! we are never an open relay. An authenticated tenant's rules (its recipient limit,
//! with the count the transaction would reach, and its suppression list) are asked
//! before the recipient is added.

use crate::{Notify, Recipient};

use super::command::Params;
use super::dsn;
use super::state::SessionState;
use crate::path::Path;
use crate::reply::{self, EnhancedCode, Reply};

impl SessionState {
    pub(super) fn rcpt(&mut self, path: Path<'_>, params: Params<'_>) -> Reply {
        let extended = self.greeting.as_ref().is_some_and(|g| g.extended);
        let Some(tx) = self.tx.as_mut() else {
            return reply::BAD_SEQUENCE_MAIL;
        };
        if tx.chunks.is_some() {
            return Reply::new(
                503,
                EnhancedCode::new(5, 5, 1),
                "RCPT not allowed after BDAT",
            );
        }
        tx.rcpt_attempted = true;
        let (notify, orcpt) = match rcpt_params(params, extended) {
            Ok(p) => p,
            Err(r) => return r,
        };
        if path.is_utf8() && !tx.smtputf8 {
            return reply::NEEDS_SMTPUTF8;
        }
        if tx.recipients.len() >= self.params.limits.max_recipients {
            return reply::TOO_MANY_RECIPIENTS;
        }
        if let Some(b) = self
            .params
            .blocked
            .as_ref()
            .filter(|b| b.at == super::BlockedAt::Rcpt)
        {
            let postmaster = path.address.eq_ignore_ascii_case("postmaster")
                || path
                    .address
                    .rsplit_once('@')
                    .is_some_and(|(local, domain)| {
                        local.eq_ignore_ascii_case("postmaster")
                            && self.params.relay.is_local_domain(domain)
                    });
            if !postmaster {
                return b.reply.clone();
            }
        }
        if let Some(intake) = &self.params.intake {
            let mixed = match intake.check(path.address) {
                Some(Err(r)) => return r,
                Some(Ok(())) if tx.recipients.is_empty() || tx.intake => {
                    tx.intake = true;
                    tx.recipients
                        .push(Recipient::new(path.address.to_string(), notify, orcpt));
                    return reply::RECIPIENT_OK;
                }
                Some(Ok(())) => true,
                None => tx.intake,
            };
            if mixed {
                return Reply::new(
                    452,
                    EnhancedCode::new(4, 5, 3),
                    "Reports to this address go in a transaction of their own",
                );
            }
        }
        let authenticated = match (&self.params.tenants, &self.auth) {
            (Some(policy), Some(grant)) => {
                if let Err(r) = policy.check_recipient(grant, path.address, tx.recipients.len() + 1)
                {
                    return r;
                }
                true
            }
            _ => false,
        };
        let local = match path.domain() {
            Some(domain) => self.params.relay.is_local_domain(domain),
            // The path parser only lets a domain-less `postmaster` through.
            None => true,
        };
        if !local && !authenticated && !self.params.relay.is_trusted(self.params.client_ip) {
            return reply::RELAY_DENIED;
        }
        tx.recipients
            .push(Recipient::new(path.address.to_string(), notify, orcpt));
        reply::RECIPIENT_OK
    }
}

fn rcpt_params(params: Params<'_>, extended: bool) -> Result<(Notify, Option<String>), Reply> {
    let mut notify = Notify::default();
    let mut orcpt = None;
    let (mut seen_notify, mut seen_orcpt) = (false, false);
    for param in params {
        let param = param?;
        if !extended {
            return Err(reply::PARAM_UNKNOWN);
        }
        if param.keyword.eq_ignore_ascii_case("NOTIFY") {
            dsn::once(&mut seen_notify)?;
            notify = dsn::parse_notify(param.value)?;
        } else if param.keyword.eq_ignore_ascii_case("ORCPT") {
            dsn::once(&mut seen_orcpt)?;
            orcpt = Some(dsn::parse_orcpt(param.value)?);
        } else {
            return Err(reply::PARAM_UNKNOWN);
        }
    }
    Ok((notify, orcpt))
}
