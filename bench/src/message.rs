//! Generated RFC 5322 test messages.
//!
//! A [`MessageTemplate`] is built once per run: the header block with a fixed-width
//! sequence-number field in `Subject` and `Message-ID`, and a body of 76-character
//! lines padded so the unstuffed message is exactly the requested size. Every tenth
//! body line starts with a dot so each message exercises dot-stuffing. Per message,
//! only the sequence digits change, so producing the wire form is one copy.
//!
//! A [`JsonRequestTemplate`] is the `api` subcommand's counterpart: the JSON body of
//! `POST /v1/messages` whose `text` (the same 76-character lines) makes the message
//! the server builds from it about the requested size.

/// Width of the sequence number; fixed so every message has the same length.
const SEQ_WIDTH: usize = 20;
/// Body line length without CRLF, the customary MIME line length.
const LINE: usize = 76;

#[derive(Debug, Clone)]
pub struct MessageTemplate {
    /// Dot-stuffed header block (ends with the empty line) with sequence `0`.
    header: Vec<u8>,
    /// Offsets of the sequence fields inside `header`.
    seq_at: [usize; 2],
    /// Dot-stuffed body, ending in CRLF (or empty).
    body: Vec<u8>,
}

impl MessageTemplate {
    /// Builds a template whose messages are `size` bytes before dot-stuffing; if
    /// `size` is smaller than the header block, messages are just the headers.
    pub fn new(size: usize, from: &str, recipients: &[String], unix_time: u64) -> Self {
        let (header, seq_at) = build_header(from, recipients, unix_time);
        let body = build_body(size.saturating_sub(header.len()));
        Self {
            header,
            seq_at,
            body: dot_stuff(&body),
        }
    }

    /// Appends message number `seq` in DATA wire form, including the final `.` line.
    pub fn write_data(&self, seq: u64, out: &mut Vec<u8>) {
        self.write_content(seq, out);
        out.extend_from_slice(b".\r\n");
    }

    /// Appends message number `seq` dot-stuffed, without the terminating `.` line.
    pub fn write_content(&self, seq: u64, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&self.header);
        let digits = format!("{seq:0SEQ_WIDTH$}");
        // Wider than SEQ_WIDTH cannot happen: u64::MAX has 20 digits.
        let digits = &digits.as_bytes()[digits.len() - SEQ_WIDTH..];
        for at in self.seq_at {
            out[start + at..start + at + SEQ_WIDTH].copy_from_slice(digits);
        }
        out.extend_from_slice(&self.body);
    }
}

/// Header octets an API server writes around a JSON request's text with
/// mail-builder, without the addresses, the subject's number and the Message-ID's
/// left and right parts: From, To, Subject, Date, Message-ID, MIME-Version,
/// Content-Type and Content-Transfer-Encoding (for ASCII text in short CRLF lines,
/// which needs no encoding), then the empty line.
const API_FIXED_HEADER: &str = "From: <>\r\nTo: <>\r\nSubject: bench \r\n\
    Date: Thu, 01 Jan 1970 00:00:00 +0000\r\nMessage-ID: <@>\r\nMIME-Version: 1.0\r\n\
    Content-Type: text/plain; charset=\"utf-8\"\r\nContent-Transfer-Encoding: 7bit\r\n\r\n";
/// The Message-ID's two parts as Way2Mail makes them (a 26-character queue id at
/// the node's host name), the host name guessed at 24 octets.
const API_MESSAGE_ID_GUESS: usize = 26 + 24;

/// The JSON body of `POST /v1/messages`:
/// `{"from": FROM, "to": [TO], "subject": "bench N", "text": FILLER}`, where FILLER
/// is CRLF-terminated 76-character lines making the message the server builds
/// about `size` octets before it signs it (the headers it adds are estimated, see
/// [`API_FIXED_HEADER`]). Per request only `N` changes.
#[derive(Debug, Clone)]
pub struct JsonRequestTemplate {
    /// Everything before the number in `subject`.
    head: Vec<u8>,
    /// Everything after it.
    tail: Vec<u8>,
}

impl JsonRequestTemplate {
    /// `max_seq` is the largest `N` to be sent (its digits count in the estimate).
    pub fn new(size: usize, from: &str, to: &str, max_seq: u64) -> Self {
        let header =
            API_FIXED_HEADER.len() + from.len() + to.len() + API_MESSAGE_ID_GUESS + digits(max_seq);
        let text = build_body(size.saturating_sub(header));
        // Only ASCII letters, digits, spaces, dots and CRLF: always UTF-8.
        let text = String::from_utf8_lossy(&text);
        let json = |s: &str| serde_json::Value::from(s).to_string();
        let head = format!(
            "{{\"from\":{},\"to\":[{}],\"subject\":\"bench ",
            json(from),
            json(to)
        );
        let tail = format!("\",\"text\":{}}}", json(&text));
        Self {
            head: head.into_bytes(),
            tail: tail.into_bytes(),
        }
    }

    /// The body of request number `seq`.
    pub fn body(&self, seq: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.head.len() + 20 + self.tail.len());
        out.extend_from_slice(&self.head);
        out.extend_from_slice(seq.to_string().as_bytes());
        out.extend_from_slice(&self.tail);
        out
    }
}

fn digits(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |d| d as usize + 1)
}

fn build_header(from: &str, recipients: &[String], unix_time: u64) -> (Vec<u8>, [usize; 2]) {
    let zeros = "0".repeat(SEQ_WIDTH);
    let domain = from.rsplit_once('@').map_or("localhost", |(_, d)| d);
    let mut h = format!("From: <{from}>\r\nTo: ");
    for (i, rcpt) in recipients.iter().enumerate() {
        // One address per line keeps header lines short for any recipient count.
        let sep = if i + 1 < recipients.len() {
            ",\r\n "
        } else {
            ""
        };
        h.push_str(&format!("<{rcpt}>{sep}"));
    }
    if recipients.is_empty() {
        h.push_str("undisclosed-recipients:;");
    }
    h.push_str("\r\nSubject: way2mail-bench message ");
    let first = h.len();
    h.push_str(&zeros);
    h.push_str(&format!(
        "\r\nDate: {}\r\nMessage-ID: <",
        rfc5322_date(unix_time)
    ));
    let second = h.len();
    h.push_str(&zeros);
    h.push_str(&format!(
        ".bench@{domain}>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
    ));
    (h.into_bytes(), [first, second])
}

/// Body of exactly `len` bytes of CRLF-terminated lines (`len == 1` gives 2 bytes:
/// no line is one byte long).
fn build_body(len: usize) -> Vec<u8> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ";
    let mut lengths = vec![LINE; len / (LINE + 2)];
    match (len % (LINE + 2), lengths.last_mut()) {
        (0, _) => {}
        // A one-byte remainder cannot be a line: lengthen the previous one instead.
        (1, Some(last)) => *last += 1,
        (1, None) => lengths.push(0),
        (rest, _) => lengths.push(rest - 2),
    }
    let mut body = Vec::with_capacity(len + 2);
    for (i, line_len) in lengths.into_iter().enumerate() {
        for j in 0..line_len {
            let c = if j == 0 && i % 10 == 9 {
                b'.'
            } else {
                ALPHABET[(i * 7 + j) % ALPHABET.len()]
            };
            body.push(c);
        }
        body.extend_from_slice(b"\r\n");
    }
    body
}

/// Doubles a leading dot on every line (RFC 5321 section 4.5.2).
pub fn dot_stuff(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + text.len() / 64 + 1);
    let mut line_start = true;
    for &b in text {
        if line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        line_start = b == b'\n';
    }
    out
}

/// Formats a Unix time as an RFC 5322 date in UTC, e.g. `Thu, 01 Jan 1970 00:00:00 +0000`.
pub fn rfc5322_date(unix_time: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = unix_time / 86_400;
    let secs = unix_time % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{}, {day:02} {} {year} {:02}:{:02}:{:02} +0000",
        DAYS[(days % 7) as usize],
        MONTHS[(month - 1) as usize],
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Days since 1970-01-01 to (year, month 1-12, day 1-31), proleptic Gregorian
/// calendar, counted in 400-year eras of 146097 days.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn rcpts(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("rcpt{i}@example.net")).collect()
    }

    /// Reverses dot-stuffing the way a server does.
    fn unstuff(wire: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for line in wire.split_inclusive(|&b| b == b'\n') {
            out.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
        }
        out
    }

    #[test]
    fn exact_size_for_many_sizes() {
        let mut headers_only = Vec::new();
        MessageTemplate::new(0, "a@b.c", &rcpts(2), 0).write_content(1, &mut headers_only);
        let header_len = headers_only.len();
        assert!(headers_only.ends_with(b"\r\n\r\n"));
        for size in header_len..header_len + 400 {
            let t = MessageTemplate::new(size, "a@b.c", &rcpts(2), 0);
            let mut content = Vec::new();
            t.write_content(7, &mut content);
            let plain = unstuff(&content);
            let expected = if size == header_len + 1 {
                size + 1
            } else {
                size
            };
            assert_eq!(plain.len(), expected, "size {size}");
            assert!(plain.ends_with(b"\r\n"));
        }
    }

    #[test]
    fn lines_are_crlf_and_short() {
        let t = MessageTemplate::new(5120, "bench@example.com", &rcpts(3), 1_700_000_000);
        let mut wire = Vec::new();
        t.write_data(1, &mut wire);
        let text = String::from_utf8(wire).unwrap();
        assert!(!text.replace("\r\n", "").contains('\n'), "bare LF");
        assert!(!text.replace("\r\n", "").contains('\r'), "bare CR");
        for line in text.split("\r\n") {
            assert!(line.len() <= LINE + 2, "line too long: {line}");
        }
        assert!(text.ends_with("\r\n.\r\n"));
    }

    #[test]
    fn dot_lines_are_stuffed_and_never_terminate_early() {
        let t = MessageTemplate::new(5120, "bench@example.com", &rcpts(1), 0);
        let mut wire = Vec::new();
        t.write_data(1, &mut wire);
        let terminator = wire.windows(5).position(|w| w == b"\r\n.\r\n").unwrap();
        assert_eq!(terminator + 5, wire.len(), "terminator only at the end");
        let stuffed = wire.windows(3).filter(|w| w == b"\n..").count();
        assert!(stuffed >= 5, "expected stuffed lines, got {stuffed}");
    }

    #[test]
    fn dot_stuff_cases() {
        assert_eq!(dot_stuff(b".\r\n"), b"..\r\n");
        assert_eq!(dot_stuff(b"a.b\r\n.c\r\n"), b"a.b\r\n..c\r\n");
        assert_eq!(dot_stuff(b"..\r\n"), b"...\r\n");
        assert_eq!(dot_stuff(b"x\r\n"), b"x\r\n");
    }

    #[test]
    fn sequence_numbers_differ_per_message() {
        let t = MessageTemplate::new(1000, "bench@example.com", &rcpts(1), 0);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        t.write_content(1, &mut a);
        t.write_content(u64::MAX, &mut b);
        assert_eq!(a.len(), b.len());
        let text = String::from_utf8(b).unwrap();
        assert!(text.contains("Message-ID: <18446744073709551615.bench@example.com>"));
        assert!(text.contains("Subject: way2mail-bench message 18446744073709551615\r\n"));
        assert!(String::from_utf8(a)
            .unwrap()
            .contains("<00000000000000000001.bench@"));
    }

    #[test]
    fn json_request_body() {
        let t = JsonRequestTemplate::new(5120, "app@acme.example", "rcpt@remote.example", 20_000);
        let body = t.body(17);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["from"], "app@acme.example");
        assert_eq!(v["to"], serde_json::json!(["rcpt@remote.example"]));
        assert_eq!(v["subject"], "bench 17");
        let text = v["text"].as_str().unwrap();
        assert!(text.ends_with("\r\n"));
        assert!(text.split("\r\n").all(|l| l.len() <= LINE + 1));
        assert_eq!(v.as_object().unwrap().len(), 4);
        // The estimated headers and the text make the requested size.
        let header = API_FIXED_HEADER.len()
            + "app@acme.example".len()
            + "rcpt@remote.example".len()
            + API_MESSAGE_ID_GUESS
            + 5;
        assert_eq!(header + text.len(), 5120);
        // Tiny sizes still give a valid request with some text.
        let small = JsonRequestTemplate::new(0, "a@b.c", "d@e.f", 1).body(1);
        let v: serde_json::Value = serde_json::from_slice(&small).unwrap();
        assert!(v["text"].is_string());
        assert_eq!(digits(0), 1);
        assert_eq!(digits(9), 1);
        assert_eq!(digits(10), 2);
        assert_eq!(digits(20_000), 5);
    }

    #[test]
    fn dates() {
        assert_eq!(rfc5322_date(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(rfc5322_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
        assert_eq!(
            rfc5322_date(1_700_000_000),
            "Tue, 14 Nov 2023 22:13:20 +0000"
        );
    }
}
