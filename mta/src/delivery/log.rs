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
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .mode(0o640)
        .open(path)
        .with_context(|| format!("delivery.log_file: opening {}", path.display()))?;
    end_torn_line(&mut file)
        .with_context(|| format!("delivery.log_file: repairing {}", path.display()))?;
    let (tx, rx) = crossbeam_channel::unbounded();
    std::thread::Builder::new()
        .name("delivery-log".into())
        .spawn(move || write_lines(BufWriter::new(file), &rx))
        .context("starting the delivery log thread")?;
    Ok(tx)
}

/// A process killed in the middle of a write can leave a last line without its
/// newline; end it, so that the next record starts a line of its own.
fn end_torn_line(file: &mut std::fs::File) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(());
    }
    let mut last = [0u8];
    file.seek(SeekFrom::Start(len - 1))?;
    file.read_exact(&mut last)?;
    if last[0] != b'\n' {
        file.write_all(b"\n")?;
    }
    Ok(())
}

fn write_lines(mut out: impl Write, rx: &Receiver<DeliveryRecord>) {
    let mut line = Vec::with_capacity(512);
    loop {
        match rx.recv_timeout(FLUSH_EVERY) {
            Ok(record) => {
                // Serialised whole first: the buffered writer then only ever hands
                // complete lines to the file.
                line.clear();
                let written = serde_json::to_writer(&mut line, &record)
                    .map_err(std::io::Error::from)
                    .and_then(|()| {
                        line.push(b'\n');
                        out.write_all(&line)
                    });
                if let Err(e) = written {
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
