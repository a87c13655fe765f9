//! The `Received:` trace header (RFC 5321 §4.4) that starts every stored message,
//! with the protocol keyword of RFC 3848 / RFC 6531 and an RFC 5322 date in UTC.
//!
//! The date is formatted here from `SystemTime` (days → civil date, Howard Hinnant's
//! algorithm) to avoid a calendar dependency for one line of output.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use way2mail_queue::MessageId;

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
            protocol_keyword(extended, self.tls_active, utf8),
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

/// RFC 3848 (ESMTP, ESMTPS; ESMTPSA once AUTH exists) and RFC 6531 §3.7.3
/// (UTF8SMTP, UTF8SMTPS) for SMTPUTF8 transactions; plain SMTP after HELO.
fn protocol_keyword(extended: bool, tls: bool, utf8: bool) -> &'static str {
    match (extended, utf8, tls) {
        (false, _, _) => "SMTP",
        (true, true, true) => "UTF8SMTPS",
        (true, true, false) => "UTF8SMTP",
        (true, false, true) => "ESMTPS",
        (true, false, false) => "ESMTP",
    }
}

/// `Tue, 14 Nov 2023 22:13:20 +0000`.
pub(super) fn rfc5322_date(t: SystemTime) -> String {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    // 1970-01-01 was a Thursday.
    let weekday = DAYS[((days + 4) % 7) as usize];
    let month = MONTHS[(m - 1) as usize];
    format!(
        "{weekday}, {d} {month} {y} {:02}:{:02}:{:02} +0000",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 → (year, month 1..=12, day 1..=31), proleptic Gregorian.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Shift the epoch to 0000-03-01 so that leap days fall at the end of a year.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
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
    fn every_day_follows_the_previous_one() {
        let mut prev = civil_from_days(0);
        for day in 1..200_000u64 {
            let (y, m, d) = civil_from_days(day);
            let next_day = (y, m, d) == (prev.0, prev.1, prev.2 + 1);
            let next_month =
                d == 1 && ((y, m) == (prev.0, prev.1 + 1) || (y, m) == (prev.0 + 1, 1));
            assert!(next_day || next_month, "{prev:?} -> {:?}", (y, m, d));
            prev = (y, m, d);
        }
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
        assert_eq!(protocol_keyword(true, true, false), "ESMTPS");
        assert_eq!(protocol_keyword(false, true, false), "SMTP");
    }
}
