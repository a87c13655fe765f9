//! The Way2Mail SMTP engine as a library: the sans-IO SMTP server protocol and the
//! relay policy it consults, the outbound client, DKIM signing and the inbound
//! authentication checks. Nothing here touches a socket or the spool; the binary
//! (`src/main.rs`) owns those and drives this code. The one exception is DNS:
//! `verification::authenticate` and `outbound::mx` look names up through the resolver
//! the caller built, bounded by tokio timers.
//!
//! Layout and flow:
//!
//! ```text
//!   signing.rs          DKIM signing: the RFC 6376 header set, From over-signed,
//!                       signatures prepended last
//!   verification.rs     inbound SPF/DKIM/DMARC/ARC (mail-auth) and Authentication-Results
//!   relay.rs            RelayPolicy: local domains + trusted networks (never an open relay)
//!   smtp/mod.rs         public types: Role, Limits, SessionParams, Event, SpoolState, ...
//!   smtp/protocol.rs    Protocol: input buffer -> lines / DATA / BDAT -> handlers -> Event
//!   smtp/command.rs     one command line -> typed Command (borrowing, no allocation)
//!   smtp/path.rs        reverse/forward paths, mailboxes, domains, address literals
//!   smtp/ehlo.rs  mail.rs  rcpt.rs  dsn.rs  data.rs  bdat.rs  starttls.rs   one verb each
//!   smtp/auth.rs        AUTH PLAIN / LOGIN (RFC 4954): the SASL exchange; the verdict and
//!                       the tenant rules (TenantPolicy) come from the caller
//!   smtp/body.rs        the message buffer: size cap, Received-header loop count
//!   smtp/received.rs    the Received: trace header and its RFC 5322 UTC date
//!   smtp/reply.rs       reply codes, enhanced status codes, wire formatting
//! ```
//!
//! The session (in the binary) reads bytes, calls [`smtp::Protocol::feed`], then calls
//! [`smtp::Protocol::next_event`] until it asks for more input, writing
//! [`smtp::Protocol::output`] whenever an event says so. A message leaves the protocol
//! as [`smtp::Event::Message`]; the session spools it and reports back with
//! [`smtp::Protocol::message_queued`], and only then does the client get its `250`.

pub mod outbound;
pub mod relay;
pub mod signing;
pub mod smtp;
pub mod verification;

pub use relay::{RelayError, RelayPolicy};
pub use smtp::{Event, Limits, Protocol, QueueFailure, Role, SessionParams, SpoolState};
