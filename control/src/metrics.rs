//! What way2mail-control records through the `metrics` facade, served by the
//! daemon's `[metrics]` endpoint (`way2mail_daemon::metrics`: `/metrics`, `/healthz`,
//! `/readyz`). Without an installed recorder (the `way2mail` CLI using the store
//! offline, unit tests, `[metrics] listen = ""`) every call here does nothing.
//!
//! Labels are bounded: op names from the protocol's fixed list, error code names, a
//! fixed set of login results. Never a tenant, operator or user name, an address or
//! an id. docs/monitoring.md lists every metric.

use ::metrics::{counter, describe_counter, describe_gauge, gauge, Unit};

/// Answered request lines, by `op` and `outcome`.
pub const REQUESTS: &str = "way2mail_control_requests_total";
/// Operator logins, by `result`.
pub const LOGINS: &str = "way2mail_control_logins_total";
/// Audit log entries committed.
pub const AUDIT_ENTRIES: &str = "way2mail_control_audit_entries_total";
/// The current policy snapshot version (what the MTA fetches).
pub const SNAPSHOT_VERSION: &str = "way2mail_control_snapshot_version";

/// How an operator login ended: the `result` label of [`LOGINS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginResult {
    /// A session was opened.
    Ok,
    /// No such operator, or the password is wrong (not told apart, as on the wire).
    BadPassword,
    /// The password matched; the TOTP code was wrong, stale or already used.
    BadTotp,
    /// Anything else: the request was refused before the check, or the store failed.
    Other,
}

impl LoginResult {
    pub const ALL: [LoginResult; 4] = [
        LoginResult::Ok,
        LoginResult::BadPassword,
        LoginResult::BadTotp,
        LoginResult::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LoginResult::Ok => "ok",
            LoginResult::BadPassword => "bad_password",
            LoginResult::BadTotp => "bad_totp",
            LoginResult::Other => "other",
        }
    }
}

/// Describes every metric and registers those with a fixed label set at zero, so
/// that they are scraped (and `rate()` works) before the first event. Call once,
/// after the recorder is installed.
pub fn describe() {
    describe_counter!(
        REQUESTS,
        Unit::Count,
        "Request lines answered on the control socket, by op (\"-\" when the line named \
         no known op) and outcome (\"ok\" or the error code)."
    );
    describe_counter!(
        LOGINS,
        Unit::Count,
        "Operator logins by result: ok, bad_password (unknown name or wrong password), \
         bad_totp (wrong, stale or reused code), other."
    );
    describe_counter!(
        AUDIT_ENTRIES,
        Unit::Count,
        "Entries committed to the hash-chained audit log."
    );
    describe_gauge!(
        SNAPSHOT_VERSION,
        Unit::Count,
        "The current policy snapshot version, the one the MTA fetches (0 before the first \
         change)."
    );
    for result in LoginResult::ALL {
        counter!(LOGINS, "result" => result.as_str()).absolute(0);
    }
    counter!(AUDIT_ENTRIES).absolute(0);
}

/// One answered request line (`op` from the protocol's list, `outcome` "ok" or an
/// error code name: both static, as the request log has them).
pub fn request(op: &'static str, outcome: &'static str) {
    counter!(REQUESTS, "op" => op, "outcome" => outcome).increment(1);
}

/// One operator login.
pub fn login(result: LoginResult) {
    counter!(LOGINS, "result" => result.as_str()).increment(1);
}

/// `count` audit entries committed.
pub fn audit_entries(count: u64) {
    if count > 0 {
        counter!(AUDIT_ENTRIES).increment(count);
    }
}

/// The snapshot version now in the store.
pub fn snapshot_version(version: u64) {
    // A version stays far below 2^53, where f64 stops being exact.
    gauge!(SNAPSHOT_VERSION).set(version as f64);
}
