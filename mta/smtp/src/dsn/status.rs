//! The machine-readable part of a DSN: the `message/delivery-status` body of RFC
//! 3464 §2, one group of per-message fields, then one group per reported recipient,
//! groups separated by a blank line.

use crate::reply::EnhancedCode;
use crate::Recipient;

use super::field::{clean, push_field, xtext_decode};
use super::{Action, DsnRecipient, DsnRequest};
use crate::date::rfc5322;

/// Longest diagnostic kept: enough for a multi-line SMTP reply, short enough that a
/// hostile peer cannot make the notice large.
const MAX_DIAGNOSTIC: usize = 2000;
/// Longest host name, address or ID field value kept (ORCPT may be 500, RFC 3461 §4.2).
const MAX_VALUE: usize = 600;

/// One recipient that is to appear in the notice: the delivery outcome and the
/// envelope recipient it refers to.
pub(super) struct Reported<'a> {
    pub(super) outcome: &'a DsnRecipient,
    pub(super) recipient: &'a Recipient,
}

impl Reported<'_> {
    /// The status code to report: the one given when it is of a class the action
    /// allows, otherwise the action's generic code, so that a code can never make a
    /// `failed` look like a success. A `failed` recipient may carry a 4.x.x code: a
    /// message given up after its queue lifetime failed for a reason that was itself
    /// transient (4.4.7, as Postfix reports it).
    pub(super) fn status(&self) -> EnhancedCode {
        let given = self.outcome.status;
        let (allowed, generic): (&[u8], _) = match self.outcome.action {
            Action::Failed => (&[5, 4], EnhancedCode::PERMANENT),
            Action::Delayed => (&[4], EnhancedCode::TRANSIENT),
            Action::Delivered | Action::Relayed => (&[2], EnhancedCode::SUCCESS),
        };
        if allowed.contains(&given.class()) {
            given
        } else {
            generic
        }
    }

    /// `Remote-MTA` value, `dns; host` (a bare host gets the `dns;` type).
    pub(super) fn remote_mta(&self) -> Option<String> {
        let remote = clean(self.outcome.remote_mta.as_deref()?, MAX_VALUE);
        Some(typed(remote, "dns"))
    }

    /// `Diagnostic-Code` value, `smtp; 550 ...` (bare text gets the `smtp;` type).
    pub(super) fn diagnostic(&self) -> Option<String> {
        let diagnostic = clean(self.outcome.diagnostic.as_deref()?, MAX_DIAGNOSTIC);
        Some(typed(diagnostic, "smtp"))
    }

    /// The recipient address as reported (`Final-Recipient` and the text part).
    pub(super) fn address(&self) -> String {
        clean(&self.recipient.address, MAX_VALUE)
    }
}

/// `value` unchanged when it already starts with `type;`, else prefixed with `kind; `.
/// An empty value is left empty for the caller to skip.
fn typed(value: String, kind: &str) -> String {
    let has_type = value.split_once(';').is_some_and(|(t, _)| {
        !t.is_empty() && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    });
    if has_type || value.is_empty() {
        value
    } else {
        format!("{kind}; {value}")
    }
}

/// The body of the `message/delivery-status` part, CRLF line ends.
pub(super) fn delivery_status(req: &DsnRequest<'_>, reported: &[Reported<'_>]) -> String {
    let mut out = String::with_capacity(256 + 256 * reported.len());
    push_field(
        &mut out,
        "Reporting-MTA",
        &format!("dns; {}", clean(req.reporting_mta, MAX_VALUE)),
    );
    if let Some(envid) = &req.envelope.envid {
        // RFC 3464 §2.2.1 wants the ENVID as text, not in its SMTP xtext form.
        let envid = xtext_decode(envid).unwrap_or_else(|| envid.clone());
        push_field(&mut out, "Original-Envelope-Id", &clean(&envid, MAX_VALUE));
    }
    push_field(
        &mut out,
        "Arrival-Date",
        &rfc5322(req.envelope.received_at_ms),
    );
    for r in reported {
        out.push_str("\r\n");
        push_recipient(&mut out, r);
    }
    out
}

fn push_recipient(out: &mut String, r: &Reported<'_>) {
    if let Some(orcpt) = &r.recipient.orcpt {
        push_field(
            out,
            "Original-Recipient",
            &clean(&original_recipient(orcpt), MAX_VALUE),
        );
    }
    let address = r.address();
    // RFC 6533 §3: a non-ASCII address is of type utf-8, not rfc822.
    let kind = if address.is_ascii() {
        "rfc822"
    } else {
        "utf-8"
    };
    push_field(out, "Final-Recipient", &format!("{kind};{address}"));
    push_field(out, "Action", r.outcome.action.as_str());
    push_field(out, "Status", &r.status().to_string());
    if let Some(remote) = r.remote_mta().filter(|v| !v.is_empty()) {
        push_field(out, "Remote-MTA", &remote);
    }
    if let Some(diagnostic) = r.diagnostic().filter(|v| !v.is_empty()) {
        push_field(out, "Diagnostic-Code", &diagnostic);
    }
    if let Some(ms) = r.outcome.last_attempt_ms {
        push_field(out, "Last-Attempt-Date", &rfc5322(ms));
    }
    if let (Action::Delayed, Some(ms)) = (r.outcome.action, r.outcome.will_retry_until_ms) {
        push_field(out, "Will-Retry-Until", &rfc5322(ms));
    }
}

/// ORCPT is `addr-type;xtext` in SMTP; the DSN shows the address decoded (RFC 3464
/// §2.3.1 generic-address is plain text). Only `rfc822` addresses are decoded: other
/// types (RFC 6533 `utf-8`) have their own encoding and are shown as given.
fn original_recipient(orcpt: &str) -> String {
    match orcpt.split_once(';') {
        Some((kind, addr)) if kind.trim().eq_ignore_ascii_case("rfc822") => {
            match xtext_decode(addr.trim()) {
                Some(decoded) => format!("rfc822;{decoded}"),
                None => orcpt.to_string(),
            }
        }
        _ => orcpt.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_values() {
        assert_eq!(typed("dns; mx.example".into(), "dns"), "dns; mx.example");
        assert_eq!(typed("mx.example".into(), "dns"), "dns; mx.example");
        assert_eq!(typed("550 a; b".into(), "smtp"), "smtp; 550 a; b");
        assert_eq!(typed("x-local; gone".into(), "smtp"), "x-local; gone");
        assert_eq!(typed(String::new(), "smtp"), "");
    }

    #[test]
    fn orcpt_is_decoded_for_rfc822_only() {
        assert_eq!(original_recipient("rfc822;a+2Bb@x"), "rfc822;a+b@x");
        assert_eq!(original_recipient("RFC822;u@x"), "rfc822;u@x");
        assert_eq!(original_recipient("utf-8;u\\x{E9}@x"), "utf-8;u\\x{E9}@x");
        assert_eq!(original_recipient("rfc822;bad+0A"), "rfc822;bad+0A");
        assert_eq!(original_recipient("nosemicolon"), "nosemicolon");
    }
}
