//! SMTP as data, sans-IO: the server protocol a session drives, the client state
//! machine delivery drives, replies with typed enhanced status codes, addresses,
//! the envelope of a message, and delivery status notifications. Nothing here reads a
//! socket, waits, or touches storage; it is what the fuzz targets and the protocol
//! benchmarks link. No tokio, no sled, no crypto library.
//!
//! ```text
//!   server.rs     Protocol: bytes in -> replies out + Events (message, AUTH, STARTTLS)
//!   server/       one file per verb, the command parser, the message buffer,
//!                 the Received: header
//!   client.rs     ClientSession: the outbound session (EHLO, STARTTLS, AUTH,
//!   client/       pipelined MAIL/RCPT/DATA or BDAT), one Disposition per recipient;
//!                 the bounded reader of a peer's replies
//!   reply.rs      Reply and EnhancedCode, shared by server and client: code, typed
//!                 enhanced status code, text; the wire form and the one-line form
//!   path.rs       reverse/forward paths, mailboxes, domains, address literals
//!   relay.rs      RelayPolicy: local domains and trusted networks (never an open relay)
//!   envelope.rs   Envelope: what SMTP said about a message, and per-recipient state
//!   id.rs         MessageId: time-ordered 128-bit ids, Crockford base32
//!   dsn.rs        RFC 3464 delivery status notifications, built from an envelope
//!   dsn/
//!   date.rs       RFC 5322 and RFC 3339 dates in UTC
//!   line_ends.rs  CRLF only: bare CR and LF become CRLF, for content that comes in
//!                 (BDAT) and goes out (BDAT, the original in a DSN)
//! ```
//!
//! A session reads bytes, calls [`server::Protocol::feed`], then
//! [`server::Protocol::next_event`] until it asks for more input, writing
//! [`server::Protocol::output`] whenever an event says so. A message leaves the
//! protocol as [`server::Event::Message`]; the session spools it and reports back with
//! [`server::Protocol::message_queued`], and only then does the client get its `250`.

pub mod client;
pub mod date;
pub mod dsn;
pub mod envelope;
mod id;
pub mod line_ends;
pub mod path;
pub mod relay;
pub mod reply;
pub mod server;

pub use envelope::{
    BodyType, Envelope, Notify, Origin, Recipient, RecipientState, Ret, ScanResult,
};
pub use id::{InvalidId, MessageId};
pub use relay::{Networks, RelayError, RelayPolicy};
pub use reply::{EnhancedCode, Reply};
