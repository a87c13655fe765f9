//! The Way2Mail control plane as a library: the wire protocol, the sealed store,
//! accounts, roles, TOTP, the hash-chained audit log, and the service that ties
//! them together. Two binaries sit on it: the `way2mail-control` daemon (the
//! socket server) and the `way2mail` operator CLI; the MTA uses the client and the
//! snapshot types.
//!
//! Layout and flow:
//!
//! ```text
//!   protocol.rs   the JSON-lines wire format: request/response envelopes, every op
//!   snapshot.rs   the policy snapshot the MTA loads (tenants, domains, SMTP users)
//!   client.rs     a blocking client for the socket (CLI, MTA, tests)
//! ```
//!
//! A request line is parsed into a [`protocol::RequestEnvelope`], the caller is
//! identified (peer credentials, session token), the role is checked, the
//! operation runs against the store, and the outcome is appended to the audit log
//! before the response line is written.

pub mod client;
pub mod protocol;
pub mod service;
pub mod snapshot;
