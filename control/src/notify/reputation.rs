//! The letters telling the platform's operators and a tenant's contact that the
//! reputation guard paused the tenant's sending: which threshold its mail crossed,
//! the rates and counts behind it, that its mail is held (accepted and queued, not
//! delivered), and how sending is resumed.

use way2mail_smtp::date::rfc3339;
use way2mail_wire::protocol::ReputationRates;

use super::{clean_line, plain, Body, Plain};

/// Who a letter is for: the wording differs, the facts do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// The platform's operators (`[notify] from`).
    Operators,
    /// The tenant's contact.
    Tenant,
}

/// What the email says.
#[derive(Debug, Clone)]
pub struct Paused<'a> {
    pub audience: Audience,
    /// The tenant's id and business name.
    pub tenant: &'a str,
    pub business_name: &'a str,
    pub rates: &'a ReputationRates,
    /// Unix seconds.
    pub since: u64,
    /// The recipient (a checked address).
    pub to: &'a str,
    pub from: &'a str,
    pub message_id: &'a str,
    /// Unix milliseconds, for `Date:`.
    pub date_ms: u64,
}

/// A rate as a percentage with two decimals: `6.20%`.
pub fn percent(rate: f64) -> String {
    format!("{:.2}%", rate * 100.0)
}

/// A threshold in parts per million as a percentage: `5.00%`.
pub fn threshold_percent(ppm: u64) -> String {
    percent(ppm as f64 / 1_000_000.0)
}

/// The window in hours when it is whole hours (`24h`), else as a period.
pub fn window(secs: u64) -> String {
    if secs > 0 && secs.is_multiple_of(3_600) {
        format!("{}h", secs / 3_600)
    } else {
        way2mail_daemon::duration::format(secs)
    }
}

/// `bounce rate` / `complaint rate` (another name as it came, cleaned).
pub fn threshold_name(crossed: &str) -> String {
    match crossed {
        "bounce_rate" => "bounce rate".into(),
        "complaint_rate" => "complaint rate".into(),
        other => clean_line(other),
    }
}

/// The crossed rate's value: the bounce or the complaint rate.
pub fn crossed_rate(rates: &ReputationRates) -> f64 {
    if rates.crossed == "complaint_rate" {
        rates.complaint_rate()
    } else {
        rates.bounce_rate()
    }
}

/// One line for audit details and listings: `bounce rate 6.20% over the 5.00%
/// threshold (31 hard bounces, 2 complaints of 500 accepted recipients in 24h)`.
pub fn summary(rates: &ReputationRates) -> String {
    format!(
        "{} {} over the {} threshold ({} hard bounces, {} complaints of {} accepted \
         recipients in {})",
        threshold_name(&rates.crossed),
        percent(crossed_rate(rates)),
        threshold_percent(rates.threshold_ppm),
        rates.hard_bounces,
        rates.complaints,
        rates.accepted,
        window(rates.window_secs)
    )
}

/// The whole message, CRLF line ends, not dot-stuffed.
pub fn compose(letter: &Paused<'_>) -> Vec<u8> {
    let tenant = letter.tenant;
    let r = letter.rates;
    let name = threshold_name(&r.crossed);
    let window = window(r.window_secs);
    let mut body = Body::default();
    match letter.audience {
        Audience::Tenant => {
            body.line(&format!(
                "Dear {} ({tenant}),",
                clean_line(letter.business_name)
            ));
            body.line("");
            body.line(&format!(
                "the Way2Mail platform has paused the sending of your account {tenant}: \
                 in the last {window} the {name} of your mail reached {}, over the \
                 threshold of {} that protects the reputation of your domains and of \
                 the platform's sending addresses.",
                percent(crossed_rate(r)),
                threshold_percent(r.threshold_ppm)
            ));
        }
        Audience::Operators => {
            body.line(&format!(
                "The reputation guard paused the sending of tenant {tenant} ({}): its \
                 {name} in the last {window} reached {}, over the threshold of {}. Its \
                 contact has been written to as well.",
                clean_line(letter.business_name),
                percent(crossed_rate(r)),
                threshold_percent(r.threshold_ppm)
            ));
        }
    }
    body.line("");
    body.line(&format!("Threshold crossed:  {name}"));
    body.line(&format!(
        "Threshold:          {}",
        threshold_percent(r.threshold_ppm)
    ));
    body.line(&format!(
        "Bounce rate:        {} ({} hard bounces)",
        percent(r.bounce_rate()),
        r.hard_bounces
    ));
    body.line(&format!(
        "Complaint rate:     {} ({} complaints)",
        percent(r.complaint_rate()),
        r.complaints
    ));
    body.line(&format!(
        "Accepted:           {} recipients in {window}",
        r.accepted
    ));
    body.line(&format!("Paused since:       {}", rfc3339(letter.since)));
    body.line("");
    match letter.audience {
        Audience::Tenant => {
            body.line(
                "Your mail is not refused and not lost: it is still accepted and kept \
                 queued, but nothing is delivered while sending is paused. Once sending \
                 is resumed, the queued mail goes out (mail queued longer than the \
                 platform's queue lifetime expires and is bounced).",
            );
            body.line("");
            body.line(
                "Before asking us to resume, please find the cause: typically old or \
                 bought address lists, or mail the recipients did not ask for. Addresses \
                 that bounced for good or complained are on your suppression list \
                 already.",
            );
            body.line("");
            body.line(&format!(
                "To have sending resumed, reply to this message or write to {}, quoting \
                 {tenant} and what you changed. We resume it with:",
                letter.from
            ));
            body.line("");
            body.line(&format!(
                "    way2mail tenant resume-sending {tenant} --reason TEXT"
            ));
        }
        Audience::Operators => {
            body.line(
                "The tenant's mail is held: accepted and queued, not delivered, until \
                 sending is resumed. Check the tenant's deliverability and talk to it \
                 first:",
            );
            body.line("");
            body.line(&format!(
                "    way2mail tenant deliverability {tenant} --since 24h"
            ));
            body.line("");
            body.line("Then resume its sending (the reason goes into the audit log):");
            body.line("");
            body.line(&format!(
                "    way2mail tenant resume-sending {tenant} --reason TEXT"
            ));
        }
    }
    plain(&Plain {
        to: letter.to,
        from: letter.from,
        message_id: letter.message_id,
        date_ms: letter.date_ms,
        subject: &format!(
            "Sending of {tenant} paused: {name} {} over {}",
            percent(crossed_rate(r)),
            threshold_percent(r.threshold_ppm)
        ),
        about: &[("X-Way2Mail-Tenant", tenant)],
        body: &body.signed("Way2Mail platform"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rates() -> ReputationRates {
        ReputationRates {
            window_secs: 86_400,
            accepted: 500,
            hard_bounces: 31,
            complaints: 2,
            crossed: "bounce_rate".into(),
            threshold_ppm: 50_000,
        }
    }

    fn letter(audience: Audience) -> String {
        let rates = rates();
        let bytes = compose(&Paused {
            audience,
            tenant: "acme",
            business_name: "Acme\r\nBcc: evil@example.net",
            rates: &rates,
            since: 1_767_225_600,
            to: "ops@acme.test",
            from: "security@way2mail.test",
            message_id: "m3@way2mail.test",
            date_ms: 1_767_225_600_000,
        });
        String::from_utf8(bytes).expect("utf-8")
    }

    #[test]
    fn says_which_threshold_the_rates_and_the_way_back() {
        let text = letter(Audience::Tenant);
        let (header, body) = text.split_once("\r\n\r\n").expect("header end");
        for line in header.split("\r\n") {
            assert!(!line.to_ascii_lowercase().starts_with("bcc"), "{header}");
            assert!(line.len() <= 78, "{line}");
        }
        assert!(
            header.contains("\r\nSubject: Sending of acme paused: bounce rate 6.20% over"),
            "{header}"
        );
        assert!(header.contains("\r\nX-Way2Mail-Tenant: acme\r\n"));
        for part in [
            "Dear Acme  Bcc: evil@example.net (acme),",
            "Threshold crossed:  bounce rate\r\n",
            "Threshold:          5.00%\r\n",
            "Bounce rate:        6.20% (31 hard bounces)\r\n",
            "Complaint rate:     0.40% (2 complaints)\r\n",
            "Accepted:           500 recipients in 24h\r\n",
            "Paused since:       2026-01-01T00:00:00Z\r\n",
            "queued",
            "\r\n    way2mail tenant resume-sending acme --reason TEXT\r\n",
            "\r\n-- \r\nWay2Mail platform\r\n",
        ] {
            assert!(body.contains(part), "{part:?} not in\n{body}");
        }
        let ops = letter(Audience::Operators);
        for part in [
            "paused the sending of tenant acme",
            "way2mail tenant deliverability acme --since 24h",
            "way2mail tenant resume-sending acme --reason TEXT",
        ] {
            assert!(ops.contains(part), "{part:?} not in\n{ops}");
        }
    }

    #[test]
    fn summary_names_the_crossed_rate() {
        let mut r = rates();
        assert_eq!(
            summary(&r),
            "bounce rate 6.20% over the 5.00% threshold (31 hard bounces, 2 complaints of \
             500 accepted recipients in 24h)"
        );
        r.crossed = "complaint_rate".into();
        r.threshold_ppm = 3_000;
        assert!(summary(&r).starts_with("complaint rate 0.40% over the 0.30% threshold"));
        r.accepted = 0;
        assert!(summary(&r).starts_with("complaint rate 0.00%"));
    }
}
