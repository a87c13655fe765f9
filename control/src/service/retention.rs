//! Retention in control: the MTA's reports of what its scheduled sweeps removed,
//! recorded in the audit log (counts, never content), one entry per tenant.

use super::context::{Ctx, ExtraAudit, Failure};
use crate::mta_admin::SweepReport;
use crate::protocol::{Outcome, Response};

/// `retention.report`: one audit entry for the sweep, and one per tenant it touched.
pub(crate) fn report(ctx: &mut Ctx<'_>, report: &SweepReport) -> Result<Response, Failure> {
    let mut messages = 0;
    let mut records = 0;
    for e in &report.entries {
        messages += e.messages_removed;
        records += e.log_records_removed;
        let detail = format!(
            "MTA retention sweep at {}: removed {} queued messages and {} delivery log records{}",
            report.started_ms,
            e.messages_removed,
            e.log_records_removed,
            if e.messages_in_delivery > 0 {
                format!(
                    "; {} old enough but in delivery, left for the next sweep",
                    e.messages_in_delivery
                )
            } else {
                String::new()
            }
        );
        ctx.extra_audit.push(ExtraAudit {
            tenant: e.tenant.clone(),
            outcome: Outcome::Ok,
            detail,
        });
    }
    ctx.detail = Some(format!(
        "MTA retention sweep at {}: {} tenants, {messages} messages and {records} log records \
         removed; {} messages and {} log records of erased tenants deleted",
        report.started_ms,
        report.entries.len(),
        report.erased_messages,
        report.erased_log_records,
    ));
    Ok(Response::Done)
}
