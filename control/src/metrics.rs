//! What way2mail-control records through the `metrics` facade, served by the
//! daemon's `[metrics]` endpoint (`way2mail_daemon::metrics`: `/metrics`, `/healthz`,
//! `/readyz`). Without an installed recorder (the `way2mail` CLI using the store
//! offline, unit tests, `[metrics] listen = ""`) every call here does nothing.
//!
//! Labels are bounded: op names from the protocol's fixed list, error code names, a
//! fixed set of login results, and the configured `[sending] ips` and `[blocklists]
//! zones` (the platform's own addresses, not anybody's data). Never a tenant,
//! operator or user name, an email address or an id. docs/monitoring.md lists every metric.

use ::metrics::{counter, describe_counter, describe_gauge, gauge, Unit};

/// Answered request lines, by `op` and `outcome`.
pub const REQUESTS: &str = "way2mail_control_requests_total";
/// Operator logins, by `result`.
pub const LOGINS: &str = "way2mail_control_logins_total";
/// Audit log entries committed.
pub const AUDIT_ENTRIES: &str = "way2mail_control_audit_entries_total";
/// The current policy snapshot version (what the MTA fetches).
pub const SNAPSHOT_VERSION: &str = "way2mail_control_snapshot_version";

/// 1 while a sending address is listed in a blocklist zone, else 0; by `ip`, `zone`.
pub const BLOCKLIST_LISTED: &str = "way2mail_blocklist_listed";
/// Blocklist lookups that failed (not listings), by `zone`.
pub const BLOCKLIST_LOOKUP_ERRORS: &str = "way2mail_blocklist_lookup_errors_total";
/// When the last blocklist check ran (Unix seconds).
pub const BLOCKLIST_LAST_CHECK: &str = "way2mail_blocklist_last_check_timestamp_seconds";

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
    describe_gauge!(
        BLOCKLIST_LISTED,
        Unit::Count,
        "1 while the sending address (ip, from [sending] ips) is listed in the DNS \
         blocklist zone (zone, from [blocklists] zones), else 0; a failed lookup keeps \
         the last value."
    );
    describe_counter!(
        BLOCKLIST_LOOKUP_ERRORS,
        Unit::Count,
        "Blocklist lookups that failed (timeout, SERVFAIL, a refused query), by zone; \
         they are not listings."
    );
    describe_gauge!(
        BLOCKLIST_LAST_CHECK,
        Unit::Seconds,
        "When the last blocklist check of the sending addresses ran (Unix seconds; 0 \
         before the first)."
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

/// Whether `ip` is listed in `zone` now.
pub fn blocklist_listed(ip: &str, zone: &str, listed: bool) {
    gauge!(BLOCKLIST_LISTED, "ip" => ip.to_owned(), "zone" => zone.to_owned()).set(if listed {
        1.0
    } else {
        0.0
    });
}

/// A lookup in `zone` that failed.
pub fn blocklist_lookup_error(zone: &str) {
    counter!(BLOCKLIST_LOOKUP_ERRORS, "zone" => zone.to_owned()).increment(1);
}

/// Registers `zone`'s error counter at zero, so that it is scraped before the first.
pub fn blocklist_zone(zone: &str) {
    counter!(BLOCKLIST_LOOKUP_ERRORS, "zone" => zone.to_owned()).absolute(0);
}

/// A blocklist check ran at `at` (Unix seconds).
pub fn blocklist_checked(at: u64) {
    gauge!(BLOCKLIST_LAST_CHECK).set(at as f64);
}
