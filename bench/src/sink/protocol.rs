//! The sink's SMTP protocol, sans-IO: command handlers, the end-of-data scanner and
//! the pseudo-random per-message outcome.
//!
//! [`handle_line`] takes one command line and the session state, appends the reply
//! to the output batch and tells the I/O loop what to do next ([`Action`]). Nothing
//! here reads or writes a socket, so the dialogue is tested with plain byte strings.

/// Recipients accepted per transaction; more get `452 4.5.3` (RFC 5321 asks for 100+).
const MAX_RECIPIENTS: u64 = 1000;

/// Per-connection protocol state.
#[derive(Debug, Default)]
pub struct State {
    pub greeted: bool,
    pub tls: bool,
    pub mail: bool,
    pub recipients: u64,
    /// Bytes received in BDAT chunks of the current transaction.
    pub bdat_bytes: u64,
    pub bdat: bool,
}

impl State {
    pub fn reset_transaction(&mut self) {
        self.mail = false;
        self.recipients = 0;
        self.bdat_bytes = 0;
        self.bdat = false;
    }
}

/// What the I/O loop does after a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Continue,
    /// Receive dot-terminated content (354 already queued).
    Data,
    /// Read and discard `size` bytes, then reply: with `refusal` if set, otherwise
    /// `250` for a middle chunk or the message outcome for the `last` one.
    Bdat {
        size: u64,
        last: bool,
        refusal: Option<&'static str>,
    },
    /// Flush the queued 220, then do the TLS handshake.
    StartTls,
    /// Flush and close the connection.
    Close,
}

/// Static settings the handlers need.
pub struct Settings<'a> {
    pub hostname: &'a str,
    pub starttls: bool,
}

/// Handles one command line (without its line ending).
pub fn handle_line(
    state: &mut State,
    line: &[u8],
    settings: &Settings<'_>,
    out: &mut Vec<u8>,
) -> Action {
    let (verb, args) = split_verb(line);
    let mut reply = |text: &str| {
        out.extend_from_slice(text.as_bytes());
        out.extend_from_slice(b"\r\n");
    };
    match verb.to_ascii_uppercase().as_slice() {
        b"EHLO" | b"HELO" if args.is_empty() => reply("501 5.5.4 Hostname required"),
        b"EHLO" => {
            state.greeted = true;
            state.reset_transaction();
            reply(&ehlo_reply(settings, state.tls));
        }
        b"HELO" => {
            state.greeted = true;
            state.reset_transaction();
            reply(&format!("250 {}", settings.hostname));
        }
        b"MAIL" => reply(mail(state, args)),
        b"RCPT" => reply(rcpt(state, args)),
        b"DATA" => return data(state, args, &mut reply),
        b"BDAT" => return bdat(state, args, &mut reply),
        b"RSET" => {
            state.reset_transaction();
            reply("250 2.0.0 Ok");
        }
        b"NOOP" => reply("250 2.0.0 Ok"),
        b"VRFY" => reply("252 2.1.5 Cannot verify, send some mail"),
        b"HELP" => reply("214 2.0.0 See RFC 5321"),
        b"QUIT" => {
            reply("221 2.0.0 Bye");
            return Action::Close;
        }
        b"STARTTLS" => return starttls(state, args, settings, &mut reply),
        _ => reply("500 5.5.1 Command unrecognized"),
    }
    Action::Continue
}

fn split_verb(line: &[u8]) -> (&[u8], &[u8]) {
    match line.iter().position(|&b| b == b' ') {
        Some(i) => (&line[..i], trim(&line[i + 1..])),
        None => (line, &[]),
    }
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}

fn ehlo_reply(settings: &Settings<'_>, tls: bool) -> String {
    let mut lines = vec![
        settings.hostname.to_string(),
        "PIPELINING".into(),
        "SIZE 104857600".into(),
        "8BITMIME".into(),
        "SMTPUTF8".into(),
        "ENHANCEDSTATUSCODES".into(),
        "CHUNKING".into(),
        "DSN".into(),
    ];
    if settings.starttls && !tls {
        lines.push("STARTTLS".into());
    }
    let last = lines.len() - 1;
    let mut text = String::new();
    for (i, line) in lines.iter().enumerate() {
        let sep = if i == last { ' ' } else { '-' };
        if i > 0 {
            text.push_str("\r\n");
        }
        text.push_str(&format!("250{sep}{line}"));
    }
    text
}

/// Whether `args` start with `prefix` (case-insensitive) followed by a path in `<>`.
fn has_path(args: &[u8], prefix: &[u8]) -> bool {
    let Some(head) = args.get(..prefix.len()) else {
        return false;
    };
    let path = trim(&args[prefix.len()..]);
    head.eq_ignore_ascii_case(prefix) && path.first() == Some(&b'<') && path.contains(&b'>')
}

fn mail(state: &mut State, args: &[u8]) -> &'static str {
    if !state.greeted {
        "503 5.5.1 Send EHLO first"
    } else if state.mail {
        "503 5.5.1 Nested MAIL command"
    } else if !has_path(args, b"FROM:") {
        "501 5.5.4 Syntax: MAIL FROM:<address>"
    } else {
        state.mail = true;
        "250 2.1.0 Ok"
    }
}

fn rcpt(state: &mut State, args: &[u8]) -> &'static str {
    if !state.mail {
        "503 5.5.1 Need MAIL first"
    } else if !has_path(args, b"TO:") {
        "501 5.5.4 Syntax: RCPT TO:<address>"
    } else if state.recipients >= MAX_RECIPIENTS {
        "452 4.5.3 Too many recipients"
    } else {
        state.recipients += 1;
        "250 2.1.5 Ok"
    }
}

fn data(state: &mut State, args: &[u8], reply: &mut impl FnMut(&str)) -> Action {
    if !args.is_empty() {
        reply("501 5.5.4 DATA takes no arguments");
    } else if state.bdat {
        reply("503 5.5.1 BDAT in progress");
    } else if state.recipients == 0 {
        reply("554 5.5.1 No valid recipients");
    } else {
        reply("354 End data with <CR><LF>.<CR><LF>");
        return Action::Data;
    }
    Action::Continue
}

fn bdat(state: &mut State, args: &[u8], reply: &mut impl FnMut(&str)) -> Action {
    let mut words = args.split(|&b| b == b' ').filter(|w| !w.is_empty());
    let size = words
        .next()
        .and_then(|w| std::str::from_utf8(w).ok())
        .and_then(|w| w.parse::<u64>().ok());
    let last = match words.next() {
        None => Some(false),
        Some(w) if w.eq_ignore_ascii_case(b"LAST") => Some(true),
        Some(_) => None,
    };
    let (Some(size), Some(last), None) = (size, last, words.next()) else {
        // Without a size the chunk cannot be skipped, so the session cannot go on.
        reply("501 5.5.4 Syntax: BDAT size [LAST]");
        return Action::Close;
    };
    let refusal = if state.recipients == 0 {
        Some("503 5.5.1 No valid recipients")
    } else {
        state.bdat = true;
        None
    };
    Action::Bdat {
        size,
        last,
        refusal,
    }
}

fn starttls(
    state: &mut State,
    args: &[u8],
    settings: &Settings<'_>,
    reply: &mut impl FnMut(&str),
) -> Action {
    if !settings.starttls {
        reply("502 5.5.1 STARTTLS not available");
    } else if state.tls {
        reply("503 5.5.1 TLS already active");
    } else if !args.is_empty() {
        reply("501 5.5.4 STARTTLS takes no arguments");
    } else {
        reply("220 2.0.0 Ready to start TLS");
        return Action::StartTls;
    }
    Action::Continue
}

/// Finds the end of DATA content: CRLF `.` CRLF, where the content's start counts
/// as following a CRLF. A bare LF never ends a line here, which is what keeps
/// `<LF>.<LF>` style SMTP smuggling out.
#[derive(Debug, Clone, Copy)]
pub struct DotScanner {
    state: Scan,
    /// Lines seen starting with a dot, except the terminator.
    dot_lines: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scan {
    Mid,
    Cr,
    LineStart,
    Dot,
    DotCr,
}

impl Default for DotScanner {
    fn default() -> Self {
        Self {
            state: Scan::LineStart,
            dot_lines: 0,
        }
    }
}

impl DotScanner {
    /// Scans `buf`; returns how many bytes end with the terminator, or `None` if it
    /// is not in `buf` (all of `buf` is content then).
    pub fn scan(&mut self, buf: &[u8]) -> Option<usize> {
        let mut i = 0;
        while i < buf.len() {
            if self.state == Scan::Mid {
                // Fast path: nothing matters until the next CR.
                let cr = buf[i..].iter().position(|&b| b == b'\r')?;
                i += cr + 1;
                self.state = Scan::Cr;
                continue;
            }
            let b = buf[i];
            i += 1;
            self.state = match (self.state, b) {
                (Scan::DotCr, b'\n') => {
                    // That dot was the terminator's, not stuffing.
                    self.dot_lines = self.dot_lines.saturating_sub(1);
                    self.state = Scan::LineStart;
                    return Some(i);
                }
                (Scan::Cr, b'\n') => Scan::LineStart,
                (Scan::LineStart, b'.') => {
                    self.dot_lines += 1;
                    Scan::Dot
                }
                (Scan::Dot, b'\r') => Scan::DotCr,
                (_, b'\r') => Scan::Cr,
                _ => Scan::Mid,
            };
        }
        None
    }

    /// Dots removed by un-stuffing the content scanned so far.
    pub fn stuffing(&self) -> u64 {
        self.dot_lines
    }
}

/// What the sink answers at the end of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkAnswer {
    Accept,
    TempFail,
    PermFail,
    Drop,
}

/// Failure rates, each in 0..=1, summing to at most 1.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rates {
    pub tempfail: f64,
    pub permfail: f64,
    pub drop: f64,
}

/// The answer to the `n`th completed message. The random number comes from position
/// `n` of a splitmix64 stream seeded with `seed`, not from a shared generator, so
/// the sequence is reproducible whatever the interleaving of sessions and needs no lock.
pub fn decide(seed: u64, n: u64, rates: Rates) -> SinkAnswer {
    let mut z = seed.wrapping_add(n.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    // 53 random bits give a uniform f64 in [0, 1).
    let u = (z >> 11) as f64 / (1u64 << 53) as f64;
    if u < rates.drop {
        SinkAnswer::Drop
    } else if u < rates.drop + rates.tempfail {
        SinkAnswer::TempFail
    } else if u < rates.drop + rates.tempfail + rates.permfail {
        SinkAnswer::PermFail
    } else {
        SinkAnswer::Accept
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
#[path = "protocol_tests.rs"]
mod tests;
