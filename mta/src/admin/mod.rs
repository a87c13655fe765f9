//! The MTA's admin socket: how control reaches what only the MTA holds (the spool:
//! queued messages and the delivery log) to count, export, erase or back it up, and
//! runs the retention sweep on demand. The protocol is `way2mail_wire::mta_admin`
//! (JSON lines, streamed answers in `stream.rs` frames).
//!
//! ```text
//!   server.rs      bind (the daemon crate's socket code: mode, stale file), its
//!                  thread server (accept, max_connections, shutdown), admission by uid
//!   connection.rs  one connection on its own thread: bounded lines, idle timeout
//!   ops.rs         parse a request, check its arguments, run the op, answer, and
//!                  one log line per request
//!   export.rs      the streamed ops: tenant.export and backup.dump
//!   deliverability.rs  a tenant's volume and outcomes from its delivery log
//!   queue.rs       the live queue: summary, list, show, change; the delivery log
//!   answer.rs      the response line every layer above writes
//! ```
//!
//! Each file uses only those listed below it.
//!
//! Threads, not async, like control's daemon: one or two peers (control, an
//! operator's root shell), and `max_connections` bounds the threads. Only uids in
//! `[admin] allowed_uids` are served; operators go through control, which checks
//! their role and writes the audit log.

mod answer;
mod connection;
mod deliverability;
mod export;
mod ops;
pub mod queue;
mod server;

pub use ops::Ops;
pub use server::AdminServer;
