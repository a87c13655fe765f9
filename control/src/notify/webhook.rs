//! The letter telling a tenant that one of its webhook endpoints was disabled:
//! which one, since when it failed, the last error, and how to have it enabled
//! again.

use way2mail_smtp::date::rfc3339;

use super::{clean_line, plain, Body, Plain};

/// What the email says.
#[derive(Debug, Clone)]
pub struct Disabled<'a> {
    /// The tenant's id and business name, for the greeting.
    pub tenant: &'a str,
    pub business_name: &'a str,
    /// The endpoint's id and URL.
    pub endpoint: &'a str,
    pub url: &'a str,
    /// Unix seconds: the first failure of the run that ended in the disabling.
    pub failing_since: u64,
    /// Unix seconds.
    pub disabled_at: u64,
    /// What the last attempt got, as the MTA reported it.
    pub last_error: &'a str,
    /// The recipient (a checked address).
    pub to: &'a str,
    pub from: &'a str,
    pub message_id: &'a str,
    /// Unix milliseconds, for `Date:`.
    pub date_ms: u64,
}

/// The whole message, CRLF line ends, not dot-stuffed.
pub fn compose(letter: &Disabled<'_>) -> Vec<u8> {
    let (tenant, id) = (letter.tenant, letter.endpoint);
    let mut body = Body::default();
    body.line(&format!(
        "Dear {} ({tenant}),",
        clean_line(letter.business_name)
    ));
    body.line("");
    body.line(&format!(
        "every delivery of events to a webhook endpoint of your account {tenant} has \
         failed since {}, for as long as the Way2Mail platform retries them, so the \
         endpoint has been disabled. Nothing is sent to it until it is enabled again.",
        rfc3339(letter.failing_since)
    ));
    body.line("");
    body.line(&format!("Endpoint:       {id}"));
    body.line(&format!("URL:            {}", clean_line(letter.url)));
    body.line(&format!(
        "Failing since:  {}",
        rfc3339(letter.failing_since)
    ));
    body.line(&format!("Disabled:       {}", rfc3339(letter.disabled_at)));
    body.line(&format!(
        "Last error:     {}",
        clean_line(letter.last_error)
    ));
    body.line("");
    body.line(
        "Once the endpoint answers again, enable it through the API (with one of \
         your API keys), or ask us to (we run the command below):",
    );
    body.line("");
    body.line(&format!("    POST /v1/webhooks/{id}/enable"));
    body.line(&format!("    way2mail webhook enable {tenant} {id}"));
    body.line("");
    body.line(&format!(
        "To reach us about this endpoint, reply to this message or write to {}, \
         quoting {id}.",
        letter.from
    ));
    plain(&Plain {
        to: letter.to,
        from: letter.from,
        message_id: letter.message_id,
        date_ms: letter.date_ms,
        subject: &format!("Webhook endpoint {id} of {tenant} disabled"),
        about: &[("X-Way2Mail-Webhook", id)],
        body: &body.signed("Way2Mail platform"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(url: &str, last_error: &str) -> String {
        let bytes = compose(&Disabled {
            tenant: "acme",
            business_name: "Acme\r\nBcc: evil@example.net",
            endpoint: "wh_0123456789abcdef",
            url,
            failing_since: 1_767_222_000,
            disabled_at: 1_767_225_600,
            last_error,
            to: "ops@acme.test",
            from: "security@way2mail.test",
            message_id: "m2@way2mail.test",
            date_ms: 1_767_225_600_000,
        });
        String::from_utf8(bytes).expect("utf-8")
    }

    #[test]
    fn names_the_endpoint_the_failure_and_the_way_back() {
        let text = letter(
            "https://hooks.acme.test/way2mail?x=1",
            "HTTP 503\r\nBcc: victim@example.net",
        );
        let (header, body) = text.split_once("\r\n\r\n").expect("header end");
        for line in header.split("\r\n") {
            assert!(!line.to_ascii_lowercase().starts_with("bcc"), "{header}");
            assert!(line.len() <= 78, "{line}");
        }
        assert!(header
            .contains("\r\nSubject: Webhook endpoint wh_0123456789abcdef of acme disabled\r\n"));
        assert!(header.contains("\r\nX-Way2Mail-Webhook: wh_0123456789abcdef\r\n"));
        assert!(header.contains("\r\nContent-Transfer-Encoding: 7bit"));
        for part in [
            "Dear Acme  Bcc: evil@example.net (acme),",
            "Endpoint:       wh_0123456789abcdef\r\n",
            "URL:            https://hooks.acme.test/way2mail?x=1\r\n",
            "Failing since:  2025-12-31T23:00:00Z\r\n",
            "Disabled:       2026-01-01T00:00:00Z\r\n",
            "Last error:     HTTP 503  Bcc: victim@example.net\r\n",
            "\r\n    POST /v1/webhooks/wh_0123456789abcdef/enable\r\n",
            "\r\n    way2mail webhook enable acme wh_0123456789abcdef\r\n",
            "\r\n-- \r\nWay2Mail platform\r\n",
        ] {
            assert!(body.contains(part), "{part:?} not in\n{body}");
        }
    }

    #[test]
    fn long_urls_and_foreign_errors_stay_within_lines() {
        let url = format!("https://hooks.acme.test/{}", "p".repeat(300));
        let text = letter(&url, "Zeitüberschreitung beim Verbindungsaufbau");
        let (header, body) = text.split_once("\r\n\r\n").expect("header end");
        assert!(header.contains("\r\nContent-Transfer-Encoding: quoted-printable"));
        for line in body.split("\r\n") {
            assert!(line.len() <= 76 && line.is_ascii(), "{line:?}");
        }
        assert!(body.contains("Zeit=C3=BCberschreitung"), "{body}");
    }
}
