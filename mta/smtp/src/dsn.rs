//! Delivery status notifications (RFC 3461, RFC 3464): the notice sent back to a
//! message's envelope sender when delivery to some recipients failed, is delayed, or
//! succeeded and the sender asked to hear about it (`NOTIFY=SUCCESS`).
//!
//! Pure: [`build`] takes the envelope, the stored message and per-recipient
//! outcomes, and returns a complete RFC 5322 message (or nothing, when no notice is
//! due). The caller queues it from the null sender, which is what keeps notices from
//! looping: [`build`] never answers a message whose own sender is null.
//!
//! The notice is a `multipart/report; report-type=delivery-status` (RFC 6522):
//!
//! ```text
//! build ─┬─ text::explanation      text/plain, for people          (dsn_text.rs)
//!        ├─ status::delivery_status message/delivery-status         (dsn_status.rs)
//!        └─ original::returned      message/rfc822 or headers only  (dsn_original.rs)
//!    dsn_field.rs cleans and folds every value; crate::date formats every date.
//! ```

mod field;
mod original;

/// Largest original a notice returns whole (`RET=FULL`); of a larger one only the
/// header section is returned.
pub const RETURNED_WHOLE_MAX: usize = original::MAX_FULL;
mod status;
mod text;

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::reply::EnhancedCode;
use crate::{BodyType, Envelope, Notify, Ret};

use self::field::clean;
use self::original::Returned;
use self::status::Reported;

/// What happened to one recipient (RFC 3464 §2.3.3 `Action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Permanent failure: the recipient will not get the message.
    Failed,
    /// Not delivered yet; still being retried.
    Delayed,
    /// Delivered to the next hop, which accepted responsibility and supports DSN
    /// (or is the final destination).
    Delivered,
    /// Handed to a next hop that does not support DSN, so no further notice will
    /// come from beyond it (RFC 3461 §6.2.3).
    Relayed,
}

impl Action {
    /// The RFC 3464 field value.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Failed => "failed",
            Action::Delayed => "delayed",
            Action::Delivered => "delivered",
            Action::Relayed => "relayed",
        }
    }

    /// Higher is more serious; picks the subject and the opening of a notice that
    /// reports several outcomes at once.
    fn severity(self) -> u8 {
        match self {
            Action::Failed => 2,
            Action::Delayed => 1,
            Action::Delivered | Action::Relayed => 0,
        }
    }
}

/// The outcome for one recipient of the original message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DsnRecipient {
    /// Index into `envelope.recipients` (gives the address, NOTIFY and ORCPT).
    /// An index out of range is ignored.
    pub index: usize,
    pub action: Action,
    /// RFC 3463 status code (`5.1.1`, `4.4.1`, `2.0.0`). One of a class that does
    /// not match `action` is reported as `5.0.0`/`4.0.0`/`2.0.0`.
    pub status: EnhancedCode,
    /// `dns; mx1.example.net`; a bare host name gets the `dns;` prefix.
    pub remote_mta: Option<String>,
    /// `smtp; 550 5.1.1 No such user`; bare text gets the `smtp;` prefix.
    pub diagnostic: Option<String>,
    pub last_attempt_ms: Option<u64>,
    /// Until when a delayed recipient will be retried; ignored for other actions.
    pub will_retry_until_ms: Option<u64>,
}

/// Everything a notice is built from.
pub struct DsnRequest<'a> {
    /// Our host name: `Reporting-MTA` and the `From:`/`Message-ID:` domain.
    pub reporting_mta: &'a str,
    pub envelope: &'a Envelope,
    /// The queue ID of the original, quoted in the text part and the Message-ID.
    pub original_id: &'a str,
    /// The stored message, header section and body, CRLF line ends; or only its
    /// beginning, header section included, when it is larger than
    /// [`RETURNED_WHOLE_MAX`] (nothing more of it is returned).
    pub original: &'a [u8],
    /// The stored message's size.
    pub original_size: usize,
    pub recipients: Vec<DsnRecipient>,
    /// Now, in Unix milliseconds: the notice's `Date:`.
    pub now_ms: u64,
}

/// A notice ready to be queued from the null sender (`MAIL FROM:<>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dsn {
    /// Where to send it: the original envelope sender.
    pub recipient: String,
    /// The complete RFC 5322 message, CRLF line ends.
    pub message: Vec<u8>,
    /// `EightBitMime` when the message has octets over 127 (an 8-bit original was
    /// returned), so it must be queued and relayed with `BODY=8BITMIME`.
    pub body_type: BodyType,
    /// True when `recipient` is not ASCII, so the notice needs SMTPUTF8.
    pub smtputf8: bool,
}

/// Whether a recipient with this `NOTIFY=` wants a notice for this outcome (RFC
/// 3461 §4.1). No `NOTIFY=` at all means failures and delays; `NEVER` means none.
pub fn wants_report(notify: &Notify, action: &Action) -> bool {
    if notify.never {
        return false;
    }
    if notify.is_unspecified() {
        return matches!(action, Action::Failed | Action::Delayed);
    }
    match action {
        Action::Failed => notify.failure,
        Action::Delayed => notify.delay,
        Action::Delivered | Action::Relayed => notify.success,
    }
}

/// Builds the notice for `req`, or `None` when none is due: the original sender is
/// null (never a notice about a notice, so no loops), or no recipient's NOTIFY asks
/// for its outcome.
///
/// What is returned of the original (RFC 3461 §4.3): the whole message in a
/// `message/rfc822` part only for `RET=FULL` on a notice that reports a failure and
/// only up to 10 MB; otherwise its header section (`text/rfc822-headers`). Without
/// `RET` we choose headers only: the sender has the body already, and a bounce that
/// carries it can leak content to a forged sender address.
pub fn build(req: &DsnRequest<'_>) -> Option<Dsn> {
    if req.envelope.sender.is_empty() {
        return None;
    }
    let reported: Vec<Reported<'_>> = req
        .recipients
        .iter()
        .filter_map(|outcome| {
            let recipient = req.envelope.recipients.get(outcome.index)?;
            wants_report(&recipient.notify, &outcome.action)
                .then_some(Reported { outcome, recipient })
        })
        .collect();
    let worst = reported
        .iter()
        .map(|r| r.outcome.action)
        .max_by_key(|a| a.severity())?;

    let full = req.envelope.ret == Some(Ret::Full) && worst == Action::Failed;
    let returned = original::returned(req.original, req.original_size, full);
    let explanation = text::explanation(req, &reported, worst, &returned);
    let status = status::delivery_status(req, &reported);
    let message = assemble(req, worst, &explanation, &status, &returned);
    let sender = clean(&req.envelope.sender, 600);
    Some(Dsn {
        smtputf8: !sender.is_ascii(),
        body_type: if message.is_ascii() {
            BodyType::SevenBit
        } else {
            BodyType::EightBitMime
        },
        recipient: req.envelope.sender.clone(),
        message,
    })
}

/// Header section and the three parts, joined with a boundary found in none of them.
fn assemble(
    req: &DsnRequest<'_>,
    worst: Action,
    explanation: &str,
    status: &str,
    returned: &Returned<'_>,
) -> Vec<u8> {
    let status_type = if status.is_ascii() {
        "message/delivery-status"
    } else {
        // RFC 6533 §6.2: non-ASCII addresses need the global variant.
        "message/global-delivery-status"
    };
    let parts: [(String, &[u8]); 3] = [
        (
            part_header(
                "text/plain; charset=utf-8",
                "Notification",
                !explanation.is_ascii(),
            ),
            explanation.as_bytes(),
        ),
        (
            part_header(status_type, "Delivery report", !status.is_ascii()),
            status.as_bytes(),
        ),
        (
            part_header(
                returned.content_type,
                "Original message",
                returned.eight_bit,
            ),
            &returned.body,
        ),
    ];
    let boundary = boundary(req, &parts);
    let mut out = headers(req, worst, &boundary).into_bytes();
    out.reserve(parts.iter().map(|(h, b)| h.len() + b.len() + 100).sum());
    out.extend_from_slice(b"This is a MIME-encapsulated delivery status notification.\r\n");
    for (header, body) in &parts {
        out.extend_from_slice(format!("\r\n--{boundary}\r\n").as_bytes());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(body);
        if !body.is_empty() && !body.ends_with(b"\r\n") {
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    out
}

/// A part's header section and the empty line after it.
fn part_header(content_type: &str, description: &str, eight_bit: bool) -> String {
    let cte = if eight_bit { "8bit" } else { "7bit" };
    format!(
        "Content-Type: {content_type}\r\nContent-Description: {description}\r\n\
         Content-Transfer-Encoding: {cte}\r\n\r\n"
    )
}

/// The notice's own header section, up to and including the empty line.
fn headers(req: &DsnRequest<'_>, worst: Action, boundary: &str) -> String {
    let host = clean(req.reporting_mta, 255);
    let subject = match worst {
        Action::Failed => "Undelivered Mail Returned to Sender",
        Action::Delayed => "Delayed Mail (still being retried)",
        Action::Delivered | Action::Relayed => "Successful Mail Delivery Report",
    };
    let id: String = req
        .original_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(64)
        .collect();
    format!(
        "From: Mail Delivery System <MAILER-DAEMON@{host}>\r\n\
         To: <{to}>\r\n\
         Subject: {subject}\r\n\
         Date: {date}\r\n\
         Message-ID: <{now}.{token:016x}.{id}.dsn@{host}>\r\n\
         Auto-Submitted: auto-replied\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status;\r\n \
         boundary=\"{boundary}\"\r\n\
         \r\n",
        to = clean(&req.envelope.sender, 600),
        date = crate::date::rfc5322(req.now_ms),
        now = req.now_ms,
        token = unique_token(req.now_ms),
    )
}

/// A MIME boundary that occurs in none of `parts`. Each try draws a new token, and
/// finite content can hold only finitely many of them, so the loop ends (in practice
/// on the first try: 64 random bits).
fn boundary(req: &DsnRequest<'_>, parts: &[(String, &[u8])]) -> String {
    loop {
        let candidate = format!("=_dsn_{:016x}_{}", unique_token(req.now_ms), req.now_ms);
        let found = parts
            .iter()
            .any(|(h, b)| contains(h.as_bytes(), &candidate) || contains(b, &candidate));
        if !found {
            return candidate;
        }
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    let needle = needle.as_bytes();
    let Some((&first, rest)) = needle.split_first() else {
        return true;
    };
    haystack.iter().enumerate().any(|(i, &b)| {
        b == first
            && haystack
                .get(i + 1..i + 1 + rest.len())
                .is_some_and(|w| w == rest)
    })
}

/// 64 bits that differ between calls and between processes: a process-wide counter
/// mixed with `now` by a randomly keyed hasher (std's SipHash keys come from the OS).
fn unique_token(now_ms: u64) -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    RandomState::new().hash_one((n, now_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notify(never: bool, success: bool, failure: bool, delay: bool) -> Notify {
        Notify {
            never,
            success,
            failure,
            delay,
        }
    }

    #[test]
    fn wants_report_follows_notify() {
        use Action::*;
        let all = [Failed, Delayed, Delivered, Relayed];
        let cases = [
            (
                notify(false, false, false, false),
                [true, true, false, false],
            ),
            (
                notify(true, false, false, false),
                [false, false, false, false],
            ),
            (
                notify(false, true, false, false),
                [false, false, true, true],
            ),
            (
                notify(false, false, true, false),
                [true, false, false, false],
            ),
            (
                notify(false, false, false, true),
                [false, true, false, false],
            ),
            (notify(false, true, true, true), [true, true, true, true]),
        ];
        for (n, want) in cases {
            for (action, want) in all.iter().zip(want) {
                assert_eq!(wants_report(&n, action), want, "{n:?} {action:?}");
            }
        }
    }

    #[test]
    fn substring_search() {
        assert!(contains(b"abc--=_dsn_1", "=_dsn_1"));
        assert!(!contains(b"abc--=_dsn_", "=_dsn_1"));
        assert!(!contains(b"", "x"));
        assert!(contains(b"x", ""));
    }

    #[test]
    fn tokens_differ() {
        let a: Vec<u64> = (0..100).map(|_| unique_token(5)).collect();
        let mut b = a.clone();
        b.sort_unstable();
        b.dedup();
        assert_eq!(a.len(), b.len());
    }
}
