//! The MTA's admin socket: how control reaches the data only the MTA holds (the
//! spool: queued messages and the delivery log) to export, count, erase or back it
//! up, and runs the MTA's retention sweep on demand. JSON lines like the control
//! socket, with streamed answers (`stream.rs`) for the export and the backup dump.
//! Only control's uid may connect (`[admin] allowed_uids` in the MTA); operators go
//! through control, which checks their role and writes the audit log.
//!
//! ```text
//!   -> {"v":1,"id":1,"op":"tenant.erase","args":{"tenant":"acme"}}
//!   <- {"v":1,"id":1,"ok":true,"result":{"kind":"erased","messages":3,…}}
//! ```
//!
//! `tenant.export` streams items (`ExportItem`): each message's envelope, then its
//! body, then every delivery log record of the tenant. `backup.dump` streams the
//! spool dump format (docs/spool-format.md), whose records stay sealed throughout.

use std::io::{self, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::answer::{connect_lines, read_answer, ClientError, ErrorBody};
use crate::queue::{
    QueueAction, QueueChangeReport, QueueFilter, QueueListing, QueueLogEntry, QueueMessage,
    QueueSelection, QueueSummary,
};
use crate::stream::FrameReader;

/// The admin protocol version this build speaks.
pub const VERSION: u32 = 1;

/// Longest request line the MTA accepts.
pub const MAX_REQUEST_BYTES: usize = 4096;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AdminRequest {
    pub v: u32,
    #[serde(default)]
    pub id: u64,
    #[serde(flatten)]
    pub op: AdminOp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", content = "args", deny_unknown_fields)]
pub enum AdminOp {
    #[serde(rename = "hello")]
    Hello,
    /// What the spool holds of a tenant, counted without opening a record.
    #[serde(rename = "tenant.inventory")]
    TenantInventory { tenant: String },
    /// Streamed: the tenant's queued messages and delivery log ([`ExportItem`]s).
    #[serde(rename = "tenant.export")]
    TenantExport { tenant: String },
    /// Shreds the tenant's data key and deletes its spool records.
    #[serde(rename = "tenant.erase")]
    TenantErase { tenant: String },
    /// Runs the retention sweep now and answers what it removed.
    #[serde(rename = "retention.run")]
    RetentionRun,
    /// Streamed: a consistent dump of every spool record, still sealed.
    #[serde(rename = "backup.dump")]
    BackupDump,
    /// The configured smart-host routes (delivery partners), without credentials.
    #[serde(rename = "routes")]
    Routes,
    /// Messages per recipient domain by age (`queue summary`).
    #[serde(rename = "queue.summary")]
    QueueSummary {
        #[serde(default)]
        filter: QueueFilter,
    },
    /// The matching messages in arrival order, at most `limit`.
    #[serde(rename = "queue.list")]
    QueueList {
        #[serde(default)]
        filter: QueueFilter,
        #[serde(default)]
        limit: Option<u64>,
    },
    /// One message: envelope, recipients' states and its delivery log records.
    #[serde(rename = "queue.show")]
    QueueShow { id: String },
    /// Hold, release, retry, bounce or delete the selected messages.
    #[serde(rename = "queue.change")]
    QueueChange {
        action: QueueAction,
        selection: QueueSelection,
        #[serde(default)]
        dry_run: bool,
    },
    /// Delivery log records (`spool log` while the daemon runs), newest `limit`.
    #[serde(rename = "delivery.log")]
    DeliveryLog {
        #[serde(default)]
        message: Option<String>,
        #[serde(default)]
        recipient: Option<String>,
        #[serde(default)]
        since_ms: Option<u64>,
        #[serde(default)]
        limit: Option<u64>,
    },
    /// The tenant's volume and outcomes from its delivery log since `since_ms`.
    #[serde(rename = "deliverability")]
    Deliverability { tenant: String, since_ms: u64 },
    /// The DMARC aggregate reports the MTA received for `domain` of `tenant`
    /// whose date range ends at or after `since_ms`, summed.
    #[serde(rename = "dmarc")]
    Dmarc {
        tenant: String,
        domain: String,
        since_ms: u64,
    },
    /// Stops taking mail (`/readyz` 503, listeners closed) and delivers the queue;
    /// with `stop_when_empty`, the daemon stops once nothing is queued.
    #[serde(rename = "drain")]
    Drain {
        #[serde(default)]
        stop_when_empty: bool,
        /// Hand the queue over to this peer (`HOST:PORT` of its `[handover]
        /// listen`) instead of delivering it here.
        #[serde(default)]
        handover: Option<String>,
        /// The name the peer's certificate must carry (default: HOST).
        #[serde(default)]
        peer_name: Option<String>,
    },
}

impl AdminOp {
    pub fn name(&self) -> &'static str {
        match self {
            AdminOp::Hello => "hello",
            AdminOp::TenantInventory { .. } => "tenant.inventory",
            AdminOp::TenantExport { .. } => "tenant.export",
            AdminOp::TenantErase { .. } => "tenant.erase",
            AdminOp::RetentionRun => "retention.run",
            AdminOp::BackupDump => "backup.dump",
            AdminOp::Routes => "routes",
            AdminOp::QueueSummary { .. } => "queue.summary",
            AdminOp::QueueList { .. } => "queue.list",
            AdminOp::QueueShow { .. } => "queue.show",
            AdminOp::QueueChange { .. } => "queue.change",
            AdminOp::DeliveryLog { .. } => "delivery.log",
            AdminOp::Deliverability { .. } => "deliverability",
            AdminOp::Dmarc { .. } => "dmarc",
            AdminOp::Drain { .. } => "drain",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AdminResponse {
    pub v: u32,
    pub id: u64,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<AdminResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AdminResult {
    Hello {
        daemon_version: String,
        /// `uid:N` of the caller as the MTA saw it.
        caller: String,
    },
    /// Frames follow, then the final response line.
    Stream,
    Inventory(MtaInventory),
    /// The final line of `tenant.export`.
    Exported {
        messages: u64,
        log_records: u64,
    },
    Erased(MtaErasure),
    Swept(SweepReport),
    /// The final line of `backup.dump`.
    Dumped {
        records: u64,
        bytes: u64,
    },
    Routes {
        routes: Vec<RouteInfo>,
    },
    QueueSummary(QueueSummary),
    QueueListing(QueueListing),
    QueueMessage {
        message: QueueMessage,
        log: Vec<QueueLogEntry>,
    },
    QueueChanged(QueueChangeReport),
    DeliveryLog {
        records: Vec<QueueLogEntry>,
        /// Records that matched; more than `records` holds when the limit cut.
        matched: u64,
    },
    Deliverability(DeliverabilityReport),
    Dmarc(DmarcSummary),
    /// The node drains: `started` is false when it already did; `queued` messages
    /// are left to deliver.
    Draining {
        started: bool,
        queued: u64,
    },
}

/// One domain's DMARC aggregate reports, summed (`way2mail domain dmarc`, `GET
/// /v1/domains/{domain}/dmarc`): who reports, which IPs send mail with the domain
/// in `From:`, and how much of it a `p=reject` policy would refuse today.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DmarcSummary {
    pub domain: String,
    /// Reports counted: those whose date range ends at or after this (Unix ms).
    pub since_ms: u64,
    pub until_ms: u64,
    /// Reports counted, each (reporter, report id) once.
    pub reports: u64,
    /// Reports received again (reporters resend), not counted twice.
    pub duplicate_reports: u64,
    /// The policy (`p=`) the latest report saw published, when there is one.
    #[serde(default)]
    pub published_policy: Option<String>,
    /// Reporters, most messages first (at most 100).
    pub reporters: Vec<DmarcReporter>,
    /// Reporters past the 100 listed.
    pub other_reporters: u64,
    /// Messages reported.
    pub messages: u64,
    /// Messages that passed DMARC (DKIM or SPF passed aligned).
    pub passing: u64,
    /// `messages - passing`: what `p=reject` would have refused.
    pub failing: u64,
    /// Sending IPs, most messages first (at most 100).
    pub sources: Vec<DmarcSource>,
    /// The IPs past the 100 listed, summed (`ip` is how many they are).
    pub other_sources: DmarcSource,
}

/// One reporter in a [`DmarcSummary`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DmarcReporter {
    pub org_name: String,
    pub reports: u64,
    pub messages: u64,
}

/// One sending IP in a [`DmarcSummary`]: message counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DmarcSource {
    pub ip: String,
    pub messages: u64,
    /// DKIM passed aligned.
    pub dkim_aligned: u64,
    /// SPF passed aligned.
    pub spf_aligned: u64,
    /// DMARC passed (either).
    pub passing: u64,
    /// The dispositions the receivers applied.
    pub none: u64,
    pub quarantine: u64,
    pub reject: u64,
}

/// A tenant's mail since a time, from the MTA's delivery log (`way2mail tenant
/// deliverability`). Counts are of (message, recipient) outcomes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliverabilityReport {
    pub tenant: String,
    pub since_ms: u64,
    pub until_ms: u64,
    /// Distinct (message, recipient) pairs with a record in the window.
    pub volume: u64,
    pub delivered: u64,
    /// Recipients with at least one deferral (not counted once per attempt).
    pub deferred: u64,
    pub bounced: u64,
    pub expired: u64,
    /// Bounced, expired and asynchronously bounced recipients by category.
    pub bounced_by_category: std::collections::BTreeMap<String, u64>,
    pub async_bounced: u64,
    pub complaints: u64,
    pub unsubscribes: u64,
    /// Recipients refused because they were on the suppression list.
    pub suppressed: u64,
    /// Addresses put on the suppression list in the window (filled by control).
    #[serde(default)]
    pub suppressions_added: u64,
    /// The receiving domains with the most recipients, most first (at most 20).
    pub domains: Vec<DomainOutcomes>,
}

/// One receiving domain in a [`DeliverabilityReport`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainOutcomes {
    pub domain: String,
    pub volume: u64,
    pub delivered: u64,
    pub deferred: u64,
    pub bounced: u64,
    pub complaints: u64,
}

/// What the spool holds of one tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MtaInventory {
    /// The tenant's data key id in the MTA's keyring (hex), when it has one.
    pub key_id: Option<String>,
    pub messages: u64,
    /// Sealed size of the queued messages' bodies.
    pub bytes: u64,
    /// Unix milliseconds.
    pub oldest_message_ms: Option<u64>,
    pub log_records: u64,
    pub oldest_log_ms: Option<u64>,
    /// Set when the tenant was erased in the MTA (its key shredded).
    pub erased_at_ms: Option<u64>,
}

/// What `tenant.erase` removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MtaErasure {
    /// The shredded key id (hex); `None` when the tenant never stored anything.
    pub key_id: Option<String>,
    pub messages: u64,
    pub log_records: u64,
    pub erased_at_ms: u64,
}

/// What one retention sweep of the MTA removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SweepReport {
    /// Unix milliseconds when the sweep started.
    pub started_ms: u64,
    /// One entry per tenant (`tenant: None`: mail of no tenant) that lost something.
    pub entries: Vec<SweepEntry>,
    /// Records of erased tenants still found and deleted.
    pub erased_messages: u64,
    pub erased_log_records: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SweepEntry {
    pub tenant: Option<String>,
    /// Queued messages older than the content period, removed.
    pub messages_removed: u64,
    /// Old enough but in delivery at that moment: left for the next sweep.
    pub messages_in_delivery: u64,
    /// Delivery log records older than the log period, removed.
    pub log_records_removed: u64,
}

/// One `[[route]]` of the MTA: where mail for some domains is handed over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteInfo {
    /// The recipient domains it applies to, as configured (`*` for all).
    pub domains: Vec<String>,
    /// `host:port` of the next hops, in order.
    pub hosts: Vec<String>,
    /// `opportunistic`, `required`, `verified`, …: the route's TLS policy.
    pub tls: String,
    /// Whether the MTA authenticates to it.
    pub authenticated: bool,
}

/// One item of a `tenant.export` stream: a kind byte, a u32 BE length, the bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportItem {
    /// `{"id":"…","envelope":{…}}` (the spool's envelope, delivery state included).
    Message(Vec<u8>),
    /// The body of the message announced just before, exactly as queued.
    Body(Vec<u8>),
    /// One delivery log record, JSON.
    Log(Vec<u8>),
    /// One HTTPS API request's kept answer (an `Idempotency-Key`), JSON.
    ApiRequest(Vec<u8>),
    /// One webhook event not yet delivered (the outbox), JSON:
    /// `{"webhook","event","created_ms","attempts","next_attempt_ms","last_error"}`.
    WebhookEvent(Vec<u8>),
    /// One DMARC aggregate report received for a domain of the tenant, JSON (the
    /// report as read: reporter, period in Unix seconds, published policy, rows).
    DmarcReport(Vec<u8>),
}

/// Largest export item accepted (a body is at most the MTA's message size limit).
pub const MAX_EXPORT_ITEM: u32 = 1 << 30;

pub fn write_export_item(out: &mut impl Write, item: &ExportItem) -> io::Result<()> {
    let (kind, bytes) = match item {
        ExportItem::Message(b) => (1u8, b),
        ExportItem::Body(b) => (2, b),
        ExportItem::Log(b) => (3, b),
        ExportItem::ApiRequest(b) => (4, b),
        ExportItem::WebhookEvent(b) => (5, b),
        ExportItem::DmarcReport(b) => (6, b),
    };
    let len = u32::try_from(bytes.len()).map_err(|_| io::Error::other("export item too large"))?;
    out.write_all(&[kind])?;
    out.write_all(&len.to_be_bytes())?;
    out.write_all(bytes)
}

/// The next item, or `None` at the end of the stream.
pub fn read_export_item<R: Read + ?Sized>(input: &mut R) -> io::Result<Option<ExportItem>> {
    let mut kind = [0u8; 1];
    if input.read(&mut kind)? == 0 {
        return Ok(None);
    }
    let mut len = [0u8; 4];
    input.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len);
    if len > MAX_EXPORT_ITEM {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "export item too large",
        ));
    }
    let mut bytes = vec![0u8; len as usize];
    input.read_exact(&mut bytes)?;
    match kind[0] {
        1 => Ok(Some(ExportItem::Message(bytes))),
        2 => Ok(Some(ExportItem::Body(bytes))),
        3 => Ok(Some(ExportItem::Log(bytes))),
        4 => Ok(Some(ExportItem::ApiRequest(bytes))),
        5 => Ok(Some(ExportItem::WebhookEvent(bytes))),
        6 => Ok(Some(ExportItem::DmarcReport(bytes))),
        k => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("export item of kind {k}"),
        )),
    }
}

/// A blocking client of the MTA's admin socket (used by control).
#[derive(Debug)]
pub struct AdminClient {
    path: PathBuf,
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    next_id: u64,
}

impl AdminClient {
    /// Connects, with `timeout` applied to every read and write.
    pub fn connect(path: &Path, timeout: Duration) -> Result<AdminClient, ClientError> {
        let (reader, writer) = connect_lines(path, timeout)?;
        Ok(AdminClient {
            path: path.to_owned(),
            reader,
            writer,
            next_id: 1,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn send(&mut self, op: AdminOp) -> Result<u64, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        let mut line = serde_json::to_vec(&AdminRequest { v: VERSION, id, op })
            .map_err(|e| ClientError::Protocol(format!("cannot encode request: {e}")))?;
        line.push(b'\n');
        self.writer.write_all(&line)?;
        Ok(id)
    }

    fn answer(&mut self, id: u64) -> Result<AdminResult, ClientError> {
        read_answer(&mut self.reader, id)
    }

    /// One request, one answer.
    pub fn call(&mut self, op: AdminOp) -> Result<AdminResult, ClientError> {
        let id = self.send(op)?;
        self.answer(id)
    }

    /// A streamed request: `consume` reads the frames (and should read them all;
    /// what it leaves is drained), then the final answer is returned with its value.
    pub fn call_stream<T>(
        &mut self,
        op: AdminOp,
        consume: impl FnOnce(&mut dyn Read) -> io::Result<T>,
    ) -> Result<(T, AdminResult), ClientError> {
        let id = self.send(op)?;
        match self.answer(id)? {
            AdminResult::Stream => {}
            other => {
                return Err(ClientError::Protocol(format!(
                    "expected a stream, got {other:?}"
                )))
            }
        }
        let mut frames = FrameReader::new(&mut self.reader);
        let value = consume(&mut frames);
        // The final line comes after the frames, whatever `consume` did.
        let drained = frames.drain();
        let value = value?;
        drained?;
        let last = self.answer(id)?;
        Ok((value, last))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_forms() {
        let r: AdminRequest =
            serde_json::from_str(r#"{"v":1,"id":2,"op":"tenant.erase","args":{"tenant":"acme"}}"#)
                .expect("parse");
        assert_eq!(
            r.op,
            AdminOp::TenantErase {
                tenant: "acme".into()
            }
        );
        let r: AdminRequest = serde_json::from_str(r#"{"v":1,"op":"backup.dump"}"#).expect("unit");
        assert_eq!(r.op, AdminOp::BackupDump);
        assert!(serde_json::from_str::<AdminRequest>(r#"{"v":1,"op":"spool.drop"}"#).is_err());
        let answer = serde_json::to_string(&AdminResult::Stream).expect("encode");
        assert_eq!(answer, r#"{"kind":"stream"}"#);
    }

    #[test]
    fn export_items_round_trip() {
        let items = vec![
            ExportItem::Message(b"{\"id\":\"X\"}".to_vec()),
            ExportItem::Body(b"Subject: x\r\n\r\nbody\r\n".to_vec()),
            ExportItem::Log(b"{}".to_vec()),
        ];
        let mut wire = Vec::new();
        for i in &items {
            write_export_item(&mut wire, i).expect("write");
        }
        let mut input = wire.as_slice();
        let mut got = Vec::new();
        while let Some(i) = read_export_item(&mut input).expect("read") {
            got.push(i);
        }
        assert_eq!(got, items);
        let mut bad = &[9u8, 0, 0, 0, 0][..];
        assert!(read_export_item(&mut bad).is_err());
    }
}
