//! SMTP replies, ours and our peers': a basic code, an enhanced status code (RFC 2034,
//! RFC 3463) and text. The server protocol sends them (every reply except the greeting,
//! the EHLO/HELO answer and `354` carries an enhanced code, so clients that turned the
//! extension on always get one); the client reads them from peers
//! (`client/reply.rs`) and makes up its own in the same shape when a recipient's fate
//! is decided without one (a message over the peer's SIZE, a lost connection).
//!
//! Fixed replies are constants (no allocation); replies that name the host, a
//! message id or a size are built with [`Reply::owned`].

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

/// An RFC 3463 enhanced status code, `class.subject.detail`: class 2 (success), 4
/// (persistent transient failure) or 5 (permanent failure), subject and detail
/// 0..=999.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct EnhancedCode {
    class: u8,
    subject: u16,
    detail: u16,
}

impl EnhancedCode {
    /// `2.0.0`: success, nothing more to say.
    pub const SUCCESS: EnhancedCode = EnhancedCode::new(2, 0, 0);
    /// `4.0.0`: a temporary failure, nothing more to say.
    pub const TRANSIENT: EnhancedCode = EnhancedCode::new(4, 0, 0);
    /// `5.0.0`: a permanent failure, nothing more to say.
    pub const PERMANENT: EnhancedCode = EnhancedCode::new(5, 0, 0);

    /// The code `class.subject.detail`.
    ///
    /// # Panics
    ///
    /// When `class` is not 2, 4 or 5 or `subject` or `detail` is over 999. Every
    /// caller passes literals, most of them in `const` items where a bad code fails
    /// the build; codes that come from outside go through [`str::parse`].
    pub const fn new(class: u8, subject: u16, detail: u16) -> EnhancedCode {
        assert!(
            matches!(class, 2 | 4 | 5) && subject <= 999 && detail <= 999,
            "not an RFC 3463 enhanced status code"
        );
        EnhancedCode {
            class,
            subject,
            detail,
        }
    }

    /// 2, 4 or 5.
    pub const fn class(self) -> u8 {
        self.class
    }

    pub const fn subject(self) -> u16 {
        self.subject
    }

    pub const fn detail(self) -> u16 {
        self.detail
    }

    /// The `X.0.0` code of a basic reply code's class: `2.0.0` for 2xx, `4.0.0` for
    /// 4xx, `5.0.0` for anything else (what a reply without an enhanced code means).
    pub const fn of_reply_code(code: u16) -> EnhancedCode {
        match code / 100 {
            2 => EnhancedCode::SUCCESS,
            4 => EnhancedCode::TRANSIENT,
            _ => EnhancedCode::PERMANENT,
        }
    }
}

impl fmt::Display for EnhancedCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

impl fmt::Debug for EnhancedCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EnhancedCode({self})")
    }
}

/// Text that is not an enhanced status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not an enhanced status code")]
pub struct InvalidEnhancedCode;

impl FromStr for EnhancedCode {
    type Err = InvalidEnhancedCode;

    /// `class.subject.detail` as RFC 3463 writes it: 1 to 3 digits per number. Its
    /// grammar allows leading zeros (`5.01.1`); such a code keeps its meaning and
    /// reads back in the usual spelling (`5.1.1`).
    fn from_str(s: &str) -> Result<EnhancedCode, InvalidEnhancedCode> {
        let mut parts = s.split('.');
        let class = match parts.next() {
            Some("2") => 2,
            Some("4") => 4,
            Some("5") => 5,
            _ => return Err(InvalidEnhancedCode),
        };
        let subject = parts.next().and_then(number).ok_or(InvalidEnhancedCode)?;
        let detail = parts.next().and_then(number).ok_or(InvalidEnhancedCode)?;
        if parts.next().is_some() {
            return Err(InvalidEnhancedCode);
        }
        Ok(EnhancedCode {
            class,
            subject,
            detail,
        })
    }
}

/// 1 to 3 digits.
fn number(part: &str) -> Option<u16> {
    let digits = (1..=3).contains(&part.len()) && part.bytes().all(|b| b.is_ascii_digit());
    if digits {
        part.parse().ok()
    } else {
        None
    }
}

/// One reply, possibly multi-line. In a reply we send, lines are separated by `\n` in
/// `text`; a reply read from a peer has its lines' texts joined with single spaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub enhanced: Option<EnhancedCode>,
    pub text: Cow<'static, str>,
}

impl Reply {
    pub const fn new(code: u16, enhanced: EnhancedCode, text: &'static str) -> Reply {
        Reply {
            code,
            enhanced: Some(enhanced),
            text: Cow::Borrowed(text),
        }
    }

    pub fn owned(code: u16, enhanced: EnhancedCode, text: String) -> Reply {
        Reply {
            code,
            enhanced: Some(enhanced),
            text: Cow::Owned(text),
        }
    }

    /// A reply without an enhanced code: the greeting, the EHLO answer, `354`.
    pub fn without_enhanced(code: u16, text: impl Into<Cow<'static, str>>) -> Reply {
        Reply {
            code,
            enhanced: None,
            text: text.into(),
        }
    }

    /// The first digit: 2 success, 3 go on, 4 temporary, 5 permanent.
    pub fn class(&self) -> u16 {
        self.code / 100
    }

    /// A 5xx reply: counts towards the error limit.
    pub fn is_permanent(&self) -> bool {
        self.code >= 500
    }

    /// The enhanced code, or the `X.0.0` of the reply's class when it has none.
    pub fn enhanced_or_generic(&self) -> EnhancedCode {
        self.enhanced
            .unwrap_or_else(|| EnhancedCode::of_reply_code(self.code))
    }

    /// Appends the wire form: `250-first\r\n250 last\r\n`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let code = self.code.to_string();
        let enhanced = self.enhanced.map(|e| e.to_string());
        let mut lines = self.text.split('\n').peekable();
        while let Some(line) = lines.next() {
            out.extend_from_slice(code.as_bytes());
            out.push(if lines.peek().is_some() { b'-' } else { b' ' });
            if let Some(enhanced) = &enhanced {
                out.extend_from_slice(enhanced.as_bytes());
                out.push(b' ');
            }
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// The one-line form for logs, the delivery log and a DSN's Diagnostic-Code:
/// `550 5.1.1 no such user`.
impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)?;
        if let Some(enhanced) = &self.enhanced {
            write!(f, " {enhanced}")?;
        }
        if !self.text.is_empty() {
            write!(f, " {}", self.text)?;
        }
        Ok(())
    }
}

pub const OK: Reply = Reply::new(250, EnhancedCode::new(2, 0, 0), "Ok");
pub const SENDER_OK: Reply = Reply::new(250, EnhancedCode::new(2, 1, 0), "Sender ok");
pub const RECIPIENT_OK: Reply = Reply::new(250, EnhancedCode::new(2, 1, 5), "Recipient ok");
pub const RESET_OK: Reply = Reply::new(250, EnhancedCode::new(2, 0, 0), "Reset state");
pub const START_DATA: Reply = Reply {
    code: 354,
    enhanced: None,
    text: Cow::Borrowed("End data with <CR><LF>.<CR><LF>"),
};
pub const VRFY: Reply = Reply::new(
    252,
    EnhancedCode::new(2, 5, 0),
    "Cannot VRFY user, but will accept message and attempt delivery",
);
pub const HELP: Reply = Reply::new(
    214,
    EnhancedCode::new(2, 0, 0),
    "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP STARTTLS",
);
pub const TLS_READY: Reply = Reply::new(220, EnhancedCode::new(2, 0, 0), "Ready to start TLS");

pub const UNRECOGNIZED: Reply = Reply::new(500, EnhancedCode::new(5, 5, 1), "Command unrecognized");
pub const BAD_CHARACTERS: Reply = Reply::new(
    500,
    EnhancedCode::new(5, 5, 2),
    "Syntax error: invalid characters",
);
pub const LINE_TOO_LONG: Reply = Reply::new(500, EnhancedCode::new(5, 5, 2), "Line too long");
pub const NOT_IMPLEMENTED: Reply =
    Reply::new(502, EnhancedCode::new(5, 5, 1), "Command not implemented");
pub const BAD_SEQUENCE_HELO: Reply =
    Reply::new(503, EnhancedCode::new(5, 5, 1), "Send EHLO/HELO first");
pub const BAD_SEQUENCE_MAIL: Reply =
    Reply::new(503, EnhancedCode::new(5, 5, 1), "Need MAIL command");
pub const BAD_SEQUENCE_NESTED: Reply =
    Reply::new(503, EnhancedCode::new(5, 5, 1), "Nested MAIL command");
pub const BAD_SEQUENCE_RCPT: Reply =
    Reply::new(503, EnhancedCode::new(5, 5, 1), "Need RCPT command");
pub const NO_VALID_RECIPIENTS: Reply =
    Reply::new(554, EnhancedCode::new(5, 5, 1), "No valid recipients");
pub const PARAM_SYNTAX: Reply =
    Reply::new(501, EnhancedCode::new(5, 5, 4), "Invalid parameter syntax");
pub const PARAM_REPEATED: Reply =
    Reply::new(501, EnhancedCode::new(5, 5, 4), "Parameter given twice");
pub const PARAM_UNKNOWN: Reply =
    Reply::new(555, EnhancedCode::new(5, 5, 4), "Unsupported parameter");
pub const NEEDS_SMTPUTF8: Reply = Reply::new(
    553,
    EnhancedCode::new(5, 6, 7),
    "Non-ASCII address requires SMTPUTF8",
);
pub const TOO_BIG: Reply = Reply::new(
    552,
    EnhancedCode::new(5, 3, 4),
    "Message size exceeds fixed limit",
);
pub const TOO_MANY_RECIPIENTS: Reply =
    Reply::new(452, EnhancedCode::new(4, 5, 3), "Too many recipients");
pub const RELAY_DENIED: Reply = Reply::new(550, EnhancedCode::new(5, 7, 1), "Relaying denied");
pub const MUST_STARTTLS: Reply = Reply::new(
    530,
    EnhancedCode::new(5, 7, 0),
    "Must issue a STARTTLS command first",
);
pub const AUTH_REQUIRED: Reply =
    Reply::new(530, EnhancedCode::new(5, 7, 0), "Authentication required");
pub const DISK_LOW: Reply = Reply::new(
    452,
    EnhancedCode::new(4, 3, 1),
    "Insufficient system storage",
);
pub const QUEUE_FAILED: Reply = Reply::new(
    451,
    EnhancedCode::new(4, 3, 0),
    "Temporary queue failure, try again later",
);
pub const LOOP: Reply = Reply::new(
    554,
    EnhancedCode::new(5, 4, 6),
    "Too many Received headers: mail loop",
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_and_multi_line() {
        let mut out = Vec::new();
        OK.write_to(&mut out);
        assert_eq!(out, b"250 2.0.0 Ok\r\n");
        out.clear();
        Reply::without_enhanced(250, "a\nb\nc").write_to(&mut out);
        assert_eq!(out, b"250-a\r\n250-b\r\n250 c\r\n");
        out.clear();
        Reply::owned(250, EnhancedCode::new(2, 1, 5), "x\ny".into()).write_to(&mut out);
        assert_eq!(out, b"250-2.1.5 x\r\n250 2.1.5 y\r\n");
    }

    #[test]
    fn display_is_one_line() {
        assert_eq!(RELAY_DENIED.to_string(), "550 5.7.1 Relaying denied");
        assert_eq!(Reply::without_enhanced(250, "").to_string(), "250");
        assert_eq!(
            Reply::owned(451, EnhancedCode::new(4, 3, 0), String::new()).to_string(),
            "451 4.3.0"
        );
    }

    #[test]
    fn enhanced_codes_read_back_as_written() {
        for text in ["2.0.0", "4.4.7", "5.1.10", "5.7.11", "5.999.999", "4.0.10"] {
            let parsed: EnhancedCode = text.parse().unwrap();
            assert_eq!(parsed.to_string(), text);
        }
        let padded: EnhancedCode = "5.01.001".parse().unwrap();
        assert_eq!(
            padded,
            EnhancedCode::new(5, 1, 1),
            "leading zeros keep the meaning"
        );
        let c: EnhancedCode = "5.1.10".parse().unwrap();
        assert_eq!((c.class(), c.subject(), c.detail()), (5, 1, 10));
        assert_eq!(c, EnhancedCode::new(5, 1, 10));
        for bad in [
            "", "3.0.0", "1.0.0", "5.1", "5.1.1.1", "5..1", "5.1.1234", "5.a.1", " 5.1.1",
            "5.1.1 ", "+5.1.1", "5.-1.1", "50.1.1",
        ] {
            assert_eq!(
                bad.parse::<EnhancedCode>(),
                Err(InvalidEnhancedCode),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn generic_codes_follow_the_reply_class() {
        assert_eq!(EnhancedCode::of_reply_code(250), EnhancedCode::SUCCESS);
        assert_eq!(EnhancedCode::of_reply_code(421), EnhancedCode::TRANSIENT);
        assert_eq!(EnhancedCode::of_reply_code(554), EnhancedCode::PERMANENT);
        assert_eq!(EnhancedCode::of_reply_code(354), EnhancedCode::PERMANENT);
        let bare = Reply::without_enhanced(452, "full");
        assert_eq!(bare.enhanced_or_generic().to_string(), "4.0.0");
        assert_eq!(
            RELAY_DENIED.enhanced_or_generic(),
            EnhancedCode::new(5, 7, 1)
        );
    }

    #[test]
    #[should_panic(expected = "not an RFC 3463 enhanced status code")]
    fn new_refuses_a_class_that_is_not_one() {
        let class = std::hint::black_box(3);
        let _ = EnhancedCode::new(class, 0, 0);
    }
}
