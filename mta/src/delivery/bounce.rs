//! Turning an attempt's outcomes into a delivery status notification: which
//! recipients are reported is the DSN builder's call (NOTIFY, null sender); this file
//! maps our outcomes onto it ([`final_outcome`] for failures, [`delayed`] for
//! recipients still being retried, see `delay.rs`) and wraps the result as a new
//! message from the null sender, queued in the same batch that completes the
//! original. One notice per completion: a bounce and a delay notice due in the same
//! attempt are one DSN with a `failed` and a `delayed` group (RFC 3464 allows both
//! in one report), since `Spool::complete` queues one message with the outcome.

use std::net::{IpAddr, Ipv4Addr};

use way2mail_queue::{read_header_section, Spool};
use way2mail_smtp::dsn::{self, Action, DsnRecipient, DsnRequest};
use way2mail_smtp::{EnhancedCode, Envelope, MessageId, Origin, Recipient};

use super::attempt::RecipientAttempt;

/// A final outcome (delivered, relayed, failed) as a DSN reports it.
pub fn final_outcome(o: &RecipientAttempt, now_ms: u64) -> DsnRecipient {
    DsnRecipient {
        index: o.index,
        action: o.attempt.dsn_action(),
        status: o.attempt.enhanced_code(),
        remote_mta: o.hop.as_ref().map(|h| format!("dns; {}", h.host)),
        diagnostic: Some(diagnostic(o)),
        last_attempt_ms: Some(now_ms),
        will_retry_until_ms: None,
    }
}

/// A deferred recipient reported as `delayed`, retried until `until_ms`; its
/// status is the deferral's 4.x.x.
pub fn delayed(o: &RecipientAttempt, now_ms: u64, until_ms: u64) -> DsnRecipient {
    DsnRecipient {
        action: Action::Delayed,
        will_retry_until_ms: Some(until_ms),
        ..final_outcome(o, now_ms)
    }
}

/// An SMTP reply when a host answered, else our own diagnostic.
fn diagnostic(o: &RecipientAttempt) -> String {
    match &o.hop {
        Some(_) => format!("smtp; {}", o.attempt),
        None => format!("x-way2mail; {}", o.attempt),
    }
}

/// The bounce for pending recipients `indexes` of a message an operator removed
/// from the queue (`way2mail queue bounce`): failed, 5.0.0, our own diagnostic.
pub fn removed_by_operator(
    hostname: &str,
    id: MessageId,
    envelope: &Envelope,
    original: &[u8],
    original_size: usize,
    indexes: &[usize],
    now_ms: u64,
) -> Option<(MessageId, Envelope, Vec<u8>)> {
    let recipients = indexes
        .iter()
        .map(|&index| DsnRecipient {
            index,
            action: Action::Failed,
            status: EnhancedCode::new(5, 0, 0),
            remote_mta: None,
            diagnostic: Some(format!("x-way2mail; {REMOVED_BY_OPERATOR}")),
            last_attempt_ms: None,
            will_retry_until_ms: None,
        })
        .collect();
    notice(
        hostname,
        id,
        envelope,
        original,
        original_size,
        recipients,
        now_ms,
    )
}

/// Most of a message read for a notice that returns only its header section: a
/// header section longer than this is cut there.
const HEADER_READ_MAX: usize = 1024 * 1024;

/// What a notice needs of a spooled message of `body_len` bytes: the whole of it
/// when a notice may return it whole, else only its beginning up to the end of
/// its header section, read chunk by chunk, so that a bounce about a large message
/// never holds it whole.
pub fn original_from_spool(
    spool: &Spool,
    id: &MessageId,
    body_len: u64,
) -> Result<Vec<u8>, way2mail_queue::Error> {
    if body_len <= dsn::RETURNED_WHOLE_MAX as u64 {
        return spool.read_whole_body(id, body_len);
    }
    let (head, _) = read_header_section(spool.body_chunks(id, body_len), HEADER_READ_MAX)?;
    Ok(head)
}

/// What the delivery log and the bounce say of mail an operator removed.
pub const REMOVED_BY_OPERATOR: &str = "5.0.0 removed from the queue by the operator";

/// The DSN reporting `recipients` of message `id` as a new message from the null
/// sender, if one is due (not for nobody, not for the null sender, not when the DSN
/// builder finds nobody who asked for one).
pub fn notice(
    hostname: &str,
    id: MessageId,
    envelope: &Envelope,
    original: &[u8],
    original_size: usize,
    recipients: Vec<DsnRecipient>,
    now_ms: u64,
) -> Option<(MessageId, Envelope, Vec<u8>)> {
    if recipients.is_empty() || envelope.sender.is_empty() {
        return None;
    }
    let id_text = id.to_string();
    let request = DsnRequest {
        reporting_mta: hostname,
        envelope,
        original_id: &id_text,
        original,
        original_size,
        recipients,
        now_ms,
    };
    let dsn = dsn::build(&request)?;
    let notice_envelope = Envelope {
        sender: String::new(),
        recipients: vec![Recipient::new(
            dsn.recipient.clone(),
            Default::default(),
            None,
        )],
        body_type: dsn.body_type,
        smtputf8: dsn.smtputf8,
        ret: None,
        envid: None,
        origin: Origin {
            client_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            helo: hostname.to_string(),
            listener: "dsn".into(),
            tls: None,
            auth: None,
            // A notice quotes the tenant's message: it is the tenant's data, sealed
            // with its key and erased with it.
            tenant: envelope.origin.tenant.clone(),
        },
        received_at_ms: now_ms,
        attempts: 0,
        next_attempt_ms: None,
        delay_notified: false,
        tags: Vec::new(),
        metadata: Default::default(),
        scan: None,
    };
    Some((MessageId::generate(), notice_envelope, dsn.message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::attempt::{Attempt, DeliveryError, Hop};
    use way2mail_smtp::{EnhancedCode, Notify, Reply};

    #[test]
    fn a_bounce_belongs_to_the_bounced_messages_tenant() {
        let mut envelope = Envelope {
            sender: "app@acme.example".into(),
            recipients: vec![Recipient::new(
                "gone@remote.example".into(),
                Notify::default(),
                None,
            )],
            body_type: Default::default(),
            smtputf8: false,
            ret: None,
            envid: None,
            origin: Origin {
                client_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
                helo: "client.test".into(),
                listener: "submission".into(),
                tls: None,
                auth: Some("app@acme.example".into()),
                tenant: Some("acme".into()),
            },
            received_at_ms: 1,
            attempts: 1,
            next_attempt_ms: None,
            delay_notified: false,
            tags: Vec::new(),
            metadata: Default::default(),
            scan: None,
        };
        let refused = Reply::new(550, EnhancedCode::new(5, 1, 1), "no such user");
        let failed = RecipientAttempt {
            index: 0,
            attempt: Attempt::Failed(DeliveryError::Rejected(refused)),
            hop: Some(Hop {
                host: "mx.remote.example".into(),
                ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 25)),
                tls: None,
            }),
        };
        let original = b"Subject: hi\r\n\r\nhello\r\n";
        let id = MessageId::generate();
        let (_, bounce, body) = notice(
            "mx.test",
            id,
            &envelope,
            original,
            original.len(),
            vec![final_outcome(&failed, 2)],
            2,
        )
        .expect("a bounce is due");
        assert_eq!(bounce.origin.tenant.as_deref(), Some("acme"));
        assert_eq!(bounce.sender, "");
        assert_eq!(bounce.recipients[0].address, "app@acme.example");
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains("gone@remote.example"));
        assert!(text.contains("Status: 5.1.1\r\n"), "{text}");
        assert!(
            text.contains("Remote-MTA: dns; mx.remote.example\r\n"),
            "{text}"
        );
        assert!(
            text.contains("Diagnostic-Code: smtp; 550 5.1.1 no such user\r\n"),
            "{text}"
        );
        envelope.origin.tenant = None;
        let recipients = vec![final_outcome(&failed, 2)];
        let (_, bounce, _) = notice(
            "mx.test",
            id,
            &envelope,
            original,
            original.len(),
            recipients,
            2,
        )
        .expect("bounce");
        assert_eq!(bounce.origin.tenant, None);
    }

    #[test]
    fn mail_removed_by_the_operator_bounces_with_5_0_0() {
        let envelope = Envelope {
            sender: "app@acme.example".into(),
            recipients: vec![
                Recipient::new("done@remote.example".into(), Notify::default(), None),
                Recipient::new("stuck@remote.example".into(), Notify::default(), None),
            ],
            body_type: Default::default(),
            smtputf8: false,
            ret: None,
            envid: None,
            origin: Origin {
                client_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
                helo: "client.test".into(),
                listener: "submission".into(),
                tls: None,
                auth: None,
                tenant: Some("acme".into()),
            },
            received_at_ms: 1,
            attempts: 3,
            next_attempt_ms: None,
            delay_notified: false,
            tags: Vec::new(),
            metadata: Default::default(),
            scan: None,
        };
        let original = b"Subject: hi\r\n\r\nhello\r\n";
        let id = MessageId::generate();
        let (_, notice, body) =
            removed_by_operator("mx.test", id, &envelope, original, original.len(), &[1], 2)
                .expect("a bounce");
        assert_eq!(notice.origin.tenant.as_deref(), Some("acme"));
        assert_eq!(notice.recipients[0].address, "app@acme.example");
        let text = String::from_utf8_lossy(&body);
        assert!(
            text.contains("Final-Recipient: rfc822;stuck@remote.example"),
            "{text}"
        );
        assert!(!text.contains("done@remote.example"), "{text}");
        assert!(text.contains("Status: 5.0.0\r\n"), "{text}");
        assert!(
            text.contains("removed from the queue by the operator"),
            "{text}"
        );
        let mut null = envelope.clone();
        null.sender.clear();
        assert!(
            removed_by_operator("mx.test", id, &null, original, original.len(), &[1], 2).is_none()
        );
        assert!(
            removed_by_operator("mx.test", id, &envelope, original, original.len(), &[], 2)
                .is_none()
        );
    }
}
