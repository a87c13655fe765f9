//! `queue.summary|list|show|hold|release|retry|bounce|delete`: the MTA's live
//! queue for operators. The role was checked on admission (the `queue` rows of
//! rbac.rs); the request goes to the MTA's admin socket unchanged, outside the
//! writer lock (the MTA may be slow or away), and the answer is audited with what
//! was asked and done: the filter, counts and queue ids, never an address.

use way2mail_wire::client::ClientError;
use way2mail_wire::mta_admin::{AdminOp, AdminResult};
use way2mail_wire::protocol::{check_tenant_id, ErrorBody, ErrorCode, Request, Response};
use way2mail_wire::queue::{QueueChangeReport, QueueFilter};

use super::context::{Failure, Identity};
use super::mta::MtaError;
use super::writer::{request_tenant, Service};

/// Queue ids an audit detail names; the rest are counted.
const AUDITED_IDS: usize = 50;

/// Answers one queue request (`request` is one of the `queue.*` ops).
pub(crate) fn run(
    service: &Service,
    who: &Identity,
    request: &Request,
    reason: Option<String>,
) -> Result<Response, ErrorBody> {
    let op = request.op();
    let tenant = request_tenant(request);
    let (admin_op, asked) = match admin_op(request) {
        Ok(found) => found,
        Err(failure) => {
            return service.locked(who, op, tenant, reason, |_| Err(failure));
        }
    };
    let answer = service.mta(|c| c.call(admin_op));
    service.locked(who, op, tenant, reason, |ctx| {
        let result = answer.map_err(failure_of)?;
        let (response, done) = response_of(result)?;
        ctx.detail = Some(format!("{asked}: {done}"));
        Ok(response)
    })
}

/// The admin op for `request`, and what it asks in words for the audit log.
fn admin_op(request: &Request) -> Result<(AdminOp, String), Failure> {
    let check = |filter: &QueueFilter| match &filter.tenant {
        Some(t) => check_tenant_id(t).map_err(|e| Failure::invalid(e.to_string())),
        None => Ok(()),
    };
    match request {
        Request::QueueSummary { filter } => {
            check(filter)?;
            let asked = format!("summary of {}", filter.describe());
            let op = AdminOp::QueueSummary {
                filter: filter.clone(),
            };
            Ok((op, asked))
        }
        Request::QueueList { filter, limit } => {
            check(filter)?;
            let asked = format!("list of {}", filter.describe());
            let op = AdminOp::QueueList {
                filter: filter.clone(),
                limit: *limit,
            };
            Ok((op, asked))
        }
        Request::QueueShow { id } => {
            let asked = format!("message {}", way2mail_wire::protocol::shorten(id));
            Ok((AdminOp::QueueShow { id: id.clone() }, asked))
        }
        other => {
            let Some((action, selection, dry_run)) = other.queue_change() else {
                return Err(Failure::internal(format!(
                    "{} is not a queue request",
                    other.op()
                )));
            };
            check(&selection.filter)?;
            if let Some(problem) = selection.problem() {
                return Err(Failure::invalid(problem));
            }
            let asked = format!(
                "{}{} of {}",
                action.as_str(),
                if dry_run { " (dry run)" } else { "" },
                selection.describe()
            );
            let op = AdminOp::QueueChange {
                action,
                selection: selection.clone(),
                dry_run,
            };
            Ok((op, asked))
        }
    }
}

/// The MTA's error as the operator's: its own code when it answered one.
pub(crate) fn failure_of(e: MtaError) -> Failure {
    match e {
        MtaError::Answer(ClientError::Remote(body)) => {
            Failure::new(body.code, format!("the MTA answered: {}", body.message))
        }
        other => Failure::new(ErrorCode::Unavailable, other.to_string()),
    }
}

/// The answer to the operator and what it says, in words, for the audit log.
fn response_of(result: AdminResult) -> Result<(Response, String), Failure> {
    Ok(match result {
        AdminResult::QueueSummary(s) => {
            let done = format!("{} message(s)", s.total.messages);
            (Response::QueueSummary(s), done)
        }
        AdminResult::QueueListing(l) => {
            let done = format!("{} matched, {} shown", l.matched, l.messages.len());
            (Response::QueueListing(l), done)
        }
        AdminResult::QueueMessage { message, log } => {
            let done = format!("shown with {} log record(s)", log.len());
            (Response::QueueMessage { message, log }, done)
        }
        AdminResult::QueueChanged(report) => {
            let done = change_words(&report);
            (Response::QueueChanged(report), done)
        }
        other => {
            return Err(Failure::internal(format!(
                "unexpected answer from the MTA: {other:?}"
            )))
        }
    })
}

/// `3 changed (A B C), 1 skipped, 2 bounce(s) queued`.
fn change_words(r: &QueueChangeReport) -> String {
    let mut ids: Vec<&str> = r
        .changed
        .iter()
        .take(AUDITED_IDS)
        .map(String::as_str)
        .collect();
    if r.changed.len() > AUDITED_IDS {
        ids.push("…");
    }
    let mut words = format!("{} changed", r.changed.len());
    if !ids.is_empty() {
        words.push_str(&format!(" ({})", ids.join(" ")));
    }
    words.push_str(&format!(", {} skipped", r.skipped.len()));
    if r.notices > 0 {
        words.push_str(&format!(", {} bounce(s) queued", r.notices));
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;
    use way2mail_wire::queue::{QueueAction, QueueSelection};

    #[test]
    fn an_empty_selection_is_refused_before_the_mta_is_asked() {
        let request = Request::QueueDelete {
            selection: QueueSelection::default(),
            dry_run: false,
        };
        let failure = admin_op(&request).expect_err("refused");
        assert_eq!(failure.body.code, ErrorCode::Invalid);
        let request = Request::QueueHold {
            selection: QueueSelection {
                filter: QueueFilter {
                    tenant: Some("Not A Tenant".into()),
                    ..Default::default()
                },
                ..Default::default()
            },
            dry_run: true,
        };
        assert_eq!(
            admin_op(&request).expect_err("bad tenant").body.code,
            ErrorCode::Invalid
        );
    }

    #[test]
    fn audit_words_name_ids_but_not_too_many() {
        let report = QueueChangeReport {
            action: Some(QueueAction::Bounce),
            changed: (0..60).map(|i| format!("ID{i}")).collect(),
            notices: 2,
            ..Default::default()
        };
        let words = change_words(&report);
        assert!(words.starts_with("60 changed (ID0 ID1"), "{words}");
        assert!(words.contains("ID49 …"), "{words}");
        assert!(!words.contains("ID50"), "{words}");
        assert!(words.ends_with("0 skipped, 2 bounce(s) queued"), "{words}");
    }
}
