//! `tenant.export`, the right of access and portability: one tar archive of
//! everything held about a tenant, streamed to the operator's CLI.
//!
//! ```text
//!   <tenant>-export/account.json          the account record
//!   <tenant>-export/domains.json          sending domains (public DKIM keys only)
//!   <tenant>-export/credentials.json      credential metadata (never secrets or hashes)
//!   <tenant>-export/suppression.json      the suppression list
//!   <tenant>-export/webhooks.json         webhook endpoints (never their secrets)
//!   <tenant>-export/retention.json        the periods in force, and the tenant's own
//!   <tenant>-export/access-log.json       audit entries about the tenant
//!   <tenant>-export/messages/<id>.eml     each queued message, as queued
//!   <tenant>-export/messages/index.json   their envelopes (sender, recipients, state)
//!   <tenant>-export/delivery-log/NNNN.jsonl   delivery log records, 10,000 per file
//!   <tenant>-export/api-requests.json     answers kept for API requests sent with an
//!                                         Idempotency-Key (the last 24 hours)
//!   <tenant>-export/webhook-outbox/NNNN.jsonl  webhook events not delivered yet,
//!                                         one per line, 10,000 per file
//!   <tenant>-export/manifest.json         counts, and every file's size and SHA-256
//! ```
//!
//! The JSON files are written by `export_format.rs`: words as words (`7bit`,
//! `pending`), times as RFC 3339 UTC strings; the MTA's items are read into the
//! spool's own types first, so that nothing of its storage encoding reaches them.
//!
//! Control's part is read under the writer lock (the access is audited when it
//! starts); the MTA's part streams from its admin socket one message at a time;
//! a second audit entry records the outcome with the counts.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::archive::Tar;
use super::context::StreamOut;
use super::context::{Failure, Identity};
use super::export_format::{self, FORMAT};
use super::mta::MtaError;
use super::writer::Service;
use super::{credentials, domains, retention, suppression, tenants, webhooks};
use crate::audit::AuditLog;
use way2mail_queue::DeliveryRecord;
use way2mail_smtp::Envelope;
use way2mail_wire::client::ClientError;
use way2mail_wire::mta_admin::{read_export_item, AdminClient, AdminOp, AdminResult, ExportItem};
use way2mail_wire::protocol::{
    AuditEntry, CredentialInfo, DomainInfo, ErrorBody, ErrorCode, ExportManifest, Response,
    SuppressionEntry, TenantInfo, WebhookInfo,
};

const LOG_RECORDS_PER_FILE: usize = 10_000;
/// DMARC reports per `dmarc-reports/NNNN.jsonl` file (a report can hold many rows).
const DMARC_REPORTS_PER_FILE: usize = 100;

/// A message item of the MTA's `tenant.export` (`{"id","envelope"}`).
#[derive(Deserialize)]
struct MtaMessage {
    id: String,
    envelope: Envelope,
}

/// Control's part of an export.
struct ControlPart {
    info: TenantInfo,
    domains: Vec<DomainInfo>,
    credentials: Vec<CredentialInfo>,
    suppression: Vec<SuppressionEntry>,
    webhooks: Vec<WebhookInfo>,
    retention: Value,
    access: Vec<AuditEntry>,
}

fn pretty(value: &impl Serialize) -> Result<Vec<u8>, Failure> {
    serde_json::to_vec_pretty(value).map_err(|e| Failure::internal(format!("encoding: {e}")))
}

pub(crate) fn run(
    service: &Service,
    who: &Identity,
    tenant: &str,
    reason: Option<String>,
    out: &mut dyn StreamOut,
) -> Result<Response, ErrorBody> {
    let mta = service.mta_client().map_err(|e| {
        let why = match e {
            // Already names the socket.
            MtaError::Connect(e) => e.to_string(),
            other => other.to_string(),
        };
        Failure::new(
            ErrorCode::Unavailable,
            format!("the export needs the MTA's spool: {why}"),
        )
    });
    let mut part = None;
    service.locked(
        who,
        "tenant.export",
        Some(tenant.to_owned()),
        reason.clone(),
        |ctx| {
            if let Err(f) = &mta {
                return Err(Failure::new(f.body.code, f.body.message.clone()));
            }
            let info = tenants::load(ctx, tenant)?;
            let domains = domains::owned_by(ctx.store, Some(&info.tenant))?;
            let credentials = credentials::owned_by(ctx.store, Some(&info.tenant))?;
            let suppression = suppression::entries(ctx, &info.tenant)?;
            let webhooks = webhooks::records(ctx.store, &info.tenant)?
                .iter()
                .map(crate::records::WebhookRecord::info)
                .collect();
            let retention = json!({
                "in_force": retention::effective(&ctx.settings.retention, &info),
                "tenant_settings": info.retention,
            });
            let access = AuditLog::list(ctx.store, Some(&info.tenant), 0, usize::MAX)?;
            ctx.detail = Some("export started".into());
            part = Some(ControlPart {
                info,
                domains,
                credentials,
                suppression,
                webhooks,
                retention,
                access,
            });
            Ok(Response::Done)
        },
    )?;
    let (Some(part), Ok(mut client)) = (part, mta) else {
        return Err(Failure::internal("export without its data").body);
    };
    let written = write_archive(&part, &mut client, out);
    let outcome = match &written {
        Ok((m, outbox)) => Ok(format!(
            "export finished: {} messages, {} delivery log records, {} webhook endpoints, \
             {outbox} webhook events not delivered yet, {} files",
            m.messages,
            m.delivery_log_records,
            part.webhooks.len(),
            m.files.len()
        )),
        Err(f) => Err(f.detail()),
    };
    service.locked(
        who,
        "tenant.export",
        Some(tenant.to_owned()),
        reason,
        |ctx| {
            ctx.public_detail = true;
            match outcome {
                Ok(detail) => {
                    ctx.detail = Some(detail);
                    Ok(Response::Done)
                }
                Err(detail) => Err(Failure::internal(format!("export cut short: {detail}"))),
            }
        },
    )?;
    written
        .map(|(manifest, _)| Response::TenantExported(manifest))
        .map_err(|f| f.body)
}

/// Writes the archive; returns its manifest and the number of webhook events in
/// the MTA's outbox (which the manifest has no field for).
fn write_archive(
    part: &ControlPart,
    client: &mut AdminClient,
    out: &mut dyn StreamOut,
) -> Result<(ExportManifest, u64), Failure> {
    let io = |e: std::io::Error| Failure::internal(format!("writing the archive: {e}"));
    out.start().map_err(io)?;
    let base = format!("{}-export", part.info.tenant);
    let created_at = way2mail_daemon::time::now_secs();
    let mut tar = Tar::new(&mut *out, created_at);
    let domains: Vec<_> = part.domains.iter().map(export_format::domain).collect();
    let credentials: Vec<_> = part
        .credentials
        .iter()
        .map(export_format::credential)
        .collect();
    let suppression: Vec<_> = part
        .suppression
        .iter()
        .map(export_format::suppressed)
        .collect();
    let webhooks: Vec<_> = part.webhooks.iter().map(export_format::webhook).collect();
    let access: Vec<_> = part.access.iter().map(export_format::access).collect();
    for (name, data) in [
        ("account.json", pretty(&export_format::account(&part.info))?),
        ("domains.json", pretty(&domains)?),
        ("credentials.json", pretty(&credentials)?),
        ("suppression.json", pretty(&suppression)?),
        ("webhooks.json", pretty(&webhooks)?),
        ("retention.json", pretty(&part.retention)?),
        ("access-log.json", pretty(&access)?),
    ] {
        tar.file(&format!("{base}/{name}"), &data).map_err(io)?;
    }
    let mut envelopes: Vec<export_format::Message> = Vec::new();
    let mut log_lines: Vec<u8> = Vec::new();
    let (mut log_in_file, mut log_files, mut log_records) = (0usize, 0u32, 0u64);
    let mut pending_id: Option<String> = None;
    let mut api_requests: Vec<serde_json::Value> = Vec::new();
    let mut outbox: Vec<u8> = Vec::new();
    let (mut outbox_in_file, mut outbox_files, mut outbox_events) = (0usize, 0u32, 0u64);
    let mut dmarc: Vec<u8> = Vec::new();
    let (mut dmarc_in_file, mut dmarc_files) = (0usize, 0u32);
    let streamed = client.call_stream(
        AdminOp::TenantExport {
            tenant: part.info.tenant.clone(),
        },
        |input| {
            while let Some(item) = read_export_item(input)? {
                match item {
                    ExportItem::Message(json) => {
                        let m: MtaMessage = serde_json::from_slice(&json).map_err(|e| {
                            std::io::Error::other(format!("a message item that does not read: {e}"))
                        })?;
                        let id = m.id;
                        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
                            return Err(std::io::Error::other("a message without a proper id"));
                        }
                        pending_id = Some(id.clone());
                        envelopes.push(export_format::message(id, m.envelope));
                    }
                    ExportItem::Body(body) => {
                        let id = pending_id
                            .take()
                            .ok_or_else(|| std::io::Error::other("a body without its message"))?;
                        tar.file(&format!("{base}/messages/{id}.eml"), &body)?;
                    }
                    ExportItem::Log(json) => {
                        let record: DeliveryRecord =
                            serde_json::from_slice(&json).map_err(|e| {
                                std::io::Error::other(format!(
                                    "a delivery log item that does not read: {e}"
                                ))
                            })?;
                        serde_json::to_writer(&mut log_lines, &export_format::delivery(record))
                            .map_err(std::io::Error::other)?;
                        log_lines.push(b'\n');
                        log_in_file += 1;
                        log_records += 1;
                        if log_in_file == LOG_RECORDS_PER_FILE {
                            log_files += 1;
                            tar.file(
                                &format!("{base}/delivery-log/{log_files:04}.jsonl"),
                                &log_lines,
                            )?;
                            log_lines.clear();
                            log_in_file = 0;
                        }
                    }
                    // Kept for a day only, so few: gathered into one file.
                    ExportItem::ApiRequest(json) => {
                        let kept: serde_json::Value =
                            serde_json::from_slice(&json).map_err(|e| {
                                std::io::Error::other(format!(
                                    "an API request item that does not read: {e}"
                                ))
                            })?;
                        api_requests.push(kept);
                    }
                    // One line each, in the export's form (times in RFC 3339, the
                    // event as the delivery log's lines).
                    ExportItem::WebhookEvent(json) => {
                        let event = export_format::webhook_event(&json).map_err(|e| {
                            std::io::Error::other(format!(
                                "a webhook event item that does not read: {e}"
                            ))
                        })?;
                        serde_json::to_writer(&mut outbox, &event)
                            .map_err(std::io::Error::other)?;
                        outbox.push(b'\n');
                        outbox_events += 1;
                        outbox_in_file += 1;
                        if outbox_in_file == LOG_RECORDS_PER_FILE {
                            outbox_files += 1;
                            tar.file(
                                &format!("{base}/webhook-outbox/{outbox_files:04}.jsonl"),
                                &outbox,
                            )?;
                            outbox.clear();
                            outbox_in_file = 0;
                        }
                    }
                    // The reports as read, one a line.
                    ExportItem::DmarcReport(json) => {
                        let report: serde_json::Value =
                            serde_json::from_slice(&json).map_err(|e| {
                                std::io::Error::other(format!(
                                    "a DMARC report item that does not read: {e}"
                                ))
                            })?;
                        serde_json::to_writer(&mut dmarc, &report)
                            .map_err(std::io::Error::other)?;
                        dmarc.push(b'\n');
                        dmarc_in_file += 1;
                        if dmarc_in_file == DMARC_REPORTS_PER_FILE {
                            dmarc_files += 1;
                            tar.file(
                                &format!("{base}/dmarc-reports/{dmarc_files:04}.jsonl"),
                                &dmarc,
                            )?;
                            dmarc.clear();
                            dmarc_in_file = 0;
                        }
                    }
                }
            }
            Ok(())
        },
    );
    let messages = match streamed {
        Ok(((), AdminResult::Exported { messages, .. })) => messages,
        Ok((_, other)) => {
            return Err(Failure::internal(format!(
                "the MTA ended the export with {other:?}"
            )))
        }
        Err(ClientError::Remote(e)) => {
            return Err(Failure::new(e.code, format!("the MTA: {}", e.message)))
        }
        Err(e) => {
            return Err(Failure::internal(format!(
                "the MTA's part of the export: {e}"
            )))
        }
    };
    if log_in_file > 0 || log_files == 0 {
        log_files += 1;
        tar.file(
            &format!("{base}/delivery-log/{log_files:04}.jsonl"),
            &log_lines,
        )
        .map_err(io)?;
    }
    tar.file(
        &format!("{base}/api-requests.json"),
        &pretty(&api_requests)?,
    )
    .map_err(io)?;
    if outbox_in_file > 0 || outbox_files == 0 {
        outbox_files += 1;
        tar.file(
            &format!("{base}/webhook-outbox/{outbox_files:04}.jsonl"),
            &outbox,
        )
        .map_err(io)?;
    }
    if dmarc_in_file > 0 || dmarc_files == 0 {
        dmarc_files += 1;
        tar.file(
            &format!("{base}/dmarc-reports/{dmarc_files:04}.jsonl"),
            &dmarc,
        )
        .map_err(io)?;
    }
    tar.file(&format!("{base}/messages/index.json"), &pretty(&envelopes)?)
        .map_err(io)?;
    let manifest = ExportManifest {
        format: FORMAT.into(),
        tenant: part.info.tenant.clone(),
        created_at,
        messages,
        delivery_log_records: log_records,
        domains: part.domains.len() as u64,
        credentials: part.credentials.len() as u64,
        suppression_entries: part.suppression.len() as u64,
        access_log_entries: part.access.len() as u64,
        files: tar.files().to_vec(),
    };
    tar.file(
        &format!("{base}/manifest.json"),
        &pretty(&export_format::manifest(&manifest))?,
    )
    .map_err(io)?;
    tar.finish().map_err(io)?;
    Ok((manifest, outbox_events))
}
