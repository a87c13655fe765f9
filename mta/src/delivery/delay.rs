//! Delay notices (RFC 3461 `NOTIFY=DELAY`, RFC 3464 `Action: delayed`): when an
//! attempt leaves recipients pending and the message has waited `[delivery]
//! delay_notice_secs`, the sender hears once that delivery is late, like Postfix's
//! `delay_warning_time`. The rules, decided here and nowhere else:
//!
//! - one decision per message: the completion that takes it sets
//!   `Envelope::delay_notified` in the same spool write that queues the notice, so no
//!   retry and no restart sends a second one; it is set even when no recipient asks
//!   for a notice, since none will later either;
//! - never for the null sender (a notice about a notice would loop), never with
//!   `delay_notice_secs = 0`, never for a message that expires or finishes in this
//!   attempt (the bounce or nothing says the rest);
//! - recipients reported: those deferred in this attempt and still pending whose
//!   NOTIFY asks for delays (`DELAY`, or no `NOTIFY` at all: RFC 3461 §4.1 lets the
//!   MTA act as if `FAILURE,DELAY` was given); `NEVER` or a list without `DELAY`
//!   excludes a recipient;
//! - `Will-Retry-Until` is arrival plus `max_queue_lifetime_secs`, when the message
//!   expires; the original is returned as headers only (the DSN builder returns a
//!   full message only with a failure).

use way2mail_smtp::dsn::{self, Action, DsnRecipient};
use way2mail_smtp::{Envelope, RecipientState};

use super::attempt::RecipientAttempt;
use super::bounce;
use crate::config::delivery::DeliveryConfig;

/// Whether the attempt completing at `now_ms` decides this message's delay notice:
/// notices are on, the sender is not null, none was decided before, some recipient
/// is still pending (after expiry was applied) and the message has waited long enough.
fn due(config: &DeliveryConfig, envelope: &Envelope, now_ms: u64) -> bool {
    let threshold_ms = config.delay_notice_secs.saturating_mul(1000);
    config.delay_notice_secs > 0
        && !envelope.sender.is_empty()
        && !envelope.delay_notified
        && envelope
            .recipients
            .iter()
            .any(|r| r.state == RecipientState::Pending)
        && now_ms.saturating_sub(envelope.received_at_ms) >= threshold_ms
}

/// The delayed recipients to report, from this attempt's `results`: deferred, still
/// pending, and asking for delay notices.
fn reported(
    config: &DeliveryConfig,
    envelope: &Envelope,
    results: &[RecipientAttempt],
    now_ms: u64,
) -> Vec<DsnRecipient> {
    let until_ms = envelope
        .received_at_ms
        .saturating_add(config.max_queue_lifetime_secs.saturating_mul(1000));
    results
        .iter()
        .filter(|o| o.attempt.is_deferred())
        .filter(|o| {
            envelope.recipients.get(o.index).is_some_and(|r| {
                r.state == RecipientState::Pending && dsn::wants_report(&r.notify, &Action::Delayed)
            })
        })
        .map(|o| bounce::delayed(o, now_ms, until_ms))
        .collect()
}

/// Decides the delay notice of a message whose attempt completes at `now_ms`: when
/// one is due, marks the envelope (so it is never decided again) and returns the
/// recipients to report as delayed, possibly none.
pub fn decide(
    config: &DeliveryConfig,
    envelope: &mut Envelope,
    results: &[RecipientAttempt],
    now_ms: u64,
) -> Vec<DsnRecipient> {
    if !due(config, envelope, now_ms) {
        return Vec::new();
    }
    envelope.delay_notified = true;
    reported(config, envelope, results, now_ms)
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;
    use crate::delivery::attempt::{Attempt, DeliveryError, HostError};
    use way2mail_smtp::{Notify, Origin, Recipient};

    const HOUR_MS: u64 = 3_600_000;
    const RECEIVED: u64 = 1_700_000_000_000;

    fn config() -> DeliveryConfig {
        DeliveryConfig {
            delay_notice_secs: 4 * 3600,
            max_queue_lifetime_secs: 5 * 24 * 3600,
            ..DeliveryConfig::default()
        }
    }

    fn notify(never: bool, failure: bool, delay: bool) -> Notify {
        Notify {
            never,
            success: false,
            failure,
            delay,
        }
    }

    /// A message from `sender` with one pending recipient per `NOTIFY`.
    fn envelope(sender: &str, notifies: &[Notify]) -> Envelope {
        Envelope {
            sender: sender.into(),
            recipients: notifies
                .iter()
                .enumerate()
                .map(|(i, n)| Recipient::new(format!("r{i}@dest.example"), *n, None))
                .collect(),
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
                tenant: None,
            },
            received_at_ms: RECEIVED,
            attempts: 3,
            next_attempt_ms: None,
            delay_notified: false,
            tags: Vec::new(),
            metadata: Default::default(),
            scan: None,
        }
    }

    fn deferred(index: usize) -> RecipientAttempt {
        RecipientAttempt {
            index,
            attempt: Attempt::Deferred(DeliveryError::Unreachable(HostError::NoHop)),
            hop: None,
        }
    }

    #[test]
    fn due_only_once_after_the_threshold_for_a_real_sender() {
        let c = config();
        let unspecified = notify(false, false, false);
        let env = envelope("a@sender.example", &[unspecified]);
        let at = RECEIVED + 4 * HOUR_MS;
        assert!(!due(&c, &env, at - 1), "before the threshold");
        assert!(due(&c, &env, at), "at the threshold");
        let notified = Envelope {
            delay_notified: true,
            tags: Vec::new(),
            metadata: Default::default(),
            ..env.clone()
        };
        assert!(!due(&c, &notified, at + HOUR_MS), "already notified");
        let null = envelope("", &[unspecified]);
        assert!(!due(&c, &null, at), "null sender");
        let off = DeliveryConfig {
            delay_notice_secs: 0,
            ..config()
        };
        assert!(!due(&off, &env, at), "turned off");
        let mut done = env.clone();
        done.recipients[0].state = RecipientState::Failed;
        assert!(!due(&c, &done, at), "nothing pending");
    }

    #[test]
    fn reports_the_pending_recipients_whose_notify_asks_for_delays() {
        let c = config();
        let mut env = envelope(
            "a@sender.example",
            &[
                notify(false, false, false), // unspecified: as FAILURE,DELAY
                notify(false, true, true),   // FAILURE,DELAY
                notify(false, false, true),  // DELAY
                notify(true, false, false),  // NEVER
                notify(false, true, false),  // FAILURE only
                notify(false, false, false), // delivered in this attempt
            ],
        );
        env.recipients[5].state = RecipientState::Delivered;
        let results: Vec<RecipientAttempt> = (0..6).map(deferred).collect();
        let now = RECEIVED + 5 * HOUR_MS;
        let got = decide(&c, &mut env, &results, now);
        let indices: Vec<usize> = got.iter().map(|r| r.index).collect();
        assert_eq!(indices, [0, 1, 2]);
        assert!(env.delay_notified);
        let until = RECEIVED + 5 * 24 * HOUR_MS;
        for r in &got {
            assert_eq!(r.action, Action::Delayed);
            assert_eq!(r.will_retry_until_ms, Some(until));
            assert_eq!(r.last_attempt_ms, Some(now));
            assert_eq!(r.status.to_string(), "4.4.1");
            assert_eq!(r.diagnostic.as_deref(), Some("x-way2mail; no next hop"));
        }
        assert!(decide(&c, &mut env, &results, now + HOUR_MS).is_empty());
    }

    #[test]
    fn marked_even_when_no_recipient_asks() {
        let c = config();
        let mut env = envelope("a@sender.example", &[notify(false, true, false)]);
        let got = decide(&c, &mut env, &[deferred(0)], RECEIVED + 5 * HOUR_MS);
        assert!(got.is_empty());
        assert!(
            env.delay_notified,
            "decided once: a later attempt adds nothing"
        );
    }

    #[test]
    fn not_marked_before_the_threshold_or_for_the_null_sender() {
        let c = config();
        for (sender, at) in [
            ("a@sender.example", RECEIVED + HOUR_MS),
            ("", RECEIVED + 5 * HOUR_MS),
        ] {
            let mut env = envelope(sender, &[notify(false, false, true)]);
            assert!(decide(&c, &mut env, &[deferred(0)], at).is_empty());
            assert!(!env.delay_notified, "{sender:?}");
        }
    }
}
