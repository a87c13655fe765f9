//! The streamed admin ops. Each answers a `stream` line, then frames, then a final
//! line saying whether what came before is complete; a failure after the frames
//! began still ends them properly, so the peer can tell a cut stream from a whole
//! one.
//!
//! - `tenant.export`: for each queued message of the tenant an `ExportItem::Message`
//!   (`{"id","envelope"}`) and its `Body` exactly as queued, then every delivery log
//!   record of the tenant as `Log`, its kept API answers as `ApiRequest` and its
//!   webhook events not yet posted as `WebhookEvent` and the DMARC reports received
//!   for its domains as `DmarcReport`; final
//!   `exported {messages, log_records}`.
//! - `backup.dump`: the spool dump (records still sealed) is written to a private
//!   temporary file beside the spool first, so that writers are held off only for a
//!   local write, not for as long as the peer takes to read; then that file is
//!   streamed and removed, also when anything fails. Final `dumped {records, bytes}`.

use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::net::UnixStream;

use way2mail_daemon::files::Scratch;
use way2mail_queue::Spool;
use way2mail_wire::mta_admin::{write_export_item, AdminResult, ExportItem};
use way2mail_wire::protocol::{ErrorBody, ErrorCode};
use way2mail_wire::stream::FrameWriter;

use super::answer::{failure, internal, write};

/// What the dump's scratch files beside the spool are called (`.spool.dump-…`).
pub(super) const DUMP_SCRATCH: &str = "dump";

/// Why a stream stopped early.
enum Stopped {
    /// Writing to the peer failed: the connection is over.
    Peer(io::Error),
    /// Our side failed; the frames are ended and the final line says why.
    Ours(ErrorBody),
}

impl From<way2mail_queue::Error> for Stopped {
    fn from(e: way2mail_queue::Error) -> Stopped {
        Stopped::Ours(internal("reading the spool", &e))
    }
}

/// Ends the frames and writes the final line. `Ok(code)` is the outcome for the log
/// line; `Err` means the peer is gone.
fn finish(
    frames: FrameWriter<&mut UnixStream>,
    id: u64,
    result: Result<AdminResult, Stopped>,
) -> io::Result<Result<(), ErrorCode>> {
    let answer = match result {
        Err(Stopped::Peer(e)) => return Err(e),
        Err(Stopped::Ours(e)) => Err(e),
        Ok(done) => Ok(done),
    };
    let out = frames.finish()?;
    let outcome = answer.as_ref().map(|_| ()).map_err(|e| e.code);
    write(out, id, answer)?;
    Ok(outcome)
}

/// `tenant.export`.
pub(super) fn tenant(
    spool: &Spool,
    tenant: &str,
    id: u64,
    out: &mut UnixStream,
) -> io::Result<Result<(), ErrorCode>> {
    write(out, id, Ok(AdminResult::Stream))?;
    let mut frames = FrameWriter::new(&mut *out);
    let result = export_items(spool, tenant, &mut frames);
    finish(frames, id, result)
}

fn item(frames: &mut impl Write, item: &ExportItem) -> Result<(), Stopped> {
    write_export_item(frames, item).map_err(Stopped::Peer)
}

fn encode(value: &impl serde::Serialize) -> Result<Vec<u8>, Stopped> {
    serde_json::to_vec(value)
        .map_err(|e| Stopped::Ours(failure(ErrorCode::Internal, format!("encoding: {e}"))))
}

/// Delivery log records read at a time for an export.
const LOG_PAGE: usize = 1_000;

fn export_items(
    spool: &Spool,
    tenant: &str,
    frames: &mut impl Write,
) -> Result<AdminResult, Stopped> {
    let messages = spool.for_each_tenant_message(tenant, |id, envelope, body| {
        let head = encode(&serde_json::json!({
            "id": id.to_string(),
            "envelope": envelope,
        }))?;
        item(frames, &ExportItem::Message(head))?;
        item(frames, &ExportItem::Body(body))
    })?;
    // The log a page at a time: an export holds one page, whatever the log's size.
    let mut log_records = 0u64;
    let mut after = None;
    loop {
        let page = spool.delivery_log_page(tenant, after.as_ref(), u64::MAX, LOG_PAGE)?;
        let Some((last, _)) = page.last() else {
            break;
        };
        after = Some(*last);
        for (_, record) in &page {
            item(frames, &ExportItem::Log(encode(record)?))?;
            log_records += 1;
        }
    }
    for kept in spool.idempotency_of(tenant)? {
        item(frames, &ExportItem::ApiRequest(encode(&kept)?))?;
    }
    // Webhook events not yet posted, a page at a time too.
    let mut after = None;
    loop {
        let page = spool.webhook_outbox_page(tenant, after.as_ref(), LOG_PAGE)?;
        let Some((last, _)) = page.last() else {
            break;
        };
        after = Some(*last);
        for (key, entry) in &page {
            let line = encode(&serde_json::json!({
                "id": key.name(),
                "webhook": entry.webhook,
                "event": entry.event,
                "created_ms": key.created_ms,
                "attempts": entry.attempts,
                "next_attempt_ms": entry.next_attempt_ms,
                "last_error": entry.last_error,
            }))?;
            item(frames, &ExportItem::WebhookEvent(line))?;
        }
    }
    // DMARC reports, one at a time.
    let mut failed = None;
    spool.dmarc_reports(tenant, 0, |report: serde_json::Value| {
        let written = encode(&report).and_then(|json| item(frames, &ExportItem::DmarcReport(json)));
        match written {
            Ok(()) => std::ops::ControlFlow::Continue(()),
            Err(e) => {
                failed = Some(e);
                std::ops::ControlFlow::Break(())
            }
        }
    })?;
    if let Some(e) = failed {
        return Err(e);
    }
    Ok(AdminResult::Exported {
        messages,
        log_records,
    })
}

/// `backup.dump`.
pub(super) fn dump(
    spool: &Spool,
    id: u64,
    out: &mut UnixStream,
) -> io::Result<Result<(), ErrorCode>> {
    let written = Scratch::beside(spool.path(), DUMP_SCRATCH)
        .map_err(|e| {
            failure(
                ErrorCode::Internal,
                format!("creating a temporary dump file beside the spool: {e}"),
            )
        })
        .and_then(|mut tmp| {
            let stats = {
                let mut buffered = BufWriter::with_capacity(1 << 20, &mut tmp.file);
                spool
                    .dump(&mut buffered)
                    .map_err(|e| internal("dumping the spool", &e))?
            };
            tmp.file
                .seek(SeekFrom::Start(0))
                .map_err(|e| failure(ErrorCode::Internal, format!("rewinding the dump: {e}")))?;
            Ok((tmp, stats))
        });
    let (mut tmp, stats) = match written {
        Ok(done) => done,
        Err(e) => {
            let code = e.code;
            write(out, id, Err(e))?;
            return Ok(Err(code));
        }
    };
    write(out, id, Ok(AdminResult::Stream))?;
    let mut frames = FrameWriter::new(&mut *out);
    let result = copy(&mut tmp.file, &mut frames).map(|()| AdminResult::Dumped {
        records: stats.records,
        bytes: stats.bytes,
    });
    // Gone before the final line: a peer that got its answer finds no copy left.
    drop(tmp);
    finish(frames, id, result)
}

/// Copies the dump file to the peer, telling a read failure (ours) from a write
/// failure (the peer's).
fn copy(file: &mut File, frames: &mut impl Write) -> Result<(), Stopped> {
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(Stopped::Ours(failure(
                    ErrorCode::Internal,
                    format!("reading the temporary dump file: {e}"),
                )))
            }
        };
        frames.write_all(&buf[..n]).map_err(Stopped::Peer)?;
    }
}
