//! Outbound delivery, sans-IO where it can be: the SMTP client state machine
//! (`client`), next-hop selection from routes and MX records (`route`, `mx`), and
//! delivery status notifications (`dsn`). The daemon's scheduler and per-core
//! delivery workers drive these over the same I/O trait as inbound sessions.

pub mod client;
pub mod dsn;
pub mod mx;
pub mod route;

/// How a next hop is to be secured (`[[route]] tls`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsPolicy {
    /// STARTTLS when the peer offers it; plaintext otherwise (the default for MX
    /// delivery, as RFC 3207 allows).
    #[default]
    Opportunistic,
    /// STARTTLS or no delivery: a peer without it, or a failed handshake, is a
    /// temporary failure.
    Required,
    /// Never STARTTLS.
    None,
}
