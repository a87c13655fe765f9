//! The `Received:` trace header (RFC 5321 §4.4) that starts every stored message,
//! with the protocol keyword of RFC 3848 / RFC 6531 and an RFC 5322 date in UTC.
//!
//! The date is formatted here from `SystemTime` (days → civil date, Howard Hinnant's
//! algorithm) to avoid a calendar dependency for one line of output.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::MessageId;

use super::state::SessionState;

impl SessionState {
    /// `Received: from <helo> ([ip])\r\n\tby <host> (Way2Mail) with <proto> id <id>`
    /// `\r\n\tfor <rcpt>; <date>\r\n` (the `for` clause only with exactly one recipient).
    pub(super) fn received_header(&self, id: &MessageId, now: SystemTime) -> String {
        let helo = self
            .greeting
            .as_ref()
            .map_or("unknown", |g| g.name.as_str());
        let extended = self.greeting.as_ref().is_some_and(|g| g.extended);
        let (utf8, recipients) = self
            .tx
            .as_ref()
            .map_or((false, &[][..]), |t| (t.smtputf8, &t.recipients[..]));
        let mut h = String::with_capacity(200);
        // Writing into a String cannot fail.
        let _ = write!(
            h,
            "Received: from {helo} ({})\r\n\tby {} (Way2Mail) with {} id {id}",
            address_literal(self.params.client_ip),
            self.params.hostname,
            protocol_keyword(extended, self.tls_active, utf8, self.auth.is_some()),
        );
        if let [only] = recipients {
            let _ = write!(h, "\r\n\tfor <{}>", only.address);
        }
        let _ = write!(h, "; {}\r\n", rfc5322_date(now));
        h
    }
}

/// `[192.0.2.1]` / `[IPv6:2001:db8::1]`; a v4-mapped v6 client is shown as v4.
fn address_literal(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(a) => format!("[{a}]"),
        IpAddr::V6(a) => format!("[IPv6:{a}]"),
    }
}

/// RFC 3848 (ESMTP, ESMTPA, ESMTPS, ESMTPSA) and RFC 6531 §3.7.3 (UTF8SMTP with the
/// same `A`/`S`/`SA` suffixes) for SMTPUTF8 transactions; plain SMTP after HELO. The
/// authenticated identity itself is left out of the header (RFC 3848 makes it
/// optional), so a tenant's user names do not travel with its mail.
fn protocol_keyword(extended: bool, tls: bool, utf8: bool, auth: bool) -> &'static str {
    match (extended, utf8, tls, auth) {
        (false, ..) => "SMTP",
        (true, true, true, true) => "UTF8SMTPSA",
        (true, true, true, false) => "UTF8SMTPS",
        (true, true, false, true) => "UTF8SMTPA",
        (true, true, false, false) => "UTF8SMTP",
        (true, false, true, true) => "ESMTPSA",
        (true, false, true, false) => "ESMTPS",
        (true, false, false, true) => "ESMTPA",
        (true, false, false, false) => "ESMTP",
    }
}

/// `Tue, 14 Nov 2023 22:13:20 +0000`.
pub(super) fn rfc5322_date(t: SystemTime) -> String {
    let ms = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
    crate::date::rfc5322(u64::try_from(ms).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64) -> String {
        rfc5322_date(UNIX_EPOCH + Duration::from_secs(secs))
    }

    #[test]
    fn known_dates() {
        assert_eq!(at(0), "Thu, 1 Jan 1970 00:00:00 +0000");
        assert_eq!(at(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
        assert_eq!(at(1_700_000_000), "Tue, 14 Nov 2023 22:13:20 +0000");
        assert_eq!(at(4_107_542_399), "Sun, 28 Feb 2100 23:59:59 +0000");
        assert_eq!(at(4_107_542_400), "Mon, 1 Mar 2100 00:00:00 +0000");
    }

    #[test]
    fn literals_and_keywords() {
        assert_eq!(
            address_literal("192.0.2.1".parse().expect("ip")),
            "[192.0.2.1]"
        );
        assert_eq!(
            address_literal("::ffff:192.0.2.1".parse().expect("ip")),
            "[192.0.2.1]"
        );
        assert_eq!(
            address_literal("2001:db8::1".parse().expect("ip")),
            "[IPv6:2001:db8::1]"
        );
        assert_eq!(protocol_keyword(true, true, false, false), "ESMTPS");
        assert_eq!(protocol_keyword(true, true, false, true), "ESMTPSA");
        assert_eq!(protocol_keyword(true, false, false, true), "ESMTPA");
        assert_eq!(protocol_keyword(true, true, true, true), "UTF8SMTPSA");
        assert_eq!(protocol_keyword(false, true, false, true), "SMTP");
    }
}
