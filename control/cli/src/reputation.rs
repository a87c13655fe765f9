//! `way2mail reputation`: the blocklist monitor of the platform's sending addresses
//! (current listings with the zones' reasons, lookup errors of the last check, the
//! history of listings starting and ending), and `way2mail reputation check` to look
//! them up now.

use clap::Subcommand;
use way2mail_wire::protocol::{ReputationReport, Request};

use super::session::Session;
use super::table::{clean, opt_rfc3339, record, rfc3339, Table};
use super::{render, Failure};

#[derive(Debug, Subcommand)]
pub enum ReputationCommand {
    /// The current listings, the last check's lookup errors and the history (the
    /// default).
    Show,
    /// Look every sending address up in every blocklist zone now, then show.
    Check,
}

pub(super) fn run(
    session: &mut Session,
    command: Option<ReputationCommand>,
) -> Result<(), Failure> {
    let request = match command.unwrap_or(ReputationCommand::Show) {
        ReputationCommand::Show => Request::ReputationShow,
        ReputationCommand::Check => Request::ReputationCheck,
    };
    let response = session.call(request)?;
    session.show(&response, || render::human(&response))
}

/// The report for people: a summary, then one table each for the listings, the
/// errors and the history.
pub fn render(r: &ReputationReport) -> String {
    let mut out = record(&[
        (
            "monitoring",
            if r.enabled {
                format!(
                    "every {}",
                    way2mail_daemon::duration::format(r.check_interval_secs)
                )
            } else {
                "off (reputation check only)".into()
            },
        ),
        (
            "addresses",
            if r.ips.is_empty() {
                "none ([sending] ips is empty)".into()
            } else {
                r.ips.join(", ")
            },
        ),
        ("zones", r.zones.join(", ")),
        ("last check", opt_rfc3339(r.last_check)),
        ("listings", r.listings.len().to_string()),
    ]);
    out.push('\n');
    if r.listings.is_empty() {
        out.push_str("Not listed in any zone.\n");
    } else {
        out.push_str("Listed:\n");
        let mut table = Table::new(&["IP", "ZONE", "SINCE", "CODES", "REASON"]);
        for l in &r.listings {
            table.row(vec![
                clean(&l.ip),
                clean(&l.zone),
                rfc3339(l.since),
                clean(&l.codes.join(",")),
                clean(&l.reason),
            ]);
        }
        out.push_str(&table.render());
    }
    if !r.lookup_errors.is_empty() {
        out.push_str("\nLookup errors of the last check (not listings):\n");
        let mut table = Table::new(&["IP", "ZONE", "ERROR"]);
        for e in &r.lookup_errors {
            table.row(vec![clean(&e.ip), clean(&e.zone), clean(&e.error)]);
        }
        out.push_str(&table.render());
    }
    if !r.history.is_empty() {
        out.push_str("\nHistory:\n");
        let mut table = Table::new(&["AT", "EVENT", "IP", "ZONE", "REASON"]);
        for e in &r.history {
            table.row(vec![
                rfc3339(e.at),
                clean(&e.event),
                clean(&e.ip),
                clean(&e.zone),
                clean(&e.reason),
            ]);
        }
        out.push_str(&table.render());
    }
    out
}
