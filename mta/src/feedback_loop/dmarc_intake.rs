//! What the `mx` listener does with a message to `[feedback] dmarc_address`: the
//! DMARC aggregate reports that mailbox providers send to a tenant domain's `rua=`
//! address. Runs off the cores.
//!
//! 1. The message is read by `way2mail_mta::dmarc::reports_in_message`: every
//!    report attachment (zip, gzip or XML) decoded and parsed under its caps. A
//!    message that is not one, or any report in it that cannot be read (malformed,
//!    past a cap, an XML document type: entity bombs start there) is refused whole,
//!    `550 5.6.0` (`552 5.3.4` past a size cap), and nothing is kept.
//! 2. Each report is matched to a tenant by its `policy_published` domain: a
//!    domain of a tenant, or a subdomain of one (a parent's policy covers its
//!    subdomains). A report about no tenant's domain refuses the message (`550
//!    5.7.1`): nothing is kept that no tenant can read.
//! 3. Each report is stored sealed with its tenant's data key (`Spool::
//!    store_dmarc_report`), under the end of the period it covers; a report sent
//!    again is kept once. Retention trims them with the tenant's delivery log,
//!    export hands them out, erasure deletes them.
//!
//! The message itself is never queued or relayed.

use std::ops::ControlFlow;

use way2mail_mta::dmarc::{
    reports_in_message, AggregateReport, ReportError, SourceStats, Summarizer,
};
use way2mail_queue::Spool;
use way2mail_smtp::reply::{EnhancedCode, Reply};
use way2mail_wire::mta_admin::{DmarcReporter, DmarcSource, DmarcSummary};

use super::intake::Consumed;
use super::Kind;
use crate::tenants::directory::Directory;

/// Consumes `message`, a DMARC report mail, with the tenants' `directory` (`None`
/// before control's first snapshot).
pub fn consume(
    spool: &Spool,
    directory: Option<&Directory>,
    max_reports: u64,
    message: &[u8],
) -> Consumed {
    let consumed = read_and_store(spool, directory, max_reports, message);
    metrics::counter!("way2mail_dmarc_report_messages_total", "result" => consumed.result)
        .increment(1);
    consumed
}

fn read_and_store(
    spool: &Spool,
    directory: Option<&Directory>,
    max_reports: u64,
    message: &[u8],
) -> Consumed {
    let refuse = |detail, reply| Consumed {
        kind: Kind::Dmarc,
        result: "refused",
        detail,
        tenant: None,
        records: 0,
        reply: Some(reply),
    };
    let reports = match reports_in_message(message) {
        Ok(reports) => reports,
        Err(e) => {
            let (detail, reply) = refusal(&e);
            return refuse(detail, reply);
        }
    };
    let Some(directory) = directory else {
        return refuse(
            "no tenants",
            Reply::new(
                451,
                EnhancedCode::new(4, 3, 0),
                "Tenant state not loaded yet; try again later",
            ),
        );
    };
    // Every report must belong to a tenant before any is kept.
    let mut owned = Vec::with_capacity(reports.len());
    for report in reports {
        let Some(tenant) = tenant_of(directory, &report.domain) else {
            return refuse(
                "a report about no tenant's domain",
                Reply::new(
                    550,
                    EnhancedCode::new(5, 7, 1),
                    "DMARC report for a domain not hosted here",
                ),
            );
        };
        owned.push((tenant, report));
    }
    // A tenant at its quota takes no more (a flood of reports stores a bounded
    // amount); retention frees room.
    for (tenant, _) in &owned {
        let kept = match spool.keyring().existing(tenant) {
            Some(key) => spool
                .dmarc_report_count_up_to(key.id(), max_reports)
                .unwrap_or(max_reports),
            None => 0,
        };
        if kept >= max_reports {
            tracing::warn!(
                tenant = %tenant,
                max_reports,
                "DMARC report refused: the tenant keeps [feedback] dmarc_max_reports already"
            );
            return Consumed {
                tenant: Some(tenant.clone()),
                ..refuse(
                    "the tenant's DMARC reports are at their quota",
                    Reply::new(
                        452,
                        EnhancedCode::new(4, 3, 1),
                        "DMARC report storage full for this domain; try again later",
                    ),
                )
            };
        }
    }
    let (mut stored, mut duplicates) = (0, 0);
    let mut tenant_seen = None;
    for (tenant, report) in &owned {
        let end_ms = report.end.saturating_mul(1000);
        match spool.store_dmarc_report(tenant, &report.org_name, &report.report_id, end_ms, report)
        {
            Ok(true) => stored += 1,
            Ok(false) => duplicates += 1,
            Err(e) => {
                tracing::error!(error = %e, "DMARC report: it could not be stored");
                return Consumed {
                    kind: Kind::Dmarc,
                    result: "failed",
                    detail: "storage failed",
                    tenant: Some(tenant.clone()),
                    records: stored,
                    reply: Some(Reply::new(
                        451,
                        EnhancedCode::new(4, 3, 0),
                        "Report not stored; try again later",
                    )),
                };
            }
        }
        tenant_seen.get_or_insert_with(|| tenant.clone());
    }
    Consumed {
        kind: Kind::Dmarc,
        result: if stored > 0 { "stored" } else { "duplicate" },
        detail: if stored > 0 {
            "DMARC report stored"
        } else {
            "DMARC report received before"
        },
        tenant: tenant_seen,
        records: stored + duplicates,
        reply: None,
    }
}

/// The tenant whose domain `domain` is, or whose domain it is a subdomain of.
fn tenant_of(directory: &Directory, domain: &str) -> Option<String> {
    let mut d = domain.trim_end_matches('.');
    loop {
        if let Some(s) = directory.sending(d) {
            return Some(s.tenant.clone());
        }
        let (_, parent) = d.split_once('.')?;
        // A parent of one label is a top-level domain: never a tenant's.
        if !parent.contains('.') {
            return None;
        }
        d = parent;
    }
}

/// The log detail and the reply refusing an unreadable report.
fn refusal(e: &ReportError) -> (&'static str, Reply) {
    // The parser's words may quote the input: printable ASCII only, and short.
    let why: String = e
        .to_string()
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .take(160)
        .collect();
    let text = format!("Not a readable DMARC aggregate report: {why}");
    match e {
        ReportError::TooLarge(_) => (
            "report too large",
            Reply::owned(552, EnhancedCode::new(5, 3, 4), text),
        ),
        ReportError::Entity => (
            "entities in the XML",
            Reply::owned(550, EnhancedCode::new(5, 6, 0), text),
        ),
        ReportError::NotAReport => (
            "not a DMARC report",
            Reply::owned(550, EnhancedCode::new(5, 6, 0), text),
        ),
        ReportError::Malformed(_) | ReportError::Missing(_) | ReportError::Archive(_) => (
            "malformed report",
            Reply::owned(550, EnhancedCode::new(5, 6, 0), text),
        ),
    }
}

/// The summary of `tenant`'s reports about `domain` (and its subdomains, which a
/// parent's policy covers) whose period ends at or after `since_ms`: read one
/// report at a time, so memory is bounded by the summarizer's caps, not by the
/// reports kept.
pub fn summary(
    spool: &Spool,
    tenant: &str,
    domain: &str,
    since_ms: u64,
) -> Result<DmarcSummary, way2mail_queue::Error> {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    let since = since_ms / 1000;
    let mut summarizer = Summarizer::new(&domain, since);
    let suffix = format!(".{domain}");
    spool.dmarc_reports(tenant, since_ms, |mut report: AggregateReport| {
        if report.domain.ends_with(&suffix) {
            // A subdomain's reports count under the domain asked about.
            report.domain.clone_from(&domain);
        }
        summarizer.add(&report);
        ControlFlow::Continue(())
    })?;
    let published_policy = summarizer.published_policy().map(str::to_owned);
    let s = summarizer.finish();
    let source = |ip: String, stats: &SourceStats| DmarcSource {
        ip,
        messages: stats.messages,
        dkim_aligned: stats.dkim_aligned,
        spf_aligned: stats.spf_aligned,
        passing: stats.passing,
        none: stats.none,
        quarantine: stats.quarantine,
        reject: stats.reject,
    };
    Ok(DmarcSummary {
        domain,
        since_ms,
        until_ms: way2mail_daemon::time::now_ms(),
        reports: s.reports,
        duplicate_reports: s.duplicate_reports,
        published_policy,
        reporters: s
            .reporters
            .into_iter()
            .map(|r| DmarcReporter {
                org_name: r.org_name,
                reports: r.reports,
                messages: r.messages,
            })
            .collect(),
        other_reporters: s.other_reporters,
        messages: s.messages,
        passing: s.passing,
        failing: s.messages.saturating_sub(s.passing),
        sources: s
            .sources
            .iter()
            .map(|src| source(src.ip.to_string(), &src.stats))
            .collect(),
        other_sources: source(s.other_sources.ips.to_string(), &s.other_sources.stats),
    })
}
