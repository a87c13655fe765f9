//! SMTP replies: a code, an enhanced status code (RFC 2034/3463) and text, and their
//! wire form. Every reply except the greeting and the EHLO/HELO answer carries an
//! enhanced code, so clients that turned the extension on always get one.
//!
//! Fixed replies are constants (no allocation); replies that name the host, a
//! message id or a size are built with [`Reply::owned`].

use std::borrow::Cow;

/// One reply, possibly multi-line (lines separated by `\n` in `text`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// Enhanced status code such as `"5.5.1"`; empty for none.
    pub status: &'static str,
    pub text: Cow<'static, str>,
}

impl Reply {
    pub const fn new(code: u16, status: &'static str, text: &'static str) -> Reply {
        Reply {
            code,
            status,
            text: Cow::Borrowed(text),
        }
    }

    pub fn owned(code: u16, status: &'static str, text: String) -> Reply {
        Reply {
            code,
            status,
            text: Cow::Owned(text),
        }
    }

    /// A 5xx reply: counts towards the error limit.
    pub fn is_permanent(&self) -> bool {
        self.code >= 500
    }

    /// Appends the wire form: `250-first\r\n250 last\r\n`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let code = self.code.to_string();
        let mut lines = self.text.split('\n').peekable();
        while let Some(line) = lines.next() {
            out.extend_from_slice(code.as_bytes());
            out.push(if lines.peek().is_some() { b'-' } else { b' ' });
            if !self.status.is_empty() {
                out.extend_from_slice(self.status.as_bytes());
                out.push(b' ');
            }
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
}

pub const OK: Reply = Reply::new(250, "2.0.0", "Ok");
pub const SENDER_OK: Reply = Reply::new(250, "2.1.0", "Sender ok");
pub const RECIPIENT_OK: Reply = Reply::new(250, "2.1.5", "Recipient ok");
pub const RESET_OK: Reply = Reply::new(250, "2.0.0", "Reset state");
pub const START_DATA: Reply = Reply::new(354, "", "End data with <CR><LF>.<CR><LF>");
pub const VRFY: Reply = Reply::new(
    252,
    "2.5.0",
    "Cannot VRFY user, but will accept message and attempt delivery",
);
pub const HELP: Reply = Reply::new(
    214,
    "2.0.0",
    "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP STARTTLS",
);
pub const TLS_READY: Reply = Reply::new(220, "2.0.0", "Ready to start TLS");

pub const UNRECOGNIZED: Reply = Reply::new(500, "5.5.1", "Command unrecognized");
pub const BAD_CHARACTERS: Reply = Reply::new(500, "5.5.2", "Syntax error: invalid characters");
pub const LINE_TOO_LONG: Reply = Reply::new(500, "5.5.2", "Line too long");
pub const NOT_IMPLEMENTED: Reply = Reply::new(502, "5.5.1", "Command not implemented");
pub const BAD_SEQUENCE_HELO: Reply = Reply::new(503, "5.5.1", "Send EHLO/HELO first");
pub const BAD_SEQUENCE_MAIL: Reply = Reply::new(503, "5.5.1", "Need MAIL command");
pub const BAD_SEQUENCE_NESTED: Reply = Reply::new(503, "5.5.1", "Nested MAIL command");
pub const BAD_SEQUENCE_RCPT: Reply = Reply::new(503, "5.5.1", "Need RCPT command");
pub const NO_VALID_RECIPIENTS: Reply = Reply::new(554, "5.5.1", "No valid recipients");
pub const PARAM_SYNTAX: Reply = Reply::new(501, "5.5.4", "Invalid parameter syntax");
pub const PARAM_REPEATED: Reply = Reply::new(501, "5.5.4", "Parameter given twice");
pub const PARAM_UNKNOWN: Reply = Reply::new(555, "5.5.4", "Unsupported parameter");
pub const NEEDS_SMTPUTF8: Reply = Reply::new(553, "5.6.7", "Non-ASCII address requires SMTPUTF8");
pub const TOO_BIG: Reply = Reply::new(552, "5.3.4", "Message size exceeds fixed limit");
pub const TOO_MANY_RECIPIENTS: Reply = Reply::new(452, "4.5.3", "Too many recipients");
pub const RELAY_DENIED: Reply = Reply::new(550, "5.7.1", "Relaying denied");
pub const MUST_STARTTLS: Reply = Reply::new(530, "5.7.0", "Must issue a STARTTLS command first");
pub const AUTH_REQUIRED: Reply = Reply::new(530, "5.7.0", "Authentication required");
pub const DISK_LOW: Reply = Reply::new(452, "4.3.1", "Insufficient system storage");
pub const QUEUE_FAILED: Reply =
    Reply::new(451, "4.3.0", "Temporary queue failure, try again later");
pub const LOOP: Reply = Reply::new(554, "5.4.6", "Too many Received headers: mail loop");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_and_multi_line() {
        let mut out = Vec::new();
        OK.write_to(&mut out);
        assert_eq!(out, b"250 2.0.0 Ok\r\n");
        out.clear();
        Reply::owned(250, "", "a\nb\nc".into()).write_to(&mut out);
        assert_eq!(out, b"250-a\r\n250-b\r\n250 c\r\n");
    }
}
