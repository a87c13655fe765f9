//! One command line → a typed [`Command`]. The parser borrows from the line and does
//! not allocate; it checks syntax only. Whether a command is allowed *now* (sequence,
//! TLS, relay, limits) is the handlers' business.
//!
//! Syntax errors come back as the [`Reply`] to send, so that each rule and its answer
//! sit together.

use crate::path::{self, Path, PathError, PathKind};
use crate::reply::{self, EnhancedCode, Reply};

/// A parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command<'a> {
    Ehlo(&'a str),
    Helo(&'a str),
    Mail {
        path: Path<'a>,
        params: Params<'a>,
    },
    Rcpt {
        path: Path<'a>,
        params: Params<'a>,
    },
    Data,
    Bdat(BdatArgs),
    Rset,
    Noop,
    Quit,
    Vrfy,
    Help,
    StartTls,
    /// `AUTH` with its arguments (mechanism and optional initial response), unparsed.
    Auth(&'a str),
    /// Known verbs we do not implement (`EXPN`, `TURN`, `ETRN`, ...): `502`.
    NotImplemented,
}

/// `BDAT` arguments. A chunk whose size cannot be read leaves the client and server
/// out of step (the chunk would be read as commands), so it is told apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BdatArgs {
    Chunk {
        size: u64,
        last: bool,
    },
    /// Size readable, something else wrong: consume `size` octets, then `501`.
    BadSyntax {
        size: u64,
    },
    /// No readable size: `501` and close.
    Unsynced,
}

/// The ESMTP parameters after a path: `KEYWORD[=value]` separated by spaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params<'a>(&'a str);

/// One ESMTP parameter. Keywords are matched case-insensitively by the handlers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Param<'a> {
    pub keyword: &'a str,
    pub value: Option<&'a str>,
}

impl<'a> Params<'a> {
    pub fn is_empty(&self) -> bool {
        self.0.trim_matches(' ').is_empty()
    }
}

impl<'a> Iterator for Params<'a> {
    /// `Err` when a parameter is malformed (`501 5.5.4`).
    type Item = Result<Param<'a>, Reply>;

    fn next(&mut self) -> Option<Self::Item> {
        let s = self.0.trim_start_matches(' ');
        if s.is_empty() {
            return None;
        }
        let (token, rest) = s.split_once(' ').unwrap_or((s, ""));
        self.0 = rest;
        let (keyword, value) = match token.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (token, None),
        };
        // RFC 5321 esmtp-keyword and esmtp-value (UTF-8 allowed, RFC 6531).
        let keyword_ok = keyword
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
            && keyword
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        let value_ok = value.is_none_or(|v| !v.is_empty() && !v.contains('='));
        Some(if keyword_ok && value_ok {
            Ok(Param { keyword, value })
        } else {
            Err(reply::PARAM_SYNTAX)
        })
    }
}

/// Parses one line; the line terminator (CRLF or a bare LF) may still be attached.
pub fn parse(line: &[u8]) -> Result<Command<'_>, Reply> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    // Control characters (NUL, bare CR, ...) never belong in a command line.
    if line.iter().any(|&b| b < 0x20 || b == 0x7f) {
        return Err(reply::BAD_CHARACTERS);
    }
    let line = std::str::from_utf8(line).map_err(|_| reply::BAD_CHARACTERS)?;
    let line = line.trim_end_matches(' ');
    let (verb, args) = match line.split_once(' ') {
        Some((v, a)) => (v, a.trim_start_matches(' ')),
        None => (line, ""),
    };
    let is = |name: &str| verb.eq_ignore_ascii_case(name);
    let no_args = |cmd: Command<'static>, usage: &'static str| {
        if args.is_empty() {
            Ok(cmd)
        } else {
            Err(Reply::new(501, EnhancedCode::new(5, 5, 4), usage))
        }
    };
    if is("EHLO") {
        helo_name(args, "Syntax: EHLO hostname").map(Command::Ehlo)
    } else if is("HELO") {
        helo_name(args, "Syntax: HELO hostname").map(Command::Helo)
    } else if is("MAIL") {
        mail(args)
    } else if is("RCPT") {
        rcpt(args)
    } else if is("DATA") {
        no_args(Command::Data, "Syntax: DATA (no parameters)")
    } else if is("BDAT") {
        Ok(Command::Bdat(bdat(args)))
    } else if is("RSET") {
        no_args(Command::Rset, "Syntax: RSET (no parameters)")
    } else if is("NOOP") {
        Ok(Command::Noop)
    } else if is("QUIT") {
        Ok(Command::Quit)
    } else if is("VRFY") {
        if args.is_empty() {
            Err(Reply::new(
                501,
                EnhancedCode::new(5, 5, 4),
                "Syntax: VRFY address",
            ))
        } else {
            Ok(Command::Vrfy)
        }
    } else if is("HELP") {
        Ok(Command::Help)
    } else if is("STARTTLS") {
        no_args(Command::StartTls, "Syntax: STARTTLS (no parameters)")
    } else if is("AUTH") {
        Ok(Command::Auth(args))
    } else if ["EXPN", "TURN", "ETRN", "ATRN", "SEND", "SOML", "SAML"]
        .iter()
        .any(|v| is(v))
    {
        Ok(Command::NotImplemented)
    } else {
        Err(reply::UNRECOGNIZED)
    }
}

fn helo_name<'a>(args: &'a str, usage: &'static str) -> Result<&'a str, Reply> {
    // Some clients add a comment after the name; only the first word is the name.
    let name = args.split(' ').next().unwrap_or("");
    if name.is_empty() {
        Err(Reply::new(501, EnhancedCode::new(5, 5, 4), usage))
    } else if path::valid_helo(name) {
        Ok(name)
    } else {
        Err(Reply::new(
            501,
            EnhancedCode::new(5, 5, 4),
            "Invalid domain name",
        ))
    }
}

/// Strips a case-insensitive `FROM:` / `TO:` and the (tolerated) spaces after it.
fn strip_keyword<'a>(args: &'a str, keyword: &str) -> Option<&'a str> {
    let head = args.get(..keyword.len())?;
    head.eq_ignore_ascii_case(keyword)
        .then(|| args[keyword.len()..].trim_start_matches(' '))
}

fn mail(args: &str) -> Result<Command<'_>, Reply> {
    let rest = strip_keyword(args, "FROM:").ok_or(Reply::new(
        501,
        EnhancedCode::new(5, 5, 4),
        "Syntax: MAIL FROM:<address>",
    ))?;
    let (path, params) = path_and_params(
        rest,
        PathKind::Reverse,
        Reply::new(501, EnhancedCode::new(5, 1, 7), "Bad sender address syntax"),
        Reply::new(501, EnhancedCode::new(5, 1, 7), "Sender path too long"),
    )?;
    Ok(Command::Mail { path, params })
}

fn rcpt(args: &str) -> Result<Command<'_>, Reply> {
    let rest = strip_keyword(args, "TO:").ok_or(Reply::new(
        501,
        EnhancedCode::new(5, 5, 4),
        "Syntax: RCPT TO:<address>",
    ))?;
    let (path, params) = path_and_params(
        rest,
        PathKind::Forward,
        Reply::new(
            501,
            EnhancedCode::new(5, 1, 3),
            "Bad recipient address syntax",
        ),
        Reply::new(501, EnhancedCode::new(5, 1, 3), "Recipient path too long"),
    )?;
    Ok(Command::Rcpt { path, params })
}

fn path_and_params(
    s: &str,
    kind: PathKind,
    syntax: Reply,
    too_long: Reply,
) -> Result<(Path<'_>, Params<'_>), Reply> {
    match path::parse_path(s, kind) {
        Ok((p, rest)) if rest.is_empty() || rest.starts_with(' ') => Ok((p, Params(rest))),
        Ok(_) | Err(PathError::Syntax) => Err(syntax),
        Err(PathError::TooLong) => Err(too_long),
    }
}

fn bdat(args: &str) -> BdatArgs {
    let mut words = args.split(' ').filter(|w| !w.is_empty());
    let size = match words.next() {
        // At most 19 digits always fits in a u64.
        Some(w) if (1..=19).contains(&w.len()) && w.bytes().all(|b| b.is_ascii_digit()) => {
            match w.parse::<u64>() {
                Ok(n) => n,
                Err(_) => return BdatArgs::Unsynced,
            }
        }
        _ => return BdatArgs::Unsynced,
    };
    match (words.next(), words.next()) {
        (None, _) => BdatArgs::Chunk { size, last: false },
        (Some(w), None) if w.eq_ignore_ascii_case("LAST") => BdatArgs::Chunk { size, last: true },
        _ => BdatArgs::BadSyntax { size },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs_are_case_insensitive() {
        assert_eq!(
            parse(b"eHlO client.example\r\n"),
            Ok(Command::Ehlo("client.example"))
        );
        assert_eq!(parse(b"noop\r\n"), Ok(Command::Noop));
        assert_eq!(parse(b"QuIt"), Ok(Command::Quit));
    }

    #[test]
    fn mail_with_params() {
        let Ok(Command::Mail { path, params }) =
            parse(b"MAIL FROM:<a@b.example> SIZE=10 BODY=8BITMIME\r\n")
        else {
            panic!("MAIL did not parse");
        };
        assert_eq!(path.address, "a@b.example");
        let got: Vec<_> = params.map(|p| p.expect("valid param")).collect();
        assert_eq!(
            got,
            vec![
                Param {
                    keyword: "SIZE",
                    value: Some("10")
                },
                Param {
                    keyword: "BODY",
                    value: Some("8BITMIME")
                }
            ]
        );
    }

    #[test]
    fn syntax_errors() {
        let code = |l: &[u8]| parse(l).map(|_| 0).unwrap_or_else(|r| r.code);
        assert_eq!(code(b"EHLO\r\n"), 501);
        assert_eq!(code(b"EHLO a\x00b\r\n"), 500);
        assert_eq!(code(b"MAIL <a@b>\r\n"), 501);
        assert_eq!(code(b"MAIL FROM:<a@b>x\r\n"), 501);
        assert_eq!(code(b"RCPT TO:<>\r\n"), 501);
        assert_eq!(code(b"DATA x\r\n"), 501);
        assert_eq!(code(b"STARTTLS x\r\n"), 501);
        assert_eq!(code(b"FOO\r\n"), 500);
        assert_eq!(code(b"\r\n"), 500);
        assert_eq!(
            code(b"MAIL FROM:<a@b> =x\r\n"),
            0,
            "params are checked lazily"
        );
    }

    #[test]
    fn bdat_arguments() {
        let b = |l: &[u8]| match parse(l) {
            Ok(Command::Bdat(a)) => a,
            other => panic!("not BDAT: {other:?}"),
        };
        assert_eq!(
            b(b"BDAT 10"),
            BdatArgs::Chunk {
                size: 10,
                last: false
            }
        );
        assert_eq!(
            b(b"bdat 0 last"),
            BdatArgs::Chunk {
                size: 0,
                last: true
            }
        );
        assert_eq!(b(b"BDAT 5 LAST x"), BdatArgs::BadSyntax { size: 5 });
        assert_eq!(b(b"BDAT abc"), BdatArgs::Unsynced);
        assert_eq!(b(b"BDAT"), BdatArgs::Unsynced);
        assert_eq!(b(b"BDAT 99999999999999999999"), BdatArgs::Unsynced);
    }
}
