//! The MTA's admin socket: how control reaches what only the MTA holds (the spool:
//! queued messages and the delivery log) to count, export, erase or back it up, and
//! runs the retention sweep on demand. The protocol is `way2mail_wire::mta_admin`
//! (JSON lines, streamed answers in `stream.rs` frames).
//!
//! ```text
//!   server.rs      bind (control's socket code: mode, stale file), control's thread
//!                  server (accept, max_connections, shutdown), admission by uid
//!   connection.rs  one connection on its own thread: bounded lines, idle timeout,
//!                  one log line per request
//!   ops.rs         parse a request, check its arguments, run the op, answer
//!   export.rs      the streamed ops: tenant.export and backup.dump
//! ```
//!
//! Threads, not async, like control's daemon: one or two peers (control, an
//! operator's root shell), and `max_connections` bounds the threads. Only uids in
//! `[admin] allowed_uids` are served; operators go through control, which checks
//! their role and writes the audit log.

mod connection;
mod export;
mod ops;
mod server;

pub use ops::Ops;
pub use server::AdminServer;
