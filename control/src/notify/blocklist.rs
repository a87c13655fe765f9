//! The letter telling the platform's operators (`[notify] from`) that one of the
//! sending addresses was listed in, or removed from, a DNS blocklist.

use way2mail_smtp::date::rfc3339;

use super::{clean_line, plain, Body, Plain};

/// What the email says.
#[derive(Debug, Clone)]
pub struct Change<'a> {
    /// `true`: the listing started; `false`: it ended.
    pub listed: bool,
    pub ip: &'a str,
    pub zone: &'a str,
    /// The zone's return codes (listing) — empty for a delisting.
    pub codes: &'a [String],
    /// The zone's TXT reason (for a delisting, the last one seen).
    pub reason: &'a str,
    /// Unix seconds: when the listing was first seen.
    pub since: u64,
    /// Unix seconds: this check.
    pub at: u64,
    pub to: &'a str,
    pub from: &'a str,
    pub message_id: &'a str,
    /// Unix milliseconds, for `Date:`.
    pub date_ms: u64,
}

/// The whole message, CRLF line ends, not dot-stuffed.
pub fn compose(letter: &Change<'_>) -> Vec<u8> {
    let (ip, zone) = (clean_line(letter.ip), clean_line(letter.zone));
    let reason = if letter.reason.is_empty() {
        "(the zone gave no reason)".to_owned()
    } else {
        clean_line(letter.reason)
    };
    let mut body = Body::default();
    if letter.listed {
        body.line(&format!(
            "The platform's sending address {ip} is listed in the DNS blocklist {zone}. \
             Receivers that use this list may refuse or junk mail sent from it."
        ));
        body.line("");
        body.line(&format!("Address:     {ip}"));
        body.line(&format!("Blocklist:   {zone}"));
        body.line(&format!("Codes:       {}", letter.codes.join(", ")));
        body.line(&format!("Reason:      {reason}"));
        body.line(&format!("Seen at:     {}", rfc3339(letter.at)));
        body.line("");
        body.line(
            "Find the cause first (a compromised account, a tenant sending unwanted \
             mail: see the tenants' deliverability and the reputation guard), then ask \
             the list's operator for removal following the reason's instructions.",
        );
    } else {
        body.line(&format!(
            "The platform's sending address {ip} is no longer listed in the DNS \
             blocklist {zone}."
        ));
        body.line("");
        body.line(&format!("Address:      {ip}"));
        body.line(&format!("Blocklist:    {zone}"));
        body.line(&format!("Listed since: {}", rfc3339(letter.since)));
        body.line(&format!("Cleared at:   {}", rfc3339(letter.at)));
        body.line(&format!("Last reason:  {reason}"));
    }
    body.line("");
    body.line("The current state and the history:");
    body.line("");
    body.line("    way2mail reputation");
    let subject = if letter.listed {
        format!("Sending address {ip} listed in {zone}")
    } else {
        format!("Sending address {ip} delisted from {zone}")
    };
    plain(&Plain {
        to: letter.to,
        from: letter.from,
        message_id: letter.message_id,
        date_ms: letter.date_ms,
        subject: &subject,
        about: &[("X-Way2Mail-Blocklist", &zone)],
        body: &body.signed("Way2Mail platform"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(listed: bool) -> String {
        let codes = vec!["127.0.0.2".to_string()];
        let bytes = compose(&Change {
            listed,
            ip: "192.0.2.10",
            zone: "bl.test.example",
            codes: &codes,
            reason: "Listed\r\nBcc: evil@example.net see https://bl.test.example/192.0.2.10",
            since: 1_767_225_600,
            at: 1_767_229_200,
            to: "security@way2mail.test",
            from: "security@way2mail.test",
            message_id: "m1@way2mail.test",
            date_ms: 1_767_229_200_000,
        });
        String::from_utf8(bytes).expect("utf-8")
    }

    #[test]
    fn listed_and_delisted() {
        let text = letter(true);
        let (header, body) = text.split_once("\r\n\r\n").expect("header end");
        for line in header.split("\r\n") {
            assert!(!line.to_ascii_lowercase().starts_with("bcc"), "{header}");
        }
        assert!(
            header.contains("Subject: Sending address 192.0.2.10 listed in bl.test.example"),
            "{header}"
        );
        assert!(header.contains("X-Way2Mail-Blocklist: bl.test.example"));
        for part in [
            "Codes:       127.0.0.2",
            "Listed  Bcc:",
            "way2mail reputation",
        ] {
            assert!(body.contains(part), "{part:?} not in\n{body}");
        }
        let text = letter(false);
        assert!(text.contains("delisted from bl.test.example"), "{text}");
        assert!(
            text.contains("Listed since: 2026-01-01T00:00:00Z"),
            "{text}"
        );
    }
}
