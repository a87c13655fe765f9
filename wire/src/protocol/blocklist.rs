//! The blocklist monitor of the platform's own sending addresses (`reputation.show`,
//! `reputation.check`): which `[sending] ips` are listed in which `[blocklists]
//! zones`, since when and why, and the history of listings starting and ending.

use serde::{Deserialize, Serialize};

/// What `reputation.show` and `reputation.check` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReputationReport {
    /// `[blocklists] enabled`: whether the periodic check runs.
    pub enabled: bool,
    /// `[blocklists] check_interval`, seconds.
    pub check_interval_secs: u64,
    /// The zones looked up (`[blocklists] zones`).
    pub zones: Vec<String>,
    /// The addresses looked up (`[sending] ips`).
    pub ips: Vec<String>,
    /// When the last check ran (Unix seconds); `None` before the first.
    pub last_check: Option<u64>,
    /// Current listings, by address then zone.
    pub listings: Vec<BlocklistListing>,
    /// Lookups of the last check that failed (timeout, SERVFAIL, a refused query):
    /// they say nothing about a listing, which stays as it was.
    pub lookup_errors: Vec<BlocklistLookupError>,
    /// Listings started and ended, oldest first (the last 1000).
    pub history: Vec<BlocklistEvent>,
}

/// One address listed in one zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlocklistListing {
    pub ip: String,
    pub zone: String,
    /// When the listing was first seen (Unix seconds).
    pub since: u64,
    /// The zone's A answers (return codes such as `127.0.0.2`).
    pub codes: Vec<String>,
    /// The zone's TXT reason, shortened; empty when it gave none.
    pub reason: String,
    /// When it was last confirmed (Unix seconds).
    pub last_checked: u64,
}

/// A lookup that failed, which is not a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlocklistLookupError {
    pub ip: String,
    pub zone: String,
    pub error: String,
}

/// A listing started (`listed`) or ended (`delisted`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlocklistEvent {
    /// Unix seconds.
    pub at: u64,
    pub ip: String,
    pub zone: String,
    /// `listed` or `delisted`.
    pub event: String,
    /// The zone's TXT reason of the listing (for `delisted`, the last one seen).
    pub reason: String,
}
