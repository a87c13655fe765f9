//! Dates from Unix time, always UTC, for every binary of the workspace: RFC 5322
//! (`Tue, 14 Nov 2023 22:13:20 +0000`) for the MTA's `Received:` trace header and the
//! `Date:`, `Arrival-Date:`, `Last-Attempt-Date:` and `Will-Retry-Until:` fields of a
//! DSN, and RFC 3339 (`2023-11-14T22:13:20Z`) for operators' tables. Headers, notices
//! and tables are read by people and programs anywhere; a fixed zone makes hosts
//! comparable.

const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Formats `ms` (milliseconds since 1970-01-01 UTC) as an RFC 5322 date-time.
/// Sub-second precision is dropped, as the format has none.
pub fn rfc5322(ms: u64) -> String {
    let secs = ms / 1000;
    let days = secs / 86_400;
    let in_day = secs % 86_400;
    let (year, month, day) = date_of(days);
    // WEEKDAYS starts on Thursday because 1970-01-01 was one.
    let weekday = WEEKDAYS[(days % 7) as usize];
    let month = MONTHS[month as usize - 1];
    format!(
        "{weekday}, {day} {month} {year} {:02}:{:02}:{:02} +0000",
        in_day / 3600,
        in_day / 60 % 60,
        in_day % 60
    )
}

/// Formats `unix_secs` as RFC 3339 in UTC (`2024-05-01T12:00:00Z`).
pub fn rfc3339(unix_secs: u64) -> String {
    let (year, month, day) = date_of(unix_secs / 86_400);
    let in_day = unix_secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        in_day / 3600,
        in_day / 60 % 60,
        in_day % 60
    )
}

/// Days since 1970-01-01 → (year, month 1..=12, day 1..=31) in the proleptic
/// Gregorian calendar.
///
/// Counting in 400-year cycles (146,097 days each) from 0000-03-01 puts every leap
/// day at the very end of a counting year, so the month lengths inside a counting
/// year are fixed (Mar..Feb = 31,30,31,30,31,31,30,31,30,31,31,28/29) and the month
/// falls out of one linear formula.
fn date_of(days: u64) -> (u64, u64, u64) {
    const CYCLE: u64 = 146_097;
    // 1970-01-01 is this many days after 0000-03-01.
    let shifted = days + 719_468;
    let cycle = shifted / CYCLE;
    let day_of_cycle = shifted % CYCLE;
    // Years into the cycle: 365 days each, plus a leap day every 4 years, minus one
    // every 100, plus one back at the cycle's last day.
    let year_of_cycle = (day_of_cycle - day_of_cycle / 1460 + day_of_cycle / 36_524
        - day_of_cycle / (CYCLE - 1))
        / 365;
    let day_of_year =
        day_of_cycle - (365 * year_of_cycle + year_of_cycle / 4 - year_of_cycle / 100);
    // Month index from March = 0; 153 days per 5 months.
    let march_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * march_month + 2) / 5 + 1;
    let month = if march_month < 10 {
        march_month + 3
    } else {
        march_month - 9
    };
    let year = cycle * 400 + year_of_cycle + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        let cases = [
            (0, "Thu, 1 Jan 1970 00:00:00 +0000"),
            (999, "Thu, 1 Jan 1970 00:00:00 +0000"),
            (951_782_400_000, "Tue, 29 Feb 2000 00:00:00 +0000"),
            (1_700_000_000_000, "Tue, 14 Nov 2023 22:13:20 +0000"),
            (1_709_251_199_000, "Thu, 29 Feb 2024 23:59:59 +0000"),
            (4_107_542_400_000, "Mon, 1 Mar 2100 00:00:00 +0000"),
            (253_402_300_799_000, "Fri, 31 Dec 9999 23:59:59 +0000"),
        ];
        for (ms, want) in cases {
            assert_eq!(rfc5322(ms), want, "{ms}");
        }
    }

    /// Walks day by day over 500 years and checks that each date is the day after
    /// the previous one, which catches any off-by-one at month, leap or century ends.
    #[test]
    fn consecutive_days() {
        let leap =
            |y: u64| (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400);
        let month_len = |y: u64, m: u64| match m {
            2 if leap(y) => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        let mut prev = date_of(0);
        assert_eq!(prev, (1970, 1, 1));
        for days in 1..(500 * 366) {
            let (y, m, d) = date_of(days);
            let (py, pm, pd) = prev;
            let want = if pd < month_len(py, pm) {
                (py, pm, pd + 1)
            } else if pm < 12 {
                (py, pm + 1, 1)
            } else {
                (py + 1, 1, 1)
            };
            assert_eq!((y, m, d), want, "day {days}");
            prev = (y, m, d);
        }
    }

    #[test]
    fn rfc3339_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(4_107_542_399), "2100-02-28T23:59:59Z");
    }

    #[test]
    fn huge_input_does_not_panic() {
        let s = rfc5322(u64::MAX);
        assert!(s.ends_with("+0000"));
    }
}
