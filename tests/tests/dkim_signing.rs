//! DKIM signing of tenant mail, end to end: a real `way2mail-control` holds a tenant,
//! its domains (control generates an RSA-2048 and an Ed25519 key per domain) and an
//! SMTP credential; the real MTA follows it, signs what the tenant submits with AUTH
//! after STARTTLS and what a trusted network sends for a tenant domain, and delivers to
//! a test sink. What arrives is verified with mail-auth against the records
//! `way2mail domain dns` says to publish, served by a stub DNS over UDP: two passing
//! signatures (rsa-sha256 and ed25519-sha256, d= the From domain), `From` over-signed,
//! `BIMI-Selector:` set and signed, and a body changed afterwards fails. A domain that
//! is not verified is refused at `MAIL FROM`; mail that is not a tenant's goes unsigned.
//!
//! Domains without keys (which control never produces) come from a fake control that
//! serves a crafted snapshot: refused with `[dkim] missing_keys = "refuse"`, delivered
//! unsigned with `"unsigned"`.
//!
//! `dkimpy_verifies_what_the_mta_signs` runs the messages through dkimpy
//! (tests/interop/dkim_verify.py) when `WAY2MAIL_DKIMPY_PYTHON` names a Python that has
//! dkimpy and dnspython (.ci/interop.sh sets it up); without it the test says it was
//! skipped.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, ensure, Context};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use mail_auth::common::crypto::Algorithm;
use mail_auth::dkim::Canonicalization;
use mail_auth::{AuthenticatedMessage, DkimResult};
use way2mail_tests::control::{json_str, Control};
use way2mail_tests::{
    for_each_backend, queued_id, wait_for, Backend, Daemon, FakeControl, Received, Record, Sink,
    SinkOptions, SmtpClient, StubDns, TestConfig, TestReply,
};
use way2mail_wire::protocol::TenantStatus;
use way2mail_wire::snapshot::{SendingDomain, SmtpUser, Snapshot, SnapshotTenant, TenantLimits};

/// How long a change made with the CLI may take to reach the MTA.
const FOLLOW: Duration = Duration::from_secs(5);
/// How long delivery to the sink may take.
const DELIVERY: Duration = Duration::from_secs(30);
const DOMAIN: &str = "acme.example";
const UNVERIFIED: &str = "pending.example";
const BIMI_SELECTOR: &str = "brand";
/// The line .ci/interop.sh looks for to know dkimpy really ran.
const DKIMPY_MARKER: &str = "DKIMPY-INTEROP: all signatures verified";

fn toml_str(path: &Path) -> String {
    format!("\"{}\"", path.display())
}

/// The MTA's configuration: control at `socket`, its state under `state`, delivery on
/// with `remote.example` routed to `sink`, DNS only from `dns`, loopback trusted (the
/// default).
fn mta_config(
    backend: Backend,
    socket: &Path,
    state: &Path,
    sink: &Sink,
    dns: &StubDns,
) -> TestConfig {
    TestConfig::new(backend)
        .set("control", "socket", &toml_str(socket))
        .set(
            "control",
            "snapshot_file",
            &toml_str(&state.join("snapshot")),
        )
        .set("delivery", "enabled", "true")
        .set("delivery", "retry_initial_secs", "1")
        .set("dns", "nameservers", &format!("[\"{}\"]", dns.addr()))
        .set("dns", "timeout_ms", "500")
        .raw(&sink.route("remote.example"))
}

fn auth_line(user: &str, password: &str) -> String {
    format!("AUTH PLAIN {}", B64.encode(format!("\0{user}\0{password}")))
}

/// A TLS session authenticated as `user`, once the credential reached the MTA.
fn authenticated(daemon: &Daemon, user: &str, password: &str) -> anyhow::Result<SmtpClient> {
    wait_for("the credential to reach the MTA", FOLLOW, || {
        let mut c = daemon.submission_tls().ok()?;
        let r = c.command(&auth_line(user, password)).ok()?;
        (r.code == 235).then_some(c)
    })
}

/// A message with every kind of field the signer cares about; `marker` in the
/// Subject finds it at the sink.
fn message(from: &str, marker: &str) -> String {
    format!(
        "From: Billing <{from}>\r\n\
         To: Customer <customer@remote.example>\r\n\
         Cc: other@remote.example\r\n\
         Subject: Invoice {marker}\r\n\
         Date: Mon, 1 Jan 2024 12:00:00 +0000\r\n\
         Message-ID: <{marker}@acme.example>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: 7bit\r\n\
         BIMI-Selector: v=BIMI1; s=client-choice\r\n\
         X-Mailer: way2mail-tests\r\n\
         \r\n\
         Hello,\r\n\
         \r\n\
         your invoice {marker} is attached.\r\n\
         ..a line that starts with a dot\r\n"
    )
}

/// [`message`] with about 1 MB of body: past `[spool] message_buffer`, so the
/// session writes it to the spool in parts and signs it as it reads them back.
fn large_message(from: &str, marker: &str) -> String {
    let mut m = message(from, marker);
    let line = format!("{} {marker}\r\n", "padding".repeat(9));
    while m.len() < 1_000_000 {
        m.push_str(&line);
    }
    m.push_str("the end\r\n");
    m
}

/// The accepted message whose Subject carries `marker`.
fn arrived(sink: &Sink, marker: &str) -> anyhow::Result<Received> {
    wait_for(&format!("message {marker} at the sink"), DELIVERY, || {
        sink.messages().into_iter().find(|m| {
            String::from_utf8_lossy(&m.data).contains(&format!("Subject: Invoice {marker}\r\n"))
        })
    })
}

/// Checks what the MTA did to a message it signed for `domain`: two signatures on top
/// (RSA then Ed25519), then our BIMI-Selector, then Received; both pass; the fields
/// listed are the ones present plus one more From; a changed body or a second From
/// fails.
fn check_signed(dns: &StubDns, data: &[u8], domain: &str) -> anyhow::Result<()> {
    let text = String::from_utf8_lossy(data);
    ensure!(
        text.starts_with("DKIM-Signature: v=1; a=rsa-sha256;"),
        "the RSA signature is not the first field:\n{text}"
    );
    let parsed = AuthenticatedMessage::parse(data).context("parse")?;
    let sigs: Vec<_> = parsed.dkim_headers.iter().map(|h| &h.header).collect();
    ensure!(sigs.len() == 2, "{} signatures:\n{text}", sigs.len());
    ensure!(
        sigs[0].a == Algorithm::RsaSha256 && sigs[1].a == Algorithm::Ed25519Sha256,
        "algorithms {:?} {:?}",
        sigs[0].a,
        sigs[1].a
    );
    for s in &sigs {
        ensure!(s.d == domain, "d={} (want {domain})", s.d);
        ensure!(
            s.ch == Canonicalization::Relaxed && s.cb == Canonicalization::Relaxed,
            "canonicalization {:?}/{:?}",
            s.ch,
            s.cb
        );
        let count = |name: &str| s.h.iter().filter(|h| h.eq_ignore_ascii_case(name)).count();
        ensure!(count("From") == 2, "From not over-signed: {:?}", s.h);
        for present in [
            "To",
            "Cc",
            "Subject",
            "Date",
            "Message-ID",
            "MIME-Version",
            "Content-Type",
            "Content-Transfer-Encoding",
            "BIMI-Selector",
        ] {
            ensure!(count(present) == 1, "{present} in {:?}", s.h);
        }
        for absent in ["Reply-To", "References", "List-Id", "Received", "X-Mailer"] {
            ensure!(count(absent) == 0, "{absent} listed: {:?}", s.h);
        }
        ensure!(s.h.len() == 11, "h= {:?}", s.h);
    }
    // Our BIMI-Selector replaced the client's, and sits above the trace header.
    let fields_end = text.find("\r\n\r\n").context("no header end")?;
    let header = &text[..fields_end];
    ensure!(
        header
            .to_ascii_lowercase()
            .matches("\nbimi-selector:")
            .count()
            == 1
            && header.contains(&format!(
                "\r\nBIMI-Selector: v=BIMI1; s={BIMI_SELECTOR}\r\nReceived: "
            )),
        "BIMI-Selector not set as expected:\n{header}"
    );
    let results = dns.dkim_verdicts(data)?;
    ensure!(
        results == [DkimResult::Pass, DkimResult::Pass],
        "mail-auth: {results:?}\n{text}"
    );
    // Changed afterwards: the body, and a second From.
    let changed = text.replace("is attached.", "is overdue.");
    ensure!(changed != text);
    let results = dns.dkim_verdicts(changed.as_bytes())?;
    ensure!(
        results.len() == 2 && !results.contains(&DkimResult::Pass),
        "a changed body still passes: {results:?}"
    );
    let added = text.replacen("X-Mailer:", "From: ceo@acme.example\r\nX-Mailer:", 1);
    let results = dns.dkim_verdicts(added.as_bytes())?;
    ensure!(
        results.len() == 2 && results.iter().all(|r| matches!(r, DkimResult::Fail(_))),
        "a second From still passes: {results:?}"
    );
    Ok(())
}

struct Rig {
    /// Kept running for the MTA to follow.
    _control: Control,
    dns: StubDns,
    sink: Sink,
    daemon: Daemon,
    username: String,
    password: String,
    _state: tempfile::TempDir,
}

/// Control with tenant acme: acme.example (keys from `domain add`, allowed to send
/// with an override, BIMI selector `brand`) and pending.example (unverified), and an
/// SMTP user; the stub DNS publishes what `domain dns` lists; the MTA delivers
/// remote.example to the sink.
fn rig(backend: Backend) -> anyhow::Result<Rig> {
    let control = Control::start()?;
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
    run(&["domain", "add", "acme", UNVERIFIED])?;
    run(&["domain", "override", DOMAIN, "--allow", "--reason", "test"])?;
    run(&[
        "domain",
        "bimi",
        DOMAIN,
        "--logo",
        "https://acme.example/bimi/logo.svg",
        "--selector",
        BIMI_SELECTOR,
    ])?;
    let username = format!("app@{DOMAIN}");
    let created = run(&["--json", "credential", "add", "acme", "--smtp", &username])?.json()?;
    let password = json_str(&created, "secret")?;

    let mut records = Vec::new();
    let mut dkim = 0;
    for domain in [DOMAIN, UNVERIFIED] {
        let listed = run(&["--json", "domain", "dns", domain])?.json()?;
        for r in listed["records"].as_array().context("no records")? {
            let name = r["name"].as_str().context("record name")?;
            let value = r["value"].as_str().context("record value")?;
            if r["purpose"] == "dkim" && domain == DOMAIN {
                dkim += 1;
            }
            records.push(Record::txt(name, value));
        }
    }
    ensure!(
        dkim == 2,
        "domain dns lists {dkim} DKIM records for {DOMAIN}"
    );
    let dns = StubDns::start(records)?;
    let sink = Sink::start(SinkOptions::default())?;
    let state = tempfile::Builder::new()
        .prefix("way2mail-dkim-state-")
        .tempdir()?;
    let config = mta_config(backend, &control.socket(), state.path(), &sink, &dns);
    let daemon = Daemon::start(&config)?;
    Ok(Rig {
        _control: control,
        dns,
        sink,
        daemon,
        username,
        password,
        _state: state,
    })
}

/// A message from the tenant (AUTH after STARTTLS), From: the domain; returns the
/// queued id.
fn submit_authenticated(rig: &Rig, marker: &str) -> anyhow::Result<String> {
    submit_as_tenant(rig, &message(&format!("billing@{DOMAIN}"), marker))
}

/// `body` from the tenant (AUTH after STARTTLS); returns the queued id.
fn submit_as_tenant(rig: &Rig, body: &str) -> anyhow::Result<String> {
    let mut c = authenticated(&rig.daemon, &rig.username, &rig.password)?;
    let r = c.send_message(&format!("app@{DOMAIN}"), &["customer@remote.example"], body)?;
    queued_id(&r)
}

/// A message from a trusted network (loopback, on the mx listener, no AUTH).
fn submit_trusted(rig: &Rig, sender: &str, from: &str, marker: &str) -> anyhow::Result<TestReply> {
    let (mut c, _) = SmtpClient::connect(rig.daemon.ports().mx)?;
    c.expect("EHLO relay.client.test", 250)?;
    c.send_message(sender, &["customer@remote.example"], &message(from, marker))
}

for_each_backend!(tenant_mail_is_signed_and_verifies);

fn tenant_mail_is_signed_and_verifies(backend: Backend) -> anyhow::Result<()> {
    let rig = rig(backend)?;

    // Submitted with AUTH: signed for the From domain, verifies, tampering fails.
    submit_authenticated(&rig, "auth-1")?;
    let m = arrived(&rig.sink, "auth-1")?;
    check_signed(&rig.dns, &m.data, DOMAIN).context("authenticated submission")?;
    ensure!(m.mail_from == format!("app@{DOMAIN}"), "{}", m.mail_from);

    // A large one, written in parts as it arrives: signed over what it reads back.
    let large = large_message(&format!("billing@{DOMAIN}"), "auth-large");
    submit_as_tenant(&rig, &large)?;
    let m = arrived(&rig.sink, "auth-large")?;
    check_signed(&rig.dns, &m.data, DOMAIN).context("large authenticated submission")?;
    ensure!(
        m.data.ends_with(&large.as_bytes()[large.len() - 2000..]),
        "the large message did not arrive whole"
    );

    // An unverified domain of the same tenant cannot send.
    let mut c = authenticated(&rig.daemon, &rig.username, &rig.password)?;
    let r = c.command(&format!("MAIL FROM:<news@{UNVERIFIED}>"))?;
    ensure!(
        r.code == 550
            && r.enhanced() == Some("5.7.1")
            && r.text().contains(UNVERIFIED)
            && r.text().contains("not verified"),
        "MAIL FROM an unverified domain: {r}"
    );
    // The From domain signs even when MAIL FROM is another of the tenant's domains;
    // a From of the unverified domain is refused at the end of data.
    c.expect("RSET", 250)?;
    let r = c.send_message(
        &format!("app@{DOMAIN}"),
        &["customer@remote.example"],
        &message(&format!("news@{UNVERIFIED}"), "auth-unverified-from"),
    )?;
    ensure!(
        r.code == 550 && r.text().contains("not verified"),
        "From: an unverified domain: {r}"
    );

    // A trusted network sending for the tenant domain: signed too.
    let r = submit_trusted(
        &rig,
        "bounces@relay.example",
        &format!("news@{DOMAIN}"),
        "trusted-1",
    )?;
    queued_id(&r)?;
    let m = arrived(&rig.sink, "trusted-1")?;
    check_signed(&rig.dns, &m.data, DOMAIN).context("trusted network")?;
    // MAIL FROM the tenant domain, From: elsewhere: d= the envelope domain.
    let r = submit_trusted(
        &rig,
        &format!("bounces@{DOMAIN}"),
        "someone@elsewhere.example",
        "trusted-envelope",
    )?;
    queued_id(&r)?;
    let m = arrived(&rig.sink, "trusted-envelope")?;
    let parsed = AuthenticatedMessage::parse(&m.data).context("parse")?;
    ensure!(
        parsed.dkim_headers.len() == 2 && parsed.dkim_headers.iter().all(|h| h.header.d == DOMAIN),
        "envelope domain signature:\n{}",
        String::from_utf8_lossy(&m.data)
    );
    ensure!(rig.dns.dkim_verdicts(&m.data)? == [DkimResult::Pass, DkimResult::Pass]);

    // Not a tenant's mail: delivered as it was, unsigned.
    let r = submit_trusted(
        &rig,
        "app@elsewhere.example",
        "app@elsewhere.example",
        "foreign",
    )?;
    queued_id(&r)?;
    let m = arrived(&rig.sink, "foreign")?;
    let text = String::from_utf8_lossy(&m.data);
    ensure!(
        !text.contains("DKIM-Signature:") && text.contains("s=client-choice"),
        "foreign mail was changed:\n{text}"
    );
    // Large and foreign: written in parts, spooled from them unchanged.
    let (mut c, _) = SmtpClient::connect(rig.daemon.ports().mx)?;
    c.expect("EHLO relay.client.test", 250)?;
    let large = large_message("app@elsewhere.example", "foreign-large");
    let r = c.send_message(
        "app@elsewhere.example",
        &["customer@remote.example"],
        &large,
    )?;
    queued_id(&r)?;
    let m = arrived(&rig.sink, "foreign-large")?;
    let text = String::from_utf8_lossy(&m.data);
    ensure!(
        !text.contains("DKIM-Signature:"),
        "foreign large mail was signed"
    );
    // (`message` sends one line dot-stuffed: compare what follows it.)
    ensure!(
        m.data.ends_with(&large.as_bytes()[large.len() - 900_000..]),
        "foreign large mail was changed or cut"
    );
    // A large message from the unverified domain: refused like a small one.
    let large = large_message(&format!("a@{UNVERIFIED}"), "trusted-unverified-large");
    let r = c.send_message("app@relay.example", &["customer@remote.example"], &large)?;
    ensure!(
        r.code == 550 && r.text().contains("not verified"),
        "large trusted mail from an unverified domain: {r}"
    );
    // A trusted network sending for the unverified domain: refused at the end of data.
    let r = submit_trusted(
        &rig,
        "app@relay.example",
        &format!("a@{UNVERIFIED}"),
        "trusted-unverified",
    )?;
    ensure!(
        r.code == 550 && r.enhanced() == Some("5.7.1") && r.text().contains("not verified"),
        "trusted mail from an unverified domain: {r}"
    );

    let log = rig.daemon.stderr();
    ensure!(
        log.contains(&format!("dkim=\"d={DOMAIN} s=w2m-"))
            || log.contains(&format!("dkim=d={DOMAIN} s=w2m-")),
        "the queued line does not name the signature:\n{log}"
    );
    ensure!(!log.contains("is attached"), "message content in the log");
    Ok(())
}

const NOKEYS: &str = "nokeys.example";

/// Tenant `bare` with nokeys.example: may send, no DKIM key; one SMTP user.
fn keyless_snapshot(password: &str) -> anyhow::Result<Snapshot> {
    Ok(Snapshot {
        version: 1,
        generated_at_ms: 1_700_000_000_000,
        tenants: vec![SnapshotTenant {
            tenant: "bare".into(),
            status: TenantStatus::Active,
            domains: vec![NOKEYS.into()],
            limits: TenantLimits::default(),
            smtp_users: vec![SmtpUser {
                username: format!("app@{NOKEYS}"),
                credential_id: "cred-1".into(),
                password_hash: way2mail_seal::password::hash(password)
                    .map_err(|e| anyhow::anyhow!("hash: {e}"))?,
            }],
            sending: vec![SendingDomain {
                domain: NOKEYS.into(),
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
        }],
        erased: Vec::new(),
    })
}

for_each_backend!(domains_without_keys_are_refused_or_sent_unsigned);

fn domains_without_keys_are_refused_or_sent_unsigned(backend: Backend) -> anyhow::Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("way2mail-dkim-fake-control-")
        .tempdir()?;
    let password = "keyless-password-0";
    let socket = dir.path().join("control.sock");
    let _control = FakeControl::start(&socket, keyless_snapshot(password)?)?;
    let dns = StubDns::start(Vec::new())?;
    let sink = Sink::start(SinkOptions::default())?;
    let user = format!("app@{NOKEYS}");

    // refuse (the default): at MAIL FROM with AUTH, at the end of data when trusted.
    let daemon = Daemon::start(&mta_config(backend, &socket, dir.path(), &sink, &dns))?;
    let mut c = authenticated(&daemon, &user, password)?;
    let r = c.command(&format!("MAIL FROM:<{user}>"))?;
    ensure!(
        r.code == 550 && r.enhanced() == Some("5.7.1") && r.text().contains("has no DKIM key"),
        "MAIL FROM a domain without keys: {r}"
    );
    let (mut c, _) = SmtpClient::connect(daemon.ports().mx)?;
    c.expect("EHLO relay.client.test", 250)?;
    let r = c.send_message(
        "app@relay.example",
        &["customer@remote.example"],
        &message(&format!("news@{NOKEYS}"), "keyless-refused"),
    )?;
    ensure!(
        r.code == 550 && r.enhanced() == Some("5.7.1") && r.text().contains(NOKEYS),
        "trusted mail from a domain without keys: {r}"
    );
    drop(daemon);

    // unsigned: both go out as they are, and the log says so.
    let config = mta_config(backend, &socket, dir.path(), &sink, &dns).set(
        "dkim",
        "missing_keys",
        "\"unsigned\"",
    );
    let daemon = Daemon::start(&config)?;
    let mut c = authenticated(&daemon, &user, password)?;
    let r = c.send_message(
        &user,
        &["customer@remote.example"],
        &message(&format!("news@{NOKEYS}"), "keyless-auth"),
    )?;
    queued_id(&r)?;
    let (mut c, _) = SmtpClient::connect(daemon.ports().mx)?;
    c.expect("EHLO relay.client.test", 250)?;
    let r = c.send_message(
        "app@relay.example",
        &["customer@remote.example"],
        &message(&format!("news@{NOKEYS}"), "keyless-trusted"),
    )?;
    queued_id(&r)?;
    for marker in ["keyless-auth", "keyless-trusted"] {
        let m = arrived(&sink, marker)?;
        let text = String::from_utf8_lossy(&m.data);
        ensure!(
            !text.contains("DKIM-Signature:"),
            "{marker} was signed:\n{text}"
        );
    }
    let log = daemon.stderr();
    ensure!(
        log.contains("sending unsigned") && log.contains(NOKEYS),
        "no log line about unsigned mail:\n{log}"
    );
    Ok(())
}

/// Runs tests/interop/dkim_verify.py on `message` with the given Python; returns its
/// exit success and output.
fn dkimpy(python: &str, dns: &StubDns, message: &[u8]) -> anyhow::Result<(bool, String)> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("interop/dkim_verify.py");
    let mut child = Command::new(python)
        .arg(&script)
        .arg("--nameserver")
        .arg(dns.addr().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {python} {}", script.display()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(message)?;
    }
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let output = rx
        .recv_timeout(Duration::from_secs(60))
        .context("dkim_verify.py did not finish within 60 s")??;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok((output.status.success(), text))
}

#[test]
fn dkimpy_verifies_what_the_mta_signs() -> anyhow::Result<()> {
    let Some(python) = std::env::var_os("WAY2MAIL_DKIMPY_PYTHON") else {
        println!("skipped: WAY2MAIL_DKIMPY_PYTHON is not set (.ci/interop.sh sets it)");
        return Ok(());
    };
    let python = python.to_string_lossy().into_owned();
    let rig = rig(Backend::Epoll)?;
    submit_authenticated(&rig, "dkimpy-auth")?;
    let r = submit_trusted(
        &rig,
        "bounces@relay.example",
        &format!("news@{DOMAIN}"),
        "dkimpy-trusted",
    )?;
    queued_id(&r)?;
    // Large: signed over its parts as the session reads them back.
    submit_as_tenant(
        &rig,
        &large_message(&format!("billing@{DOMAIN}"), "dkimpy-large"),
    )?;
    let mut verified = 0;
    for marker in ["dkimpy-auth", "dkimpy-trusted", "dkimpy-large"] {
        let m = arrived(&rig.sink, marker)?;
        let (ok, out) = dkimpy(&python, &rig.dns, &m.data)?;
        println!("dkimpy on {marker}:\n{out}");
        ensure!(ok, "dkimpy rejects {marker}:\n{out}");
        let passed = out.lines().filter(|l| l.contains(": pass")).count();
        ensure!(
            passed == 2,
            "dkimpy passed {passed} signatures of {marker}:\n{out}"
        );
        ensure!(
            out.contains("a=rsa-sha256") && out.contains("a=ed25519-sha256"),
            "{out}"
        );
        verified += passed;

        let text = String::from_utf8_lossy(&m.data);
        let changed = text.replace("is attached.", "is overdue.");
        ensure!(changed != text);
        let (ok, out) = dkimpy(&python, &rig.dns, changed.as_bytes())?;
        println!("dkimpy on {marker} with a changed body:\n{out}");
        ensure!(!ok, "dkimpy accepts {marker} with a changed body:\n{out}");
        ensure!(
            out.lines().filter(|l| l.contains(": fail")).count() == 2,
            "{out}"
        );
    }
    if verified != 6 {
        bail!("dkimpy verified {verified} signatures, expected 6");
    }
    println!("{DKIMPY_MARKER} ({verified} signatures, 3 messages, one large; changed bodies fail)");
    Ok(())
}
