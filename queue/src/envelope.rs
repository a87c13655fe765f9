//! The envelope of a queued message: everything SMTP told us about it besides the
//! content. Built by the SMTP session, sealed and stored by the spool, read back by
//! delivery. DSN parameters (RFC 3461) are kept as given so that delivery can pass
//! them on and bounces can honour them.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// `BODY=` from MAIL FROM (RFC 6152).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum BodyType {
    /// No `BODY=` or `BODY=7BIT`.
    #[default]
    SevenBit,
    /// `BODY=8BITMIME`.
    EightBitMime,
}

/// `RET=` from MAIL FROM (RFC 3461 §4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Ret {
    Full,
    Headers,
}

/// `NOTIFY=` from RCPT TO (RFC 3461 §4.1). `never` excludes the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Notify {
    pub never: bool,
    pub success: bool,
    pub failure: bool,
    pub delay: bool,
}

impl Notify {
    /// True when the client gave no `NOTIFY=` at all (RFC 3461 §4.1: the MTA then
    /// behaves as if `NOTIFY=FAILURE` or `FAILURE,DELAY` had been given).
    pub fn is_unspecified(&self) -> bool {
        !(self.never || self.success || self.failure || self.delay)
    }
}

/// One accepted recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipient {
    /// The forward-path as given, without angle brackets (`user@example.net`).
    pub address: String,
    pub notify: Notify,
    /// `ORCPT=` as given: `addr-type;xtext-encoded-address`.
    pub orcpt: Option<String>,
}

/// Where the message came from and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    pub client_ip: IpAddr,
    /// The EHLO/HELO argument.
    pub helo: String,
    /// The listener role that accepted the message (`mx`, `submission`, `submissions`).
    pub listener: String,
    /// Negotiated TLS version and cipher suite, when the session was encrypted.
    pub tls: Option<String>,
    /// The authenticated identity, when the session was authenticated.
    pub auth: Option<String>,
}

/// The envelope of one message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The reverse-path without angle brackets; empty for the null sender `<>`.
    pub sender: String,
    pub recipients: Vec<Recipient>,
    pub body_type: BodyType,
    pub smtputf8: bool,
    pub ret: Option<Ret>,
    /// `ENVID=` as given (xtext).
    pub envid: Option<String>,
    pub origin: Origin,
    /// Unix time in milliseconds when the message was accepted.
    pub received_at_ms: u64,
}
