//! The data-protection tests' rig: a fake control serving crafted tenants (each
//! with one domain `<tenant>.example` and one SMTP user `app@<tenant>.example`), an
//! MTA whose spool lives in a state dir that outlasts restarts, delivery to a sink
//! for `remote.example` and to a closed port for `stuck.example` (so mail stays
//! queued with a `deferred` record), and the admin socket as control uses it.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::Value;
use way2mail_queue::DeliveryRecord;
use way2mail_tests::{
    queued_id, wait_for, Backend, ClosedPort, Daemon, Sink, SinkOptions, SmtpClient, TestConfig,
};
use way2mail_wire::mta_admin::{read_export_item, AdminOp, AdminResult, ExportItem, MtaInventory};
use way2mail_wire::protocol::TenantStatus;
use way2mail_wire::snapshot::{SendingDomain, SmtpUser, Snapshot, SnapshotTenant, TenantLimits};

/// How long a snapshot change may take to reach the MTA (poll_ms = 100).
pub const FOLLOW: Duration = Duration::from_secs(5);
/// Upper bound for a delivery attempt or a sweep.
pub const WAIT: Duration = Duration::from_secs(20);
pub const PASSWORD: &str = "tenant-password-0";

pub fn toml_str(path: &Path) -> String {
    format!("\"{}\"", path.display())
}

/// One argon2id hash of [`PASSWORD`] for every user (hashing is slow on purpose).
fn password_hash() -> Result<String> {
    static HASH: OnceLock<String> = OnceLock::new();
    if let Some(h) = HASH.get() {
        return Ok(h.clone());
    }
    let h = way2mail_seal::password::hash(PASSWORD).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(HASH.get_or_init(|| h).clone())
}

pub fn tenant(name: &str, status: TenantStatus) -> Result<SnapshotTenant> {
    let domain = format!("{name}.example");
    Ok(SnapshotTenant {
        tenant: name.into(),
        status,
        domains: vec![domain.clone()],
        limits: TenantLimits::default(),
        smtp_users: vec![SmtpUser {
            username: format!("app@{domain}"),
            credential_id: format!("{name}-cred"),
            password_hash: password_hash()?,
        }],
        sending: vec![SendingDomain {
            domain,
            may_send: true,
            dkim: Vec::new(),
            bimi_selector: None,
        }],
        retention: None,
        legal_hold: false,
        suppressed: Vec::new(),
        api_keys: Vec::new(),
        list_unsubscribe: false,
        webhooks: Vec::new(),
        sending_paused: false,
    })
}

pub fn snapshot(version: u64, tenants: Vec<SnapshotTenant>, erased: &[&str]) -> Snapshot {
    Snapshot {
        version,
        generated_at_ms: 1_700_000_000_000,
        tenants,
        erased: erased.iter().map(|e| e.to_string()).collect(),
    }
}

/// What outlives one MTA process: the sink, the state dir, control's socket path.
pub struct Rig {
    pub sink: Sink,
    /// Nobody listens here: delivery to `stuck.example` fails temporarily.
    pub stuck: ClosedPort,
    pub state: tempfile::TempDir,
}

impl Rig {
    pub fn new() -> Result<Rig> {
        Ok(Rig {
            sink: Sink::start(SinkOptions::default())?,
            stuck: ClosedPort::new()?,
            state: tempfile::Builder::new()
                .prefix("way2mail-admin-state-")
                .tempdir()?,
        })
    }

    pub fn control_socket(&self) -> PathBuf {
        self.state.path().join("control.sock")
    }

    /// The MTA's configuration: control at [`Rig::control_socket`], state in the
    /// state dir, delivery on (first retry after 300 s), held mail looked at again
    /// after 1 s, tenant domains without DKIM keys sent unsigned.
    pub fn config(&self, backend: Backend) -> TestConfig {
        let state = self.state.path();
        TestConfig::new(backend)
            .set("control", "socket", &toml_str(&self.control_socket()))
            .set("control", "snapshot_file", &toml_str(&state.join("snapshot")))
            .set("control", "poll_ms", "100")
            .set("spool", "path", &toml_str(&state.join("spool")))
            .set("spool", "key_file", &toml_str(&state.join("spool.key")))
            .set("spool", "keyring_file", &toml_str(&state.join("spool.keyring")))
            .set("delivery", "enabled", "true")
            .set("delivery", "retry_initial_secs", "300")
            .set("delivery", "hold_recheck_secs", "1")
            .set("dkim", "missing_keys", "\"unsigned\"")
            .raw(&self.sink.route("remote.example"))
            .raw(&format!(
                "[[route]]\ndomain = \"stuck.example\"\nhost = \"[127.0.0.1]:{}\"\ntls = \"none\"\n",
                self.stuck.port
            ))
    }
}

/// A message whose Subject carries `marker`.
pub fn message(from: &str, to: &str, marker: &str) -> String {
    format!(
        "From: <{from}>\r\nTo: <{to}>\r\nSubject: {marker}\r\n\
         Message-ID: <{marker}@test>\r\n\r\nThe content of {marker}.\r\n"
    )
}

fn auth_line(user: &str) -> String {
    format!("AUTH PLAIN {}", B64.encode(format!("\0{user}\0{PASSWORD}")))
}

/// A TLS session on submission authenticated as `tenant`'s user, once the
/// credential reached the MTA.
pub fn authenticated(daemon: &Daemon, tenant: &str) -> Result<SmtpClient> {
    let user = format!("app@{tenant}.example");
    wait_for(&format!("AUTH as {user}"), FOLLOW, || {
        let mut c = daemon.submission_tls().ok()?;
        let r = c.command(&auth_line(&user)).ok()?;
        (r.code == 235).then_some(c)
    })
}

/// Submits as `tenant` with AUTH; returns the queue id.
pub fn submit_as(daemon: &Daemon, tenant: &str, to: &str, marker: &str) -> Result<String> {
    let from = format!("app@{tenant}.example");
    let mut c = authenticated(daemon, tenant)?;
    let r = c.send_message(&from, &[to], &message(&from, to, marker))?;
    queued_id(&r)
}

/// Submits from a trusted network (loopback on the mx listener, no AUTH).
pub fn submit_trusted(
    daemon: &Daemon,
    sender: &str,
    from: &str,
    to: &str,
    marker: &str,
) -> Result<String> {
    let (mut c, _) = SmtpClient::connect(daemon.ports().mx)?;
    c.expect("EHLO relay.client.test", 250)?;
    let r = c.send_message(sender, &[to], &message(from, to, marker))?;
    queued_id(&r)
}

pub fn inventory(daemon: &Daemon, tenant: &str) -> Result<MtaInventory> {
    match daemon.admin()?.call(AdminOp::TenantInventory {
        tenant: tenant.into(),
    })? {
        AdminResult::Inventory(inv) => Ok(inv),
        other => bail!("tenant.inventory answered {other:?}"),
    }
}

/// Waits until `tenant`'s inventory satisfies `done`.
pub fn inventory_until(
    daemon: &Daemon,
    tenant: &str,
    what: &str,
    done: impl Fn(&MtaInventory) -> bool,
) -> Result<MtaInventory> {
    wait_for(what, WAIT, || inventory(daemon, tenant).ok().filter(&done))
}

/// One exported message.
pub struct Exported {
    pub id: String,
    pub envelope: Value,
    pub body: Vec<u8>,
}

pub struct Export {
    pub messages: Vec<Exported>,
    pub log: Vec<DeliveryRecord>,
    /// Kept answers of API requests with an `Idempotency-Key`.
    pub api_requests: Vec<Value>,
    /// Webhook events not yet posted.
    pub webhook_events: Vec<Value>,
    pub dmarc_reports: Vec<Value>,
    /// The final answer (`exported {…}`).
    pub result: AdminResult,
}

/// `tenant.export`, read item by item as control would.
pub fn export(daemon: &Daemon, tenant: &str) -> Result<Export> {
    let op = AdminOp::TenantExport {
        tenant: tenant.into(),
    };
    let (items, result) = daemon.admin()?.call_stream(op, |mut r| {
        let mut items = Vec::new();
        while let Some(item) = read_export_item(&mut r)? {
            items.push(item);
        }
        Ok(items)
    })?;
    let mut out = Export {
        messages: Vec::new(),
        log: Vec::new(),
        api_requests: Vec::new(),
        webhook_events: Vec::new(),
        dmarc_reports: Vec::new(),
        result,
    };
    let mut items = items.into_iter();
    while let Some(item) = items.next() {
        match item {
            ExportItem::Message(head) => {
                let head: Value = serde_json::from_slice(&head).context("message item")?;
                let Some(ExportItem::Body(body)) = items.next() else {
                    bail!("a message item without its body");
                };
                out.messages.push(Exported {
                    id: head["id"].as_str().context("id")?.to_string(),
                    envelope: head["envelope"].clone(),
                    body,
                });
            }
            ExportItem::Log(line) => {
                ensure!(!line.is_empty());
                out.log
                    .push(serde_json::from_slice(&line).context("log item")?);
            }
            ExportItem::ApiRequest(line) => {
                let kept: Value = serde_json::from_slice(&line).context("API request item")?;
                out.api_requests.push(kept);
            }
            ExportItem::WebhookEvent(line) => {
                let event: Value = serde_json::from_slice(&line).context("webhook item")?;
                out.webhook_events.push(event);
            }
            ExportItem::DmarcReport(line) => {
                let report: Value = serde_json::from_slice(&line).context("DMARC item")?;
                out.dmarc_reports.push(report);
            }
            ExportItem::Body(_) => bail!("a body without its message item"),
        }
    }
    Ok(out)
}
