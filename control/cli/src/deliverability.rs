//! `way2mail tenant deliverability`: the `--since` argument and the report as
//! people read it: the totals with their share of the volume, bounces by
//! category, and the receiving domains with the most mail.

use way2mail_daemon::duration;
use way2mail_wire::mta_admin::DeliverabilityReport;

use super::table::{record, rfc3339, Table};
use super::Failure;

/// `--since`: a period back from `now` (`7d`, `24h`) or an RFC 3339 date-time, as
/// Unix seconds; `None` (the daemon's default, 7 days) when not given.
pub fn since(text: Option<&str>, now: u64) -> Result<Option<u64>, Failure> {
    let Some(text) = text else {
        return Ok(None);
    };
    if let Ok(secs) = duration::parse(text) {
        return Ok(Some(now.saturating_sub(secs)));
    }
    match super::commands::parse_rfc3339(text) {
        Ok(at) if at > now => Err(Failure::Usage(format!(
            "--since {:?}: that is in the future",
            super::table::clean(text)
        ))),
        Ok(at) => Ok(Some(at)),
        Err(_) => Err(Failure::Usage(format!(
            "--since {:?}: give a period back from now (7d, 24h, 90m) or an RFC 3339 \
             date-time (2026-03-01T00:00:00Z)",
            super::table::clean(text)
        ))),
    }
}

/// `part` as a percentage of `whole`, two decimals; `-` when `whole` is 0.
fn share(part: u64, whole: u64) -> String {
    if whole == 0 {
        "-".into()
    } else {
        format!("{:.2}%", part as f64 * 100.0 / whole as f64)
    }
}

/// `490 (98.00%)`.
fn count_and_share(part: u64, whole: u64) -> String {
    format!("{part} ({})", share(part, whole))
}

pub fn render(r: &DeliverabilityReport) -> String {
    let volume = r.volume;
    let mut out = record(&[
        ("tenant", r.tenant.clone()),
        (
            "period",
            format!(
                "{} to {}",
                rfc3339(r.since_ms / 1000),
                rfc3339(r.until_ms / 1000)
            ),
        ),
        ("volume", format!("{volume} recipients")),
        ("suppressions added", r.suppressions_added.to_string()),
    ]);
    if volume == 0 {
        out.push_str("\nno mail of this tenant in the period\n");
        return out;
    }
    out.push('\n');
    let mut outcomes = Table::new(&["OUTCOME", "RECIPIENTS", "% OF VOLUME"]);
    for (name, count) in [
        ("delivered", r.delivered),
        ("deferred (at least once)", r.deferred),
        ("bounced", r.bounced),
        ("expired", r.expired),
        ("async bounced", r.async_bounced),
        ("complaints", r.complaints),
        ("unsubscribes", r.unsubscribes),
        ("suppressed", r.suppressed),
    ] {
        outcomes.row(vec![name.into(), count.to_string(), share(count, volume)]);
    }
    out.push_str(&outcomes.render());
    out.push('\n');
    if r.bounced_by_category.is_empty() {
        out.push_str("no bounces\n");
    } else {
        let mut categories = Table::new(&["BOUNCE CATEGORY", "RECIPIENTS", "% OF VOLUME"]);
        let mut by_count: Vec<(&String, &u64)> = r.bounced_by_category.iter().collect();
        by_count.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        for (category, count) in by_count {
            categories.row(vec![
                category.clone(),
                count.to_string(),
                share(*count, volume),
            ]);
        }
        out.push_str(&categories.render());
        out.push_str("(bounced, expired and asynchronously bounced recipients)\n");
    }
    out.push('\n');
    if r.domains.is_empty() {
        out.push_str("no receiving domains\n");
    } else {
        let mut domains = Table::new(&[
            "TOP DOMAINS",
            "VOLUME",
            "DELIVERED",
            "DEFERRED",
            "BOUNCED",
            "COMPLAINTS",
        ]);
        for d in &r.domains {
            domains.row(vec![
                d.domain.clone(),
                d.volume.to_string(),
                count_and_share(d.delivered, d.volume),
                count_and_share(d.deferred, d.volume),
                count_and_share(d.bounced, d.volume),
                count_and_share(d.complaints, d.volume),
            ]);
        }
        out.push_str(&domains.render());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use way2mail_wire::mta_admin::DomainOutcomes;

    #[test]
    fn since_takes_periods_and_dates() {
        let now = 1_767_225_600;
        assert!(matches!(since(None, now), Ok(None)));
        assert!(matches!(since(Some("7d"), now), Ok(Some(t)) if t == now - 7 * 86_400));
        assert!(matches!(since(Some("24h"), now), Ok(Some(t)) if t == now - 86_400));
        assert!(matches!(
            since(Some("2025-12-31T00:00:00Z"), now),
            Ok(Some(1_767_139_200))
        ));
        for bad in ["", "yesterday", "7 days", "2026-01-02T00:00:00Z"] {
            assert!(
                matches!(since(Some(bad), now), Err(Failure::Usage(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn totals_categories_and_domains_with_their_shares() {
        let report = DeliverabilityReport {
            tenant: "acme".into(),
            since_ms: 1_767_225_600_000,
            until_ms: 1_767_830_400_000,
            volume: 200,
            delivered: 180,
            deferred: 10,
            bounced: 12,
            expired: 1,
            bounced_by_category: [
                ("bad_domain".to_string(), 3u64),
                ("invalid_recipient".to_string(), 10),
            ]
            .into_iter()
            .collect(),
            async_bounced: 0,
            complaints: 1,
            unsubscribes: 2,
            suppressed: 4,
            suppressions_added: 5,
            domains: vec![DomainOutcomes {
                domain: "example.net".into(),
                volume: 150,
                delivered: 147,
                deferred: 2,
                bounced: 3,
                complaints: 0,
            }],
        };
        let text = render(&report);
        for part in [
            "period:             2026-01-01T00:00:00Z to 2026-01-08T00:00:00Z\n",
            "volume:             200 recipients\n",
            "suppressions added: 5\n",
            "delivered                 180         90.00%\n",
            "bounced                   12          6.00%\n",
            "complaints                1           0.50%\n",
            "invalid_recipient  10          5.00%\n",
            "example.net  150     147 (98.00%)  2 (1.33%)  3 (2.00%)  0 (0.00%)\n",
        ] {
            assert!(text.contains(part), "{part:?} not in\n{text}");
        }
        // The most frequent category first.
        assert!(
            text.find("invalid_recipient") < text.find("bad_domain"),
            "{text}"
        );
        let empty = render(&DeliverabilityReport {
            tenant: "acme".into(),
            ..Default::default()
        });
        assert!(
            empty.ends_with("no mail of this tenant in the period\n"),
            "{empty}"
        );
    }
}
