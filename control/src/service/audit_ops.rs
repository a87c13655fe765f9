//! `audit.list` and `audit.verify`: reading the log is itself logged.

use super::context::{Ctx, Failure};
use crate::audit::AuditLog;
use way2mail_wire::protocol::Response;

const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 10_000;

pub(crate) fn list(
    ctx: &mut Ctx<'_>,
    tenant: Option<&str>,
    since_seq: Option<u64>,
    limit: Option<u32>,
) -> Result<Response, Failure> {
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if limit > MAX_LIMIT {
        return Err(Failure::invalid(format!(
            "limit must be at most {MAX_LIMIT}"
        )));
    }
    let entries = AuditLog::list(ctx.store, tenant, since_seq.unwrap_or(0), limit as usize)?;
    ctx.detail = Some(format!("{} entries", entries.len()));
    Ok(Response::Audit { entries })
}

pub(crate) fn verify(ctx: &mut Ctx<'_>) -> Result<Response, Failure> {
    let report = AuditLog::verify(ctx.store)?;
    ctx.detail = Some(format!(
        "{} entries checked, {} problems",
        report.entries,
        report.problems.len()
    ));
    Ok(Response::AuditVerified(report))
}
