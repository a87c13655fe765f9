//! The deliverability feedback loop end to end, with a real control and MTA:
//!
//! - tenant mail leaves with a VERP return path (`b-TOKEN@bounces.example`, one
//!   recipient per transaction) and a `Feedback-ID: default:acme:way2mail` field;
//! - a next hop answering `550 5.1.1` → `bounced`/`invalid_recipient`, the address
//!   on the tenant's suppression list (reason and source), and the next message
//!   to it refused at `RCPT`;
//! - a DSN (RFC 3464) sent on mx to a delivered recipient's return path →
//!   consumed (`250`, never relayed), an `async_bounced` record, suppressed;
//! - an ARF complaint (RFC 5965) sent to `[feedback] address` → a `complained`
//!   record, suppressed;
//! - a forged token (well-shaped or altered) → consumed and discarded; a
//!   malformed address of the VERP domain → refused at `RCPT`;
//! - the events in the delivery log, `tenant deliverability` and the export;
//! - past `[reputation] max_bounce_rate` the tenant is paused (its mail held),
//!   the operators and its contact get a letter, `tenant resume-sending` lifts it;
//! - erasure takes the events with the rest.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, ensure, Context};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::Value;
use way2mail_tests::control::{json_str, Control, Operator};
use way2mail_tests::{
    queued_id, wait_for, Backend, Behaviour, Daemon, Received, Sink, SinkOptions, SmtpClient,
    StubDns, TestConfig,
};
use way2mail_wire::mta_admin::{AdminClient, AdminOp, AdminResult};
use way2mail_wire::queue::QueueLogEntry;

const DOMAIN: &str = "acme.example";
const VERP: &str = "bounces.example";
const FBL: &str = "fbl@way2mail.example";
const FOLLOW: Duration = Duration::from_secs(10);
const WAIT: Duration = Duration::from_secs(30);

fn toml_str(path: &Path) -> String {
    format!("\"{}\"", path.display())
}

struct Rig {
    control: Control,
    admin: Operator,
    /// `remote.example`: refuses recipients whose local part does not start with `ok`.
    remote: Sink,
    /// Our bounces to the tenant's sender, and control's letters.
    letters: Sink,
    daemon: Daemon,
    username: String,
    password: String,
    _dns: StubDns,
    state: tempfile::TempDir,
}

impl Rig {
    fn start() -> anyhow::Result<Rig> {
        let letters = Sink::start(SinkOptions::default())?;
        let remote = Sink::start(SinkOptions {
            behaviour: Behaviour::RejectRcpt(550, "5.1.1"),
            ..SinkOptions::default()
        })?;
        let state = tempfile::Builder::new()
            .prefix("way2mail-feedback-")
            .tempdir()?;
        let admin_socket = state.path().join("mta.sock");
        let control = Control::start_with(&format!(
            "[mta]\nadmin_socket = {}\n[notify]\nsmtp_server = \"{}\"\nfrom = \"platform@way2mail.example\"",
            toml_str(&admin_socket),
            letters.addr()
        ))?;
        let admin = control.bootstrap_admin("admin")?;
        let run = |args: &[&str]| control.run_as(&admin, args)?.ok();
        run(&[
            "tenant",
            "add",
            "acme",
            "--business-name",
            "Acme Ltd",
            "--contact",
            "ops@acme.example",
        ])?;
        run(&["domain", "add", "acme", DOMAIN])?;
        run(&["domain", "override", DOMAIN, "--allow", "--reason", "test"])?;
        let username = format!("app@{DOMAIN}");
        let created = run(&["--json", "credential", "add", "acme", "--smtp", &username])?.json()?;
        let password = json_str(&created, "secret")?;
        let dns = StubDns::start(Vec::new())?;
        let config = TestConfig::new(Backend::Epoll)
            .set("admin", "socket", &toml_str(&admin_socket))
            .set("control", "socket", &toml_str(&control.socket()))
            .set(
                "control",
                "snapshot_file",
                &toml_str(&state.path().join("snapshot")),
            )
            .set("delivery", "enabled", "true")
            .set("delivery", "retry_initial_secs", "1")
            .set("delivery", "hold_recheck_secs", "1")
            .set("dns", "nameservers", &format!("[\"{}\"]", dns.addr()))
            .set("dns", "timeout_ms", "500")
            .set("bounces", "domain", &format!("\"{VERP}\""))
            .set("feedback", "address", &format!("\"{FBL}\""))
            .set("reputation", "min_volume", "6")
            .set("reputation", "max_bounce_rate", "0.6")
            .raw(&remote.route("remote.example"))
            .raw(&letters.route(DOMAIN));
        let daemon = Daemon::start(&config)?;
        Ok(Rig {
            control,
            admin,
            remote,
            letters,
            daemon,
            username,
            password,
            _dns: dns,
            state,
        })
    }

    fn run(&self, args: &[&str]) -> anyhow::Result<way2mail_tests::control::CliOutput> {
        self.control.run_as(&self.admin, args)?.ok()
    }

    /// A TLS session authenticated as the tenant, once its credential arrived.
    fn tenant_session(&self) -> anyhow::Result<SmtpClient> {
        let line = format!(
            "AUTH PLAIN {}",
            B64.encode(format!("\0{}\0{}", self.username, self.password))
        );
        wait_for("the credential to reach the MTA", FOLLOW, || {
            let mut c = self.daemon.submission_tls().ok()?;
            let r = c.command(&line).ok()?;
            (r.code == 235).then_some(c)
        })
    }

    /// One tenant message to `rcpts`, its Subject carrying `marker`; the queue id.
    fn send(&self, rcpts: &[&str], marker: &str) -> anyhow::Result<String> {
        let mut c = self.tenant_session()?;
        let body = format!(
            "From: <news@{DOMAIN}>\r\nTo: <list@remote.example>\r\nSubject: {marker}\r\n\
             Message-ID: <{marker}@{DOMAIN}>\r\n\r\nHello.\r\n"
        );
        queued_id(&c.send_message(&format!("news@{DOMAIN}"), rcpts, &body)?)
    }

    /// The message for `rcpt` whose Subject carries `marker`, at the remote sink.
    fn arrived(&self, rcpt: &str, marker: &str) -> anyhow::Result<Received> {
        wait_for(&format!("{marker} for {rcpt} at the sink"), WAIT, || {
            self.remote.messages().into_iter().find(|m| {
                m.rcpt_to.iter().any(|r| r == rcpt)
                    && String::from_utf8_lossy(&m.data).contains(&format!("Subject: {marker}\r\n"))
            })
        })
    }

    fn log(&self) -> anyhow::Result<Vec<QueueLogEntry>> {
        let socket = self.state.path().join("mta.sock");
        let mut admin = AdminClient::connect(&socket, FOLLOW)?;
        let answer = admin.call(AdminOp::DeliveryLog {
            message: None,
            recipient: None,
            since_ms: None,
            limit: None,
        })?;
        let AdminResult::DeliveryLog { records, .. } = answer else {
            bail!("delivery.log answered {answer:?}");
        };
        Ok(records)
    }

    /// The first record of `outcome` for `rcpt`, once there is one.
    fn record(&self, rcpt: &str, outcome: &str) -> anyhow::Result<QueueLogEntry> {
        wait_for(&format!("a {outcome} record for {rcpt}"), WAIT, || {
            self.log()
                .ok()?
                .into_iter()
                .find(|e| e.recipient == rcpt && e.outcome == outcome)
        })
        .with_context(|| format!("the log: {:?}", self.log()))
    }

    /// The tenant's suppression entry for `address`, once there is one.
    fn suppressed(&self, address: &str) -> anyhow::Result<Value> {
        wait_for(&format!("{address} on the suppression list"), WAIT, || {
            let listed = self
                .run(&["--json", "suppression", "list", "acme"])
                .ok()?
                .json()
                .ok()?;
            let entries = listed
                .as_array()
                .or_else(|| listed["entries"].as_array())?
                .clone();
            entries.into_iter().find(|e| e["address"] == address)
        })
    }

    /// Sends `message` from the null sender to `rcpt` on mx; the reply to the dot.
    fn report(&self, rcpt: &str, message: &str) -> anyhow::Result<u16> {
        let (mut c, _) = SmtpClient::connect(self.daemon.ports().mx)?;
        c.expect("EHLO mx.receiver.test", 250)?;
        Ok(c.send_message("", &[rcpt], message)?.code)
    }
}

/// A DSN (RFC 3464) as a receiving MTA sends it later for `rcpt`.
fn dsn(return_path: &str, rcpt: &str, marker: &str) -> String {
    format!(
        "From: MAILER-DAEMON@mx.remote.example\r\n\
         To: <{return_path}>\r\n\
         Subject: Undelivered Mail Returned to Sender\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status; boundary=\"B1\"\r\n\
         \r\n\
         --B1\r\n\
         Content-Type: text/plain\r\n\
         \r\n\
         I'm sorry to have to inform you that your message could not be delivered.\r\n\
         \r\n\
         --B1\r\n\
         Content-Type: message/delivery-status\r\n\
         \r\n\
         Reporting-MTA: dns; mx.remote.example\r\n\
         Arrival-Date: Mon, 7 Dec 2026 10:00:00 +0000\r\n\
         \r\n\
         Final-Recipient: rfc822; {rcpt}\r\n\
         Original-Recipient: rfc822; {rcpt}\r\n\
         Action: failed\r\n\
         Status: 5.1.1\r\n\
         Remote-MTA: dns; mailbox.remote.example\r\n\
         Diagnostic-Code: smtp; 550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown in local recipient table\r\n\
         \r\n\
         --B1\r\n\
         Content-Type: text/rfc822-headers\r\n\
         \r\n\
         Return-Path: <{return_path}>\r\n\
         From: <news@{DOMAIN}>\r\n\
         To: <{rcpt}>\r\n\
         Subject: {marker}\r\n\
         \r\n\
         --B1--\r\n"
    )
}

/// An ARF complaint (RFC 5965) about the message `marker` to `rcpt`.
fn arf(return_path: &str, rcpt: &str, marker: &str) -> String {
    format!(
        "From: feedbackloop@remote.example\r\n\
         To: <{FBL}>\r\n\
         Subject: FW: {marker}\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=feedback-report; boundary=\"A1\"\r\n\
         \r\n\
         --A1\r\n\
         Content-Type: text/plain\r\n\
         \r\n\
         This is an email abuse report for an email message received from IP 127.0.0.1.\r\n\
         \r\n\
         --A1\r\n\
         Content-Type: message/feedback-report\r\n\
         \r\n\
         Feedback-Type: abuse\r\n\
         User-Agent: RemoteFBL/1.0\r\n\
         Version: 1\r\n\
         Original-Mail-From: <{return_path}>\r\n\
         Original-Rcpt-To: <{rcpt}>\r\n\
         Source-IP: 127.0.0.1\r\n\
         \r\n\
         --A1\r\n\
         Content-Type: message/rfc822\r\n\
         \r\n\
         Return-Path: <{return_path}>\r\n\
         Feedback-ID: default:acme:way2mail\r\n\
         From: <news@{DOMAIN}>\r\n\
         To: <{rcpt}>\r\n\
         Subject: {marker}\r\n\
         \r\n\
         Hello.\r\n\
         \r\n\
         --A1--\r\n"
    )
}

#[test]
fn bounces_and_complaints_suppress_record_pause_and_are_erased() -> anyhow::Result<()> {
    let rig = Rig::start()?;

    // A refusal, and a delivery whose return path names the message and recipient.
    rig.send(&["gone@remote.example", "ok-1@remote.example"], "first")?;
    let delivered = rig.arrived("ok-1@remote.example", "first")?;
    let (local, domain) = delivered
        .mail_from
        .rsplit_once('@')
        .context("a return path")?;
    ensure!(
        domain == VERP && local.starts_with("b-") && local.len() == 60,
        "VERP return path: {}",
        delivered.mail_from
    );
    ensure!(
        delivered.rcpt_to.len() == 1,
        "one recipient per transaction"
    );
    let data = String::from_utf8_lossy(&delivered.data);
    ensure!(
        data.contains("Feedback-ID: default:acme:way2mail\r\n"),
        "{data}"
    );

    let bounced = rig.record("gone@remote.example", "bounced")?;
    ensure!(
        bounced.category.as_deref() == Some("invalid_recipient"),
        "{bounced:?}"
    );
    let entry = rig.suppressed("gone@remote.example")?;
    ensure!(
        entry["reason"] == "invalid_recipient" && entry["source"] == bounced.message_id.as_str(),
        "{entry}"
    );
    // The snapshot with the address reaches the MTA: refused at RCPT.
    wait_for("gone@ refused at RCPT", FOLLOW, || {
        let mut c = rig.tenant_session().ok()?;
        c.expect(&format!("MAIL FROM:<news@{DOMAIN}>"), 250).ok()?;
        let r = c.command("RCPT TO:<gone@remote.example>").ok()?;
        (r.code == 550).then_some(())
    })?;

    // A later DSN for the delivered recipient: consumed, recorded, suppressed.
    let before = rig.remote.messages().len();
    ensure!(
        rig.report(
            &delivered.mail_from,
            &dsn(&delivered.mail_from, "ok-1@remote.example", "first")
        )? == 250,
        "the DSN is taken"
    );
    let async_bounced = rig.record("ok-1@remote.example", "async_bounced")?;
    ensure!(
        async_bounced.category.as_deref() == Some("invalid_recipient")
            && async_bounced.message_id == bounced.message_id,
        "{async_bounced:?}"
    );
    let entry = rig.suppressed("ok-1@remote.example")?;
    ensure!(entry["reason"] == "invalid_recipient", "{entry}");

    // A complaint about a second message, to the feedback address.
    rig.send(&["ok-2@remote.example"], "second")?;
    let second = rig.arrived("ok-2@remote.example", "second")?;
    ensure!(
        rig.report(
            FBL,
            &arf(&second.mail_from, "ok-2@remote.example", "second")
        )? == 250,
        "the complaint is taken"
    );
    let complained = rig.record("ok-2@remote.example", "complained")?;
    let entry = rig.suppressed("ok-2@remote.example")?;
    ensure!(
        entry["reason"] == "complaint" && entry["source"] == complained.message_id.as_str(),
        "{entry}"
    );

    // Forged tokens: a well-shaped one and an altered real one are taken and
    // discarded; an address of the VERP domain that is no token is refused.
    let records = rig.log()?.len();
    let shaped = format!("b-{}@{VERP}", "a".repeat(58));
    let mut altered = second.mail_from.clone().into_bytes();
    altered[10] = if altered[10] == b'a' { b'b' } else { b'a' };
    let altered = String::from_utf8(altered)?;
    for forged in [&shaped, &altered] {
        ensure!(
            rig.report(forged, &dsn(forged, "ok-3@remote.example", "x"))? == 250,
            "{forged}"
        );
    }
    let (mut c, _) = SmtpClient::connect(rig.daemon.ports().mx)?;
    c.expect("EHLO mx.receiver.test", 250)?;
    c.expect("MAIL FROM:<>", 250)?;
    c.expect(&format!("RCPT TO:<postmaster-x@{VERP}>"), 550)?;
    std::thread::sleep(Duration::from_secs(1));
    let log = rig.log()?;
    ensure!(
        log.len() == records && !log.iter().any(|e| e.recipient == "ok-3@remote.example"),
        "forged reports left records: {log:?}"
    );
    // Nothing was relayed: the remote sink got no report.
    ensure!(
        rig.remote.messages()[before..]
            .iter()
            .all(|m| !String::from_utf8_lossy(&m.data).contains("multipart/report")),
        "a report was relayed"
    );

    // The report from control and the MTA.
    let report = rig
        .run(&["--json", "tenant", "deliverability", "acme"])?
        .json()?;
    let report = if report["report"].is_object() {
        report["report"].clone()
    } else {
        report
    };
    ensure!(
        report["async_bounced"] == 1
            && report["complaints"] == 1
            && report["bounced_by_category"]["invalid_recipient"].as_u64() >= Some(2)
            && report["suppressions_added"].as_u64() >= Some(3),
        "{report}"
    );

    // Past the bounce rate: paused, told, held, resumed.
    rig.send(
        &[
            "bad-1@remote.example",
            "bad-2@remote.example",
            "bad-3@remote.example",
            "bad-4@remote.example",
        ],
        "third",
    )?;
    wait_for("the tenant paused", WAIT, || {
        let shown = rig
            .run(&["--json", "tenant", "show", "acme"])
            .ok()?
            .json()
            .ok()?;
        let t = if shown["tenant"].is_object() {
            shown["tenant"].clone()
        } else {
            shown
        };
        (!t["sending_paused"].is_null()).then_some(())
    })?;
    let letter = wait_for("the pause letter to the contact", WAIT, || {
        rig.letters
            .messages()
            .into_iter()
            .find(|m| m.rcpt_to.iter().any(|r| r == "ops@acme.example"))
    })?;
    let text = String::from_utf8_lossy(&letter.data);
    ensure!(text.to_lowercase().contains("bounce"), "{text}");
    // Held: accepted, not delivered, until resumed.
    std::thread::sleep(FOLLOW);
    rig.send(&["ok-4@remote.example"], "held")?;
    std::thread::sleep(Duration::from_secs(3));
    ensure!(
        !rig.remote
            .messages()
            .iter()
            .any(|m| m.rcpt_to.iter().any(|r| r == "ok-4@remote.example")),
        "mail of a paused tenant went out"
    );
    rig.run(&[
        "tenant",
        "resume-sending",
        "acme",
        "--reason",
        "cleaned the list",
    ])?;
    rig.arrived("ok-4@remote.example", "held")?;

    // Exported, then erased with the rest.
    let archive = rig.state.path().join("acme.tar");
    rig.run(&[
        "tenant",
        "export",
        "acme",
        "--out",
        &archive.display().to_string(),
    ])?;
    let extracted = rig.state.path().join("extracted");
    way2mail_tests::control::untar(&archive, &extracted)?;
    let exported = std::fs::read_to_string(extracted.join("acme-export/delivery-log/0001.jsonl"))?;
    ensure!(
        exported.contains("\"async_bounced\"") && exported.contains("\"complained\""),
        "{exported}"
    );
    let suppressions = std::fs::read_to_string(extracted.join("acme-export/suppression.json"))?;
    ensure!(suppressions.contains("\"complaint\""), "{suppressions}");
    rig.run(&[
        "tenant",
        "erase",
        "acme",
        "--confirm",
        "acme",
        "--out",
        &rig.state.path().join("receipt.json").display().to_string(),
    ])?;
    let left: Vec<_> = rig
        .log()?
        .into_iter()
        .filter(|e| e.recipient.ends_with("@remote.example"))
        .collect();
    ensure!(left.is_empty(), "events left after erasure: {left:?}");
    Ok(())
}
