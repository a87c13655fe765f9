//! What a session made of one recipient: the peer's reply took it or refused it, we
//! never sent it because this peer cannot take the message, or the session ended
//! before anything decided. Every case that has no reply of the peer's has one made
//! up in the peer's terms ([`Disposition::reply`]), because the reply is what logs,
//! the delivery log and a DSN's Diagnostic-Code show.

use std::borrow::Cow;

use crate::reply::{EnhancedCode, Reply};

/// What became of one recipient on this attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// The peer took the message for this recipient: its 2xx to the content.
    Accepted(Reply),
    /// The peer refused the recipient or the message: its 4xx (try again later) or
    /// 5xx (never) to MAIL, RCPT, DATA or the content.
    Refused(Reply),
    /// Never sent, because this peer cannot take the message as it is. Permanent.
    Unsendable(Unsendable),
    /// The session ended before a reply decided. Temporary.
    Interrupted(Interruption),
}

impl Disposition {
    /// The peer's verdict on a recipient it was asked about: 2xx accepted, 4xx and
    /// 5xx refused.
    pub(super) fn of_reply(reply: &Reply) -> Disposition {
        if reply.class() == 2 {
            Disposition::Accepted(reply.clone())
        } else {
            Disposition::Refused(reply.clone())
        }
    }

    pub fn is_delivered(&self) -> bool {
        matches!(self, Disposition::Accepted(_))
    }

    /// Bounce rather than try again: a 5xx, or a message this peer can never take.
    pub fn is_permanent(&self) -> bool {
        match self {
            Disposition::Refused(reply) => reply.class() == 5,
            Disposition::Unsendable(_) => true,
            Disposition::Accepted(_) | Disposition::Interrupted(_) => false,
        }
    }

    /// The reply that decided, or the one made up for the same meaning.
    pub fn reply(&self) -> Cow<'_, Reply> {
        match self {
            Disposition::Accepted(reply) | Disposition::Refused(reply) => Cow::Borrowed(reply),
            Disposition::Unsendable(why) => Cow::Owned(why.reply()),
            Disposition::Interrupted(why) => why.reply(),
        }
    }
}

/// Why a message is not sent to a peer at all: it could only be refused or mangled.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Unsendable {
    /// Over the SIZE limit the peer advertised (RFC 1870).
    TooBig { size: usize, limit: u64 },
    /// Needs SMTPUTF8 (RFC 6531), which the peer does not offer.
    NeedsSmtputf8,
    /// 8-bit content for a peer without 8BITMIME (RFC 6152).
    NeedsEightBitMime,
    /// A reverse-path we will not put on a command line (control characters, length).
    BadSender,
    /// A forward-path we will not put on a command line.
    BadRecipient,
}

impl Unsendable {
    /// What the peer would have said.
    pub fn reply(&self) -> Reply {
        match self {
            Unsendable::TooBig { size, limit } => Reply::owned(
                552,
                EnhancedCode::new(5, 3, 4),
                format!("message of {size} octets exceeds the peer's limit of {limit}"),
            ),
            Unsendable::NeedsSmtputf8 => Reply::new(
                553,
                EnhancedCode::new(5, 6, 7),
                "message needs SMTPUTF8, which the peer does not support",
            ),
            Unsendable::NeedsEightBitMime => Reply::new(
                554,
                EnhancedCode::new(5, 6, 3),
                "8-bit content and the peer does not support 8BITMIME",
            ),
            Unsendable::BadSender => {
                Reply::new(501, EnhancedCode::new(5, 1, 7), "invalid sender address")
            }
            Unsendable::BadRecipient => {
                Reply::new(501, EnhancedCode::new(5, 1, 3), "invalid recipient address")
            }
        }
    }
}

/// Why a session ended with recipients undecided. All of them are temporary: the
/// message is tried again, here or at another host.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Interruption {
    /// The peer closed the session (421) or refused a step of it (greeting, EHLO,
    /// STARTTLS, AUTH, RSET): its reply, whatever its class.
    Peer(Reply),
    /// The connection broke: a failed read or write, the peer's EOF, a timeout.
    ConnectionLost,
    /// The peer's bytes are not SMTP, or not the reply that was due.
    Protocol(&'static str),
    /// TLS is required for this next hop and the peer does not offer STARTTLS.
    TlsUnavailable,
    /// Credentials are set but the connection has no TLS to send them over.
    NoTlsForAuth,
    /// Credentials are set but the peer offers neither AUTH PLAIN nor AUTH LOGIN.
    NoUsableAuth,
    /// `send()` while the session could not take a message.
    NotReady,
    /// `quit()` with a message in flight.
    Abandoned,
    /// No reply decided the recipient (a safety net: every path decides all).
    Undecided,
}

impl Interruption {
    /// The reply the recipient is reported with.
    pub fn reply(&self) -> Cow<'_, Reply> {
        let reply = match self {
            Interruption::Peer(reply) => return Cow::Borrowed(reply),
            Interruption::Protocol(reason) => {
                let text = format!("protocol error: {reason}");
                return Cow::Owned(Reply::owned(451, EnhancedCode::new(4, 5, 0), text));
            }
            Interruption::ConnectionLost => {
                Reply::new(421, EnhancedCode::new(4, 4, 2), "connection lost")
            }
            Interruption::TlsUnavailable => {
                Reply::new(451, EnhancedCode::new(4, 7, 5), "TLS unavailable")
            }
            Interruption::NoTlsForAuth => {
                Reply::new(451, EnhancedCode::new(4, 7, 5), "no TLS for AUTH")
            }
            Interruption::NoUsableAuth => {
                Reply::new(451, EnhancedCode::new(4, 7, 0), "no usable AUTH")
            }
            Interruption::NotReady => Reply::new(
                451,
                EnhancedCode::new(4, 4, 0),
                "connection not ready for a message",
            ),
            Interruption::Abandoned => {
                Reply::new(451, EnhancedCode::new(4, 4, 0), "delivery abandoned")
            }
            Interruption::Undecided => {
                Reply::new(451, EnhancedCode::new(4, 4, 0), "no result for recipient")
            }
        };
        Cow::Owned(reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_up_replies_read_as_before() {
        let cases: [(Disposition, &str); 6] = [
            (
                Disposition::Unsendable(Unsendable::TooBig {
                    size: 11,
                    limit: 10,
                }),
                "552 5.3.4 message of 11 octets exceeds the peer's limit of 10",
            ),
            (
                Disposition::Unsendable(Unsendable::BadRecipient),
                "501 5.1.3 invalid recipient address",
            ),
            (
                Disposition::Interrupted(Interruption::ConnectionLost),
                "421 4.4.2 connection lost",
            ),
            (
                Disposition::Interrupted(Interruption::Protocol("malformed reply line")),
                "451 4.5.0 protocol error: malformed reply line",
            ),
            (
                Disposition::Interrupted(Interruption::Abandoned),
                "451 4.4.0 delivery abandoned",
            ),
            (
                Disposition::Interrupted(Interruption::TlsUnavailable),
                "451 4.7.5 TLS unavailable",
            ),
        ];
        for (d, text) in cases {
            assert_eq!(d.reply().to_string(), text);
        }
    }

    #[test]
    fn permanence() {
        let r = |code, class| Reply::new(code, EnhancedCode::new(class, 0, 0), "x");
        assert!(Disposition::Refused(r(550, 5)).is_permanent());
        assert!(!Disposition::Refused(r(451, 4)).is_permanent());
        assert!(Disposition::Unsendable(Unsendable::NeedsSmtputf8).is_permanent());
        // A peer's 5xx that ends the session (greeting, AUTH) is not the recipient's.
        assert!(!Disposition::Interrupted(Interruption::Peer(r(554, 5))).is_permanent());
        assert!(Disposition::of_reply(&r(250, 2)).is_delivered());
    }
}
