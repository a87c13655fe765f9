//! The letter telling an affected tenant of a security incident: what happened,
//! which data, the likely consequences and the measures (GDPR art. 33–34 ask for
//! these), and whom to write to.

use way2mail_wire::protocol::IncidentInfo;

use super::{clean_line, plain, Body, Plain};

/// What the email says, besides the incident.
#[derive(Debug, Clone)]
pub struct Letter<'a> {
    pub incident: &'a IncidentInfo,
    /// The tenant's id and business name, for the greeting.
    pub tenant: &'a str,
    pub business_name: &'a str,
    /// The recipient (a checked address).
    pub to: &'a str,
    pub from: &'a str,
    pub message_id: &'a str,
    /// Unix milliseconds, for `Date:`.
    pub date_ms: u64,
}

/// The whole message, CRLF line ends, not dot-stuffed.
pub fn compose(letter: &Letter<'_>) -> Vec<u8> {
    let i = letter.incident;
    let rfc3339 = way2mail_smtp::date::rfc3339;
    let mut body = Body::default();
    body.line(&format!(
        "Dear {} ({}),",
        clean_line(letter.business_name),
        letter.tenant
    ));
    body.line("");
    body.line(&format!(
        "we are writing to inform you of a security incident on the Way2Mail platform \
         that affects data of your account {}.",
        letter.tenant
    ));
    body.line("");
    body.line(&format!("Incident:  {}", i.id));
    body.line(&format!("Title:     {}", clean_line(&i.title)));
    body.line(&format!("Detected:  {}", rfc3339(i.detected_at)));
    body.line(&format!("Opened:    {}", rfc3339(i.opened_at)));
    for (heading, text) in [
        ("Nature of the incident:", &i.nature),
        ("Data affected:", &i.data_affected),
        ("Likely consequences:", &i.consequences),
        ("Measures taken or proposed:", &i.measures),
    ] {
        body.line("");
        body.line(heading);
        body.line(text);
    }
    body.line("");
    body.line(&format!(
        "To reach us about this incident, reply to this message or write to {}, \
         quoting {}.",
        letter.from, i.id
    ));
    plain(&Plain {
        to: letter.to,
        from: letter.from,
        message_id: letter.message_id,
        date_ms: letter.date_ms,
        subject: &format!("Security incident {}: {}", i.id, i.title),
        about: &[("X-Way2Mail-Incident", &i.id)],
        body: &body.signed("Way2Mail platform security"),
    })
}

#[cfg(test)]
mod tests {
    use super::super::dot_stuffed;
    use super::*;
    use base64::engine::general_purpose::STANDARD as B64;
    use base64::Engine as _;

    fn incident(title: &str, nature: &str) -> IncidentInfo {
        IncidentInfo {
            id: "INC-2026-0007".into(),
            title: title.into(),
            nature: nature.into(),
            data_affected: "Contact addresses of recipients".into(),
            consequences: "Phishing attempts are possible".into(),
            measures: "Credentials rotated\n.a line starting with a dot".into(),
            opened_at: 1_767_225_600,
            opened_by: "operator:alice".into(),
            detected_at: 1_767_222_000,
            updated_at: 1_767_225_600,
            closed_at: None,
            closed_by: None,
            resolution: None,
            tenants: vec!["acme".into()],
            notifications: Vec::new(),
        }
    }

    fn letter_of(i: &IncidentInfo) -> String {
        let bytes = compose(&Letter {
            incident: i,
            tenant: "acme",
            business_name: "Acme\r\nBcc: evil@example.net",
            to: "ops@acme.test",
            from: "security@way2mail.test",
            message_id: "m1@way2mail.test",
            date_ms: 1_767_225_600_000,
        });
        String::from_utf8(bytes).expect("utf-8")
    }

    #[test]
    fn the_message_has_every_field_and_no_injected_header() {
        let i = incident(
            "Leaked\r\nBcc: victim@example.net key",
            "A database snapshot was exposed",
        );
        let text = letter_of(&i);
        let (header, body) = text.split_once("\r\n\r\n").expect("header end");
        for line in header.split("\r\n") {
            // Every line is a field or a continuation; none is an injected Bcc.
            assert!(!line.to_ascii_lowercase().starts_with("bcc"), "{header}");
            assert!(line.len() <= 78, "{line}");
        }
        assert!(
            header.starts_with("Date: Thu, 1 Jan 2026 00:00:00 +0000\r\n"),
            "{header}"
        );
        assert!(header.contains("\r\nFrom: security@way2mail.test\r\n"));
        assert!(header.contains("\r\nTo: ops@acme.test\r\n"));
        assert!(header.contains(
            "\r\nSubject: Security incident INC-2026-0007: Leaked Bcc: victim@example.net key\r\n"
        ), "{header}");
        assert!(header.contains("\r\nMessage-ID: <m1@way2mail.test>\r\n"));
        assert!(header.contains("\r\nContent-Type: text/plain; charset=utf-8\r\n"));
        assert!(header.contains("\r\nContent-Transfer-Encoding: 7bit"));
        assert!(
            !text.contains('\n') || !text.replace("\r\n", "").contains('\n'),
            "bare LF"
        );
        for part in [
            "Incident:  INC-2026-0007",
            "Nature of the incident:\r\nA database snapshot was exposed\r\n",
            "Data affected:\r\nContact addresses of recipients\r\n",
            "Likely consequences:\r\nPhishing attempts are possible\r\n",
            "Measures taken or proposed:\r\nCredentials rotated\r\n.a line",
            "write to\r\nsecurity@way2mail.test, quoting INC-2026-0007.\r\n",
            "\r\n-- \r\nWay2Mail platform security\r\n",
            "Dear Acme  Bcc: evil@example.net (acme),",
            "Detected:  2025-12-31T23:00:00Z",
        ] {
            assert!(body.contains(part), "{part:?} not in\n{body}");
        }
        // Dot-stuffed on the wire.
        let wire = String::from_utf8(dot_stuffed(text.as_bytes())).expect("utf-8");
        assert!(wire.contains("\r\n..a line starting with a dot\r\n"));
        assert!(wire.ends_with("\r\n.\r\n"));
    }

    /// The whole letter, byte for byte: the notifications already sent (and their
    /// records) must stay what a new one would be.
    #[test]
    fn the_letter_is_byte_for_byte_what_it_was() {
        let text = letter_of(&incident("Leaked keys", "A database snapshot was exposed"));
        assert_eq!(
            text,
            "Date: Thu, 1 Jan 2026 00:00:00 +0000\r\n\
             From: security@way2mail.test\r\n\
             To: ops@acme.test\r\n\
             Subject: Security incident INC-2026-0007: Leaked keys\r\n\
             Message-ID: <m1@way2mail.test>\r\n\
             X-Way2Mail-Incident: INC-2026-0007\r\n\
             MIME-Version: 1.0\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\
             Content-Transfer-Encoding: 7bit\r\n\
             \r\n\
             Dear Acme  Bcc: evil@example.net (acme),\r\n\
             \r\n\
             we are writing to inform you of a security incident on the Way2Mail platform\r\n\
             that affects data of your account acme.\r\n\
             \r\n\
             Incident:  INC-2026-0007\r\n\
             Title:     Leaked keys\r\n\
             Detected:  2025-12-31T23:00:00Z\r\n\
             Opened:    2026-01-01T00:00:00Z\r\n\
             \r\n\
             Nature of the incident:\r\n\
             A database snapshot was exposed\r\n\
             \r\n\
             Data affected:\r\n\
             Contact addresses of recipients\r\n\
             \r\n\
             Likely consequences:\r\n\
             Phishing attempts are possible\r\n\
             \r\n\
             Measures taken or proposed:\r\n\
             Credentials rotated\r\n\
             .a line starting with a dot\r\n\
             \r\n\
             To reach us about this incident, reply to this message or write to\r\n\
             security@way2mail.test, quoting INC-2026-0007.\r\n\
             \r\n\
             -- \r\n\
             Way2Mail platform security\r\n"
        );
    }

    #[test]
    fn non_ascii_is_encoded_and_long_lines_wrapped() {
        let long = "word ".repeat(60) + &"x".repeat(200);
        let i = incident("Fuite de données à Zürich — ärgerlich", &long);
        let text = letter_of(&i);
        let (header, body) = text.split_once("\r\n\r\n").expect("header end");
        assert!(header.contains("Subject: =?utf-8?B?"), "{header}");
        assert!(header.contains("\r\nContent-Transfer-Encoding: quoted-printable"));
        let subject: String = header
            .split("\r\n")
            .skip_while(|l| !l.starts_with("Subject:"))
            .take_while(|l| l.starts_with("Subject:") || l.starts_with(' '))
            .flat_map(|l| {
                l.trim_start_matches("Subject:")
                    .split_whitespace()
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .map(|w| {
                let inner = w.trim_start_matches("=?utf-8?B?").trim_end_matches("?=");
                String::from_utf8(B64.decode(inner).expect("base64")).expect("utf-8")
            })
            .collect();
        assert_eq!(
            subject,
            "Security incident INC-2026-0007: Fuite de données à Zürich — ärgerlich"
        );
        for line in body.split("\r\n") {
            assert!(line.len() <= 76 && line.is_ascii(), "{line:?}");
        }
        assert!(body.contains("=C3=BC"), "ü encoded");
        let ascii = incident("t", &long);
        let text = letter_of(&ascii);
        for line in text.split("\r\n") {
            assert!(line.chars().count() <= 78, "{line:?}");
        }
    }
}
