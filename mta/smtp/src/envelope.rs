//! The envelope of a queued message: everything SMTP told us about it besides the
//! content. Built by the SMTP session, sealed and stored by the spool, read back by
//! delivery. DSN parameters (RFC 3461) are kept as given so that delivery can pass
//! them on and bounces can honour them. Delivery state (per recipient, and the
//! message's attempt count) lives here too, so that one envelope write records an
//! attempt's outcome; every such field is `#[serde(default)]`, so envelopes written
//! before delivery existed still open.

use std::collections::BTreeMap;
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

/// Where delivery to one recipient stands. Envelopes written before delivery
/// existed have no state and read back as `Pending`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum RecipientState {
    /// Not delivered yet: never tried, or deferred by a temporary failure.
    #[default]
    Pending,
    /// The next hop accepted it (or it was relayed); nothing more to do.
    Delivered,
    /// Permanently failed (5xx, expiry, null MX); a bounce may be due.
    Failed,
}

/// One accepted recipient. `Default` exists so that construction sites can name the
/// fields they know and leave delivery state to `..Default::default()`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Recipient {
    /// The forward-path as given, without angle brackets (`user@example.net`).
    pub address: String,
    pub notify: Notify,
    /// `ORCPT=` as given: `addr-type;xtext-encoded-address`.
    pub orcpt: Option<String>,
    #[serde(default)]
    pub state: RecipientState,
    /// Delivery attempts that reached a verdict for this recipient.
    #[serde(default)]
    pub attempts: u32,
    /// The last failure (the peer's reply or our own reason), for operators and DSNs.
    #[serde(default)]
    pub last_error: Option<String>,
}

impl Recipient {
    /// A freshly accepted recipient: pending, never tried.
    pub fn new(address: String, notify: Notify, orcpt: Option<String>) -> Recipient {
        Recipient {
            address,
            notify,
            orcpt,
            ..Recipient::default()
        }
    }
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
    /// The tenant the authenticated identity belongs to.
    #[serde(default)]
    pub tenant: Option<String>,
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
    /// Delivery attempts of the message as a whole (one per lease that ended).
    #[serde(default)]
    pub attempts: u32,
    /// When the next attempt is planned, as last written by `Spool::complete`; the
    /// schedule entry is the authority, this copy travels with the envelope.
    #[serde(default)]
    pub next_attempt_ms: Option<u64>,
    /// A delay notice (RFC 3464 `Action: delayed`) has been decided for this message:
    /// set by the completion that queued it (or that found no recipient asking for
    /// one), so that a message gets at most one, across restarts.
    #[serde(default)]
    pub delay_notified: bool,
    /// Labels the sender gave the message (HTTPS API `tags`), carried into its
    /// delivery log records and events.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Key-value pairs the sender gave the message (HTTPS API `metadata`), carried
    /// like `tags`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    /// What the content scanner made of the message when it was accepted, carried
    /// into its delivery log records; `None` when it was not scanned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scan: Option<ScanResult>,
}

/// A content scan's result (rspamd's answer), as the delivery log keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScanResult {
    /// `no_action`, `add_header`, `rewrite_subject`; `failed` when the scanner
    /// could not be asked and the message was taken unscanned.
    pub action: String,
    pub score: f64,
    /// The score at which the scanner would refuse.
    pub required_score: f64,
    /// The symbols that matched, the heaviest first (at most ten).
    #[serde(default)]
    pub symbols: Vec<String>,
    /// Queued held for review (`[scan] hold_score`).
    #[serde(default)]
    pub held: bool,
}

// Scores compare by their bits: a record equals itself, NaN included.
impl PartialEq for ScanResult {
    fn eq(&self, other: &ScanResult) -> bool {
        self.action == other.action
            && self.score.to_bits() == other.score.to_bits()
            && self.required_score.to_bits() == other.required_score.to_bits()
            && self.symbols == other.symbols
            && self.held == other.held
    }
}

impl Eq for ScanResult {}

impl std::fmt::Display for ScanResult {
    /// `score=6.00/15.00 action=add_header symbols=A,B[ held]`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "score={:.2}/{:.2} action={} symbols={}{}",
            self.score,
            self.required_score,
            self.action,
            self.symbols.join(","),
            if self.held { " held" } else { "" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An envelope as written before delivery state existed.
    const OLD: &str = r#"{"sender":"a@example.org","recipients":[{"address":"b@example.net",
        "notify":{"never":false,"success":true,"failure":false,"delay":false},"orcpt":null}],
        "body_type":"SevenBit","smtputf8":false,"ret":null,"envid":null,
        "origin":{"client_ip":"192.0.2.1","helo":"h","listener":"mx","tls":null,"auth":null},
        "received_at_ms":5}"#;

    #[test]
    fn envelopes_without_delivery_state_still_open() {
        let env: Envelope = serde_json::from_str(OLD).expect("old envelope parses");
        assert_eq!((env.attempts, env.next_attempt_ms), (0, None));
        assert!(!env.delay_notified);
        let r = &env.recipients[0];
        assert_eq!(r.state, RecipientState::Pending);
        assert_eq!((r.attempts, r.last_error.as_deref()), (0, None));
        assert!(r.notify.success);
        let new = Recipient::new("b@example.net".into(), r.notify, None);
        assert_eq!(&new, r);
    }

    #[test]
    fn delivery_state_round_trips() {
        let mut env: Envelope = serde_json::from_str(OLD).expect("parses");
        env.attempts = 3;
        env.next_attempt_ms = Some(99);
        env.delay_notified = true;
        env.recipients[0].state = RecipientState::Failed;
        env.recipients[0].attempts = 3;
        env.recipients[0].last_error = Some("550 5.1.1 unknown".into());
        let json = serde_json::to_string(&env).expect("encodes");
        assert_eq!(
            serde_json::from_str::<Envelope>(&json).expect("parses"),
            env
        );
    }
}
