//! One tenant's delivery log over a time window, record by record: what the MTA's
//! deliverability report (`deliverability` on the admin socket) adds up. A range
//! scan of the tenant's key range `g<key_id>` from `since_ms`, each record opened as
//! the caller asks for it, so the scan holds one record at a time however long the
//! log is; records before the window are never read.

use crate::keys::{self, Key};
use crate::{record, DeliveryRecord, Error, Spool};

impl Spool {
    /// The delivery log records of `tenant` whose time is at or after `since_ms` and
    /// before `until_ms`, in key order (time, message, sequence), each opened as the
    /// iterator reaches it. A tenant without a data key (unknown, or erased) has no
    /// log: the iterator is empty. Records written during the scan may or may not
    /// be seen. An `Err` item (a read failure, a record that does not open) can be
    /// followed by more records; callers usually stop at it.
    pub fn log_window(
        &self,
        tenant: &str,
        since_ms: u64,
        until_ms: u64,
    ) -> impl Iterator<Item = Result<DeliveryRecord, Error>> + '_ {
        let inner = &*self.inner;
        let range = inner
            .keyring
            .existing(tenant)
            .map(|k| {
                (
                    keys::log_from(k.id(), since_ms),
                    keys::log_from(k.id(), until_ms),
                )
            })
            .filter(|(start, end)| start < end)
            .map(|(start, end)| inner.db.range(start..end));
        range.into_iter().flatten().filter_map(move |item| {
            let (key, value) = match item {
                Ok(kv) => kv,
                Err(e) => return Some(Err(e.into())),
            };
            inner.progress.tick();
            match keys::parse(&key) {
                Some(Key::Log { .. }) => Some(record::open_log(&inner.keyring, &key, &value)),
                _ => None,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DeliveryOutcome, MessageId};
    use way2mail_seal::Keyring;

    fn record(id: &MessageId, recipient: &str, time_ms: u64) -> DeliveryRecord {
        DeliveryRecord {
            time_ms,
            outcome: DeliveryOutcome::Delivered,
            message_id: id.to_string(),
            recipient: recipient.into(),
            next_hop: None,
            ip: None,
            tls: None,
            reply: None,
            attempt: 1,
            queue_time_ms: 0,
            tags: Vec::new(),
            metadata: Default::default(),
            category: None,
            scan: None,
        }
    }

    #[test]
    fn the_window_of_one_tenants_log_is_read_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = Spool::open(dir.path(), Keyring::ephemeral().expect("key")).expect("open");
        let (a, b) = (MessageId::generate(), MessageId::generate());
        for (t, rcpt) in [(3_000, "c@x.example"), (1_000, "a@x.example")] {
            spool
                .record_event("acme", &a, &record(&a, rcpt, t))
                .expect("acme");
        }
        spool
            .record_event("acme", &a, &record(&a, "b@x.example", 2_000))
            .expect("acme");
        spool
            .record_event("beta", &b, &record(&b, "z@x.example", 2_000))
            .expect("beta");

        let window = |since, until| {
            spool
                .log_window("acme", since, until)
                .map(|r| r.map(|r| (r.time_ms, r.recipient)))
                .collect::<Result<Vec<_>, _>>()
                .expect("scan")
        };
        let all = window(0, u64::MAX);
        assert_eq!(
            all.iter().map(|(t, _)| *t).collect::<Vec<_>>(),
            vec![1_000, 2_000, 3_000]
        );
        assert_eq!(all[1].1, "b@x.example");
        // `since_ms` is in, `until_ms` is out; beta's records are never acme's.
        assert_eq!(window(2_000, 3_000), vec![(2_000, "b@x.example".into())]);
        assert!(window(3_001, u64::MAX).is_empty());
        assert!(window(5_000, 1_000).is_empty());
        assert_eq!(spool.log_window("beta", 0, u64::MAX).count(), 1);
        assert_eq!(spool.log_window("nobody", 0, u64::MAX).count(), 0);
    }
}
