//! Turning an attempt's final outcomes into a delivery status notification: which
//! recipients are reported is the DSN builder's call (NOTIFY, null sender); this file
//! maps our outcomes onto it and wraps the result as a new message from the null
//! sender, queued in the same batch that completes the original.

use std::net::{IpAddr, Ipv4Addr};

use way2mail_smtp::dsn::{self, Action, DsnRecipient, DsnRequest};
use way2mail_smtp::{Envelope, MessageId, Origin, Recipient};

use super::{RecipientOutcome, Verdict};

/// The DSN for `reported` outcomes of message `id`, if one is due.
pub fn notice(
    hostname: &str,
    id: MessageId,
    envelope: &Envelope,
    original: &[u8],
    reported: &[RecipientOutcome],
    now_ms: u64,
) -> Option<(MessageId, Envelope, Vec<u8>)> {
    if reported.is_empty() || envelope.sender.is_empty() {
        return None;
    }
    let recipients = reported
        .iter()
        .map(|o| DsnRecipient {
            index: o.index,
            action: match (o.verdict, o.relayed) {
                (Verdict::Delivered, true) => Action::Relayed,
                (Verdict::Delivered, false) => Action::Delivered,
                _ => Action::Failed,
            },
            status: o.status.clone(),
            remote_mta: o.next_hop.as_ref().map(|h| format!("dns; {h}")),
            diagnostic: o
                .next_hop
                .as_ref()
                .map(|_| format!("smtp; {}", o.reply))
                .or_else(|| Some(format!("x-way2mail; {}", o.reply))),
            last_attempt_ms: Some(now_ms),
            will_retry_until_ms: None,
        })
        .collect();
    let id_text = id.to_string();
    let request = DsnRequest {
        reporting_mta: hostname,
        envelope,
        original_id: &id_text,
        original,
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
            // The bounce quotes the tenant's message: it is the tenant's data, sealed
            // with its key and erased with it.
            tenant: envelope.origin.tenant.clone(),
        },
        received_at_ms: now_ms,
        attempts: 0,
        next_attempt_ms: None,
    };
    Some((MessageId::generate(), notice_envelope, dsn.message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use way2mail_smtp::Notify;

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
        };
        let failed = RecipientOutcome {
            index: 0,
            verdict: Verdict::Permanent,
            reply: "550 5.1.1 no such user".into(),
            status: "5.1.1".into(),
            next_hop: Some("mx.remote.example".into()),
            ip: None,
            tls: None,
            relayed: false,
        };
        let original = b"Subject: hi\r\n\r\nhello\r\n";
        let id = MessageId::generate();
        let (_, bounce, body) = notice(
            "mx.test",
            id,
            &envelope,
            original,
            std::slice::from_ref(&failed),
            2,
        )
        .expect("a bounce is due");
        assert_eq!(bounce.origin.tenant.as_deref(), Some("acme"));
        assert_eq!(bounce.sender, "");
        assert_eq!(bounce.recipients[0].address, "app@acme.example");
        assert!(String::from_utf8_lossy(&body).contains("gone@remote.example"));
        envelope.origin.tenant = None;
        let (_, bounce, _) =
            notice("mx.test", id, &envelope, original, &[failed], 2).expect("bounce");
        assert_eq!(bounce.origin.tenant, None);
    }
}
