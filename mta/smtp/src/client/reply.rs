//! Reading replies from a peer we do not trust (RFC 5321 §4.2): `ddd text` lines,
//! `ddd-text` for all but the last line of a multi-line reply, all with one code.
//!
//! The reader is incremental (a reply may arrive a byte at a time and is never
//! re-scanned) and bounded: a line longer than [`MAX_LINE`] or a reply longer than
//! [`MAX_REPLY`] is a protocol error, so a hostile peer cannot make us buffer without
//! end. Text is kept as (lossy) UTF-8 with control characters blanked, because it
//! ends up in logs and in the Diagnostic-Code of delivery status notifications.

use crate::reply::{EnhancedCode, Reply};

/// RFC 5321 §4.5.3.1.5 allows 512 octets per reply line; real servers send longer
/// ones, so we take up to 4 KB before calling it hostile.
pub const MAX_LINE: usize = 4096;
/// The EHLO answer is the longest legitimate reply; 64 KB is far beyond any.
pub const MAX_REPLY: usize = 64 * 1024;

/// A complete reply as read: its code and the text of each line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RawReply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl RawReply {
    /// The reply with its enhanced status code split off every line (RFC 2034 puts
    /// it on each one). Only a code of the reply's own class counts as one.
    pub fn to_reply(&self) -> Reply {
        let mut enhanced = None;
        let mut text = String::new();
        for (n, line) in self.lines.iter().enumerate() {
            let rest = match split_enhanced(line, self.code / 100) {
                Some((code, rest)) => {
                    if n == 0 {
                        enhanced = Some(code);
                    }
                    rest
                }
                None => line.as_str(),
            };
            if !text.is_empty() && !rest.is_empty() {
                text.push(' ');
            }
            text.push_str(rest);
        }
        Reply {
            code: self.code,
            enhanced,
            text: text.into(),
        }
    }
}

/// `"5.1.1 rest"` → `(5.1.1, "rest")` when the class matches the reply's.
fn split_enhanced(line: &str, class: u16) -> Option<(EnhancedCode, &str)> {
    let (status, rest) = line.split_once(' ').unwrap_or((line, ""));
    let code: EnhancedCode = status.parse().ok()?;
    (u16::from(code.class()) == class).then_some((code, rest.trim_start()))
}

/// Why the peer's bytes are not a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplyError {
    LineTooLong,
    TooLong,
    MixedCodes,
    Malformed,
}

impl ReplyError {
    /// The reason as logs and the session's protocol failures name it.
    pub fn as_str(self) -> &'static str {
        match self {
            ReplyError::LineTooLong => "reply line too long",
            ReplyError::TooLong => "reply too long",
            ReplyError::MixedCodes => "multi-line reply with different codes",
            ReplyError::Malformed => "malformed reply line",
        }
    }
}

impl std::fmt::Display for ReplyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for ReplyError {}

/// Incremental reader of one reply at a time, for the session here and for any
/// other client of ours that talks SMTP to a peer (control's notifications).
#[derive(Debug, Default)]
pub struct ReplyReader {
    code: Option<u16>,
    lines: Vec<String>,
    size: usize,
}

impl ReplyReader {
    /// Reads the complete lines of `input[*pos..]`, advancing `pos` past them, until
    /// a reply is complete. `Ok(None)`: more input is needed.
    pub fn read(&mut self, input: &[u8], pos: &mut usize) -> Result<Option<Reply>, ReplyError> {
        Ok(self.read_raw(input, pos)?.map(|raw| raw.to_reply()))
    }

    /// [`ReplyReader::read`], keeping each line's text (the EHLO answer is read
    /// line by line).
    pub(super) fn read_raw(
        &mut self,
        input: &[u8],
        pos: &mut usize,
    ) -> Result<Option<RawReply>, ReplyError> {
        loop {
            let rest = input.get(*pos..).unwrap_or_default();
            let Some(end) = rest.iter().position(|&b| b == b'\n') else {
                if rest.len() >= MAX_LINE {
                    return Err(ReplyError::LineTooLong);
                }
                return Ok(None);
            };
            if end + 1 > MAX_LINE {
                return Err(ReplyError::LineTooLong);
            }
            *pos += end + 1;
            self.size += end + 1;
            if self.size > MAX_REPLY {
                return Err(ReplyError::TooLong);
            }
            let line = rest[..end].strip_suffix(b"\r").unwrap_or(&rest[..end]);
            let (code, last, text) = parse_line(line)?;
            if self.code.is_some_and(|c| c != code) {
                return Err(ReplyError::MixedCodes);
            }
            self.code = Some(code);
            self.lines.push(text);
            if last {
                let reply = RawReply {
                    code,
                    lines: std::mem::take(&mut self.lines),
                };
                *self = ReplyReader::default();
                return Ok(Some(reply));
            }
        }
    }
}

/// One line: its code, whether it is the last, and its text.
fn parse_line(line: &[u8]) -> Result<(u16, bool, String), ReplyError> {
    let malformed = ReplyError::Malformed;
    let digits = line.get(..3).ok_or(malformed)?;
    // RFC 5321 §4.2: first digit 2..5, second 0..5, third any.
    let valid = (b'2'..=b'5').contains(&digits[0])
        && (b'0'..=b'5').contains(&digits[1])
        && digits[2].is_ascii_digit();
    if !valid {
        return Err(malformed);
    }
    let code = digits
        .iter()
        .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    let last = match line.get(3) {
        None | Some(b' ') => true,
        Some(b'-') => false,
        Some(_) => return Err(malformed),
    };
    let text = String::from_utf8_lossy(line.get(4..).unwrap_or_default())
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_string();
    Ok((code, last, text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(input: &[u8]) -> Result<Option<RawReply>, ReplyError> {
        let mut pos = 0;
        ReplyReader::default().read_raw(input, &mut pos)
    }

    #[test]
    fn single_and_multi_line() {
        let r = read_all(b"250 2.1.0 Sender ok\r\n").unwrap().unwrap();
        assert_eq!(r.code, 250);
        let reply = r.to_reply();
        assert_eq!(reply.enhanced, Some(EnhancedCode::new(2, 1, 0)));
        assert_eq!(reply.text, "Sender ok");
        assert_eq!(reply.to_string(), "250 2.1.0 Sender ok");

        let r = read_all(b"550-5.1.1 no such\r\n550 5.1.1 user here\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(r.lines, ["5.1.1 no such", "5.1.1 user here"]);
        assert_eq!(r.to_reply().to_string(), "550 5.1.1 no such user here");
    }

    #[test]
    fn bare_code_and_bare_lf() {
        let r = read_all(b"250\n").unwrap().unwrap();
        assert_eq!(r.to_reply().to_string(), "250");
        assert_eq!(r.to_reply().enhanced, None);
    }

    #[test]
    fn enhanced_code_of_another_class_is_text() {
        let r = read_all(b"550 2.0.0 odd\r\n").unwrap().unwrap().to_reply();
        assert_eq!(r.enhanced, None);
        assert_eq!(r.text, "2.0.0 odd");
        let r = read_all(b"451 4.3.0\r\n").unwrap().unwrap().to_reply();
        assert_eq!(r.enhanced, Some(EnhancedCode::new(4, 3, 0)));
        assert_eq!(r.text, "");
    }

    #[test]
    fn odd_codes() {
        // A class an enhanced code cannot have: the text keeps it, so the reply reads
        // as the peer sent it.
        let line = b"354 3.0.0 go on\r\n";
        let r = read_all(line).unwrap().unwrap().to_reply();
        assert_eq!(r.enhanced, None);
        assert_eq!(r.to_string(), "354 3.0.0 go on");
        // Leading zeros, which RFC 3463's grammar allows: the code keeps its meaning.
        let r = read_all(b"550 5.01.1 odd\r\n").unwrap().unwrap().to_reply();
        assert_eq!(r.enhanced, Some(EnhancedCode::new(5, 1, 1)));
        assert_eq!(r.text, "odd");
    }

    #[test]
    fn incremental_reading_keeps_position() {
        let input = b"250-a\r\n250 b\r\n354 go\r\n";
        let mut reader = ReplyReader::default();
        let mut pos = 0;
        for end in 0..input.len() {
            // Nothing completes before the final LF of the first reply.
            if end < 14 {
                assert_eq!(reader.read(&input[..end], &mut pos), Ok(None));
            }
        }
        let first = reader.read_raw(input, &mut pos).unwrap().unwrap();
        assert_eq!(first.lines, ["a", "b"]);
        let second = reader.read(input, &mut pos).unwrap().unwrap();
        assert_eq!(second.code, 354);
        assert_eq!(pos, input.len());
    }

    #[test]
    fn garbage_is_refused() {
        for bad in [
            &b"hello\r\n"[..],
            b"25\r\n",
            b"250x\r\n",
            b"650 no\r\n",
            b"199 no\r\n",
            b"2a0 no\r\n",
            b"260 no\r\n",
            b"250-a\r\n251 b\r\n",
        ] {
            assert!(read_all(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn bounds() {
        let long = vec![b'2'; MAX_LINE];
        assert_eq!(read_all(&long), Err(ReplyError::LineTooLong));
        let mut many = Vec::new();
        while many.len() <= MAX_REPLY {
            many.extend_from_slice(b"250-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n");
        }
        assert_eq!(read_all(&many), Err(ReplyError::TooLong));
    }

    #[test]
    fn control_characters_are_blanked() {
        let r = read_all(b"550 a\x1b[31mb\x00c\r\n").unwrap().unwrap();
        assert_eq!(r.lines, ["a [31mb c"]);
    }
}
