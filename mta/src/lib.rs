//! The parts of the SMTP engine that look at message content or ask DNS, kept in a
//! library so that tests and benchmarks link them without the daemon: DKIM signing,
//! the inbound SPF/DKIM/DMARC/ARC checks, and next-hop selection. The SMTP protocol
//! itself (server, client, DSNs) is the sans-IO `way2mail_smtp` crate; sockets, the
//! spool, TLS and threads are the binary's (`src/main.rs`).
//!
//! ```text
//!   signing.rs        DKIM signing: the RFC 6376 header set, From over-signed,
//!                     signatures prepended last
//!   verification.rs   inbound SPF/DKIM/DMARC/ARC (mail-auth) and Authentication-Results
//!   outbound/route.rs configured routes: a domain (or `*`) to fixed hosts
//!   outbound/mx.rs    MX resolution (hickory) with A/AAAA fallback, null MX, caching
//!   bounces/          failure replies to categories, by rules kept as data
//! ```
//!
//! DNS is the one kind of I/O here: `verification::authenticate` and `outbound::mx`
//! look names up through a resolver the caller built, bounded by tokio timers.

pub mod bounces;
pub mod dmarc;
pub mod feedback;
pub mod outbound;
pub mod proxy_protocol;
pub mod signing;
pub mod verification;
