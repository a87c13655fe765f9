//! Bounces: RFC 3464 delivery status notifications, and the common bounces that
//! are not ones (heuristic.rs).
//!
//! A DSN is `multipart/report; report-type=delivery-status` with a human-readable
//! part, a `message/delivery-status` part and the returned message (or its header
//! section). The status part is field blocks: one per message (Reporting-MTA,
//! Arrival-Date, …), then one per recipient:
//!
//! ```text
//! Final-Recipient: rfc822; bob@example.org
//! Action: failed
//! Status: 5.1.1
//! Remote-MTA: dns; mx.example.org
//! Diagnostic-Code: smtp; 550 5.1.1 <bob@example.org>: Recipient address rejected
//! ```
//!
//! The status part is found wherever it is (some generators nest the report in a
//! `multipart/mixed`), whatever the root's report-type says, and read from its raw
//! bytes (fields.rs); RFC 6533's `message/global-delivery-status` is read the same
//! way. Every recipient block is reported with its own action: a DSN may mix
//! `failed` with `delayed`, `delivered`, `relayed` or `expanded`, and only the
//! caller knows what each means to it.
//!
//! When a message has no status part, or one with no recipient in it, the
//! heuristics read its text (qmail, old Exim, generic "550 5.1.1" replies next to
//! an address); what they find is `failed` and the bounce is marked not standard.

use super::fields::{self, Field, OriginalHeaders};
use super::{heuristic, mime, MAX_RECIPIENTS};

/// One bounce: what happened to which recipients, and what the returned copy says
/// about the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bounce {
    pub recipients: Vec<BounceRecipient>,
    /// From the returned message or header section; empty when the bounce has none.
    pub original: OriginalHeaders,
    /// Read from an RFC 3464 status part (`false`: found by the heuristics).
    pub standard: bool,
}

/// One recipient of a bounce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BounceRecipient {
    /// Final-Recipient, else Original-Recipient; type and angle brackets dropped.
    pub address: String,
    /// Original-Recipient when given (the address as we sent to it, where
    /// Final-Recipient may be after forwarding): a VERP recipient tag may match
    /// this one rather than `address`.
    pub original_recipient: Option<String>,
    /// failed, delayed, delivered, relayed or expanded (lower case; another word
    /// when the generator wrote one). Only `failed` is a bounce.
    pub action: String,
    /// The enhanced status code (`5.1.1`), when one is given and well formed.
    pub status: Option<String>,
    /// Diagnostic-Code without its type (`550 5.1.1 … User unknown`).
    pub diagnostic: Option<String>,
    /// Remote-MTA without its type (`mx.example.org`).
    pub remote_mta: Option<String>,
}

/// The status parts: RFC 3464's and RFC 6533's internationalized one.
const DELIVERY_STATUS: &[(&str, &str)] = &[
    ("message", "delivery-status"),
    ("message", "global-delivery-status"),
];

/// The bounce in `message` (a whole message as received, header section included);
/// `None` when it is no bounce this module can read: no status part with a
/// recipient, and no recipient the heuristics recognize.
pub fn parse(message: &[u8]) -> Option<Bounce> {
    let parsed = mime::parse(message)?;
    let original = mime::original(&parsed);
    if let Some(bytes) =
        mime::find(&parsed, DELIVERY_STATUS).and_then(|p| mime::content(&parsed, p))
    {
        let recipients = recipients(&fields::blocks(&bytes));
        if !recipients.is_empty() {
            return Some(Bounce {
                recipients,
                original: original.unwrap_or_default(),
                standard: true,
            });
        }
    }
    let text = mime::first_text(&parsed)?;
    let recipients = heuristic::recipients(text);
    if recipients.is_empty() {
        return None;
    }
    Some(Bounce {
        recipients,
        original: original
            .or_else(|| heuristic::original(text))
            .unwrap_or_default(),
        standard: false,
    })
}

/// The recipient blocks of a status part: every block naming a recipient, at most
/// [`MAX_RECIPIENTS`].
fn recipients(blocks: &[Vec<Field>]) -> Vec<BounceRecipient> {
    blocks
        .iter()
        .filter_map(|b| recipient(b))
        .take(MAX_RECIPIENTS)
        .collect()
}

fn recipient(block: &[Field]) -> Option<BounceRecipient> {
    let typed_address = |name| {
        fields::first(block, name)
            .map(fields::untyped)
            .and_then(fields::address)
    };
    let original_recipient = typed_address("original-recipient");
    let address = typed_address("final-recipient").or_else(|| original_recipient.clone())?;
    let status = fields::first(block, "status").and_then(status);
    // Action is required; when a generator leaves it out, the status class says.
    let action = fields::first(block, "action")
        .and_then(|a| {
            a.split(|c: char| c.is_whitespace() || c == '(' || c == ';')
                .next()
        })
        .filter(|a| !a.is_empty())
        .map(str::to_ascii_lowercase)
        .or_else(|| {
            let class = status.as_deref()?.chars().next()?;
            Some(
                match class {
                    '5' => "failed",
                    '4' => "delayed",
                    _ => "delivered",
                }
                .to_owned(),
            )
        })?;
    let diagnostic = fields::first(block, "diagnostic-code")
        .map(fields::untyped)
        .filter(|d| !d.is_empty())
        .map(str::to_owned);
    let remote_mta = fields::first(block, "remote-mta")
        .map(fields::untyped)
        .and_then(|m| m.split_whitespace().next())
        .map(|m| m.trim_end_matches('.').to_owned())
        .filter(|m| !m.is_empty());
    Some(BounceRecipient {
        address,
        original_recipient,
        action,
        status,
        diagnostic,
        remote_mta,
    })
}

/// The enhanced status code starting a Status value (`5.0.0 (permanent failure)`
/// → `5.0.0`): class 2, 4 or 5, subject and detail of one to three digits.
pub(crate) fn status(value: &str) -> Option<String> {
    let code = value.split_whitespace().next()?;
    let code = code.trim_start_matches('#');
    is_status(code).then(|| code.to_owned())
}

pub(crate) fn is_status(code: &str) -> bool {
    let mut parts = code.split('.');
    let (Some(class), Some(subject), Some(detail), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let digits = |s: &str| (1..=3).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit());
    matches!(class, "2" | "4" | "5") && digits(subject) && digits(detail)
}
