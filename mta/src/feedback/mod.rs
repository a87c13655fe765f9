//! What comes back after tenant mail leaves: bounces and complaints, and the VERP
//! return paths that tie each one to a tenant, a message and a recipient. Pure
//! functions on bytes; receiving the reports and acting on them (suppressing a
//! recipient, counting a complaint) is the caller's.
//!
//! ```text
//!   verp.rs       b-TOKEN@bounces-domain: the tenant's key id, the queue id, a
//!                 recipient tag, a MAC under the tenant's data key; verify()
//!   base32.rs     RFC 4648 base32, lower case, no padding (the token's alphabet)
//!   dsn.rs        bounces: RFC 3464 delivery status notifications → Bounce
//!   heuristic.rs  bounces without a status part: qmail, old Exim, generic replies
//!   arf.rs        complaints: RFC 5965 feedback reports → Complaint
//!   fields.rs     field blocks (status and feedback parts, header sections);
//!                 OriginalHeaders, what the returned copy says about our message
//!   mime.rs       the parts of a report (mail-parser), and each one's bytes
//!   tests.rs      the fixtures, and hostile input
//!   fixtures/     sample reports, each naming its source in X-Fixture-Source
//! ```
//!
//! The three are used together: a message arriving for `b-TOKEN@bounces-domain` is
//! parsed as a bounce ([`dsn::parse`]) or a complaint ([`arf::parse`]); the
//! envelope recipient, or failing that the returned copy's `Return-Path:`
//! ([`OriginalHeaders::return_path`]), is verified ([`verp::verify`]) to learn the
//! tenant and the message; and the report's recipient is checked against the
//! token's tag ([`verp::recipient_matches`]) before the tenant's suppression list
//! hears of it. A report that does not verify is about no mail of ours (or of an
//! erased tenant) and is dropped.
//!
//! # Hostile input
//!
//! Reports come from anyone who can send mail. Parsing never panics and is bounded:
//! a message is read up to [`MAX_MESSAGE`] bytes, at most [`MAX_RECIPIENTS`]
//! recipients are reported, and every field value is cut at [`MAX_FIELD`]
//! characters. What cannot be read is absent (`None`, an empty list), never an
//! error to handle.
//!
//! # Fixtures
//!
//! `fixtures/*.eml` are written after public documentation and RFC examples (each
//! names its source; "paraphrase" marks one written from memory of a format rather
//! than copied from a published sample). Addresses and IPs are documentation values;
//! our VERP addresses are the placeholder `b-aaaa…a@bounces.example` (58 `a`s: a
//! well-formed token, all zero, that verifies under no key), which tests replace
//! with real tokens.

pub mod arf;
mod base32;
pub mod dsn;
mod fields;
mod heuristic;
mod mime;
#[cfg(test)]
mod tests;
pub mod verp;

pub use arf::Complaint;
pub use dsn::{Bounce, BounceRecipient};
pub use fields::OriginalHeaders;
pub use verp::{Token, Verified};

/// Bytes of a report read; the rest (the tail of a returned copy) is ignored.
pub const MAX_MESSAGE: usize = 2 * 1024 * 1024;
/// Recipients reported per bounce (and Original-Rcpt-To addresses per complaint).
pub const MAX_RECIPIENTS: usize = 1000;
/// Characters kept of any one field value.
pub const MAX_FIELD: usize = 1000;
