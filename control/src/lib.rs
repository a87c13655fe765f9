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
//!   dns.rs        `[dns]` settings and the one resolver builder (MTA and control)
//!   dkim.rs       DKIM key pairs: generation, selectors, record values
//!   publish.rs    the records a tenant domain should publish (SPF, DKIM, DMARC, BIMI)
//!   dnscheck.rs   `domain.verify`: look the records up and judge each one
//!   notify.rs     incident notification emails and the SMTP client handing them
//!                 to the local MTA (`[notify]`)
//!   mta_admin.rs  the MTA's admin socket protocol and client (export, erase,
//!                 inventory, retention sweep, backup dump of the spool)
//!   stream.rs     streamed answers (frames) on both sockets
//!   lines.rs      request lines on both sockets: bounded, within a deadline
//!   duration.rs   retention periods as operators write them ("90d")
//!   backup.rs     backup archives (sealed chunks of store and spool records) and
//!                 their restore onto a stopped node
//!   config_file.rs  TOML config files for both daemons, errors naming the key
//!   logging.rs    the shared `[log]` table and subscriber set-up
//!   sd_notify.rs  READY=1 / STOPPING=1 to systemd ($NOTIFY_SOCKET), for both daemons
//!   error.rs      the library's error type (store, keys, crypto)
//!   store.rs      the sled store: trees, sealed versioned records, atomic batches
//!   records.rs    stored records that are not protocol types (operators, sessions, …)
//!   password.rs   argon2id hashing and verification, generated passwords and API keys
//!   totp.rs       RFC 6238 codes, base32 secrets, replay-safe verification
//!   rbac.rs       the role × operation table
//!   audit.rs      the hash-chained audit log: append, list, verify, tamper API
//!   service/      Service::handle: identify, authorize, run, audit, answer
//!     mod.rs          the request flow and the writer lock
//!     context.rs      Identity, the handler context, Failure
//!     session.rs      tokens, hello, bootstrap, login, logout
//!     tenants.rs  domains.rs  credentials.rs  operators.rs   one area each
//!     incidents.rs    the incident register and its notifications
//!     snapshot.rs     the MTA's policy snapshot
//!     audit_ops.rs    audit.list / audit.verify
//!     validate.rs     names, domains and text rules
//!   server/       the way2mail-control daemon: config, socket (mode, stale files),
//!                 a thread per connection, peer credentials, line framing and limits
//!   cli/          the way2mail operator CLI: commands, tables / --json, token file,
//!                 password and TOTP prompts
//! ```
//!
//! A request line is parsed into a [`protocol::RequestEnvelope`], the caller is
//! identified (peer credentials, session token), the role is checked, the
//! operation runs against the store, and the outcome is appended to the audit log
//! before the response line is written.

pub mod audit;
pub mod backup;
pub mod dkim;
pub mod dnscheck;
pub mod error;
pub mod notify;
pub mod publish;
pub mod rbac;
pub mod records;
pub mod server;
pub mod service;
pub mod store;
pub mod totp;

pub use error::Error;
