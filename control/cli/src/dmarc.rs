//! `way2mail domain dmarc`: a domain's DMARC aggregate reports, summed by the MTA,
//! as people read them: a header line, the totals with the share a `p=reject`
//! policy would refuse, the reporters, and the sending IPs with their alignment
//! and the dispositions the receivers applied. (`--since` is parsed as for
//! `tenant deliverability`: `deliverability::since`.)

use way2mail_wire::mta_admin::{DmarcSource, DmarcSummary};

use super::table::{clean, rfc3339, Table};

/// `part` as a percentage of `whole`, one decimal; `-` when `whole` is 0.
fn share(part: u64, whole: u64) -> String {
    if whole == 0 {
        "-".into()
    } else {
        format!("{:.1}%", part as f64 * 100.0 / whole as f64)
    }
}

/// `none/quarantine/reject` counts of a source.
fn dispositions(s: &DmarcSource) -> String {
    format!("{}/{}/{}", s.none, s.quarantine, s.reject)
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

pub fn render(s: &DmarcSummary) -> String {
    let domain = clean(&s.domain);
    let since = rfc3339(s.since_ms / 1000);
    if s.reports == 0 {
        let mut out = format!("no DMARC aggregate reports for {domain} since {since}\n");
        if s.duplicate_reports > 0 {
            out.push_str(&format!(
                "({} received again, not counted)\n",
                plural(s.duplicate_reports, "report", "reports")
            ));
        }
        return out;
    }
    let window = if s.until_ms == 0 {
        format!("since {since}")
    } else {
        format!("{since} to {}", rfc3339(s.until_ms / 1000))
    };
    let policy = match s.published_policy.as_deref() {
        Some(p) => format!("p={}", clean(p)),
        None => "unknown".into(),
    };
    let mut out = format!(
        "{domain}: {window}, published policy {policy}, {}, {} not counted\n",
        plural(s.reports, "report", "reports"),
        plural(s.duplicate_reports, "duplicate", "duplicates"),
    );
    out.push_str(&format!(
        "{}: {} passing ({}), {} failing ({}); p=reject would refuse {}\n",
        plural(s.messages, "message", "messages"),
        s.passing,
        share(s.passing, s.messages),
        s.failing,
        share(s.failing, s.messages),
        share(s.failing, s.messages),
    ));
    out.push('\n');
    if s.reporters.is_empty() {
        out.push_str("no reporters listed\n");
    } else {
        let mut reporters = Table::new(&["REPORTER", "REPORTS", "MESSAGES"]);
        for r in &s.reporters {
            reporters.row(vec![
                r.org_name.clone(),
                r.reports.to_string(),
                r.messages.to_string(),
            ]);
        }
        out.push_str(&reporters.render());
    }
    if s.other_reporters > 0 {
        let n = s.other_reporters;
        out.push_str(&format!(
            "(and {n} more {})\n",
            if n == 1 { "reporter" } else { "reporters" }
        ));
    }
    out.push('\n');
    if s.sources.is_empty() {
        out.push_str("no sending IPs listed\n");
    } else {
        let mut sources = Table::new(&[
            "SOURCE IP",
            "MESSAGES",
            "DKIM ALIGNED",
            "SPF ALIGNED",
            "PASSING",
            "NONE/QUARANTINE/REJECT",
        ]);
        for src in &s.sources {
            sources.row(vec![
                src.ip.clone(),
                src.messages.to_string(),
                src.dkim_aligned.to_string(),
                src.spf_aligned.to_string(),
                src.passing.to_string(),
                dispositions(src),
            ]);
        }
        out.push_str(&sources.render());
    }
    let other = &s.other_sources;
    let other_ips = other.ip.trim().parse::<u64>().unwrap_or(0);
    if other.messages > 0 || other_ips > 0 {
        let ips = if other_ips > 0 {
            plural(other_ips, "other source", "other sources")
        } else {
            format!("other sources ({})", clean(&other.ip))
        };
        out.push_str(&format!(
            "{ips}: {} messages, {} DKIM aligned, {} SPF aligned, {} passing, {} \
             none/quarantine/reject\n",
            other.messages,
            other.dkim_aligned,
            other.spf_aligned,
            other.passing,
            dispositions(other),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use way2mail_wire::mta_admin::DmarcReporter;

    fn summary() -> DmarcSummary {
        DmarcSummary {
            domain: "shop.example".into(),
            since_ms: 1_767_225_600_000,
            until_ms: 1_769_817_600_000,
            reports: 12,
            duplicate_reports: 2,
            published_policy: Some("quarantine".into()),
            reporters: vec![
                DmarcReporter {
                    org_name: "google.com".into(),
                    reports: 8,
                    messages: 1000,
                },
                DmarcReporter {
                    org_name: "Mail\x1b[31m.example".into(),
                    reports: 4,
                    messages: 200,
                },
            ],
            other_reporters: 0,
            messages: 1200,
            passing: 1150,
            failing: 50,
            sources: vec![
                DmarcSource {
                    ip: "192.0.2.25".into(),
                    messages: 1150,
                    dkim_aligned: 1150,
                    spf_aligned: 1149,
                    passing: 1150,
                    none: 1150,
                    quarantine: 0,
                    reject: 0,
                },
                DmarcSource {
                    ip: "2001:db8::7".into(),
                    messages: 40,
                    dkim_aligned: 0,
                    spf_aligned: 0,
                    passing: 0,
                    none: 2,
                    quarantine: 38,
                    reject: 0,
                },
            ],
            other_sources: DmarcSource {
                ip: "3".into(),
                messages: 10,
                quarantine: 10,
                ..Default::default()
            },
        }
    }

    #[test]
    fn header_totals_reporters_and_sources() {
        let text = render(&summary());
        for part in [
            "shop.example: 2026-01-01T00:00:00Z to 2026-01-31T00:00:00Z, published policy \
             p=quarantine, 12 reports, 2 duplicates not counted\n",
            "1200 messages: 1150 passing (95.8%), 50 failing (4.2%); p=reject would refuse 4.2%\n",
            "REPORTER           REPORTS  MESSAGES\n",
            "google.com         8        1000\n",
            // Control characters from a reporter cannot reach the terminal.
            "Mail?[31m.example  4        200\n",
            "SOURCE IP    MESSAGES  DKIM ALIGNED  SPF ALIGNED  PASSING  NONE/QUARANTINE/REJECT\n",
            "192.0.2.25   1150      1150          1149         1150     1150/0/0\n",
            "2001:db8::7  40        0             0            0        2/38/0\n",
            "3 other sources: 10 messages, 0 DKIM aligned, 0 SPF aligned, 0 passing, 0/10/0 \
             none/quarantine/reject\n",
        ] {
            assert!(text.contains(part), "{part:?} not in\n{text}");
        }
        assert!(!text.contains('\x1b'), "{text}");
        assert!(!text.contains("more reporter"), "{text}");
    }

    #[test]
    fn no_other_sources_line_when_there_are_none() {
        let text = render(&DmarcSummary {
            other_sources: DmarcSource::default(),
            other_reporters: 1,
            published_policy: None,
            ..summary()
        });
        assert!(!text.contains("other source"), "{text}");
        assert!(text.contains("published policy unknown"), "{text}");
        assert!(text.contains("(and 1 more reporter)\n"), "{text}");
    }

    #[test]
    fn no_reports_is_said_plainly() {
        let text = render(&DmarcSummary {
            domain: "shop.example".into(),
            since_ms: 1_767_225_600_000,
            until_ms: 1_769_817_600_000,
            ..Default::default()
        });
        assert_eq!(
            text,
            "no DMARC aggregate reports for shop.example since 2026-01-01T00:00:00Z\n"
        );
    }

    #[test]
    fn shares_have_one_decimal() {
        assert_eq!(share(1, 3), "33.3%");
        assert_eq!(share(2, 3), "66.7%");
        assert_eq!(share(0, 0), "-");
        assert_eq!(share(5, 5), "100.0%");
    }
}
