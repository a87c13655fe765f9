//! SMTP reply reader for the load generator.
//!
//! [`parse_reply`] is sans-IO: it looks at the bytes buffered so far and either
//! returns one complete (possibly multi-line) reply and how many bytes it used, asks
//! for more input, or rejects malformed input. Pipelined servers send several replies
//! in one segment; the leftover bytes simply stay buffered for the next call.
//! [`read_reply`] drives it over a [`Conn`].

use std::io;

use crate::conn::Conn;

/// Longest reply accepted, all lines together: EHLO replies are the long ones and
/// stay far below this; anything bigger is a broken or hostile server.
const MAX_REPLY: usize = 32 * 1024;

/// One complete server reply, line by line: the load generator looks at EHLO keywords
/// and codes only, so it keeps the lines as sent rather than the MTA's joined
/// `way2mail_smtp::Reply`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerReply {
    pub code: u16,
    /// Text of each line after the code and separator, without the line ending.
    pub lines: Vec<String>,
}

impl ServerReply {
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// Whether an EHLO reply advertises `keyword` (case-insensitive, first word of a line).
    pub fn has_extension(&self, keyword: &str) -> bool {
        self.lines.iter().skip(1).any(|line| {
            line.split_ascii_whitespace()
                .next()
                .is_some_and(|word| word.eq_ignore_ascii_case(keyword))
        })
    }
}

/// Why bytes from the server are not a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyError {
    BadCode,
    MixedCodes,
    TooLong,
}

/// Parses one reply from the front of `buf`.
///
/// Returns `Ok(None)` when more input is needed, `Ok(Some((reply, used)))` when a
/// whole reply is present. Lines end in LF with an optional CR before it.
pub fn parse_reply(buf: &[u8]) -> Result<Option<(ServerReply, usize)>, ReplyError> {
    let mut pos = 0;
    let mut code = None;
    let mut lines = Vec::new();
    loop {
        let rest = &buf[pos..];
        let Some(lf) = rest.iter().position(|&b| b == b'\n') else {
            return if buf.len() > MAX_REPLY {
                Err(ReplyError::TooLong)
            } else {
                Ok(None)
            };
        };
        if pos + lf > MAX_REPLY {
            return Err(ReplyError::TooLong);
        }
        let line = rest[..lf].strip_suffix(b"\r").unwrap_or(&rest[..lf]);
        pos += lf + 1;
        let (line_code, last, text) = split_line(line)?;
        if *code.get_or_insert(line_code) != line_code {
            return Err(ReplyError::MixedCodes);
        }
        lines.push(String::from_utf8_lossy(text).into_owned());
        if last {
            return Ok(Some((
                ServerReply {
                    code: line_code,
                    lines,
                },
                pos,
            )));
        }
    }
}

/// Splits `250-text` / `250 text` / `250` into (code, is last line, text).
fn split_line(line: &[u8]) -> Result<(u16, bool, &[u8]), ReplyError> {
    let digits = line.get(..3).ok_or(ReplyError::BadCode)?;
    let valid = matches!(digits[0], b'2'..=b'5')
        && digits[1].is_ascii_digit()
        && digits[2].is_ascii_digit();
    if !valid {
        return Err(ReplyError::BadCode);
    }
    let code = digits
        .iter()
        .fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'));
    match line.get(3) {
        None => Ok((code, true, &[])),
        Some(b' ') => Ok((code, true, &line[4..])),
        Some(b'-') => Ok((code, false, &line[4..])),
        Some(_) => Err(ReplyError::BadCode),
    }
}

/// Reads one reply, pulling more input from the connection as needed.
pub async fn read_reply(conn: &mut Conn) -> io::Result<ServerReply> {
    loop {
        match parse_reply(conn.buffered()) {
            Ok(Some((reply, used))) => {
                conn.consume(used);
                return Ok(reply);
            }
            Ok(None) => {
                if conn.fill().await? == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
            }
            Err(e) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("malformed reply: {e:?}"),
                ))
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn single_line() {
        let (r, used) = parse_reply(b"250 2.0.0 OK\r\n").unwrap().unwrap();
        assert_eq!(r.code, 250);
        assert_eq!(r.lines, vec!["2.0.0 OK"]);
        assert_eq!(used, 14);
        assert!(r.is_positive());
    }

    #[test]
    fn bare_code_and_bare_lf() {
        let (r, used) = parse_reply(b"354\n").unwrap().unwrap();
        assert_eq!((r.code, used), (354, 4));
        assert!(!r.is_positive());
    }

    #[test]
    fn multi_line_with_extensions() {
        let input = b"250-mx.example\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250 STARTTLS\r\n";
        let (r, used) = parse_reply(input).unwrap().unwrap();
        assert_eq!(used, input.len());
        assert_eq!(r.lines.len(), 4);
        assert!(r.has_extension("pipelining"));
        assert!(r.has_extension("SIZE"));
        assert!(r.has_extension("STARTTLS"));
        assert!(
            !r.has_extension("mx.example"),
            "greeting line is not an extension"
        );
        assert!(!r.has_extension("CHUNKING"));
    }

    #[test]
    fn pipelined_batch_parses_one_at_a_time() {
        let input = b"250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go\r\n";
        let mut pos = 0;
        let mut codes = Vec::new();
        while let Some((r, used)) = parse_reply(&input[pos..]).unwrap() {
            codes.push(r.code);
            pos += used;
        }
        assert_eq!(codes, vec![250, 250, 354]);
        assert_eq!(pos, input.len());
    }

    #[test]
    fn incomplete_input_at_every_split() {
        let input = b"250-a\r\n250-b\r\n250 c\r\n";
        for cut in 0..input.len() {
            assert_eq!(parse_reply(&input[..cut]), Ok(None), "cut at {cut}");
        }
        assert!(parse_reply(input).unwrap().is_some());
    }

    #[test]
    fn rejects_malformed() {
        assert_eq!(parse_reply(b"hello\r\n"), Err(ReplyError::BadCode));
        assert_eq!(parse_reply(b"25\r\n"), Err(ReplyError::BadCode));
        assert_eq!(parse_reply(b"650 no\r\n"), Err(ReplyError::BadCode));
        assert_eq!(parse_reply(b"250x\r\n"), Err(ReplyError::BadCode));
        assert_eq!(
            parse_reply(b"250-a\r\n251 b\r\n"),
            Err(ReplyError::MixedCodes)
        );
    }

    #[test]
    fn rejects_endless_reply() {
        let mut input = Vec::new();
        while input.len() <= MAX_REPLY {
            input.extend_from_slice(b"250-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n");
        }
        assert_eq!(parse_reply(&input), Err(ReplyError::TooLong));
        assert_eq!(
            parse_reply(&[b'2'; MAX_REPLY + 1]),
            Err(ReplyError::TooLong)
        );
    }
}
