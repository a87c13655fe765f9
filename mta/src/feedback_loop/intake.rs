//! What the `mx` listener does with a message to an intake address, in place of
//! queueing it. Runs off the cores (it reads keys and writes the delivery log).
//!
//! A **bounce** (to `b-TOKEN@<[bounces] domain>`):
//!
//! 1. the token must verify against the keyring (`feedback::verp::verify`): the
//!    tenant's data key, the message, the recipient's tag. A forged, altered or
//!    erased tenant's token: discarded;
//! 2. a complaint report sent to the return path (some providers do) goes to 3b;
//! 3. the DSN is parsed (`feedback::dsn`, RFC 3464, or heuristics for the
//!    non-standard ones); each `failed` recipient whose address matches the
//!    token's tag gets an `async_bounced` record in the tenant's delivery log,
//!    categorised by the bounce rules from its Diagnostic-Code (else its status);
//!    a hard category counts for the reputation guard and may suppress the
//!    address. `delayed`, `delivered` and `relayed` reports change nothing.
//!
//! A **complaint** (to `[feedback] address`, ARF per RFC 5965):
//!
//! 3b. matched through the VERP return path of the reported message (verified, as
//!    above): a `complained` record for the message and its recipient, counted by
//!    the guard, and the address suppressed; or, with no return path of ours,
//!    through its `Feedback-ID: campaign:TENANT:way2mail` (and the original
//!    Message-ID when it is one of our queue ids): a `complained` record marked
//!    unverified, which neither counts nor suppresses, since anyone can send such
//!    a report;
//! 4. anything else: discarded.
//!
//! A **DMARC aggregate report** (to `[feedback] dmarc_address`): see
//! `dmarc_intake`; an unreadable one is refused rather than answered `250`.
//!
//! Either way the message is consumed: it is answered `250` and never relayed.
//! What was done is one INFO line and `way2mail_feedback_reports_total{kind,result}`.

use way2mail_daemon::time::now_ms;
use way2mail_mta::bounces::Rules;
use way2mail_mta::feedback::{arf, dsn, verp};
use way2mail_queue::{DeliveryOutcome, DeliveryRecord, Spool};
use way2mail_smtp::MessageId;

use super::{hard_rule, FeedbackLoop, Kind};

/// Longest reply text kept in a record.
const MAX_TEXT: usize = 1000;

/// What became of one report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumed {
    pub kind: Kind,
    /// `matched` or `discarded`.
    pub result: &'static str,
    /// Why, in a few words (for the log line).
    pub detail: &'static str,
    pub tenant: Option<String>,
    /// Records written.
    pub records: usize,
    /// The answer to the end of data when it is not `250 Report received`.
    pub reply: Option<way2mail_smtp::reply::Reply>,
}

/// Everything the intake needs.
pub struct Intake<'a> {
    pub spool: &'a Spool,
    pub rules: &'a Rules,
    pub verp_domain: Option<&'a str>,
    pub feedback: Option<&'a FeedbackLoop>,
    /// The tenants' domains, for DMARC reports.
    pub directory: Option<&'a crate::tenants::directory::Directory>,
    /// `[feedback] dmarc_max_reports`.
    pub dmarc_max_reports: u64,
}

impl Intake<'_> {
    /// Consumes `message`, sent to `recipient` (an intake address of `kind`).
    pub fn consume(&self, kind: Kind, recipient: &str, message: &[u8]) -> Consumed {
        let consumed = match kind {
            Kind::Bounce => self.bounce(recipient, message),
            Kind::Complaint => self.complaint(message),
            Kind::Dmarc => super::dmarc_intake::consume(
                self.spool,
                self.directory,
                self.dmarc_max_reports,
                message,
            ),
        };
        let kind_name = match kind {
            Kind::Bounce => "bounce",
            Kind::Complaint => "complaint",
            Kind::Dmarc => "dmarc",
        };
        metrics::counter!(
            "way2mail_feedback_reports_total",
            "kind" => kind_name,
            "result" => consumed.result
        )
        .increment(1);
        consumed
    }

    fn bounce(&self, recipient: &str, message: &[u8]) -> Consumed {
        let discard = |detail| Consumed {
            kind: Kind::Bounce,
            result: "discarded",
            detail,
            tenant: None,
            records: 0,
            reply: None,
        };
        let Some(domain) = self.verp_domain else {
            return discard("no [bounces] domain");
        };
        let keyring = self.spool.keyring();
        let Some(token) = verp::verify(keyring, recipient, domain) else {
            return discard("forged or unknown token");
        };
        let Some(key) = keyring.existing(&token.tenant) else {
            return discard("forged or unknown token");
        };
        if let Some(complaint) = arf::parse(message) {
            let address = reported_addresses(&complaint)
                .into_iter()
                .find(|a| verp::recipient_matches(&key, &token.recipient_tag, a));
            return self.complained(
                &token.tenant,
                &token.message,
                address.as_deref(),
                true,
                "complaint sent to the return path",
            );
        }
        let Some(bounce) = dsn::parse(message) else {
            return discard("not a bounce");
        };
        let mut records = 0;
        for r in bounce.recipients.iter().filter(|r| r.action == "failed") {
            // Final-Recipient may be a rewritten address (a forward, an alias);
            // the one we sent to is then Original-Recipient.
            let Some(address) = std::iter::once(&r.address)
                .chain(r.original_recipient.as_ref())
                .find(|a| verp::recipient_matches(&key, &token.recipient_tag, a))
                .cloned()
            else {
                continue;
            };
            let (reply, category) = self.categorise(r.status.as_deref(), r.diagnostic.as_deref());
            let record = DeliveryRecord {
                time_ms: now_ms(),
                outcome: DeliveryOutcome::AsyncBounced,
                message_id: token.message.to_string(),
                recipient: address.clone(),
                next_hop: r.remote_mta.as_deref().map(|m| clip(m, 255)),
                ip: None,
                tls: None,
                reply,
                attempt: 0,
                queue_time_ms: now_ms().saturating_sub(token.message.timestamp_ms()),
                tags: Vec::new(),
                metadata: Default::default(),
                category: Some(category.to_string()),
                scan: None,
            };
            if let Err(e) = self
                .spool
                .record_event(&token.tenant, &token.message, &record)
            {
                tracing::error!(error = %e, "async bounce: the record could not be written");
                continue;
            }
            records += 1;
            if let (Some(rule), Some(feedback)) = (hard_rule(Some(category)), self.feedback) {
                feedback.hard_bounce(&token.tenant, &address, rule, &token.message.to_string());
            }
        }
        Consumed {
            kind: Kind::Bounce,
            result: if records > 0 { "matched" } else { "discarded" },
            detail: if records > 0 {
                "async bounce recorded"
            } else {
                "no failed recipient of the token's"
            },
            tenant: Some(token.tenant),
            records,
            reply: None,
        }
    }

    fn complaint(&self, message: &[u8]) -> Consumed {
        let discard = |detail| Consumed {
            kind: Kind::Complaint,
            result: "discarded",
            detail,
            tenant: None,
            records: 0,
            reply: None,
        };
        let Some(complaint) = arf::parse(message) else {
            return discard("not a complaint report");
        };
        let candidates = reported_addresses(&complaint);
        // Through our return path: verified.
        let return_path = complaint
            .original
            .return_path
            .as_deref()
            .or(complaint.original_mail_from.as_deref());
        if let (Some(rp), Some(domain)) = (return_path, self.verp_domain) {
            let keyring = self.spool.keyring();
            if let Some(token) = verp::verify(keyring, rp, domain) {
                let Some(key) = keyring.existing(&token.tenant) else {
                    return discard("forged or unknown token");
                };
                let address = candidates
                    .iter()
                    .find(|a| verp::recipient_matches(&key, &token.recipient_tag, a))
                    .cloned();
                return self.complained(
                    &token.tenant,
                    &token.message,
                    address.as_deref(),
                    true,
                    "complaint matched by its return path",
                );
            }
        }
        // Through Feedback-ID: unverified.
        let Some(tenant) = complaint
            .original
            .feedback_id
            .as_deref()
            .and_then(feedback_id_tenant)
        else {
            return discard("no return path or Feedback-ID of ours");
        };
        if self.spool.keyring().existing(&tenant).is_none() {
            return discard("Feedback-ID of no tenant here");
        }
        let message = complaint
            .original
            .message_id
            .as_deref()
            .and_then(queue_id_of)
            .unwrap_or_else(MessageId::generate);
        self.complained(
            &tenant,
            &message,
            candidates.first().map(String::as_str),
            false,
            "complaint matched by Feedback-ID (unverified)",
        )
    }

    /// Writes a `complained` record; a verified one counts and suppresses.
    fn complained(
        &self,
        tenant: &str,
        message: &MessageId,
        address: Option<&str>,
        verified: bool,
        detail: &'static str,
    ) -> Consumed {
        let reply = if verified {
            "complaint (ARF feedback report)"
        } else {
            "complaint (ARF feedback report), matched by Feedback-ID: unverified"
        };
        let record = DeliveryRecord {
            time_ms: now_ms(),
            outcome: DeliveryOutcome::Complained,
            message_id: message.to_string(),
            recipient: address.unwrap_or_default().to_string(),
            next_hop: None,
            ip: None,
            tls: None,
            reply: Some(reply.into()),
            attempt: 0,
            queue_time_ms: now_ms().saturating_sub(message.timestamp_ms()),
            tags: Vec::new(),
            metadata: Default::default(),
            category: None,
            scan: None,
        };
        let written = match self.spool.record_event(tenant, message, &record) {
            Ok(()) => 1,
            Err(e) => {
                tracing::error!(error = %e, "complaint: the record could not be written");
                0
            }
        };
        if verified && written == 1 {
            if let Some(feedback) = self.feedback {
                feedback.complaint(tenant, address, &message.to_string());
            }
        }
        Consumed {
            kind: Kind::Complaint,
            result: if written == 1 { "matched" } else { "discarded" },
            detail,
            tenant: Some(tenant.to_string()),
            records: written,
            reply: None,
        }
    }

    /// The text a record keeps and its category: the Diagnostic-Code when there
    /// is one (`550 5.1.1 … user unknown`), else the status alone as a reply of
    /// its class would carry it.
    fn categorise(
        &self,
        status: Option<&str>,
        diagnostic: Option<&str>,
    ) -> (Option<String>, &'static str) {
        let diagnostic = diagnostic.map(|d| clip(d, MAX_TEXT));
        if let Some(d) = diagnostic.as_deref() {
            let c = self.rules.classify(Some(d));
            if c != way2mail_mta::bounces::Category::Other || status.is_none() {
                return (Some(d.to_string()), c.name());
            }
        }
        let Some(status) = status else {
            return (diagnostic, way2mail_mta::bounces::Category::Other.name());
        };
        let code = if status.starts_with('4') { 450 } else { 550 };
        let text = match diagnostic.as_deref() {
            Some(d) => format!("{code} {status} {d}"),
            None => format!("{code} {status}"),
        };
        let c = self.rules.classify(Some(&text));
        (Some(diagnostic.unwrap_or(text)), c.name())
    }
}

/// The tenant of a `Feedback-ID: campaign:TENANT:way2mail` field.
pub fn feedback_id_tenant(field: &str) -> Option<String> {
    let parts: Vec<&str> = field.trim().split(':').map(str::trim).collect();
    match parts.as_slice() {
        [_, tenant, "way2mail"] if !tenant.is_empty() => Some(tenant.to_ascii_lowercase()),
        _ => None,
    }
}

/// Our queue id in a Message-ID we generated (`<ID@host>`), if it is one.
fn queue_id_of(message_id: &str) -> Option<MessageId> {
    let inner = message_id
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>');
    inner.split_once('@')?.0.parse().ok()
}

/// The addresses a complaint names as the recipient, as its parser left them (no
/// brackets or display names): `Original-Rcpt-To`, then the reported copy's `To:`.
/// Kept to the longest address SMTP allows, since an unverified one is recorded.
fn reported_addresses(complaint: &arf::Complaint) -> Vec<String> {
    complaint
        .original_rcpt_to
        .iter()
        .cloned()
        .chain(complaint.original.to_address())
        .filter(|a| a.contains('@'))
        .map(|a| clip(&a, 254))
        .collect()
}

fn clip(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feedback_ids_and_addresses() {
        assert_eq!(
            feedback_id_tenant("spring-sale:acme:way2mail").as_deref(),
            Some("acme")
        );
        assert_eq!(feedback_id_tenant("a:b:c:way2mail"), None, "not our form");
        assert_eq!(feedback_id_tenant("acme:other"), None);
        assert_eq!(feedback_id_tenant(":way2mail"), None);
        let id = MessageId::generate();
        assert_eq!(queue_id_of(&format!("<{id}@mx.example>")), Some(id));
        assert_eq!(queue_id_of("<random@example.com>"), None);
    }
}
