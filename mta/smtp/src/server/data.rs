//! `DATA` (RFC 5321 §4.1.1.4) and the receiver of its content: end detection,
//! dot-unstuffing, line ends and the text-line length check, byte-exact whatever the
//! chunking, in one pass that writes each octet once into the message buffer.
//!
//! Only `<CRLF>.<CRLF>` ends the data (the content starts right after the `354`, so a
//! first line of `.` ends it too). `\n.\n`, `\r.\r`, `\r\n.\n`, `\n.\r\n`,
//! `\r.\r\n`, `\r.\n` and every other mix of bare CR and LF around a dot are
//! content: taking any of them as the end would let a client smuggle a second message
//! past a server that reads the stream differently.
//!
//! Content lines end at CRLF, and also at a bare CR or a bare LF, which is stored as
//! CRLF (RFC 5321 §2.3.8 allows no other line end); the receiver notes that it did,
//! for `bare_line_endings = "reject"`. A line that starts after a bare line end is
//! dot-unstuffed like any other, but a `.` line there never ends the data: the dot
//! is dropped as stuffing. Nothing handed out can therefore hold a bare CR or LF, and
//! no line `.` that we did not mean as the end can reach a next hop. NUL octets are
//! stored as they are and noted: the message is refused at the end.

use super::body::Body;
use super::message::Flaws;
use super::state::SessionState;
use crate::line_ends::find_special;
use crate::reply::{EnhancedCode, Reply};

/// RFC 5321 §4.5.3.1.6: a text line is at most 1000 octets including CRLF.
pub const MAX_TEXT_LINE: usize = 1000;

/// Octets of a text line before its CRLF.
const MAX_LINE_TEXT: usize = MAX_TEXT_LINE - 2;

impl SessionState {
    /// `DATA`: the new message buffer when the client may send content.
    pub(super) fn data(&mut self) -> Result<Body, Reply> {
        self.content_allowed()?;
        if self.tx.as_ref().is_some_and(|t| t.chunks.is_some()) {
            return Err(Reply::new(
                503,
                EnhancedCode::new(5, 5, 1),
                "DATA not allowed after BDAT",
            ));
        }
        Ok(self.new_body())
    }
}

/// Where we are in the line structure of the content. `crlf` says whether the line
/// before ended in a CRLF as sent (or there was none): only then may a `.` line be
/// the end of the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    /// At the start of a line.
    LineStart { crlf: bool },
    /// A `.` at line start, not yet stored: dropped unless it ends the data.
    Dot { crlf: bool },
    /// `.\r` at line start; the CR is not stored yet either.
    DotCr { crlf: bool },
    /// Inside a line.
    Text,
    /// After a CR inside a line (stored); an LF must follow, or the CR was bare.
    Cr,
}

/// Incremental DATA content receiver.
#[derive(Debug)]
pub struct DataReceiver {
    at: At,
    /// Text octets of the current line so far, the stuffing dot included.
    line_len: usize,
    flaws: Flaws,
}

impl Default for DataReceiver {
    fn default() -> DataReceiver {
        DataReceiver {
            at: At::LineStart { crlf: true },
            line_len: 0,
            flaws: Flaws::default(),
        }
    }
}

impl DataReceiver {
    /// What was noticed in the content so far.
    pub(super) fn flaws(&self) -> Flaws {
        self.flaws
    }

    fn count(&mut self, n: usize) {
        self.line_len += n;
        if self.line_len > MAX_LINE_TEXT {
            self.flaws.long_line = true;
        }
    }

    /// The current line ended (its line end is stored); `crlf` if it came as CRLF.
    fn end_line(&mut self, crlf: bool) {
        self.line_len = 0;
        self.flaws.bare_line_end |= !crlf;
        self.at = At::LineStart { crlf };
    }

    /// Feeds content; returns how many octets were used and whether the terminating
    /// `<CRLF>.<CRLF>` was among them. Everything before it goes into `body`.
    pub(super) fn consume(&mut self, input: &[u8], body: &mut Body) -> (usize, bool) {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.at {
                At::LineStart { crlf } if b == b'.' => {
                    self.at = At::Dot { crlf };
                    self.count(1);
                    i += 1;
                }
                At::LineStart { .. } => self.at = At::Text,
                At::Dot { crlf } if b == b'\r' => {
                    self.at = At::DotCr { crlf };
                    i += 1;
                }
                // `.` and a bare LF: a stuffed empty line.
                At::Dot { .. } if b == b'\n' => {
                    body.store(b"\r\n");
                    self.end_line(false);
                    i += 1;
                }
                // RFC 5321 §4.5.2: a leading dot followed by more text is deleted.
                At::Dot { .. } => self.at = At::Text,
                At::DotCr { crlf: true } if b == b'\n' => return (i + 1, true),
                // `.` CRLF after a bare line end: content, an empty line once unstuffed.
                At::DotCr { crlf: false } if b == b'\n' => {
                    body.store(b"\r\n");
                    self.end_line(true);
                    i += 1;
                }
                // The CR after the dot was bare: it ends a stuffed empty line.
                At::DotCr { .. } => {
                    body.store(b"\r\n");
                    self.end_line(false);
                }
                At::Text => i += self.text(&input[i..], body),
                At::Cr if b == b'\n' => {
                    body.store(b"\n");
                    self.end_line(true);
                    i += 1;
                }
                // A bare CR: the line ends here, as CRLF; `b` starts the next one.
                At::Cr => {
                    body.store(b"\n");
                    self.end_line(false);
                }
            }
        }
        (i, false)
    }

    /// Stores text from the middle of a line up to a line start that needs a look
    /// (one that may begin with a dot, or the end of the input), and returns how much
    /// of `rest` it used. Lines that end in CRLF and are followed by a line not
    /// starting with `.` go into the buffer together, in one copy.
    fn text(&mut self, rest: &[u8], body: &mut Body) -> usize {
        let mut from = 0;
        loop {
            let Some(p) = find_special(&rest[from..]) else {
                self.count(rest.len() - from);
                body.store(rest);
                return rest.len();
            };
            let at = from + p;
            self.count(p);
            match (rest[at], rest.get(at + 1)) {
                (b'\r', Some(b'\n')) => {
                    self.end_line(true);
                    from = at + 2;
                    match rest.get(from) {
                        Some(&c) if c != b'.' => self.at = At::Text,
                        _ => {
                            body.store(&rest[..from]);
                            return from;
                        }
                    }
                }
                (b'\r', Some(_)) => {
                    body.store(&rest[..=at]);
                    body.store(b"\n");
                    self.end_line(false);
                    return at + 1;
                }
                (b'\r', None) => {
                    body.store(&rest[..=at]);
                    self.at = At::Cr;
                    return at + 1;
                }
                (b'\n', _) => {
                    body.store(&rest[..at]);
                    body.store(b"\r\n");
                    self.end_line(false);
                    return at + 1;
                }
                _ => {
                    self.count(1);
                    self.flaws.nul = true;
                    from = at + 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MessageId;

    /// What one run of the receiver gives: stored content, octets used, ended, flaws.
    type Run = (Vec<u8>, usize, bool, Flaws);

    fn run(chunks: &[&[u8]]) -> Run {
        let mut rx = DataReceiver::default();
        let mut body = Body::new(MessageId::generate(), String::new(), 1 << 20, None);
        let mut used = 0;
        for c in chunks {
            let (n, end) = rx.consume(c, &mut body);
            used += n;
            if end {
                return (body.into_bytes(), used, true, rx.flaws());
            }
            assert_eq!(n, c.len(), "input left over without an end");
        }
        (body.into_bytes(), used, false, rx.flaws())
    }

    #[test]
    fn end_and_unstuffing() {
        let (b, used, end, flaws) = run(&[b"a\r\n..b\r\n.c\r\n.\r\nQUIT\r\n"]);
        assert!(end);
        assert_eq!(used, 15);
        assert_eq!(b, b"a\r\n.b\r\nc\r\n");
        assert_eq!(flaws, Flaws::default());
        let (b, _, end, _) = run(&[b".\r\n"]);
        assert!(end);
        assert!(b.is_empty());
    }

    /// The published SMTP smuggling endings (Longin 2023 and the follow-ups): bare CR
    /// and LF around the dot, in every combination.
    const SMUGGLING_ENDINGS: [&[u8]; 10] = [
        b"\n.\n",
        b"\r.\r",
        b"\r\n.\n",
        b"\n.\r\n",
        b"\r.\r\n",
        b"\r.\n",
        b"\r\n.\r",
        b"\n.\r",
        b"\r\n\x00.\r\n",
        b"\r\n.\x00\r\n",
    ];

    #[test]
    fn smuggling_endings_are_content() {
        for ending in SMUGGLING_ENDINGS {
            let mut msg = b"x".to_vec();
            msg.extend_from_slice(ending);
            msg.extend_from_slice(b"MAIL FROM:<a@b>\r\n");
            let (stored, _, end, _) = run(&[&msg]);
            assert!(!end, "{ending:?} ended the data");
            assert!(
                crate::line_ends::is_crlf_only(&stored),
                "{ending:?}: {stored:?}"
            );
        }
    }

    #[test]
    fn bare_line_ends_become_crlf_and_are_noted() {
        let cases: [(&[u8], &[u8]); 9] = [
            (b"a\nb\r\n.\r\n", b"a\r\nb\r\n"),
            (b"a\rb\r\n.\r\n", b"a\r\nb\r\n"),
            (b"a\r\r\n.\r\n", b"a\r\n\r\n"),
            // The dot after a bare line end is unstuffed; that `.` line is no end.
            (b"x\r\n.\nA\r\n.\r\n", b"x\r\n\r\nA\r\n"),
            (b"x\r\n.\rA\r\n.\r\n", b"x\r\n\r\nA\r\n"),
            (b"x\n.\r\n.\r\n", b"x\r\n\r\n"),
            (b"x\n..y\r\n.\r\n", b"x\r\n.y\r\n"),
            (b"x\r.\r.\r\n.\r\n", b"x\r\n\r\n\r\n"),
            (b"\n\r\n.\r\n", b"\r\n\r\n"),
        ];
        for (input, want) in cases {
            let (b, used, end, flaws) = run(&[input]);
            assert!(end, "{input:?}");
            assert_eq!(used, input.len(), "{input:?}");
            assert_eq!(b, want, "{input:?}");
            assert!(flaws.bare_line_end && !flaws.nul, "{input:?}");
        }
    }

    #[test]
    fn nul_is_noted_and_ends_nothing() {
        let (b, _, end, flaws) = run(&[b"a\0b\r\n\0\r\n.\r\n"]);
        assert!(end);
        assert_eq!(b, b"a\0b\r\n\0\r\n");
        assert!(flaws.nul && !flaws.bare_line_end);
    }

    #[test]
    fn line_length() {
        let ok = format!("{}\r\n.\r\n", "a".repeat(998));
        assert!(!run(&[ok.as_bytes()]).3.long_line);
        let long = format!("{}\r\n.\r\n", "a".repeat(999));
        let (_, _, end, flaws) = run(&[long.as_bytes()]);
        assert!(end && flaws.long_line);
        // Counted on the normalised lines: a bare LF is two octets like CRLF.
        let ok = format!("{}\n{}\r\n.\r\n", "a".repeat(998), "b".repeat(998));
        assert!(!run(&[ok.as_bytes()]).3.long_line);
        let long = format!("x\n.{}\r\n.\r\n", "a".repeat(998));
        assert!(
            run(&[long.as_bytes()]).3.long_line,
            "the stuffing dot counts"
        );
    }

    #[test]
    fn every_split_gives_the_same_result() {
        let msg = b"..a\r\n.\rb\r\r\n\n.\n\r\n..\r\n.x\r\r\n\0\r.\r\n.\r\r\n.\r\nrest";
        let whole = run(&[msg]);
        assert!(whole.2);
        assert!(crate::line_ends::is_crlf_only(&whole.0));
        for split in 0..msg.len() {
            assert_eq!(
                run(&[&msg[..split], &msg[split..]]),
                whole,
                "split at {split}"
            );
        }
        let bytes: Vec<&[u8]> = msg.chunks(1).collect();
        assert_eq!(run(&bytes), whole);
    }
}
