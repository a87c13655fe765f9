//! What the fuzz targets share: cutting one input into the pieces a network delivers
//! it in, the listener setups a server session is run under, and the driver that runs
//! a [`way2mail_smtp::server::Protocol`] the way the daemon's session loop does while
//! checking, after every step, what must hold for any input at all.
//!
//! ```text
//!   cuts.rs      one input -> chunks, the cut points drawn from a seed byte
//!   listener.rs  the setups (mx, trusted, submission, AUTH with a fake tenant policy)
//!   session.rs   drives a Protocol over chunks; the invariants of replies, buffering
//!                and accepted messages (never an open relay, never a foreign tenant)
//! ```
//!
//! The targets themselves sit in `fuzz_targets/`, one small file each; how to run
//! them and what CI runs is in docs/security.md ("Fuzzing").

pub mod cuts;
pub mod listener;
pub mod session;
