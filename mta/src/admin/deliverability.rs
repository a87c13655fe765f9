//! `deliverability`: a tenant's volume and outcomes since a time, added up from its
//! delivery log (`Spool::log_window`: the tenant's key range from `since_ms` to now,
//! one record at a time) on the connection's thread, like `delivery.log` and
//! `tenant.export`: no delivery or SMTP thread waits for it.
//!
//! Counts are of (message, recipient) pairs, the recipient compared ignoring case:
//! `volume` counts each pair with a delivered, deferred, bounced, expired,
//! asynchronously bounced, complained or unsubscribed record once, and each
//! outcome counter counts a pair once however many records it has (a recipient
//! deferred five times, then delivered, is one deferred and one delivered).
//! `suppressed` counts records (nothing was queued for those recipients); `deleted`
//! records count nowhere. `bounced_by_category` counts the bounced, expired and
//! asynchronously bounced pairs by the category of the record that first said so
//! (`other` when it has none). The domains table (the part of the recipient after
//! its last `@`, lower case) has the same counts, `bounced` there meaning any of
//! the three failures.
//!
//! Memory is bounded by the constants below, not by the log: a pair is kept as a
//! 128-bit keyed hash with a byte of flags, at most [`MAX_PAIRS`] of them (about
//! 40 MB); once that many are kept, records of pairs not kept count as pairs of
//! their own (per record, so counts can only come out high), and a WARN line says
//! so. Likewise at most [`MAX_DOMAINS`] domains are counted; mail to further
//! domains is in the totals but not in the table.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};

use way2mail_daemon::time::now_ms;
use way2mail_queue::{DeliveryOutcome, DeliveryRecord, Spool};
use way2mail_wire::mta_admin::{AdminResult, DeliverabilityReport, DomainOutcomes};

use super::answer::{internal, Answer};

/// (message, recipient) pairs told apart per report.
pub(super) const MAX_PAIRS: usize = 1_000_000;
/// Receiving domains counted per report.
pub(super) const MAX_DOMAINS: usize = 100_000;
/// Rows of the domains table.
const TOP_DOMAINS: usize = 20;

/// What one pair has had already (bits of a byte).
const DELIVERED: u8 = 1;
const DEFERRED: u8 = 1 << 1;
const BOUNCED: u8 = 1 << 2;
const EXPIRED: u8 = 1 << 3;
const ASYNC_BOUNCED: u8 = 1 << 4;
const COMPLAINED: u8 = 1 << 5;
const UNSUBSCRIBED: u8 = 1 << 6;
const FAILED: u8 = BOUNCED | EXPIRED | ASYNC_BOUNCED;

/// How much a tally may keep.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    pub pairs: usize,
    pub domains: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            pairs: MAX_PAIRS,
            domains: MAX_DOMAINS,
        }
    }
}

/// The counts so far.
pub(super) struct Tally {
    limits: Limits,
    report: DeliverabilityReport,
    hashers: (RandomState, RandomState),
    pairs: HashMap<u128, u8>,
    domains: HashMap<String, DomainOutcomes>,
    /// Some pair was not kept because [`Limits::pairs`] were.
    pub pairs_capped: bool,
    /// Some domain was left out of the table because [`Limits::domains`] were counted.
    pub domains_capped: bool,
}

/// The tally of `records`, stopping at the first error.
pub(super) fn aggregate<E>(
    records: impl IntoIterator<Item = Result<DeliveryRecord, E>>,
    limits: Limits,
) -> Result<Tally, E> {
    let mut tally = Tally::new(limits);
    for record in records {
        tally.add(&record?);
    }
    Ok(tally)
}

impl Tally {
    pub(super) fn new(limits: Limits) -> Tally {
        Tally {
            limits,
            report: DeliverabilityReport::default(),
            hashers: (RandomState::new(), RandomState::new()),
            pairs: HashMap::new(),
            domains: HashMap::new(),
            pairs_capped: false,
            domains_capped: false,
        }
    }

    /// The pair's key: two independently keyed hashes of the message id and the
    /// lower-cased recipient.
    fn pair_key(&self, r: &DeliveryRecord) -> u128 {
        let hash = |state: &RandomState| {
            let mut h = state.build_hasher();
            r.message_id.hash(&mut h);
            for c in r.recipient.chars().flat_map(char::to_lowercase) {
                c.hash(&mut h);
            }
            h.finish()
        };
        (u128::from(hash(&self.hashers.0)) << 64) | u128::from(hash(&self.hashers.1))
    }

    pub(super) fn add(&mut self, r: &DeliveryRecord) {
        let flag = match r.outcome {
            DeliveryOutcome::Delivered => DELIVERED,
            DeliveryOutcome::Deferred => DEFERRED,
            DeliveryOutcome::Bounced => BOUNCED,
            DeliveryOutcome::Expired => EXPIRED,
            DeliveryOutcome::AsyncBounced => ASYNC_BOUNCED,
            DeliveryOutcome::Complained => COMPLAINED,
            DeliveryOutcome::Unsubscribed => UNSUBSCRIBED,
            DeliveryOutcome::Suppressed => {
                self.report.suppressed += 1;
                return;
            }
            // Removed by an operator; never in the log.
            DeliveryOutcome::Deleted | DeliveryOutcome::Accepted => return,
        };
        let key = self.pair_key(r);
        let (before, new) = match self.pairs.get_mut(&key) {
            Some(flags) => {
                let before = *flags;
                *flags |= flag;
                (before, false)
            }
            None => {
                if self.pairs.len() < self.limits.pairs {
                    self.pairs.insert(key, flag);
                } else {
                    self.pairs_capped = true;
                }
                (0, true)
            }
        };
        let first = flag & !before;
        if !new && first == 0 {
            return;
        }
        let failed_first = first & FAILED != 0 && before & FAILED == 0;
        let report = &mut self.report;
        report.volume += u64::from(new);
        match first {
            DELIVERED => report.delivered += 1,
            DEFERRED => report.deferred += 1,
            BOUNCED => report.bounced += 1,
            EXPIRED => report.expired += 1,
            ASYNC_BOUNCED => report.async_bounced += 1,
            COMPLAINED => report.complaints += 1,
            UNSUBSCRIBED => report.unsubscribes += 1,
            _ => {}
        }
        if first & FAILED != 0 {
            let category = r.category.as_deref().unwrap_or("other");
            match report.bounced_by_category.get_mut(category) {
                Some(n) => *n += 1,
                None => {
                    report.bounced_by_category.insert(category.to_owned(), 1);
                }
            }
        }
        let Some(domain) = self.domain(&r.recipient) else {
            return;
        };
        domain.volume += u64::from(new);
        match first {
            DELIVERED => domain.delivered += 1,
            DEFERRED => domain.deferred += 1,
            COMPLAINED => domain.complaints += 1,
            _ => {}
        }
        domain.bounced += u64::from(failed_first);
    }

    /// The counts of the recipient's domain, unless the table is full without it.
    fn domain(&mut self, recipient: &str) -> Option<&mut DomainOutcomes> {
        let domain = recipient
            .rsplit_once('@')
            .map_or("", |(_, d)| d)
            .to_lowercase();
        if !self.domains.contains_key(&domain) {
            if self.domains.len() >= self.limits.domains {
                self.domains_capped = true;
                return None;
            }
            self.domains.insert(
                domain.clone(),
                DomainOutcomes {
                    domain: domain.clone(),
                    ..DomainOutcomes::default()
                },
            );
        }
        self.domains.get_mut(&domain)
    }

    /// The report (`tenant`, `since_ms` and `until_ms` left for the caller): the
    /// domains with the most pairs first, ties by name, at most twenty.
    pub(super) fn report(self) -> DeliverabilityReport {
        let mut domains: Vec<DomainOutcomes> = self.domains.into_values().collect();
        domains.sort_by(|a, b| {
            b.volume
                .cmp(&a.volume)
                .then_with(|| a.domain.cmp(&b.domain))
        });
        domains.truncate(TOP_DOMAINS);
        DeliverabilityReport {
            domains,
            ..self.report
        }
    }
}

/// `deliverability {tenant, since_ms}`: from `since_ms` up to now. A tenant the
/// spool holds no key for (unknown, never sent, erased) gets an empty report.
pub(super) fn report(spool: &Spool, tenant: &str, since_ms: u64) -> Answer {
    let until_ms = now_ms();
    let tally = aggregate(
        spool.log_window(tenant, since_ms, until_ms),
        Limits::default(),
    )
    .map_err(|e| internal("reading the delivery log", &e))?;
    if tally.pairs_capped || tally.domains_capped {
        tracing::warn!(
            target: "way2mail::admin",
            tenant,
            max_pairs = MAX_PAIRS,
            pairs_capped = tally.pairs_capped,
            max_domains = MAX_DOMAINS,
            domains_capped = tally.domains_capped,
            "deliverability report over its memory bound: recipients past max_pairs are \
             counted per record, domains past max_domains are left out of the table"
        );
    }
    Ok(AdminResult::Deliverability(DeliverabilityReport {
        tenant: tenant.to_owned(),
        since_ms,
        until_ms,
        ..tally.report()
    }))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn rec(
        outcome: DeliveryOutcome,
        message: &str,
        recipient: &str,
        category: Option<&str>,
    ) -> DeliveryRecord {
        DeliveryRecord {
            time_ms: 1_000,
            outcome,
            message_id: message.into(),
            recipient: recipient.into(),
            next_hop: None,
            ip: None,
            tls: None,
            reply: None,
            attempt: 1,
            queue_time_ms: 0,
            tags: Vec::new(),
            metadata: Default::default(),
            category: category.map(str::to_owned),
            scan: None,
        }
    }

    fn tally(records: Vec<DeliveryRecord>, limits: Limits) -> Tally {
        aggregate(records.into_iter().map(Ok::<_, ()>), limits).expect("no errors")
    }

    fn domain(name: &str, counts: [u64; 5]) -> DomainOutcomes {
        let [volume, delivered, deferred, bounced, complaints] = counts;
        DomainOutcomes {
            domain: name.into(),
            volume,
            delivered,
            deferred,
            bounced,
            complaints,
        }
    }

    use DeliveryOutcome::*;

    #[test]
    fn pairs_are_counted_once_per_outcome() {
        let records = vec![
            // Deferred twice, then delivered; the recipient's case varies.
            rec(Deferred, "M1", "ann@Alpha.example", Some("network")),
            rec(Deferred, "M1", "ANN@alpha.example", Some("network")),
            rec(Delivered, "M1", "ann@alpha.example", None),
            // The same recipient in another message is another pair.
            rec(Delivered, "M2", "ann@alpha.example", None),
            rec(
                Bounced,
                "M1",
                "bob@alpha.example",
                Some("invalid_recipient"),
            ),
            rec(Expired, "M1", "cid@beta.example", None),
            rec(Delivered, "M3", "dan@beta.example", None),
            rec(AsyncBounced, "M3", "dan@beta.example", Some("mailbox_full")),
            rec(Complained, "M3", "dan@beta.example", None),
            rec(Complained, "M3", "dan@beta.example", None),
            rec(Unsubscribed, "M2", "ann@alpha.example", None),
            // Refused at submission: records, not pairs; deletions count nowhere.
            rec(Suppressed, "M4", "eve@gamma.example", None),
            rec(Suppressed, "M5", "eve@gamma.example", None),
            rec(Deleted, "M6", "fay@gamma.example", None),
        ];
        let t = tally(records, Limits::default());
        assert!(!t.pairs_capped && !t.domains_capped);
        let r = t.report();
        assert_eq!(
            (r.volume, r.delivered, r.deferred, r.bounced, r.expired),
            (5, 3, 1, 1, 1)
        );
        assert_eq!(
            (r.async_bounced, r.complaints, r.unsubscribes, r.suppressed),
            (1, 1, 1, 2)
        );
        assert_eq!(
            r.bounced_by_category,
            BTreeMap::from([
                ("invalid_recipient".to_owned(), 1),
                ("mailbox_full".to_owned(), 1),
                ("other".to_owned(), 1),
            ])
        );
        assert_eq!(r.suppressions_added, 0);
        assert_eq!(
            r.domains,
            vec![
                domain("alpha.example", [3, 2, 1, 1, 0]),
                domain("beta.example", [2, 1, 0, 2, 1]),
            ]
        );
        assert_eq!(
            (r.tenant.as_str(), r.since_ms, r.until_ms),
            ("", 0, 0),
            "left for the caller"
        );
    }

    #[test]
    fn a_pair_that_bounces_more_than_one_way_is_one_failure_of_its_domain() {
        let r = tally(
            vec![
                rec(Bounced, "M1", "a@x.example", Some("policy")),
                rec(Bounced, "M1", "a@x.example", Some("policy")),
                rec(Expired, "M1", "a@x.example", None),
            ],
            Limits::default(),
        )
        .report();
        assert_eq!((r.volume, r.bounced, r.expired), (1, 1, 1));
        assert_eq!(r.bounced_by_category.values().sum::<u64>(), 2);
        assert_eq!(r.domains, vec![domain("x.example", [1, 0, 0, 1, 0])]);
    }

    #[test]
    fn the_domains_table_is_the_top_twenty_by_volume_then_name() {
        let mut records = Vec::new();
        // d00 … d24 with 1 pair each, and z.example with 3: z first, then by name.
        for d in 0..25 {
            records.push(rec(Delivered, "M", &format!("u@d{d:02}.example"), None));
        }
        for n in 0..3 {
            records.push(rec(Delivered, "M", &format!("u{n}@Z.example"), None));
        }
        records.push(rec(Delivered, "M", "no-domain", None));
        let r = tally(records, Limits::default()).report();
        assert_eq!(r.volume, 29);
        assert_eq!(r.domains.len(), 20);
        assert_eq!(r.domains[0], domain("z.example", [3, 3, 0, 0, 0]));
        // The empty domain (a recipient without `@`) sorts first among the ones.
        assert_eq!(r.domains[1].domain, "");
        assert_eq!(r.domains[2].domain, "d00.example");
        assert_eq!(r.domains[19].domain, "d17.example");
    }

    #[test]
    fn past_the_caps_pairs_count_per_record_and_domains_drop_out() {
        let records = vec![
            rec(Deferred, "M1", "a@x.example", None),
            rec(Deferred, "M1", "a@x.example", None),
            rec(Deferred, "M2", "b@y.example", None),
            rec(Deferred, "M2", "b@y.example", None),
            rec(Delivered, "M2", "b@y.example", None),
        ];
        let t = tally(
            records,
            Limits {
                pairs: 1,
                domains: 1,
            },
        );
        assert!(t.pairs_capped && t.domains_capped);
        let r = t.report();
        // M1's pair is kept; M2's is not, so each of its records is a pair.
        assert_eq!((r.volume, r.deferred, r.delivered), (4, 3, 1));
        assert_eq!(r.domains, vec![domain("x.example", [1, 0, 1, 0, 0])]);
    }

    #[test]
    fn an_error_stops_the_tally() {
        let records = vec![
            Ok(rec(Delivered, "M1", "a@x.example", None)),
            Err("unreadable"),
            Ok(rec(Delivered, "M2", "a@x.example", None)),
        ];
        assert_eq!(
            aggregate(records, Limits::default()).err(),
            Some("unreadable")
        );
        let empty = aggregate(Vec::<Result<DeliveryRecord, ()>>::new(), Limits::default())
            .expect("empty")
            .report();
        assert_eq!(empty, DeliverabilityReport::default());
    }
}
