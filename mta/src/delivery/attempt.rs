//! What one delivery attempt made of one recipient: delivered, deferred or failed,
//! and why ([`DeliveryError`]: DNS, a host that could not be used, the peer's
//! refusal, a message the peer cannot take, a session cut short, expiry). Everything
//! that reports an attempt derives from this one value, here: the text kept as the
//! recipient's `last_error` and in the delivery log (`Display`), the enhanced status
//! code and action of a DSN, and the delivery log's outcome.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use way2mail_mta::outbound::mx::ResolveError;
use way2mail_queue::DeliveryOutcome;
use way2mail_smtp::client::{Disposition, Interruption, SessionFailure, Unsendable};
use way2mail_smtp::dsn::Action;
use way2mail_smtp::{EnhancedCode, Reply};

/// What one attempt made of one recipient.
#[derive(Debug, Clone)]
pub enum Attempt {
    /// The next hop took responsibility, with this reply. `relayed`: it does not
    /// support DSN and the recipient asked for a success notice, which then says
    /// "relayed" rather than "delivered" (RFC 3461 §5.2.2).
    Delivered { reply: Reply, relayed: bool },
    /// Try again later.
    Deferred(DeliveryError),
    /// Given up: the recipient bounces.
    Failed(DeliveryError),
}

/// Why a recipient was not delivered.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum DeliveryError {
    /// DNS named no next hop for the domain, or could not be asked.
    #[error(transparent)]
    Dns(ResolveError),
    /// No host of the destination could be used; this is why the last one could not.
    #[error(transparent)]
    Unreachable(HostError),
    /// The connection failed with this message in it before the SMTP session could
    /// settle the recipients (a safety net: the session settles them itself).
    #[error(transparent)]
    ConnectionBroken(HostError),
    /// The peer refused the recipient or the message (4xx or 5xx).
    #[error("{0}")]
    Rejected(Reply),
    /// Never sent: this peer cannot take the message (its SIZE, a missing extension).
    #[error("{}", .0.reply())]
    Unsendable(Unsendable),
    /// The session ended before a reply decided: the connection was lost, the peer
    /// broke the protocol or closed the session.
    #[error("{}", .0.reply())]
    Interrupted(Interruption),
    /// The message outlived the queue; the last error before it did, if there was one.
    #[error("delivery time expired{}", last_error_suffix(.last_error.as_deref()))]
    Expired { last_error: Option<String> },
}

fn last_error_suffix(last_error: Option<&str>) -> String {
    last_error.map_or_else(String::new, |e| format!("; last error: {e}"))
}

/// Why one host of a destination could not be used.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// The destination has no host to try.
    #[error("no next hop")]
    NoHop,
    #[error("connect to {host}[{addr}]: {error}")]
    Connect {
        host: String,
        addr: SocketAddr,
        #[source]
        error: Arc<io::Error>,
    },
    #[error("connect to {host}[{addr}]: timed out")]
    ConnectTimeout { host: String, addr: SocketAddr },
    /// The connected socket could not be handed to the I/O backend.
    #[error("{error}")]
    Socket {
        #[source]
        error: Arc<io::Error>,
    },
    #[error("{host} is not a valid TLS server name")]
    TlsName { host: String },
    #[error("TLS handshake with {host}: {error}")]
    Tls {
        host: String,
        #[source]
        error: Arc<io::Error>,
    },
    #[error("TLS handshake with {host} timed out")]
    TlsTimeout { host: String },
    #[error("STARTTLS asked twice")]
    StartTlsTwice,
    /// The SMTP session failed outside a message: a refused greeting, EHLO, STARTTLS
    /// or AUTH, the peer's 421, a protocol error, a lost connection.
    #[error("{host} at {failure}")]
    Session {
        host: String,
        failure: SessionFailure,
    },
    /// The peer closed the connection before anything was sent.
    #[error("{host} closed the connection")]
    Closed { host: String },
}

impl Attempt {
    /// What the SMTP session made of a recipient. `no_dsn_beyond`: the peer does not
    /// support DSN and the recipient asked for a success notice.
    pub fn of_disposition(disposition: Disposition, no_dsn_beyond: bool) -> Attempt {
        match disposition {
            Disposition::Accepted(reply) => Attempt::Delivered {
                reply,
                relayed: no_dsn_beyond,
            },
            Disposition::Refused(reply) if reply.class() == 5 => {
                Attempt::Failed(DeliveryError::Rejected(reply))
            }
            Disposition::Refused(reply) => Attempt::Deferred(DeliveryError::Rejected(reply)),
            Disposition::Unsendable(why) => Attempt::Failed(DeliveryError::Unsendable(why)),
            Disposition::Interrupted(why) => Attempt::Deferred(DeliveryError::Interrupted(why)),
        }
    }

    /// A failed DNS lookup: a bounce when the answer is final, else a deferral.
    pub fn of_dns(error: ResolveError) -> Attempt {
        if error.is_permanent() {
            Attempt::Failed(DeliveryError::Dns(error))
        } else {
            Attempt::Deferred(DeliveryError::Dns(error))
        }
    }

    pub fn is_deferred(&self) -> bool {
        matches!(self, Attempt::Deferred(_))
    }

    /// The RFC 3463 status code a DSN reports.
    pub fn enhanced_code(&self) -> EnhancedCode {
        match self {
            Attempt::Delivered { reply, .. } => reply.enhanced_or_generic(),
            Attempt::Deferred(e) | Attempt::Failed(e) => e.enhanced_code(),
        }
    }

    /// Delivered to a next hop that supports DSN: the notices the recipient's
    /// NOTIFY asks for are that hop's to send from here on.
    pub fn passed_on_with_dsn(&self) -> bool {
        matches!(self, Attempt::Delivered { relayed: false, .. })
    }

    /// The action a DSN reports (for an attempt that is reported at all).
    pub fn dsn_action(&self) -> Action {
        match self {
            Attempt::Delivered { relayed: true, .. } => Action::Relayed,
            Attempt::Delivered { relayed: false, .. } => Action::Delivered,
            Attempt::Deferred(_) | Attempt::Failed(_) => Action::Failed,
        }
    }

    /// The code of the reply that decided, when a peer's (or the session's) reply did.
    pub fn reply_code(&self) -> Option<u16> {
        match self {
            Attempt::Delivered { reply, .. } => Some(reply.code),
            Attempt::Deferred(e) | Attempt::Failed(e) => match e {
                DeliveryError::Rejected(reply) => Some(reply.code),
                DeliveryError::Unsendable(why) => Some(why.reply().code),
                DeliveryError::Interrupted(why) => Some(why.reply().code),
                DeliveryError::Dns(_)
                | DeliveryError::Unreachable(_)
                | DeliveryError::ConnectionBroken(_)
                | DeliveryError::Expired { .. } => None,
            },
        }
    }

    /// The delivery log's outcome.
    pub fn log_outcome(&self) -> DeliveryOutcome {
        match self {
            Attempt::Delivered { .. } => DeliveryOutcome::Delivered,
            Attempt::Deferred(_) => DeliveryOutcome::Deferred,
            Attempt::Failed(DeliveryError::Expired { .. }) => DeliveryOutcome::Expired,
            Attempt::Failed(_) => DeliveryOutcome::Bounced,
        }
    }
}

/// The reply or diagnostic, as logs, `last_error`, the delivery log and a DSN's
/// Diagnostic-Code show it: `550 5.1.1 no such user`, `example.net: no such domain`.
impl fmt::Display for Attempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Attempt::Delivered { reply, .. } => reply.fmt(f),
            Attempt::Deferred(e) | Attempt::Failed(e) => e.fmt(f),
        }
    }
}

impl DeliveryError {
    /// The RFC 3463 status code: the peer's (or the class's generic one when it gave
    /// none), or the one that names the failure.
    pub fn enhanced_code(&self) -> EnhancedCode {
        match self {
            DeliveryError::Dns(e) => e.enhanced_code(),
            // 4.4.1: no answer from host.
            DeliveryError::Unreachable(_) => EnhancedCode::new(4, 4, 1),
            // 4.4.2: bad connection.
            DeliveryError::ConnectionBroken(_) => EnhancedCode::new(4, 4, 2),
            DeliveryError::Rejected(reply) => reply.enhanced_or_generic(),
            DeliveryError::Unsendable(why) => why.reply().enhanced_or_generic(),
            DeliveryError::Interrupted(why) => why.reply().enhanced_or_generic(),
            // 4.4.7: delivery time expired, transient in kind even as a bounce.
            DeliveryError::Expired { .. } => EnhancedCode::new(4, 4, 7),
        }
    }
}

/// The host that answered an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    pub host: String,
    pub ip: IpAddr,
    /// The TLS version and cipher, when the session had TLS.
    pub tls: Option<String>,
}

/// One recipient's attempt, as a job reports it back.
#[derive(Debug, Clone)]
pub struct RecipientAttempt {
    /// Index into the envelope's recipients.
    pub index: usize,
    pub attempt: Attempt,
    /// Who answered; `None` when no SMTP session decided (DNS, no usable host).
    pub hop: Option<Hop>,
}

impl RecipientAttempt {
    /// A recipient still pending when the message outlived the queue.
    pub fn expired(index: usize, last_error: Option<String>) -> RecipientAttempt {
        let last_error = last_error.filter(|e| !e.is_empty());
        RecipientAttempt {
            index,
            attempt: Attempt::Failed(DeliveryError::Expired { last_error }),
            hop: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(text: &str) -> Reply {
        let mut reader = way2mail_smtp::client::ReplyReader::default();
        let line = format!("{text}\r\n");
        reader
            .read(line.as_bytes(), &mut 0)
            .expect("a reply")
            .expect("complete")
    }

    /// Every kind renders as the log, `last_error` and the DSN have always shown it.
    #[test]
    fn text_and_code_of_every_kind() {
        let host = || "mx.example.net".to_string();
        let addr: SocketAddr = "192.0.2.7:25".parse().expect("address");
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        let failure = |reply: Option<Reply>, reason: &str| SessionFailure {
            temporary: true,
            stage: "greeting",
            reply,
            reason: reason.into(),
        };
        let deferred = |e| Attempt::Deferred(e);
        let cases: Vec<(Attempt, String, &str)> = vec![
            (
                Attempt::Delivered {
                    reply: reply("250 2.0.0 queued as X"),
                    relayed: false,
                },
                "250 2.0.0 queued as X".into(),
                "2.0.0",
            ),
            (
                Attempt::Delivered {
                    reply: reply("250 ok"),
                    relayed: true,
                },
                "250 ok".into(),
                "2.0.0",
            ),
            (
                Attempt::of_disposition(Disposition::Refused(reply("550 5.1.1 no such")), false),
                "550 5.1.1 no such".into(),
                "5.1.1",
            ),
            (
                Attempt::of_disposition(Disposition::Refused(reply("452 full")), false),
                "452 full".into(),
                "4.0.0",
            ),
            (
                Attempt::of_disposition(
                    Disposition::Unsendable(Unsendable::TooBig { size: 9, limit: 8 }),
                    false,
                ),
                "552 5.3.4 message of 9 octets exceeds the peer's limit of 8".into(),
                "5.3.4",
            ),
            (
                Attempt::of_disposition(
                    Disposition::Interrupted(Interruption::ConnectionLost),
                    false,
                ),
                "421 4.4.2 connection lost".into(),
                "4.4.2",
            ),
            (
                Attempt::of_dns(ResolveError::NoSuchDomain {
                    domain: "example.net".into(),
                }),
                "example.net: no such domain".into(),
                "5.1.2",
            ),
            (
                deferred(DeliveryError::Unreachable(HostError::NoHop)),
                "no next hop".into(),
                "4.4.1",
            ),
            (
                deferred(DeliveryError::Unreachable(HostError::Connect {
                    host: host(),
                    addr,
                    error: Arc::new(refused),
                })),
                format!(
                    "connect to mx.example.net[192.0.2.7:25]: {}",
                    io::Error::from(io::ErrorKind::ConnectionRefused)
                ),
                "4.4.1",
            ),
            (
                deferred(DeliveryError::Unreachable(HostError::ConnectTimeout {
                    host: host(),
                    addr,
                })),
                "connect to mx.example.net[192.0.2.7:25]: timed out".into(),
                "4.4.1",
            ),
            (
                deferred(DeliveryError::Unreachable(HostError::TlsTimeout {
                    host: host(),
                })),
                "TLS handshake with mx.example.net timed out".into(),
                "4.4.1",
            ),
            (
                deferred(DeliveryError::Unreachable(HostError::Session {
                    host: host(),
                    failure: failure(Some(reply("554 5.7.1 go away")), "peer refused"),
                })),
                "mx.example.net at greeting: 554 5.7.1 go away".into(),
                "4.4.1",
            ),
            (
                deferred(DeliveryError::Unreachable(HostError::Session {
                    host: host(),
                    failure: failure(None, "connection lost"),
                })),
                "mx.example.net at greeting: connection lost".into(),
                "4.4.1",
            ),
            (
                deferred(DeliveryError::ConnectionBroken(HostError::Closed {
                    host: host(),
                })),
                "mx.example.net closed the connection".into(),
                "4.4.2",
            ),
            (
                RecipientAttempt::expired(0, None).attempt,
                "delivery time expired".into(),
                "4.4.7",
            ),
            (
                RecipientAttempt::expired(0, Some(String::new())).attempt,
                "delivery time expired".into(),
                "4.4.7",
            ),
            (
                RecipientAttempt::expired(0, Some("451 4.3.0 later".into())).attempt,
                "delivery time expired; last error: 451 4.3.0 later".into(),
                "4.4.7",
            ),
        ];
        for (attempt, text, code) in cases {
            assert_eq!(attempt.to_string(), text);
            assert_eq!(attempt.enhanced_code().to_string(), code, "{text}");
        }
    }

    #[test]
    fn outcomes_and_actions() {
        let delivered = Attempt::Delivered {
            reply: reply("250 ok"),
            relayed: true,
        };
        assert_eq!(delivered.dsn_action(), Action::Relayed);
        assert_eq!(delivered.log_outcome(), DeliveryOutcome::Delivered);
        // Relayed past DSN: ours to report. Passed to a DSN-capable hop: not ours.
        assert!(!delivered.passed_on_with_dsn());
        let passed_on = Attempt::Delivered {
            reply: reply("250 ok"),
            relayed: false,
        };
        assert!(passed_on.passed_on_with_dsn());
        assert!(
            !Attempt::of_disposition(Disposition::Refused(reply("550 no")), false)
                .passed_on_with_dsn()
        );
        let bounced = Attempt::of_disposition(Disposition::Refused(reply("550 no")), false);
        assert_eq!(bounced.dsn_action(), Action::Failed);
        assert_eq!(bounced.log_outcome(), DeliveryOutcome::Bounced);
        let deferred = Attempt::of_disposition(Disposition::Refused(reply("451 later")), false);
        assert!(deferred.is_deferred());
        assert_eq!(deferred.log_outcome(), DeliveryOutcome::Deferred);
        let expired = RecipientAttempt::expired(3, None).attempt;
        assert_eq!(expired.log_outcome(), DeliveryOutcome::Expired);
        assert_eq!(expired.dsn_action(), Action::Failed);
    }
}
