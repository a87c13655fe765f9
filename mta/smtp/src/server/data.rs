//! `DATA` (RFC 5321 §4.1.1.4) and the receiver of its content: end detection,
//! dot-unstuffing and the text-line length check, byte-exact whatever the chunking.
//!
//! Only `<CRLF>.<CRLF>` ends the data (the content starts right after the `354`, so a
//! first line of `.` ends it too). `\n.\n`, `\r.\r`, `\r\n.\n` and `\n.\r\n` are
//! content: taking any of them as the end would let a client smuggle a second message
//! past a server that reads the stream differently. Bare CR and LF are stored as they
//! came; they are never line ends for the terminator or for dot-unstuffing.

use super::body::Body;
use super::state::SessionState;
use crate::reply::{EnhancedCode, Reply};

/// RFC 5321 §4.5.3.1.6: a text line is at most 1000 octets including CRLF.
pub const MAX_TEXT_LINE: usize = 1000;

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

/// Where we are in the line structure of the content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    /// Just after CRLF (or at the very start).
    LineStart,
    /// A `.` at line start, not yet stored: dropped unless it ends the data.
    Dot,
    /// `.\r` at line start.
    DotCr,
    /// Inside a line.
    Text,
    /// After a CR inside a line.
    Cr,
}

/// Incremental DATA content receiver.
#[derive(Debug)]
pub struct DataReceiver {
    at: At,
    /// Raw octets of the current line so far.
    line_len: usize,
    line_too_long: bool,
}

impl Default for DataReceiver {
    fn default() -> DataReceiver {
        DataReceiver {
            at: At::LineStart,
            line_len: 0,
            line_too_long: false,
        }
    }
}

impl DataReceiver {
    /// Some text line was longer than [`MAX_TEXT_LINE`]: the message must be refused.
    pub fn line_too_long(&self) -> bool {
        self.line_too_long
    }

    fn count(&mut self, n: usize) {
        self.line_len += n;
        if self.line_len > MAX_TEXT_LINE {
            self.line_too_long = true;
        }
    }

    /// Feeds content; returns how many octets were used and whether the terminating
    /// `<CRLF>.<CRLF>` was among them. Everything before it goes into `body`.
    pub(super) fn consume(&mut self, input: &[u8], body: &mut Body) -> (usize, bool) {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.at {
                At::LineStart if b == b'.' => {
                    self.at = At::Dot;
                    self.count(1);
                    i += 1;
                }
                At::LineStart => self.at = At::Text,
                At::Dot if b == b'\r' => {
                    self.at = At::DotCr;
                    self.count(1);
                    i += 1;
                }
                // RFC 5321 §4.5.2: a leading dot followed by more text is deleted.
                At::Dot => self.at = At::Text,
                At::DotCr if b == b'\n' => return (i + 1, true),
                At::DotCr => {
                    body.store(b"\r");
                    self.at = At::Cr;
                }
                At::Text => i += self.text(&input[i..], body),
                At::Cr => match b {
                    b'\n' => {
                        body.store(b"\n");
                        self.count(1);
                        self.line_len = 0;
                        self.at = At::LineStart;
                        i += 1;
                    }
                    b'\r' => {
                        body.store(b"\r");
                        self.count(1);
                        i += 1;
                    }
                    _ => self.at = At::Text,
                },
            }
        }
        (i, false)
    }

    /// Stores a run of text up to and including the next CR or LF; returns its length.
    fn text(&mut self, rest: &[u8], body: &mut Body) -> usize {
        let n = rest
            .iter()
            .position(|&c| c == b'\r' || c == b'\n')
            .map_or(rest.len(), |p| p + 1);
        body.store(&rest[..n]);
        self.count(n);
        match rest[n - 1] {
            b'\r' => self.at = At::Cr,
            // A bare LF is kept and ends the line for the length count only: such
            // content is common from broken clients and harmless once stored as is.
            b'\n' => self.line_len = 0,
            _ => {}
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MessageId;

    /// Runs the receiver over `chunks`; returns (stored content, octets used, ended).
    fn run(chunks: &[&[u8]]) -> (Vec<u8>, usize, bool, bool) {
        let mut rx = DataReceiver::default();
        let mut body = Body::new(MessageId::generate(), String::new(), 1 << 20, None);
        let mut used = 0;
        for c in chunks {
            let (n, end) = rx.consume(c, &mut body);
            used += n;
            if end {
                return (body.into_bytes(), used, true, rx.line_too_long());
            }
            assert_eq!(n, c.len(), "input left over without an end");
        }
        (body.into_bytes(), used, false, rx.line_too_long())
    }

    #[test]
    fn end_and_unstuffing() {
        let (b, used, end, _) = run(&[b"a\r\n..b\r\n.c\r\n.\r\nQUIT\r\n"]);
        assert!(end);
        assert_eq!(used, 15);
        assert_eq!(b, b"a\r\n.b\r\nc\r\n");
        let (b, _, end, _) = run(&[b".\r\n"]);
        assert!(end);
        assert!(b.is_empty());
    }

    #[test]
    fn smuggling_endings_are_content() {
        for ending in [&b"\n.\n"[..], b"\r.\r", b"\r\n.\n", b"\n.\r\n", b"\r.\r\n"] {
            let mut msg = b"x".to_vec();
            msg.extend_from_slice(ending);
            msg.extend_from_slice(b"MAIL FROM:<a@b>\r\n");
            let (_, _, end, _) = run(&[&msg]);
            assert!(!end, "{ending:?} ended the data");
        }
        let (b, _, end, _) = run(&[b"x\r\n.\nA\r\n.\r\n"]);
        assert!(end);
        assert_eq!(
            b, b"x\r\n\nA\r\n",
            "the dot of a `.\\n` line is unstuffed, the LF kept"
        );
        let (b, _, end, _) = run(&[b"x\r\n.\rA\r\n.\r\n"]);
        assert!(end);
        assert_eq!(b, b"x\r\n\rA\r\n");
    }

    #[test]
    fn line_length() {
        let ok = format!("{}\r\n.\r\n", "a".repeat(998));
        assert!(!run(&[ok.as_bytes()]).3);
        let long = format!("{}\r\n.\r\n", "a".repeat(999));
        let (_, _, end, too_long) = run(&[long.as_bytes()]);
        assert!(end && too_long);
    }

    #[test]
    fn every_split_gives_the_same_result() {
        let msg = b"..a\r\n.\rb\r\r\n\n.\n\r\n..\r\n.x\r\r\n.\r\nrest";
        let whole = run(&[msg]);
        assert!(whole.2);
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
