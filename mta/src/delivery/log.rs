//! Where delivery outcomes are reported besides the spool: one INFO line each in the
//! daemon's log (`delivered`, `deferred`, `bounced`, `expired`), and one typed JSON
//! line each in the delivery log file when `[delivery] log_file` is set. Both are
//! written by one thread of their own, so that neither the scheduler nor a core ever
//! waits on stderr or the file. The records of record are the spool's time-keyed
//! log tree (written atomically with the completion), which retention purges by
//! range; these two are copies.
//!
//! The channel to the thread is bounded: when the log cannot keep up (stderr
//! blocked), outcomes beyond the bound are counted and dropped from the copies, and
//! the count is reported in a WARN line once the thread catches up. Mail is never
//! held up by its log.
//!
//! Log lines name the recipient's domain; the full address only with
//! `[log] recipients = true` (the daemon's log is outside retention and erasure),
//! and then a peer's reply that quotes the address keeps it too.

use std::fs::{DirBuilder, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use way2mail_queue::{DeliveryOutcome, DeliveryRecord};
use way2mail_smtp::EnhancedCode;

/// Buffered lines reach the file at least this often.
const FLUSH_EVERY: Duration = Duration::from_millis(500);
/// Outcomes waiting for the log thread at most; beyond, they are counted and dropped.
const QUEUE: usize = 16_384;

/// One outcome as the log thread reports it: the delivery log's record and what the
/// log line adds.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub record: DeliveryRecord,
    pub tenant: Option<String>,
    /// The peer's reply code, when a reply decided.
    pub code: Option<u16>,
    pub enhanced: EnhancedCode,
}

/// The scheduler's end of the log thread.
#[derive(Debug, Clone)]
pub struct OutcomeLog {
    tx: Sender<Outcome>,
    dropped: Arc<AtomicU64>,
}

impl OutcomeLog {
    /// Hands `outcome` to the log thread; never blocks.
    pub fn send(&self, outcome: Outcome) {
        match self.tx.try_send(outcome) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => {}
            Err(TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// How the log thread writes.
#[derive(Debug, Clone, Default)]
pub struct LogSettings<'a> {
    /// `[delivery] log_file`; `None`: no file.
    pub file: Option<&'a Path>,
    /// `[log] recipients`: full addresses in the log lines.
    pub recipients: bool,
}

/// Starts the log thread (opening, creating with mode 0640, the file when one is
/// configured). Dropping every sender ends the thread after it wrote what it had.
pub fn start(settings: LogSettings<'_>) -> Result<OutcomeLog> {
    let file = match settings.file {
        Some(path) => Some(BufWriter::new(open(path)?)),
        None => None,
    };
    let (tx, rx) = crossbeam_channel::bounded(QUEUE);
    let dropped = Arc::new(AtomicU64::new(0));
    let thread = Writer {
        file,
        recipients: settings.recipients,
        dropped: Arc::clone(&dropped),
        reported: 0,
    };
    std::thread::Builder::new()
        .name("delivery-log".into())
        .spawn(move || thread.run(&rx))
        .context("starting the delivery log thread")?;
    Ok(OutcomeLog { tx, dropped })
}

fn open(path: &Path) -> Result<std::fs::File> {
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
    Ok(file)
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

struct Writer<W> {
    file: Option<W>,
    recipients: bool,
    dropped: Arc<AtomicU64>,
    reported: u64,
}

impl<W: Write> Writer<W> {
    fn run(mut self, rx: &Receiver<Outcome>) {
        let mut line = Vec::with_capacity(512);
        loop {
            match rx.recv_timeout(FLUSH_EVERY) {
                Ok(outcome) => {
                    self.log_line(&outcome);
                    self.write_record(&mut line, &outcome.record);
                }
                Err(RecvTimeoutError::Timeout) => {
                    self.report_dropped();
                    if let Some(file) = &mut self.file {
                        let _ = file.flush();
                    }
                }
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        self.report_dropped();
        if let Some(file) = &mut self.file {
            let _ = file.flush();
        }
    }

    /// The INFO line: `delivered id=… tenant=… domain=… attempt=… next_hop=… ip=…
    /// tls=… code=… enhanced=… reply="…" queue_ms=…` (absent values are left out).
    fn log_line(&self, o: &Outcome) {
        let r = &o.record;
        let domain = r.recipient.rsplit_once('@').map_or("", |(_, d)| d);
        let recipient = self.recipients.then_some(r.recipient.as_str());
        let reply = r.reply.as_deref().map(|text| {
            if self.recipients {
                std::borrow::Cow::Borrowed(text)
            } else {
                redact(text, &r.recipient)
            }
        });
        let outcome = outcome_word(&r.outcome);
        tracing::info!(
            target: "way2mail::delivery",
            id = %r.message_id,
            tenant = o.tenant.as_deref(),
            domain,
            recipient,
            attempt = r.attempt,
            next_hop = r.next_hop.as_deref(),
            ip = r.ip.map(tracing::field::display),
            tls = r.tls.as_deref(),
            code = o.code,
            enhanced = %o.enhanced,
            reply = reply.as_deref(),
            queue_ms = r.queue_time_ms,
            "{outcome}"
        );
    }

    fn write_record(&mut self, line: &mut Vec<u8>, record: &DeliveryRecord) {
        let Some(file) = &mut self.file else {
            return;
        };
        // Serialised whole first: the buffered writer then only ever hands complete
        // lines to the file.
        line.clear();
        let written = serde_json::to_writer(&mut *line, record)
            .map_err(std::io::Error::from)
            .and_then(|()| {
                line.push(b'\n');
                file.write_all(line)
            });
        if let Err(e) = written {
            tracing::error!(error = %e, "writing the delivery log");
        }
    }

    fn report_dropped(&mut self) {
        let dropped = self.dropped.load(Ordering::Relaxed);
        if dropped > self.reported {
            tracing::warn!(
                dropped = dropped - self.reported,
                "delivery outcomes left out of the log and the delivery log file: the \
                 log could not keep up (the spool's delivery log has them all)"
            );
            self.reported = dropped;
        }
    }
}

/// The word a log line starts with.
pub fn outcome_word(outcome: &DeliveryOutcome) -> &'static str {
    outcome.name()
}

/// `text` with every occurrence of `address` (any case) replaced by its domain
/// behind `***@`: peers quote the recipient in their replies.
fn redact<'t>(text: &'t str, address: &str) -> std::borrow::Cow<'t, str> {
    let Some((_, domain)) = address.rsplit_once('@') else {
        return std::borrow::Cow::Borrowed(text);
    };
    let lower_text = text.to_ascii_lowercase();
    let lower_address = address.to_ascii_lowercase();
    if !lower_text.contains(&lower_address) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    while let Some(found) = lower_text[at..].find(&lower_address) {
        out.push_str(&text[at..at + found]);
        out.push_str("***@");
        out.push_str(domain);
        at += found + address.len();
    }
    out.push_str(&text[at..]);
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_lose_the_address_but_keep_the_domain() {
        assert_eq!(
            redact(
                "550 5.1.1 <Bob@Dest.Test>: user unknown; bob@dest.test",
                "bob@dest.test"
            ),
            "550 5.1.1 <***@dest.test>: user unknown; ***@dest.test"
        );
        assert_eq!(redact("250 2.0.0 ok", "bob@dest.test"), "250 2.0.0 ok");
        assert_eq!(redact("250 ok", "postmaster"), "250 ok");
    }

    fn record(outcome: DeliveryOutcome) -> Outcome {
        Outcome {
            record: DeliveryRecord {
                time_ms: 1,
                outcome,
                message_id: "id1".into(),
                recipient: "bob@dest.test".into(),
                next_hop: None,
                ip: None,
                tls: None,
                reply: Some("250 ok".into()),
                attempt: 1,
                queue_time_ms: 5,
                tags: Vec::new(),
                metadata: Default::default(),
                category: None,
                scan: None,
            },
            tenant: None,
            code: Some(250),
            enhanced: EnhancedCode::new(2, 0, 0),
        }
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_blocking() {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let log = OutcomeLog {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
        };
        log.send(record(DeliveryOutcome::Delivered));
        log.send(record(DeliveryOutcome::Bounced));
        log.send(record(DeliveryOutcome::Deferred));
        assert_eq!(log.dropped.load(Ordering::Relaxed), 2);
        assert_eq!(rx.len(), 1);
    }

    #[test]
    fn records_reach_the_file_as_json_lines() {
        let (tx, rx) = crossbeam_channel::bounded(4);
        let writer = Writer {
            file: Some(Vec::new()),
            recipients: false,
            dropped: Arc::new(AtomicU64::new(0)),
            reported: 0,
        };
        tx.send(record(DeliveryOutcome::Delivered)).unwrap();
        drop(tx);
        let mut w = writer;
        let mut line = Vec::new();
        while let Ok(o) = rx.try_recv() {
            w.write_record(&mut line, &o.record);
        }
        let text = String::from_utf8(w.file.unwrap()).unwrap();
        let back: DeliveryRecord = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(back.message_id, "id1");
        assert!(text.ends_with('\n'));
    }
}
