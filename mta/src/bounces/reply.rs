//! A failure's text as the rules see it: one line with single spaces, the SMTP reply
//! code and enhanced status code picked out, and the continuation prefixes of a
//! multi-line reply (`550-5.1.1 `) gone, so that a phrase split over two reply lines
//! still reads as one.
//!
//! The reply code is the first word of three digits (`550`, or `550-…` on the first
//! line of a multi-line reply) that starts the text, follows a word ending in `:` or
//! `;`, or opens a quotation: that covers the peer's reply as we log it (`550 5.1.1
//! …`), our own wrappers (`mx.example.net at rcpt: 550 …`, `delivery time expired;
//! last error: …`), Diagnostic-Code fields (`smtp; 550 …`) and other MTAs' reports
//! (`…RCPT TO:<bob@example.com>: 550 …`, `Remote server returned '550 …'`). The
//! status is the word after the code; when the peer put it elsewhere (`550 mailbox
//! unavailable (5.1.1)`), the first later word that is a status of the code's class.

use super::rule::Status;

/// What the rules test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Reply {
    /// The normalized text, which patterns are run on.
    pub text: String,
    pub code: Option<u16>,
    pub status: Option<Status>,
}

/// Where the reply code was found.
struct Found<'a> {
    /// Index of the code's word.
    at: usize,
    code: u16,
    /// From the code's word (`550-5.1.1`) or the next one; `None` when the peer gave
    /// none there.
    status: Option<Status>,
    /// Words that make up the code and its status: 1 or 2.
    words: usize,
    /// The text joined to the code (`550-Requested`): kept.
    lead: Option<&'a str>,
}

impl Reply {
    pub fn parse(raw: &str) -> Reply {
        let words: Vec<&str> = raw.split_whitespace().collect();
        let Some(found) = find_code(&words) else {
            return Reply {
                text: words.join(" "),
                code: None,
                status: None,
            };
        };
        let rest = words.get(found.at + found.words..).unwrap_or_default();
        let status = found.status.or_else(|| {
            rest.iter()
                .filter_map(|w| Status::parse_full(trim_status(w)))
                .find(|s| s.class() == found.code / 100)
        });

        Reply {
            text: text_of(&words, &found),
            code: Some(found.code),
            status,
        }
    }
}

/// The words joined by single spaces: the code and status as `550 5.1.1`, the
/// continuation prefixes of later lines left out.
fn text_of(words: &[&str], found: &Found<'_>) -> String {
    let rest = words.get(found.at + found.words..).unwrap_or_default();
    let mut text = String::new();
    let mut push = |word: &str| {
        if !text.is_empty() {
            text.push(' ');
        }
        text.push_str(word);
    };
    words[..found.at].iter().for_each(|w| push(w));
    push(&found.code.to_string());
    if let Some(status) = found.status {
        push(&status.to_string());
    }
    if let Some(lead) = found.lead {
        push(lead);
    }
    let code = found.code.to_string();
    let mut i = 0;
    while let Some(word) = rest.get(i) {
        i += 1;
        match continuation(word, &code) {
            None => push(word),
            // `550 5.1.1` (or `550- 5.1.1`): the status is the next word.
            Some("") => {
                if rest.get(i).is_some_and(|w| is_status(w)) {
                    i += 1;
                }
            }
            Some(after) if is_status(after) => {}
            Some(after) => push(after),
        }
    }
    text
}

/// A later line's prefix, which repeats the reply code: `550` → `""`, `550-5.1.1`
/// → `"5.1.1"`, `550-text` → `"text"`; any other word → `None`.
fn continuation<'a>(word: &'a str, code: &str) -> Option<&'a str> {
    match word.strip_prefix(code)? {
        "" => Some(""),
        after => after.strip_prefix('-'),
    }
}

fn find_code<'a>(words: &[&'a str]) -> Option<Found<'a>> {
    for (at, word) in words.iter().enumerate() {
        let quoted = word.starts_with(['\'', '"', '(']);
        let introduced = at == 0 || words[at - 1].ends_with([':', ';']);
        if !quoted && !introduced {
            continue;
        }
        let Some((code, after)) = split_code(word.trim_start_matches(['\'', '"', '('])) else {
            continue;
        };
        let own = after.and_then(|s| Status::parse_full(trim_status(s)));
        let next = || {
            let word = words.get(at + 1)?;
            Status::parse_full(trim_status(word))
        };
        let (status, used, lead) = match (own, after) {
            (Some(status), _) => (Some(status), 1, None),
            // `550-text`: the status, if any, is not where RFC 2034 puts it.
            (None, Some(after)) if !after.is_empty() => (None, 1, Some(after)),
            _ => match next() {
                Some(status) => (Some(status), 2, None),
                None => (None, 1, None),
            },
        };
        return Some(Found {
            at,
            code,
            status,
            words: used,
            lead,
        });
    }
    None
}

/// `550` → (550, None); `550-rest` → (550, Some("rest")); anything else → None.
fn split_code(word: &str) -> Option<(u16, Option<&str>)> {
    let bytes = word.as_bytes();
    let digits = bytes.get(..3)?;
    if !digits.iter().all(u8::is_ascii_digit) || !(b'2'..=b'5').contains(&digits[0]) {
        return None;
    }
    // Three ASCII digits: index 3 is a character boundary.
    let code = word.get(..3)?.parse().ok()?;
    match bytes.get(3) {
        None => Some((code, None)),
        Some(b'-') => Some((code, word.get(4..))),
        Some(_) => None,
    }
}

/// A status as peers write it: `5.1.1`, `#5.1.1`, `(5.1.1)`, `5.1.1:`.
fn trim_status(word: &str) -> &str {
    word.trim_start_matches(['#', '(', '['])
        .trim_end_matches([')', ']', ',', ';', ':', '.'])
}

fn is_status(word: &str) -> bool {
    Status::parse_full(trim_status(word)).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(raw: &str) -> (String, Option<u16>, Option<String>) {
        let r = Reply::parse(raw);
        (r.text, r.code, r.status.map(|s| s.to_string()))
    }

    #[test]
    fn codes_and_statuses_are_found_where_replies_put_them() {
        let cases = [
            ("550 5.1.1 no such user", Some(550), Some("5.1.1")),
            ("550-5.1.1 no such user", Some(550), Some("5.1.1")),
            (
                "mx.example.net at rcpt: 450 4.2.2 over quota",
                Some(450),
                Some("4.2.2"),
            ),
            (
                "delivery time expired; last error: mx at rcpt: 421 4.7.0 busy",
                Some(421),
                Some("4.7.0"),
            ),
            ("smtp; 554 5.7.1 rejected", Some(554), Some("5.7.1")),
            (
                "Remote server returned '550 5.1.10 RESOLVER'",
                Some(550),
                Some("5.1.10"),
            ),
            ("550 #5.1.0 Address rejected", Some(550), Some("5.1.0")),
            ("550 mailbox unavailable (5.1.1)", Some(550), Some("5.1.1")),
            // A status of another class is not the reply's.
            ("550 Exim 4.96.2 says no", Some(550), None),
            ("552 1 Requested mail action aborted", Some(552), None),
            (
                "connect to mx.example.net[192.0.2.1:25]: Connection refused",
                None,
                None,
            ),
            (
                "example.net: DNS lookup failed, will retry: 123mail.example: timeout",
                None,
                None,
            ),
            ("(554.30)", None, None),
            ("", None, None),
        ];
        for (raw, code, status) in cases {
            let (_, c, s) = parts(raw);
            assert_eq!((c, s.as_deref()), (code, status), "{raw}");
        }
    }

    #[test]
    fn continuation_prefixes_are_dropped_however_lines_were_joined() {
        let want = "550 5.1.1 The account does not exist. Please try double-checking it.";
        for raw in [
            "550-5.1.1 The account does not exist. Please try\n550-5.1.1 double-checking\r\n550 5.1.1 it.",
            "550-5.1.1 The account does not exist. Please try 550-5.1.1 double-checking 550 5.1.1 it.",
            "550 5.1.1   The account does not exist.\tPlease try double-checking it.",
        ] {
            assert_eq!(parts(raw).0, want, "{raw:?}");
        }
        assert_eq!(
            parts("550-Requested action not taken: mailbox unavailable\n550 invalid DNS MX").0,
            "550 Requested action not taken: mailbox unavailable invalid DNS MX"
        );
    }
}
