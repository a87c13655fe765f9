//! The contract between the Way2Mail processes, in one place: what `way2mail-control`,
//! `way2mail-mta` and the `way2mail` CLI say to each other over their Unix sockets.
//! Types and blocking clients only; the servers live in the daemons.
//!
//! ```text
//!   protocol/    the control socket's JSON lines: request/response envelopes, every op,
//!                error codes, the data types of answers
//!   snapshot.rs  the policy snapshot the MTA polls from control (tenants, domains,
//!                DKIM keys, SMTP users, suppression hashes, retention periods)
//!   answer.rs    answer lines on both sockets: ErrorBody/ErrorCode, connecting, reading
//!   client.rs    ControlClient: a blocking client of the control socket (CLI, MTA)
//!   mta_admin.rs the MTA's admin socket: requests, answers, AdminClient (control)
//!   stream.rs    streamed answers (frames) on both sockets: exports, backups
//!   queue.rs     live queue operations on both sockets: filters, states, summaries
//! ```
//!
//! `cli → control`: protocol + client. `mta → control`: `snapshot.get` and
//! `retention.report` through the same client. `control → mta`: mta_admin.

pub mod answer;
pub mod client;
pub mod mta_admin;
pub mod protocol;
pub mod queue;
pub mod snapshot;
pub mod stream;
