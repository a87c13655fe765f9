//! What a snapshot means for the spool's keyring, applied by the follower each time
//! one is installed:
//!
//! - every tenant it lists gets its data key now, so that an SMTP core never
//!   rewrites the keyring file while a client waits for its `250`;
//! - every tenant control erased that this MTA still holds is erased here too: its
//!   key shredded, its messages and delivery log deleted. That completes an erasure
//!   control made while the MTA was down or unreachable.

use way2mail_queue::Spool;
use way2mail_wire::snapshot::Snapshot;

/// Erasures first: a tenant listed both as erased and as a tenant (which control
/// does not produce) stays erased.
pub(super) fn apply(spool: &Spool, snapshot: &Snapshot) {
    complete_erasures(spool, &snapshot.erased);
    // One write of the keyring file for every tenant new in this snapshot.
    let names = snapshot.tenants.iter().map(|t| t.tenant.as_str());
    if let Err(e) = spool.keyring().ensure_tenants(names) {
        tracing::error!(
            error = %e,
            "cannot make the tenants' data keys; each one's first message will try again"
        );
    }
}

fn complete_erasures(spool: &Spool, erased: &[String]) {
    for tenant in erased {
        if spool.keyring().erasure(tenant).is_some() {
            continue;
        }
        match spool.erase_tenant(tenant) {
            Ok(done) => tracing::warn!(
                %tenant,
                key_id = ?done.erasure.key_id.map(|k| k.to_string()),
                messages = done.messages,
                log_records = done.log_records,
                "tenant erased in control: its data key is shredded here and its spool data deleted"
            ),
            Err(e) => tracing::error!(
                %tenant,
                error = %e,
                "cannot complete the erasure control made; trying again with the next snapshot"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenants::directory::tests::snapshot;
    use way2mail_seal::Keyring;
    use way2mail_smtp::{Envelope, MessageId, Origin};

    fn envelope(tenant: &str) -> Envelope {
        Envelope {
            sender: format!("a@{tenant}.example"),
            recipients: vec![way2mail_smtp::Recipient::new(
                "b@remote.example".into(),
                Default::default(),
                None,
            )],
            body_type: Default::default(),
            smtputf8: false,
            ret: None,
            envid: None,
            origin: Origin {
                client_ip: "192.0.2.1".parse().expect("ip"),
                helo: "h".into(),
                listener: "submission".into(),
                tls: None,
                auth: None,
                tenant: Some(tenant.into()),
            },
            received_at_ms: 1,
            attempts: 0,
            next_attempt_ms: None,
            delay_notified: false,
            tags: Vec::new(),
            metadata: Default::default(),
            scan: None,
        }
    }

    #[test]
    fn keys_are_made_ahead_and_missed_erasures_completed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = Spool::open(
            &dir.path().join("spool"),
            Keyring::ephemeral().expect("key"),
        )
        .expect("open");
        let id = MessageId::generate();
        spool
            .enqueue(id, &envelope("old"), b"Subject: x\r\n\r\nhi\r\n")
            .expect("enqueue")
            .wait_blocking()
            .expect("durable");
        let old_key = spool.keyring().existing("old").expect("key").id();

        let mut s = snapshot(1);
        s.erased = vec!["old".into(), "never-here".into()];
        apply(&spool, &s);
        for t in ["acme", "sleepy", "gone"] {
            assert!(spool.keyring().existing(t).is_some(), "{t} has its key");
        }
        let erased = spool.keyring().erasure("old").expect("erased");
        assert_eq!(erased.key_id, Some(old_key));
        assert!(spool.read(&id).expect("read").is_none(), "message deleted");
        assert!(spool.keyring().erasure("never-here").is_some());

        // Applying the same snapshot again changes nothing (the first erasure stays).
        apply(&spool, &s);
        assert_eq!(spool.keyring().erasure("old"), Some(erased));
        // An erased tenant listed again gets no new key.
        s.tenants[0].tenant = "old".into();
        apply(&spool, &s);
        assert!(spool.keyring().existing("old").is_none());
    }
}
