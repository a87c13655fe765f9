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

/// IPs counted one by one in a summary; past this, new ones are summed in
/// [`Summary::other_sources`] straight away, so that a summary's memory is bounded
/// whatever the reports hold.
pub const MAX_TRACKED_SOURCES: usize = 100_000;
/// Reports told apart (reporter, id) in one summary; past this, a resent report
/// would be counted again.
pub const MAX_TRACKED_REPORTS: usize = 100_000;

/// Sums the reports whose date range ends at or after `since` (Unix seconds).
///
/// A summary is of one domain: when the reports name several, the one with the
/// most messages (then the first by name) is summarized and the others' reports are
/// counted in [`Summary::other_domain_reports`], so that two domains' mail is never
/// mixed into one share.
pub fn summarize(reports: &[AggregateReport], since: u64) -> Summary {
    let mut per_domain: HashMap<&str, u64> = HashMap::new();
    for report in reports.iter().filter(|r| r.end >= since) {
        let entry = per_domain.entry(report.domain.as_str()).or_default();
        *entry = entry.saturating_add(messages(report));
    }
    let domain = per_domain
        .into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(a.0)))
        .map(|(domain, _)| domain.to_owned())
        .unwrap_or_default();
    let mut summarizer = Summarizer::new(&domain, since);
    for report in reports {
        summarizer.add(report);
    }
    summarizer.finish()
}

/// One domain's summary, fed one report at a time (reports read from storage are
/// never all in memory at once).
pub struct Summarizer {
    since: u64,
    summary: Summary,
    seen: HashSet<(String, String)>,
    reporters: HashMap<String, Reporter>,
    sources: HashMap<IpAddr, SourceStats>,
    /// The `p=` of the report with the latest end, and that end.
    latest_policy: Option<(u64, String)>,
}

impl Summarizer {
    /// A summary of `domain`'s reports that end at or after `since` (Unix seconds).
    pub fn new(domain: &str, since: u64) -> Summarizer {
        Summarizer {
            since,
            summary: Summary {
                domain: domain.to_owned(),
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
            },
            seen: HashSet::new(),
            reporters: HashMap::new(),
            sources: HashMap::new(),
            latest_policy: None,
        }
    }

    /// Counts `report` (when it ends in the window and is about the domain).
    pub fn add(&mut self, report: &AggregateReport) {
        if report.end < self.since {
            return;
        }
        let summary = &mut self.summary;
        if report.domain != summary.domain {
            summary.other_domain_reports += 1;
            return;
        }
        let id = (report.org_name.clone(), report.report_id.clone());
        if self.seen.contains(&id) {
            summary.duplicate_reports += 1;
            return;
        }
        if self.seen.len() < MAX_TRACKED_REPORTS {
            self.seen.insert(id);
        }
        summary.reports += 1;
        if self
            .latest_policy
            .as_ref()
            .is_none_or(|(end, _)| report.end >= *end)
        {
            self.latest_policy = Some((report.end, report.policy.p.clone()));
        }
        let reporter = self
            .reporters
            .entry(report.org_name.clone())
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
            let room = self.sources.len() < MAX_TRACKED_SOURCES;
            match self.sources.get_mut(&row.source_ip) {
                Some(s) => s.add(&stats),
                None if room => {
                    self.sources.insert(row.source_ip, stats);
                }
                None => {
                    // Counted as one more IP per row: an upper bound on the IPs.
                    summary.other_sources.ips += 1;
                    summary.other_sources.stats.add(&stats);
                }
            }
            summary.messages = summary.messages.saturating_add(n);
            if passing {
                summary.passing = summary.passing.saturating_add(n);
            }
        }
    }

    /// The `p=` the latest report counted saw published.
    pub fn published_policy(&self) -> Option<&str> {
        self.latest_policy.as_ref().map(|(_, p)| p.as_str())
    }

    pub fn finish(self) -> Summary {
        let mut summary = self.summary;
        if summary.messages > 0 {
            // f64 loses precision only past 2^53 messages; a share needs no more.
            #[allow(clippy::cast_precision_loss)]
            let share = (summary.messages - summary.passing) as f64 / summary.messages as f64;
            summary.would_fail_reject_share = share;
        }

        let mut reporters: Vec<Reporter> = self.reporters.into_values().collect();
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

        let mut sources: Vec<Source> = self
            .sources
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
}

/// Messages in one report.
fn messages(report: &AggregateReport) -> u64 {
    report
        .records
        .iter()
        .fold(0u64, |sum, row| sum.saturating_add(row.count))
}
