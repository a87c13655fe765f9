//! The first part of a DSN: a short explanation for the person who sent the
//! message, listing each reported recipient with what happened and why. Programs
//! read the second part; this one is for people, so it says what to do next.

use super::field::{clean, push_field, push_line};
use super::original::{Returned, MAX_FULL};
use super::status::Reported;
use super::{Action, DsnRequest};
use crate::date::rfc5322;

/// The human-readable explanation, CRLF line ends. `worst` is the most serious
/// action among `reported` (it picks the opening paragraph).
pub(super) fn explanation(
    req: &DsnRequest<'_>,
    reported: &[Reported<'_>],
    worst: Action,
    returned: &Returned<'_>,
) -> String {
    let mut out = String::with_capacity(512 + 256 * reported.len());
    let host = clean(req.reporting_mta, 255);
    push_line(
        &mut out,
        &format!("This is the mail delivery system at {host}."),
    );
    out.push_str("\r\n");
    for line in opening(worst) {
        push_line(&mut out, line);
    }
    // A bounce that also carries the delay notice of the same attempt.
    if worst == Action::Failed && reported.iter().any(|r| r.outcome.action == Action::Delayed) {
        push_line(
            &mut out,
            "Recipients marked \"delivery delayed\" are still being tried.",
        );
    }
    out.push_str("\r\n");
    for r in reported {
        push_recipient(&mut out, r);
    }
    push_line(
        &mut out,
        &format!("Queue ID of your message: {}", clean(req.original_id, 100)),
    );
    if returned.cut_to_headers {
        push_line(
            &mut out,
            &format!(
                "Your message is over {} MB, so only its header section is attached.",
                MAX_FULL / (1024 * 1024)
            ),
        );
    }
    out
}

fn opening(worst: Action) -> &'static [&'static str] {
    match worst {
        Action::Failed => &[
            "Your message could not be delivered to one or more recipients.",
            "The reasons are given below. This is a permanent error: the system",
            "has stopped trying to deliver to these recipients.",
        ],
        Action::Delayed => &[
            "Your message has not yet been delivered to the recipients below.",
            "The system will keep trying; you do not need to send it again.",
        ],
        Action::Delivered | Action::Relayed => &[
            "As you asked, this is a report that your message was delivered",
            "(or, where so marked, passed on to a system that sends no reports).",
        ],
    }
}

fn push_recipient(out: &mut String, r: &Reported<'_>) {
    let what = match r.outcome.action {
        Action::Failed => "delivery failed",
        Action::Delayed => "delivery delayed",
        Action::Delivered => "delivered",
        Action::Relayed => "relayed to a system that sends no delivery reports",
    };
    push_line(
        out,
        &format!("<{}>: {what} (status {})", r.address(), r.status()),
    );
    if let Some(remote) = r.remote_mta().filter(|v| !v.is_empty()) {
        push_field(out, "    Remote server", &remote);
    }
    if let Some(diagnostic) = r.diagnostic().filter(|v| !v.is_empty()) {
        push_field(out, "    Reply", &diagnostic);
    }
    if let (Action::Delayed, Some(ms)) = (r.outcome.action, r.outcome.will_retry_until_ms) {
        push_field(out, "    Will retry until", &rfc5322(ms));
    }
    out.push_str("\r\n");
}
