//! Reports → one domain's [`Summary`]: who reports, which IPs send as the domain,
//! and how much of that mail a `p=reject` policy would refuse today.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use super::AggregateReport;

/// Sources listed one by one; the rest are summed in [`Summary::other_sources`].
pub const MAX_SOURCES: usize = 100;
/// Reporters listed; the rest are counted in [`Summary::other_reporters`].
pub const MAX_REPORTERS: usize = 100;

/// One domain's aggregate reports, summed.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// The domain summarized (`policy_published/domain`); empty when no report counted.
    pub domain: String,
    /// Reports counted: those for `domain` whose date range ends at or after
    /// `since`, each (reporter, report id) once.
    pub reports: u64,
    /// Reports left out because they were about another domain.
    pub other_domain_reports: u64,
    /// Reports left out because a report with the same reporter and id was
    /// counted (reporters resend).
    pub duplicate_reports: u64,
    /// Reporters, by messages reported (most first), then name.
    pub reporters: Vec<Reporter>,
    /// Reporters past [`MAX_REPORTERS`], not listed.
    pub other_reporters: u64,
    /// Messages reported.
    pub messages: u64,
    /// Messages that passed DMARC: DKIM or SPF passed aligned.
    pub passing: u64,
    /// `(messages - passing) / messages`: the share that `p=reject` would have
    /// refused; 0 with no messages.
    pub would_fail_reject_share: f64,
    /// The sending IPs, by messages (most first), then address; at most [`MAX_SOURCES`].
    pub sources: Vec<Source>,
    /// The IPs past [`MAX_SOURCES`], summed.
    pub other_sources: OtherSources,
}

/// One reporter (`org_name`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reporter {
    pub org_name: String,
    pub reports: u64,
    pub messages: u64,
}

/// One sending IP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub ip: IpAddr,
    pub stats: SourceStats,
}

/// The IPs not listed, summed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OtherSources {
    pub ips: u64,
    pub stats: SourceStats,
}

/// Counts of messages from a source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceStats {
    pub messages: u64,
    /// DKIM passed aligned.
    pub dkim_aligned: u64,
    /// SPF passed aligned.
    pub spf_aligned: u64,
    /// Either: DMARC passed.
    pub passing: u64,
    /// The dispositions the receivers applied.
    pub none: u64,
    pub quarantine: u64,
    pub reject: u64,
}

impl SourceStats {
    fn add(&mut self, other: &SourceStats) {
        self.messages = self.messages.saturating_add(other.messages);
        self.dkim_aligned = self.dkim_aligned.saturating_add(other.dkim_aligned);
        self.spf_aligned = self.spf_aligned.saturating_add(other.spf_aligned);
        self.passing = self.passing.saturating_add(other.passing);
        self.none = self.none.saturating_add(other.none);
        self.quarantine = self.quarantine.saturating_add(other.quarantine);
        self.reject = self.reject.saturating_add(other.reject);
    }
}

/// Sums the reports whose date range ends at or after `since` (Unix seconds).
///
/// A summary is of one domain: when the reports name several, the one with the
/// most messages (then the first by name) is summarized and the others' reports are
/// counted in [`Summary::other_domain_reports`], so that two domains' mail is never
/// mixed into one share.
pub fn summarize(reports: &[AggregateReport], since: u64) -> Summary {
    let recent: Vec<&AggregateReport> = reports.iter().filter(|r| r.end >= since).collect();

    let mut per_domain: HashMap<&str, u64> = HashMap::new();
    for report in &recent {
        let entry = per_domain.entry(report.domain.as_str()).or_default();
        *entry = entry.saturating_add(messages(report));
    }
    let domain = per_domain
        .into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(a.0)))
        .map(|(domain, _)| domain.to_owned())
        .unwrap_or_default();

    let mut summary = Summary {
        domain,
        reports: 0,
        other_domain_reports: 0,
        duplicate_reports: 0,
        reporters: Vec::new(),
        other_reporters: 0,
        messages: 0,
        passing: 0,
        would_fail_reject_share: 0.0,
        sources: Vec::new(),
        other_sources: OtherSources::default(),
    };
    let mut seen: HashSet<(&str, &str)> = HashSet::new();
    let mut reporters: HashMap<&str, Reporter> = HashMap::new();
    let mut sources: HashMap<IpAddr, SourceStats> = HashMap::new();
    for report in recent {
        if report.domain != summary.domain {
            summary.other_domain_reports += 1;
            continue;
        }
        if !seen.insert((report.org_name.as_str(), report.report_id.as_str())) {
            summary.duplicate_reports += 1;
            continue;
        }
        summary.reports += 1;
        let reporter = reporters
            .entry(report.org_name.as_str())
            .or_insert_with(|| Reporter {
                org_name: report.org_name.clone(),
                reports: 0,
                messages: 0,
            });
        reporter.reports += 1;
        reporter.messages = reporter.messages.saturating_add(messages(report));
        for row in &report.records {
            let n = row.count;
            let passing = row.dkim_aligned || row.spf_aligned;
            let stats = SourceStats {
                messages: n,
                dkim_aligned: if row.dkim_aligned { n } else { 0 },
                spf_aligned: if row.spf_aligned { n } else { 0 },
                passing: if passing { n } else { 0 },
                none: if row.disposition == "none" { n } else { 0 },
                quarantine: if row.disposition == "quarantine" {
                    n
                } else {
                    0
                },
                reject: if row.disposition == "reject" { n } else { 0 },
            };
            sources.entry(row.source_ip).or_default().add(&stats);
            summary.messages = summary.messages.saturating_add(n);
            if passing {
                summary.passing = summary.passing.saturating_add(n);
            }
        }
    }
    if summary.messages > 0 {
        // f64 loses precision only past 2^53 messages; a share needs no more.
        #[allow(clippy::cast_precision_loss)]
        let share = (summary.messages - summary.passing) as f64 / summary.messages as f64;
        summary.would_fail_reject_share = share;
    }

    let mut reporters: Vec<Reporter> = reporters.into_values().collect();
    reporters.sort_by(|a, b| {
        b.messages
            .cmp(&a.messages)
            .then_with(|| a.org_name.cmp(&b.org_name))
    });
    if reporters.len() > MAX_REPORTERS {
        summary.other_reporters = (reporters.len() - MAX_REPORTERS) as u64;
        reporters.truncate(MAX_REPORTERS);
    }
    summary.reporters = reporters;

    let mut sources: Vec<Source> = sources
        .into_iter()
        .map(|(ip, stats)| Source { ip, stats })
        .collect();
    sources.sort_by(|a, b| {
        b.stats
            .messages
            .cmp(&a.stats.messages)
            .then_with(|| a.ip.cmp(&b.ip))
    });
    if sources.len() > MAX_SOURCES {
        for source in sources.drain(MAX_SOURCES..) {
            summary.other_sources.ips += 1;
            summary.other_sources.stats.add(&source.stats);
        }
    }
    summary.sources = sources;
    summary
}

/// Messages in one report.
fn messages(report: &AggregateReport) -> u64 {
    report
        .records
        .iter()
        .fold(0u64, |sum, row| sum.saturating_add(row.count))
}
