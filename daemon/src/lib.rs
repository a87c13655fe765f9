//! What both daemons (`way2mail-mta`, `way2mail-control`) are made of besides their
//! job: the process around the work. Nothing here knows SMTP, the spool or tenants.
//!
//! ```text
//!   config.rs         TOML files: defaults for every key, errors naming the key
//!   duration.rs       periods as operators write them ("90d", "12h")
//!   dns.rs            the `[dns]` table and the one resolver builder (hickory)
//!   logging.rs        the `[log]` table and the tracing subscriber
//!   systemd.rs        READY=1 / STOPPING=1 to $NOTIFY_SOCKET
//!   socket.rs         a Unix socket's file: mode, parent directory, stale files
//!   peer.rs           the caller's SO_PEERCRED credentials
//!   lines.rs          request lines: bounded, within a deadline
//!   thread_server.rs  a thread per connection on a Unix socket, drained at stop
//!   files.rs          secret files replaced atomically and wiped; scratch copies
//!   watchdog.rs       work that may hang (opening a damaged store), bounded
//!   time.rs           the clock: Unix time in milliseconds and seconds
//! ```
//!
//! Control's socket and the MTA's admin socket are the same server
//! ([`thread_server::ThreadServer`]) with different [`thread_server::Handler`]s.

pub mod config;
pub mod dns;
pub mod duration;
pub mod files;
pub mod lines;
pub mod logging;
pub mod metrics;
pub mod peer;
pub mod socket;
pub mod systemd;
pub mod thread_server;
pub mod time;
pub mod watchdog;

pub use config::ConfigError;
pub use peer::Caller;
