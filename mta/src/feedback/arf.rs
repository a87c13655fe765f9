//! Complaints: RFC 5965 Abuse Reporting Format feedback reports, as mailbox
//! providers' feedback loops send them (Yahoo's CFL, Microsoft's JMRP, and the
//! many ARF loops of smaller providers).
//!
//! A report is `multipart/report; report-type=feedback-report`: a human-readable
//! part, a `message/feedback-report` part (one field block), and the reported
//! message, whole (`message/rfc822`) or its header section (`text/rfc822-headers`).
//! The copy's `Return-Path:` is our VERP address (`verp::verify`), which names the
//! tenant, the message and the recipient's tag; the recipient itself is
//! Original-Rcpt-To when the report gives it, else often the copy's `To:`.
//!
//! Providers redact: Original-Rcpt-To, the copy's `To:` and more may be missing
//! or replaced with placeholders, so every field but Feedback-Type is optional,
//! and a report without Feedback-Type (against RFC 5965) is `other`.

use super::fields::{self, OriginalHeaders};
use super::{mime, MAX_RECIPIENTS};

/// One complaint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Complaint {
    /// abuse, fraud, virus, other, not-spam, auth-failure… (lower case).
    pub feedback_type: String,
    pub user_agent: Option<String>,
    /// Without angle brackets.
    pub original_mail_from: Option<String>,
    /// Without angle brackets; at most [`MAX_RECIPIENTS`](super::MAX_RECIPIENTS).
    pub original_rcpt_to: Vec<String>,
    /// Arrival-Date (or the older Received-Date), as written.
    pub arrival_date: Option<String>,
    pub source_ip: Option<String>,
    pub reported_domain: Option<String>,
    pub original: OriginalHeaders,
}

/// The report parts: RFC 5965's, and the one misspelling seen in the wild.
const FEEDBACK_REPORT: &[(&str, &str)] = &[
    ("message", "feedback-report"),
    ("message", "feedback_report"),
];

/// The complaint in `message` (a whole message as received); `None` when it has no
/// feedback-report part.
pub fn parse(message: &[u8]) -> Option<Complaint> {
    let parsed = mime::parse(message)?;
    let part = mime::find(&parsed, FEEDBACK_REPORT)?;
    let bytes = mime::content(&parsed, part)?;
    // One block by the RFC; a generator that leaves blank lines in it is read
    // through (the first value of a field wins).
    let block: Vec<fields::Field> = fields::blocks(&bytes).into_iter().flatten().collect();
    let text = |name: &str| {
        fields::first(&block, name)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let feedback_type = fields::first(&block, "feedback-type")
        .and_then(|t| t.split_whitespace().next())
        .map(str::to_ascii_lowercase)
        .unwrap_or_else(|| "other".to_owned());
    let original_rcpt_to = fields::all(&block, "original-rcpt-to")
        .filter_map(fields::address)
        .take(MAX_RECIPIENTS)
        .collect();
    Some(Complaint {
        feedback_type,
        user_agent: text("user-agent"),
        original_mail_from: fields::first(&block, "original-mail-from").and_then(fields::address),
        original_rcpt_to,
        arrival_date: text("arrival-date").or_else(|| text("received-date")),
        source_ip: text("source-ip"),
        reported_domain: text("reported-domain"),
        original: mime::original(&parsed).unwrap_or_default(),
    })
}
