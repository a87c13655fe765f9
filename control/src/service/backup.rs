//! `backup.create`: a consistent online backup of the control store and the spool,
//! sealed under the backup key (`crate::backup` has the format), streamed to the
//! operator's CLI, which writes the file.
//!
//! The control store is copied under the writer lock into a private file beside
//! the store (sealed records only), so other requests wait for a local copy rather
//! than for the operator's connection; the MTA does the same with its spool
//! (`backup.dump`). Both copies are points in time; the MTA's is taken a moment
//! after control's.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};

use way2mail_daemon::files::Scratch;
use way2mail_seal::MasterKey;

use super::context::StreamOut;
use super::context::{Failure, Identity};
use super::writer::Service;
use crate::backup::{end_control, write_control_record, ArchiveWriter, BACKUP_KEY};
use way2mail_wire::client::ClientError;
use way2mail_wire::mta_admin::{AdminClient, AdminOp, AdminResult};
use way2mail_wire::protocol::{BackupInfo, ErrorBody, ErrorCode, Response};

/// What the store copies beside control's store are called (`.control.backup-…`).
pub(crate) const BACKUP_SCRATCH: &str = "backup";

pub(crate) fn create(
    service: &Service,
    who: &Identity,
    reason: Option<String>,
    out: &mut dyn StreamOut,
) -> Result<Response, ErrorBody> {
    let key_file = service.settings().backup_key_file.clone();
    let mta = service.mta_client();
    let mut copied = None;
    service.locked(who, "backup.create", None, reason.clone(), |ctx| {
        if let Err(why) = &mta {
            return Err(Failure::new(
                ErrorCode::Unavailable,
                format!("a backup holds the spool too: {why}"),
            ));
        }
        // Its errors name the key and its file.
        MasterKey::load_or_create_named(&key_file, BACKUP_KEY)
            .map_err(|e| Failure::internal(e.to_string()))?;
        let io = |e: std::io::Error| Failure::internal(format!("copying the control store: {e}"));
        let mut temp = Scratch::beside(service.store().dir(), BACKUP_SCRATCH).map_err(io)?;
        let mut w = BufWriter::new(&mut temp.file);
        let records = ctx.store.for_each_raw(|tree, k, v| {
            write_control_record(&mut w, tree, k, v)
                .map_err(|e| crate::error::Error::Crypto(format!("writing the control copy: {e}")))
        })?;
        end_control(&mut w).map_err(io)?;
        w.into_inner().map_err(|e| io(e.into_error()))?;
        ctx.detail = Some(format!(
            "backup started: {records} control store records copied"
        ));
        copied = Some((temp, records));
        Ok(Response::Done)
    })?;
    let (Some((temp, control_records)), Ok(mut client)) = (copied, mta) else {
        return Err(Failure::internal("backup without its copy").body);
    };
    let written = write(&key_file, &temp, control_records, &mut client, out);
    drop(temp);
    let summary = match &written {
        Ok(b) => Ok(format!(
            "backup written: {} bytes, {} control and {} spool records, key {}",
            b.bytes, b.control_records, b.spool_records, b.key_fingerprint
        )),
        Err(f) => Err(f.detail()),
    };
    service.locked(who, "backup.create", None, reason, |ctx| match summary {
        Ok(detail) => {
            ctx.detail = Some(detail);
            Ok(Response::Done)
        }
        Err(detail) => Err(Failure::internal(format!("backup cut short: {detail}"))),
    })?;
    written.map(Response::BackupCreated).map_err(|f| f.body)
}

fn write(
    key_file: &std::path::Path,
    temp: &Scratch,
    control_records: u64,
    client: &mut AdminClient,
    out: &mut dyn StreamOut,
) -> Result<BackupInfo, Failure> {
    let io = |e: std::io::Error| Failure::internal(format!("writing the backup: {e}"));
    let key = MasterKey::load_or_create_named(key_file, BACKUP_KEY)
        .map_err(|e| Failure::internal(e.to_string()))?;
    out.start().map_err(io)?;
    let created_at = way2mail_daemon::time::now_secs();
    let mut archive = ArchiveWriter::new(&mut *out, &key, created_at).map_err(io)?;
    archive.write_all(b"C").map_err(io)?;
    let mut copy = BufReader::new(File::open(temp.path()).map_err(io)?);
    std::io::copy(&mut copy, &mut archive).map_err(io)?;
    archive.write_all(b"S").map_err(io)?;
    let dumped = client.call_stream(AdminOp::BackupDump, |input| {
        std::io::copy(input, &mut archive).map(|_| ())
    });
    let spool_records = match dumped {
        Ok(((), AdminResult::Dumped { records, .. })) => records,
        Ok((_, other)) => {
            return Err(Failure::internal(format!(
                "the MTA ended its dump with {other:?}"
            )))
        }
        Err(ClientError::Remote(e)) => {
            return Err(Failure::new(e.code, format!("the MTA: {}", e.message)))
        }
        Err(e) => return Err(Failure::internal(format!("the spool's part: {e}"))),
    };
    archive.write_all(b"E").map_err(io)?;
    let fingerprint = archive.header().key_fingerprint.clone();
    let (_, bytes) = archive.finish().map_err(io)?;
    Ok(BackupInfo {
        created_at,
        bytes,
        control_records,
        spool_records,
        key_fingerprint: fingerprint,
    })
}
