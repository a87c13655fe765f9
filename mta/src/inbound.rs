//! SPF, DKIM, DMARC and ARC checks of mail arriving from the internet on the mx
//! listener, and what follows from them.
//!
//! ```text
//! applies(role, envelope)   mx listener, [inbound] checks on, client outside the trusted
//!                           networks, session not authenticated
//! check(envelope, body)
//!   ├─ verification::authenticate(core's authenticator, body, client ip/helo/sender,
//!   │                             time_limit([dns] timeout × attempts))
//!   ├─ DMARC failed? the From domain's policy → [inbound] dmarc_reject / dmarc_quarantine
//!   │     reject     → Err(550 5.7.1 naming the domain and its policy)
//!   │     quarantine → X-Way2Mail-Quarantine: dmarc=fail policy=P header.from=D
//!   │     none       → nothing beyond Authentication-Results
//!   ├─ strip forged Authentication-Results (our authserv-id) and any X-Way2Mail-Quarantine
//!   └─ prepend Authentication-Results (and the quarantine mark)
//! ```
//!
//! Each core keeps its own [`MessageAuthenticator`] (a hickory resolver with its cache)
//! in a thread-local, built on first use inside that core's runtime: the resolver's
//! sockets and tasks belong to the runtime that awaits them.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use mail_auth::MessageAuthenticator;
use way2mail_daemon::dns::DnsSettings;
use way2mail_mta::verification::{self, DmarcPolicy, PeerIdentity, Report};
use way2mail_smtp::reply::{EnhancedCode, Reply};
use way2mail_smtp::server::Role;
use way2mail_smtp::Envelope;

use crate::config::authn::DmarcAction;
use crate::config::Settings;

/// A message after the checks.
pub struct InboundOutcome {
    /// The message to spool: forged `Authentication-Results:` of our authserv-id
    /// removed, ours (and a quarantine mark when the policy says so) prepended.
    pub body: Vec<u8>,
    /// For the log: `spf=pass dkim=pass dmarc=pass arc=none`.
    pub summary: String,
}

pub struct Inbound {
    settings: Arc<Settings>,
    dns: DnsSettings,
    limit: Duration,
}

thread_local! {
    /// This core's authenticator; see the module comment.
    static AUTHENTICATOR: RefCell<Option<MessageAuthenticator>> = const { RefCell::new(None) };
}

/// The current core's authenticator, built on first use. A failure (only possible when
/// `[dns] nameservers` is empty and resolv.conf cannot be read) is not kept, so the
/// next message tries again.
fn authenticator(dns: &DnsSettings) -> std::io::Result<MessageAuthenticator> {
    AUTHENTICATOR.with(|cell| {
        if let Some(authenticator) = cell.borrow().as_ref() {
            return Ok(authenticator.clone());
        }
        let authenticator = MessageAuthenticator(way2mail_daemon::dns::resolver(dns)?);
        *cell.borrow_mut() = Some(authenticator.clone());
        Ok(authenticator)
    })
}

impl Inbound {
    pub fn new(settings: Arc<Settings>) -> Inbound {
        let dns = settings.dns.clone();
        let attempts = u32::try_from(dns.attempts.max(1)).unwrap_or(u32::MAX);
        let limit = verification::time_limit(dns.timeout.saturating_mul(attempts));
        Inbound {
            settings,
            dns,
            limit,
        }
    }

    /// Whether a message on this listener from this envelope's client is checked:
    /// the mx role, checks enabled, a client outside the trusted networks, no AUTH.
    pub fn applies(&self, role: Role, envelope: &Envelope) -> bool {
        role == Role::Mx
            && self.settings.raw.inbound.checks
            && envelope.origin.auth.is_none()
            && !self.settings.relay.is_trusted(envelope.origin.client_ip)
    }

    /// Runs the checks. `Err` carries the refusal (`550 5.7.1` for a DMARC reject)
    /// and the summary for the log.
    pub async fn check(
        &self,
        envelope: &Envelope,
        body: Vec<u8>,
    ) -> Result<InboundOutcome, (Reply, String)> {
        let raw = &self.settings.raw;
        let config = &raw.inbound;
        let authserv_id = config.authserv_id(&raw.hostname);
        let client = PeerIdentity {
            ip: envelope.origin.client_ip,
            helo: &envelope.origin.helo,
            mail_from: &envelope.sender,
            receiver: &raw.hostname,
        };
        let report = match authenticator(&self.dns) {
            Ok(authenticator) => {
                verification::authenticate(&authenticator, &body, &client, self.limit).await
            }
            Err(e) => {
                tracing::error!(error = %e, "inbound checks: no DNS resolver");
                Report::unavailable(&client, "no DNS resolver")
            }
        };
        let summary = report.summary();
        crate::metrics::inbound_auth(&report);

        let mut quarantine = None;
        if let Some((policy, domain)) = report.dmarc_failure() {
            let action = match policy {
                DmarcPolicy::Reject => config.dmarc_reject,
                DmarcPolicy::Quarantine => config.dmarc_quarantine,
                DmarcPolicy::None => DmarcAction::None,
            };
            match action {
                DmarcAction::Reject => return Err((refusal(policy, domain), summary)),
                DmarcAction::Quarantine => {
                    quarantine = Some(verification::quarantine_header(policy, domain));
                }
                DmarcAction::None => {}
            }
        }

        // Several From: fields, or one naming several domains: mail-auth answers
        // dmarc=none, which would let a sender dodge a p=reject domain's policy. Such
        // a message is treated like a p=reject failure (RFC 7489 §6.6.1).
        if quarantine.is_none() {
            if let Some(problem) = verification::ambiguous_author(&body) {
                match config.dmarc_reject {
                    DmarcAction::Reject => {
                        let reply = Reply::owned(
                            550,
                            EnhancedCode::new(5, 7, 1),
                            format!("Message refused: {problem}, so DMARC cannot be applied"),
                        );
                        return Err((reply, format!("{summary} from=ambiguous")));
                    }
                    DmarcAction::Quarantine => {
                        quarantine = Some(verification::quarantine_ambiguous());
                    }
                    DmarcAction::None => {}
                }
            }
        }

        let header = report.header(authserv_id);
        let mut body = body;
        verification::strip_forged_results(&mut body, authserv_id);
        verification::strip_fields(&mut body, verification::QUARANTINE_HEADER);
        let quarantine = quarantine.unwrap_or_default();
        let mut out = Vec::with_capacity(header.len() + quarantine.len() + body.len());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(quarantine.as_bytes());
        out.extend_from_slice(&body);
        Ok(InboundOutcome { body: out, summary })
    }
}

/// `550 5.7.1` naming the From domain and its policy. The domain comes from the
/// message, so only host-name characters are echoed.
fn refusal(policy: DmarcPolicy, domain: &str) -> Reply {
    let domain: String = domain
        .chars()
        .take(253)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '?'
            }
        })
        .collect();
    Reply::owned(
        550,
        EnhancedCode::new(5, 7, 1),
        format!(
            "Message refused: DMARC check failed and the policy of {domain} is p={}",
            policy.as_str()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_names_domain_and_policy_and_stays_one_line() {
        let r = refusal(DmarcPolicy::Reject, "example.com");
        assert_eq!(
            (r.code, r.enhanced),
            (550, Some(EnhancedCode::new(5, 7, 1)))
        );
        assert_eq!(
            r.text,
            "Message refused: DMARC check failed and the policy of example.com is p=reject"
        );
        let r = refusal(DmarcPolicy::Quarantine, "evil\r\n250 ok");
        let mut wire = Vec::new();
        r.write_to(&mut wire);
        assert_eq!(
            wire,
            b"550 5.7.1 Message refused: DMARC check failed and the policy of evil??250?ok is p=quarantine\r\n"
        );
    }
}
