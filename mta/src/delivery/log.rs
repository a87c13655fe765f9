//! The delivery log file: one typed JSON line per outcome (delivered, deferred,
//! bounced, expired), written by its own thread so that neither the scheduler nor a
//! core ever waits on it. The same records are kept in the spool's time-keyed log
//! tree (written atomically with the completion), which retention purges by range.

use std::fs::{DirBuilder, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use way2mail_queue::DeliveryRecord;

/// Buffered lines reach the file at least this often.
const FLUSH_EVERY: Duration = Duration::from_millis(500);

/// Opens (creating, mode 0640) the log file and starts its writer thread. Dropping
/// every sender ends the thread after it wrote what it had.
pub fn start(path: &Path) -> Result<Sender<DeliveryRecord>> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(dir)
            .with_context(|| format!("delivery.log_file: creating {}", dir.display()))?;
    }
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
        .with_context(|| format!("delivery.log_file: opening {}", path.display()))?;
    let (tx, rx) = crossbeam_channel::unbounded();
    std::thread::Builder::new()
        .name("delivery-log".into())
        .spawn(move || write_lines(BufWriter::new(file), &rx))
        .context("starting the delivery log thread")?;
    Ok(tx)
}

fn write_lines(mut out: impl Write, rx: &Receiver<DeliveryRecord>) {
    loop {
        match rx.recv_timeout(FLUSH_EVERY) {
            Ok(record) => {
                if let Err(e) = serde_json::to_writer(&mut out, &record)
                    .map_err(std::io::Error::from)
                    .and_then(|()| out.write_all(b"\n"))
                {
                    tracing::error!(error = %e, "writing the delivery log");
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                let _ = out.flush();
            }
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    let _ = out.flush();
}
