//! The Way2Mail control plane as a library: the sealed store, accounts, roles,
//! TOTP, the hash-chained audit log, domains and their DNS, data protection
//! (exports, erasure, retention, backups), and the service that ties them together.
//! The `way2mail-control` daemon (`bin/`, `server/`) serves it on a Unix socket; the
//! `way2mail` CLI (`control/cli`) uses its store, backup and receipt code offline.
//! What goes over the sockets is `way2mail-wire`'s; the process around the work
//! (config files, logging, the thread server, DNS settings) is `way2mail-daemon`'s;
//! keys and sealed records are `way2mail-seal`'s.
//!
//! Layout, in the order a request flows:
//!
//! ```text
//!   server/       the way2mail-control daemon
//!     config.rs       the TOML configuration, defaults for every key
//!     protection.rs   [retention], [mta] and [backup]
//!     mod.rs          socket, a thread per connection, the retention thread, the
//!                     metrics endpoint and its readiness check, shutdown
//!     connection.rs   one connection: bounded lines in, answers (or frames) out
//!     request.rs      one line: JSON, version, op, arguments, then the service
//!   service/      Service::handle: identify, authorize, run, audit, answer
//!     mod.rs          admit (version, identity, role, reason), run: the slow step
//!                     (argon2, DNS, the MTA, emails) without the writer lock, then
//!                     the handler under it; audit entry and commit
//!     writer.rs       Service: the store, the audit log, the writer lock (locked,
//!                     refuse); the flow above and the handlers below use it
//!     context.rs      Identity, the handler context Ctx, Failure
//!     session.rs      tokens, hello, bootstrap, login, logout
//!     tenants.rs  domains.rs  credentials.rs  operators.rs  suppression.rs
//!                     one area each
//!     webhooks.rs     tenants' webhook endpoints; the MTA's failing reports
//!     feedback.rs     the MTA's feedback: automatic suppression (with bad_domain
//!                     candidates), the reputation guard's pause and its lifting
//!     deliverability.rs  tenant.deliverability, from the MTA's delivery log
//!     dmarc.rs        domain.dmarc, the DMARC reports the MTA received
//!     validate.rs     names, domains and text rules
//!     incidents.rs    the incident register and its notification emails
//!     snapshot.rs     the MTA's policy snapshot
//!     audit_ops.rs    audit.list / audit.verify
//!     retention.rs    periods in force, the sweep, retention.run
//!     report.rs       tenant.report (right to information)
//!     erasure.rs      tenant.erase and its signed receipt
//!     export.rs       tenant.export (streamed), written by archive.rs as tar
//!     export_format.rs  the export's JSON files: words, RFC 3339 times
//!     backup.rs       backup.create (streamed)
//!     mta.rs          the MTA's admin socket, for the spool's part of the above
//!   settings.rs   what the service runs with, checked: ServiceSettings and the
//!                 [sending] and [mta] values (plain data, below everything)
//!   rbac.rs       the role × operation table
//!   store/        the sled store: trees, sealed versioned records, atomic batches;
//!                 anchor.rs the anchor file that refuses a rolled-back store,
//!                 verify.rs the offline check of every record, migrate.rs
//!                 upgrades stores from before data keys
//!   records.rs    stored records that are not protocol types (operators, sessions, …)
//!   audit.rs      the hash-chained audit log: append, list, verify, tamper API
//!   totp.rs       RFC 6238 codes, base32 secrets, replay-safe verification
//!   dkim.rs       DKIM key pairs: generation, selectors, record values
//!   publish.rs    the records a tenant domain should publish (SPF, DKIM, DMARC, BIMI)
//!   dnscheck.rs   domain.verify: look the records up and judge each one
//!   notify.rs     letters to tenants and operators (incident.rs, webhook.rs,
//!                 reputation.rs) and their SMTP hand-off to the MTA
//!   backup.rs     backup archives (sealed chunks of store and spool records) and
//!                 their restore onto a stopped node
//!   error.rs      the library's error type (store, keys, crypto)
//!   metrics.rs    the counters and gauges of `[metrics]` (requests, logins, audit
//!                 entries, snapshot version), through the `metrics` facade
//! ```
//!
//! A request line is parsed into a
//! [`RequestEnvelope`](way2mail_wire::protocol::RequestEnvelope), the caller is
//! identified (peer credentials, session token), the role is checked, the operation
//! runs against the store, and the outcome is appended to the audit log in the same
//! commit before the response line is written.

pub mod audit;
pub mod backup;
pub mod blocklist;
pub mod dkim;
pub mod dnscheck;
pub mod error;
pub mod metrics;
pub mod notify;
pub mod publish;
pub mod rbac;
pub mod records;
pub mod server;
pub mod service;
pub mod settings;
pub mod store;
pub mod totp;

pub use error::Error;
