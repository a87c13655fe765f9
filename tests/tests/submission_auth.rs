//! AUTH on submission, end to end: a real `way2mail-control` holds a tenant, its domain
//! and an SMTP credential made with the `way2mail` CLI; the real MTA loads them from
//! control and follows changes. Real clients (lettre with PLAIN and LOGIN, Python's
//! smtplib) submit after STARTTLS and over implicit TLS; a raw client checks every reply
//! the issue names: AUTH only after TLS and never on mx, `530` without AUTH, `535 5.7.8`
//! after a delay, lockout with `421`, `553 5.7.1` for a foreign sender domain, a
//! suspended tenant refused, per-tenant limits (`452`/`550` naming the limit), and
//! control stopped — the MTA authenticates from its snapshot, also after its own restart.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{Message, SmtpTransport, Transport};
use way2mail_tests::control::{json_str, Control, Operator};
use way2mail_tests::{
    for_each_backend, load_pem_cert, run_bounded, wait_for, Backend, Daemon, SmtpClient,
    TestConfig, TestReply,
};

/// How long a change made with the CLI may take to reach the MTA (the issue says
/// "within a second"; the slack is for loaded CI machines).
const FOLLOW: Duration = Duration::from_secs(3);
const FAILURE_DELAY_MS: u64 = 400;

struct Tenant {
    id: &'static str,
    domain: &'static str,
    username: String,
    password: String,
}

fn toml_str(path: &Path) -> String {
    format!("\"{}\"", path.display())
}

/// A tenant with one domain and one SMTP user, made with the CLI.
fn make_tenant(
    control: &Control,
    admin: &Operator,
    id: &'static str,
    domain: &'static str,
    limits: &[&str],
) -> anyhow::Result<Tenant> {
    let mut add = vec![
        "tenant",
        "add",
        id,
        "--business-name",
        "Acme Ltd",
        "--contact",
        "ops@acme.example",
    ];
    add.extend_from_slice(limits);
    control.run_as(admin, &add)?.ok()?;
    control
        .run_as(admin, &["domain", "add", id, domain])?
        .ok()?;
    // An unverified domain cannot send (issue 5): let it, without publishing DNS records.
    control
        .run_as(
            admin,
            &["domain", "override", domain, "--allow", "--reason", "test"],
        )?
        .ok()?;
    let username = format!("app@{domain}");
    let created = control
        .run_as(
            admin,
            &["--json", "credential", "add", id, "--smtp", &username],
        )?
        .ok()?
        .json()?;
    Ok(Tenant {
        id,
        domain,
        username,
        password: json_str(&created, "secret")?,
    })
}

struct Rig {
    control: Control,
    admin: Operator,
    daemon: Daemon,
    config: TestConfig,
    acme: Tenant,
    /// Spool, spool key and the persisted snapshot live here, across MTA restarts.
    _state: tempfile::TempDir,
}

fn rig(backend: Backend, max_failures: u32) -> anyhow::Result<Rig> {
    let control = Control::start()?;
    let admin = control.bootstrap_admin("admin")?;
    let acme = make_tenant(&control, &admin, "acme", "acme.example", &[])?;
    let state = tempfile::Builder::new()
        .prefix("way2mail-auth-state-")
        .tempdir()?;
    let config = TestConfig::new(backend)
        .set("control", "socket", &toml_str(&control.socket()))
        .set(
            "control",
            "snapshot_file",
            &toml_str(&state.path().join("snapshot")),
        )
        .set("spool", "path", &toml_str(&state.path().join("spool")))
        .set(
            "spool",
            "key_file",
            &toml_str(&state.path().join("spool.key")),
        )
        .set(
            "spool",
            "keyring_file",
            &toml_str(&state.path().join("spool.keyring")),
        )
        // Nobody is trusted: submission needs AUTH.
        .set("relay", "trusted_networks", "[]")
        .set("auth", "failure_delay_ms", &FAILURE_DELAY_MS.to_string())
        .set("auth", "max_failures", &max_failures.to_string())
        .set("auth", "lockout_secs", "60");
    let daemon = Daemon::start(&config)?;
    let rig = Rig {
        control,
        admin,
        daemon,
        config,
        acme,
        _state: state,
    };
    wait_for("the credential to reach the MTA", FOLLOW, || {
        auth_plain(&rig, &rig.acme.username, &rig.acme.password)
            .ok()
            .filter(|r| r.code == 235)
    })?;
    Ok(rig)
}

fn plain_token(user: &str, password: &str) -> String {
    B64.encode(format!("\0{user}\0{password}"))
}

/// A fresh TLS session that tries AUTH PLAIN; returns the reply.
fn auth_plain(rig: &Rig, user: &str, password: &str) -> anyhow::Result<TestReply> {
    let mut c = rig.daemon.submission_tls()?;
    c.command(&format!("AUTH PLAIN {}", plain_token(user, password)))
}

/// A fresh TLS session authenticated as `tenant`.
fn authenticated(rig: &Rig, tenant: &Tenant) -> anyhow::Result<SmtpClient> {
    let mut c = rig.daemon.submission_tls()?;
    c.expect(
        &format!(
            "AUTH PLAIN {}",
            plain_token(&tenant.username, &tenant.password)
        ),
        235,
    )?;
    Ok(c)
}

fn body(subject: &str) -> String {
    format!(
        "From: app@acme.example\r\nTo: rcpt@remote.example\r\nSubject: {subject}\r\n\r\nHello.\r\n"
    )
}

fn lettre_transport(
    daemon: &Daemon,
    implicit: bool,
    user: &str,
    password: &str,
    mechanism: Mechanism,
) -> anyhow::Result<SmtpTransport> {
    let cert = load_pem_cert(&daemon.cert_path())?;
    let params = TlsParameters::builder("localhost".into())
        .add_root_certificate(Certificate::from_pem(&cert)?)
        .build_rustls()?;
    let (port, tls) = if implicit {
        (daemon.ports().submissions, Tls::Wrapper(params))
    } else {
        (daemon.ports().submission, Tls::Required(params))
    };
    Ok(SmtpTransport::builder_dangerous("127.0.0.1")
        .port(port)
        .tls(tls)
        .hello_name(ClientId::Domain("app.acme.example".into()))
        .credentials(Credentials::new(user.into(), password.into()))
        .authentication(vec![mechanism])
        .timeout(Some(Duration::from_secs(20)))
        .build())
}

fn lettre_message(from: &str) -> anyhow::Result<Message> {
    Ok(Message::builder()
        .from(from.parse()?)
        .to("customer@remote.example".parse()?)
        .subject("Your order")
        .header(ContentType::TEXT_PLAIN)
        .body("Thanks for your order.\n".to_string())?)
}

for_each_backend!(submission_with_auth_end_to_end);

fn submission_with_auth_end_to_end(backend: Backend) -> anyhow::Result<()> {
    let mut rig = rig(backend, 20)?;
    let acme_from = format!("billing@{}", rig.acme.domain);

    // Real clients: lettre with PLAIN after STARTTLS and LOGIN over implicit TLS.
    for (implicit, mechanism) in [(false, Mechanism::Plain), (true, Mechanism::Login)] {
        let transport = lettre_transport(
            &rig.daemon,
            implicit,
            &rig.acme.username,
            &rig.acme.password,
            mechanism,
        )?;
        let response = transport
            .send(&lettre_message(&acme_from)?)
            .with_context(|| format!("lettre {mechanism:?} (implicit TLS: {implicit})"))?;
        ensure!(
            response.code().to_string() == "250",
            "lettre got {response:?}"
        );
    }
    // And Python's smtplib login().
    python_login(&rig)?;

    // AUTH is offered only after TLS, and never on mx.
    let (mut c, _) = SmtpClient::connect(rig.daemon.ports().submission)?;
    let ehlo = c.expect("EHLO client.test", 250)?;
    ensure!(
        !ehlo.has_extension("AUTH"),
        "AUTH offered before TLS: {ehlo}"
    );
    let r = c.command(&format!(
        "AUTH PLAIN {}",
        plain_token(&rig.acme.username, &rig.acme.password)
    ))?;
    ensure!(r.code == 538, "AUTH before TLS: {r}");
    let mut c = c.starttls(rig.daemon.tls_config()?)?;
    let ehlo = c.expect("EHLO client.test", 250)?;
    ensure!(
        ehlo.text().contains("AUTH PLAIN LOGIN"),
        "AUTH not offered after TLS: {ehlo}"
    );
    // Without AUTH, an untrusted client gets 530.
    let r = c.command(&format!("MAIL FROM:<{acme_from}>"))?;
    ensure!(r.code == 530, "MAIL without AUTH: {r}");
    let (mut mx, _) = SmtpClient::connect(rig.daemon.ports().mx)?;
    mx.expect("EHLO client.test", 250)?;
    let mut mx = mx.starttls(rig.daemon.tls_config()?)?;
    let ehlo = mx.expect("EHLO client.test", 250)?;
    ensure!(!ehlo.has_extension("AUTH"), "AUTH offered on mx: {ehlo}");

    // A foreign sender domain is refused; the tenant's own is accepted.
    let mut c = authenticated(&rig, &rig.acme)?;
    let r = c.command("MAIL FROM:<ceo@bank.example>")?;
    ensure!(
        r.code == 553 && r.enhanced() == Some("5.7.1"),
        "foreign sender: {r}"
    );
    let r = c.send_message(&acme_from, &["rcpt@remote.example"], &body("ok"))?;
    ensure!(r.code == 250, "own domain: {r}");

    // A wrong password: 535 5.7.8, and only after the configured delay.
    let started = Instant::now();
    let r = auth_plain(&rig, &rig.acme.username, "not-the-password")?;
    ensure!(
        r.code == 535 && r.enhanced() == Some("5.7.8"),
        "wrong password: {r}"
    );
    ensure!(
        started.elapsed() >= Duration::from_millis(FAILURE_DELAY_MS),
        "535 came after {:?}, before the failure delay",
        started.elapsed()
    );
    let r = auth_plain(&rig, "nobody@acme.example", "whatever")?;
    ensure!(r.code == 535, "unknown user: {r}");

    // Suspension reaches the MTA within the follow time: AUTH and MAIL refused.
    let mut open_session = authenticated(&rig, &rig.acme)?;
    rig.control
        .run_as(&rig.admin, &["tenant", "suspend", rig.acme.id])?
        .ok()?;
    let refused = wait_for("the suspension to reach the MTA", FOLLOW, || {
        auth_plain(&rig, &rig.acme.username, &rig.acme.password)
            .ok()
            .filter(|r| r.code == 535)
    })?;
    ensure!(
        refused.text().to_lowercase().contains("suspend")
            || refused.text().to_lowercase().contains("disabled"),
        "suspended tenant: {refused}"
    );
    let r = open_session.command(&format!("MAIL FROM:<{acme_from}>"))?;
    ensure!(r.code == 550, "MAIL by a suspended tenant: {r}");
    rig.control
        .run_as(&rig.admin, &["tenant", "resume", rig.acme.id])?
        .ok()?;
    wait_for("the resumption to reach the MTA", FOLLOW, || {
        auth_plain(&rig, &rig.acme.username, &rig.acme.password)
            .ok()
            .filter(|r| r.code == 235)
    })?;

    // Control stopped: the MTA keeps authenticating from its snapshot, says so in its
    // log, and still does after its own restart.
    rig.control.stop()?;
    let r = auth_plain(&rig, &rig.acme.username, &rig.acme.password)?;
    ensure!(r.code == 235, "AUTH with control stopped: {r}");
    rig.daemon.terminate()?;
    rig.daemon = Daemon::start(&rig.config)?;
    let r = auth_plain(&rig, &rig.acme.username, &rig.acme.password)?;
    ensure!(r.code == 235, "AUTH after a restart without control: {r}");
    let mut c = authenticated(&rig, &rig.acme)?;
    let r = c.send_message(&acme_from, &["rcpt@remote.example"], &body("offline"))?;
    ensure!(r.code == 250, "sending without control: {r}");
    let log = rig.daemon.stderr();
    ensure!(
        log.contains("control") && log.contains("snapshot"),
        "the MTA does not say it serves from its snapshot:\n{log}"
    );
    ensure!(
        !log.contains(&rig.acme.password),
        "the password appears in the MTA's log"
    );
    Ok(())
}

for_each_backend!(brute_force_locks_out);

/// Three failures from one client lock that client out: even the right password then
/// gets `421` until the lockout ends.
fn brute_force_locks_out(backend: Backend) -> anyhow::Result<()> {
    let rig = rig(backend, 3)?;
    for i in 0..3 {
        let r = auth_plain(&rig, &rig.acme.username, &format!("guess-{i}"))?;
        ensure!(r.code == 535, "guess {i}: {r}");
    }
    let r = auth_plain(&rig, &rig.acme.username, &rig.acme.password)?;
    ensure!(
        r.code == 421,
        "the right password during a lockout got {r}, expected 421"
    );
    let log = rig.daemon.stderr();
    ensure!(log.to_lowercase().contains("lock"), "no lockout in the log");
    Ok(())
}

#[test]
fn per_tenant_limits_name_the_limit() -> anyhow::Result<()> {
    let rig = rig(Backend::Epoll, 20)?;
    let hourly = make_tenant(
        &rig.control,
        &rig.admin,
        "hourly",
        "hourly.example",
        &["--messages-per-hour", "2", "--recipients-per-message", "2"],
    )?;
    let daily = make_tenant(
        &rig.control,
        &rig.admin,
        "daily",
        "daily.example",
        &["--messages-per-day", "1"],
    )?;
    wait_for("the new tenants to reach the MTA", FOLLOW, || {
        auth_plain(&rig, &daily.username, &daily.password)
            .ok()
            .filter(|r| r.code == 235)
    })?;

    let from = format!("news@{}", hourly.domain);
    let mut c = authenticated(&rig, &hourly)?;
    c.expect(&format!("MAIL FROM:<{from}>"), 250)?;
    c.expect("RCPT TO:<a@remote.example>", 250)?;
    c.expect("RCPT TO:<b@remote.example>", 250)?;
    let r = c.command("RCPT TO:<c@remote.example>")?;
    ensure!(
        r.code == 452 && r.text().to_lowercase().contains("recipients"),
        "third recipient: {r}"
    );
    c.expect("RSET", 250)?;
    for i in 0..2 {
        let r = c.send_message(&from, &["a@remote.example"], &body(&format!("{i}")))?;
        ensure!(r.code == 250, "message {i} within the hourly limit: {r}");
    }
    let r = c.command(&format!("MAIL FROM:<{from}>"))?;
    ensure!(
        r.code == 452 && r.text().to_lowercase().contains("hour"),
        "over the hourly limit: {r}"
    );

    let from = format!("news@{}", daily.domain);
    let mut c = authenticated(&rig, &daily)?;
    let r = c.send_message(&from, &["a@remote.example"], &body("one"))?;
    ensure!(r.code == 250, "first message of the day: {r}");
    let r = c.command(&format!("MAIL FROM:<{from}>"))?;
    ensure!(
        r.code == 550 && r.text().to_lowercase().contains("daily"),
        "over the daily limit: {r}"
    );

    // Limits changed with the CLI are followed.
    rig.control
        .run_as(
            &rig.admin,
            &["tenant", "update", daily.id, "--messages-per-day", "10"],
        )?
        .ok()?;
    wait_for("the raised daily limit", FOLLOW, || {
        let mut c = authenticated(&rig, &daily).ok()?;
        let r = c.command(&format!("MAIL FROM:<{from}>")).ok()?;
        (r.code == 250).then_some(())
    })?;
    Ok(())
}

/// smtplib: starttls(), login() (it picks a mechanism from the EHLO list), sendmail().
fn python_login(rig: &Rig) -> anyhow::Result<()> {
    let script = r#"
import smtplib, ssl, sys
port, cafile, user, password, sender = sys.argv[1:6]
ctx = ssl.create_default_context(cafile=cafile)
ctx.check_hostname = False
with smtplib.SMTP("127.0.0.1", int(port), timeout=20) as s:
    s.starttls(context=ctx)
    s.login(user, password)
    s.sendmail(sender, ["customer@remote.example"], "Subject: py\r\n\r\nhi\r\n")
print("ok")
"#;
    let output = run_bounded(
        Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(rig.daemon.ports().submission.to_string())
            .arg(rig.daemon.cert_path())
            .arg(&rig.acme.username)
            .arg(&rig.acme.password)
            .arg(format!("py@{}", rig.acme.domain)),
        Duration::from_secs(60),
    )?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    ensure!(
        output.status.success() && stdout.contains("ok"),
        "smtplib login failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

/// A revoked credential stops working at once: new AUTH is refused, and a session
/// that authenticated before the revocation can no longer send.
#[test]
fn revoked_credential_ends_access() -> anyhow::Result<()> {
    let rig = rig(Backend::IoUring, 20)?;
    let from = format!("billing@{}", rig.acme.domain);
    let mut open_session = authenticated(&rig, &rig.acme)?;
    let listed = rig
        .control
        .run_as(
            &rig.admin,
            &["--json", "credential", "list", "--tenant", rig.acme.id],
        )?
        .ok()?
        .json()?;
    let id = listed
        .pointer("/credentials/0/id")
        .and_then(serde_json::Value::as_str)
        .context("credential id")?
        .to_string();
    rig.control
        .run_as(&rig.admin, &["credential", "revoke", &id])?
        .ok()?;
    wait_for("the revocation to reach the MTA", FOLLOW, || {
        auth_plain(&rig, &rig.acme.username, &rig.acme.password)
            .ok()
            .filter(|r| r.code == 535)
    })?;
    let r = open_session.command(&format!("MAIL FROM:<{from}>"))?;
    ensure!(
        r.code == 550 && r.text().to_lowercase().contains("revoked"),
        "MAIL on a session of a revoked credential: {r}"
    );
    Ok(())
}

/// `way2mail-bench smtp --auth-user` (what a benchmark harness uses for submission)
/// authenticates every connection: all messages are accepted with the right password,
/// none with a wrong one (each counted as `auth`).
#[test]
fn load_generator_authenticates() -> anyhow::Result<()> {
    let rig = rig(Backend::Epoll, 20)?;
    let run = |password: &str, messages: u32| -> anyhow::Result<serde_json::Value> {
        let output = run_bounded(
            Command::new(way2mail_tests::bench_binary()?)
                .args(["smtp", "--server"])
                .arg(format!("127.0.0.1:{}", rig.daemon.ports().submission))
                .args(["--starttls", "--new-connection-per-message", "--json"])
                .args(["--connections", "2", "--messages", &messages.to_string()])
                .args(["--auth-user", &rig.acme.username])
                .args(["--from", &format!("bench@{}", rig.acme.domain)])
                .env("WAY2MAIL_BENCH_PASSWORD", password),
            Duration::from_secs(120),
        )?;
        serde_json::from_slice(&output.stdout).with_context(|| {
            format!(
                "bench output: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            )
        })
    };
    let good = run(&rig.acme.password, 20)?;
    ensure!(
        good["ok"] == 20 && good["failed"] == 0,
        "right password: {good}"
    );
    let bad = run("wrong-password", 3)?;
    ensure!(
        bad["ok"] == 0 && bad["errors"]["auth"] == 3,
        "wrong password: {bad}"
    );
    Ok(())
}
