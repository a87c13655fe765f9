//! Content scanning with a real rspamd (docs/scanning.md): each test starts its own
//! rspamd on a free loopback port with a minimal configuration (no controller, no
//! proxy, no redis, every module that looks things up on the network off, a tiny
//! TLD list so that it starts in a second), and a fake control that serves tenant
//! `acme` (acme.example, an Ed25519 DKIM key, an SMTP user and an API key).
//!
//! - GTUBE is refused with `550 5.7.1` over SMTP and with 422 naming `GTUBE` over
//!   the API; a clean message is signed, delivered, and its score logged;
//! - rspamd stopped: `on_failure = "tempfail"` answers `451 4.7.1`, `"accept"`
//!   queues and delivers;
//! - a message over `hold_score` (rspamd's test pattern for `add header`) is queued
//!   held, listed by `queue.list` with state held, and delivered once released,
//!   with `X-Spam: Yes` under the signature.
//!
//! Without the `rspamd` binary each test prints `SKIPPED: rspamd not installed` and
//! passes; when it ran it prints [`MARKER`], which .ci/scan.sh looks for.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::{json, Value};
use way2mail_tests::{
    api_request, free_port, queued_id, wait_for, Backend, Daemon, FakeControl, Sink, SinkOptions,
    SmtpClient, TestConfig,
};
use way2mail_wire::mta_admin::{AdminOp, AdminResult};
use way2mail_wire::protocol::TenantStatus;
use way2mail_wire::queue::{QueueAction, QueueFilter, QueueSelection, QueueState};
use way2mail_wire::snapshot::{
    ApiKey, DkimAlgorithm, SendingDomain, SigningKey, SmtpUser, Snapshot, SnapshotTenant,
    TenantLimits,
};

/// The line .ci/scan.sh looks for to know rspamd really ran.
const MARKER: &str = "RSPAMD-INTEROP: ran";
const DOMAIN: &str = "acme.example";
const USER: &str = "app@acme.example";
const PASSWORD: &str = "scan-test-password-0";
const FOLLOW: Duration = Duration::from_secs(10);
const DELIVERY: Duration = Duration::from_secs(30);
/// The GTUBE string: rspamd answers `reject`, whatever its modules.
const GTUBE: &str = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";
/// rspamd's test pattern for `add header` (score 6), with `enable_test_patterns`.
const GTUBE_ADD_HEADER: &str =
    "YJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

fn toml_str(path: &Path) -> String {
    format!("\"{}\"", path.display())
}

fn rspamd_binary() -> Option<PathBuf> {
    [
        "/usr/bin/rspamd",
        "/usr/sbin/rspamd",
        "/usr/local/bin/rspamd",
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
}

/// A running rspamd, killed on drop.
struct Rspamd {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl Rspamd {
    /// `None` (after saying so) when rspamd is not installed.
    fn start() -> anyhow::Result<Option<Rspamd>> {
        let Some(binary) = rspamd_binary() else {
            println!("SKIPPED: rspamd not installed (apt-get install rspamd; .ci/scan.sh does)");
            return Ok(None);
        };
        let dir = tempfile::Builder::new()
            .prefix("way2mail-rspamd-")
            .tempdir()?;
        let root = dir.path();
        let local = root.join("local.d");
        for sub in ["local.d", "db", "run", "log"] {
            std::fs::create_dir_all(root.join(sub))?;
        }
        let port = free_port()?;
        std::fs::write(
            root.join("rspamd.conf"),
            format!(
                ".include \"$CONFDIR/common.conf\"\n\
                 options {{\n\
                 .include \"$CONFDIR/options.inc\"\n\
                 .include(try=true; priority=1,duplicate=merge) \"$LOCAL_CONFDIR/local.d/options.inc\"\n\
                 }}\n\
                 logging {{ type = \"file\"; filename = \"$LOGDIR/rspamd.log\"; level = \"notice\"; }}\n\
                 worker \"normal\" {{ bind_socket = \"127.0.0.1:{port}\"; count = 1; mime = true; task_timeout = 8s; }}\n"
            ),
        )?;
        // No lookups: DNS goes to a closed port, and a tiny public suffix list
        // (the full one takes rspamd some 15 s to compile).
        std::fs::write(root.join("tld.dat"), "com\norg\nnet\nexample\ntest\n")?;
        std::fs::write(
            local.join("options.inc"),
            format!(
                "dns {{ nameserver = [\"127.0.0.1:1\"]; timeout = 0.2s; retransmits = 1; }}\n\
                 url_tld = \"{}\";\n\
                 enable_test_patterns = true;\n",
                root.join("tld.dat").display()
            ),
        )?;
        for module in [
            "rbl",
            "surbl",
            "fuzzy_check",
            "asn",
            "emails",
            "phishing",
            "dkim",
            "spf",
            "dmarc",
            "arc",
            "dkim_signing",
            "arc_signing",
            "multimap",
            "whitelist",
            "mx_check",
            "url_redirector",
            "neural",
            "ratelimit",
            "greylist",
            "replies",
            "reputation",
            "history_redis",
            "dcc",
            "spamassassin",
            "external_services",
            "antivirus",
            "clickhouse",
            "elastic",
            "metadata_exporter",
            "maillist",
            "hfilter",
            "bayes_expiry",
            "known_senders",
        ] {
            std::fs::write(local.join(format!("{module}.conf")), "enabled = false;\n")?;
        }
        let var = |k: &str, v: &Path| format!("{k}={}", v.display());
        let child = Command::new(binary)
            .args(["-f", "-u", "root", "-g", "root", "-c"])
            .arg(root.join("rspamd.conf"))
            .args(["--var", &var("LOCAL_CONFDIR", root)])
            .args(["--var", &var("DBDIR", &root.join("db"))])
            .args(["--var", &var("RUNDIR", &root.join("run"))])
            .args(["--var", &var("LOGDIR", &root.join("log"))])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(root.join("stderr"))?))
            .spawn()
            .context("starting rspamd")?;
        let mut rspamd = Rspamd {
            child: Some(child),
            port,
            dir,
        };
        let started = Instant::now();
        loop {
            if rspamd.ping() {
                break;
            }
            if let Some(child) = rspamd.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    bail!("rspamd exited ({status}):\n{}", rspamd.log());
                }
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!("rspamd did not answer /ping within 60 s:\n{}", rspamd.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        println!("rspamd on 127.0.0.1:{port} in {:?}", started.elapsed());
        Ok(Some(rspamd))
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn ping(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        if s.write_all(b"GET /ping HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .is_err()
        {
            return false;
        }
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        answer.starts_with("HTTP/1.") && answer.contains("pong")
    }

    fn log(&self) -> String {
        let root = self.dir.path();
        format!(
            "{}{}",
            std::fs::read_to_string(root.join("stderr")).unwrap_or_default(),
            std::fs::read_to_string(root.join("log/rspamd.log"))
                .unwrap_or_default()
                .lines()
                .rev()
                .take(40)
                .collect::<Vec<_>>()
                .join("\n")
        )
    }

    /// Stops rspamd: SIGTERM to its main process (its workers follow), then waits.
    fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            let pid = rustix::process::Pid::from_raw(child.id() as i32).context("pid")?;
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while child.try_wait()?.is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        // Nothing answers any more.
        wait_for("rspamd to stop answering", Duration::from_secs(10), || {
            (!self.ping()).then_some(())
        })
    }
}

impl Drop for Rspamd {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// Tenant acme: acme.example with an Ed25519 key, an SMTP user, an API key.
fn snapshot(api_key: &str, api_prefix: &str) -> anyhow::Result<Snapshot> {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = aws_lc_rs::signature::Ed25519KeyPair::generate_pkcs8(&rng)
        .map_err(|_| anyhow::anyhow!("ed25519 key"))?;
    let hash = |s: &str| way2mail_seal::password::hash(s).map_err(|e| anyhow::anyhow!("{e}"));
    Ok(Snapshot {
        version: 1,
        generated_at_ms: 1_700_000_000_000,
        tenants: vec![SnapshotTenant {
            tenant: "acme".into(),
            status: TenantStatus::Active,
            domains: vec![DOMAIN.into()],
            limits: TenantLimits::default(),
            smtp_users: vec![SmtpUser {
                username: USER.into(),
                credential_id: "cred-smtp".into(),
                password_hash: hash(PASSWORD)?,
            }],
            sending: vec![SendingDomain {
                domain: DOMAIN.into(),
                may_send: true,
                dkim: vec![SigningKey {
                    selector: "w2m-scan".into(),
                    algorithm: DkimAlgorithm::Ed25519Sha256,
                    private_key: B64.encode(pkcs8.as_ref()),
                }],
                bimi_selector: None,
            }],
            retention: None,
            legal_hold: false,
            suppressed: Vec::new(),
            api_keys: vec![ApiKey {
                prefix: api_prefix.into(),
                credential_id: "cred-api".into(),
                key_hash: hash(api_key)?,
            }],
            list_unsubscribe: false,
            webhooks: Vec::new(),
            sending_paused: false,
        }],
        erased: Vec::new(),
    })
}

/// A fake control serving [`snapshot`], a sink for remote.example, and what the
/// MTA's configuration needs of them.
struct Rig {
    dir: tempfile::TempDir,
    _control: FakeControl,
    sink: Sink,
    api_key: String,
}

impl Rig {
    fn start() -> anyhow::Result<Rig> {
        let dir = tempfile::Builder::new()
            .prefix("way2mail-scan-")
            .tempdir()?;
        let (prefix, key) =
            way2mail_seal::password::generate_api_key().map_err(|e| anyhow::anyhow!("{e}"))?;
        let control =
            FakeControl::start(&dir.path().join("control.sock"), snapshot(&key, &prefix)?)?;
        Ok(Rig {
            _control: control,
            sink: Sink::start(SinkOptions::default())?,
            api_key: key.to_string(),
            dir,
        })
    }

    /// The MTA with `[scan]` set by `scan` (TOML lines).
    fn config(&self, backend: Backend, scan: &[(&str, String)]) -> TestConfig {
        let mut c = TestConfig::new(backend)
            .set(
                "control",
                "socket",
                &toml_str(&self.dir.path().join("control.sock")),
            )
            .set(
                "control",
                "snapshot_file",
                &toml_str(&self.dir.path().join("snapshot")),
            )
            .set("delivery", "enabled", "true")
            .set("delivery", "retry_initial_secs", "1")
            .set("relay", "trusted_networks", "[]")
            .raw(&self.sink.route("remote.example"));
        for (k, v) in scan {
            c = c.set("scan", k, v);
        }
        c
    }
}

fn auth_line() -> String {
    format!("AUTH PLAIN {}", B64.encode(format!("\0{USER}\0{PASSWORD}")))
}

/// Submits `body` as acme's SMTP user; the reply to the end of data.
fn submit(daemon: &Daemon, marker: &str, body: &str) -> anyhow::Result<way2mail_tests::TestReply> {
    let mut c: SmtpClient = wait_for("the SMTP user to reach the MTA", FOLLOW, || {
        let mut c = daemon.submission_tls().ok()?;
        let r = c.command(&auth_line()).ok()?;
        (r.code == 235).then_some(c)
    })?;
    c.send_message(USER, &["customer@remote.example"], &message(marker, body))
}

fn message(marker: &str, body: &str) -> String {
    format!(
        "From: Acme <{USER}>\r\n\
         To: Customer <customer@remote.example>\r\n\
         Subject: Scan {marker}\r\n\
         Date: Mon, 1 Jan 2024 12:00:00 +0000\r\n\
         Message-ID: <{marker}@acme.example>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         \r\n\
         Hello,\r\n\
         \r\n\
         {body}\r\n"
    )
}

/// The HTTP answer of the API.
struct Answer {
    status: u16,
    body: Value,
}

fn api_send(daemon: &Daemon, key: &str, marker: &str, text: &str) -> anyhow::Result<Answer> {
    let body = json!({
        "from": USER,
        "to": ["customer@remote.example"],
        "subject": format!("Scan {marker}"),
        "text": text,
    });
    let a = api_request(
        daemon,
        "POST",
        "/v1/messages",
        Some(key),
        &["--json", &body.to_string()],
    )?;
    Ok(Answer {
        status: a.status,
        body: a.body,
    })
}

/// API requests, once the key reached the MTA (a probe answered 422, not 401).
fn api_ready(daemon: &Daemon, key: &str) -> anyhow::Result<()> {
    wait_for("the API key to reach the MTA", FOLLOW, || {
        let body = json!({"from": "x", "subject": "s", "text": "t"});
        let a = api_request(
            daemon,
            "POST",
            "/v1/messages",
            Some(key),
            &["--json", &body.to_string()],
        )
        .ok()?;
        (a.status == 422).then_some(())
    })
}

fn arrived(sink: &Sink, marker: &str) -> anyhow::Result<String> {
    wait_for(&format!("message {marker} at the sink"), DELIVERY, || {
        sink.messages()
            .into_iter()
            .map(|m| String::from_utf8_lossy(&m.data).into_owned())
            .find(|m| m.contains(&format!("Scan {marker}")))
    })
}

/// The `delivered` record of message `id`, once the delivery log has it.
fn delivered_record(
    daemon: &Daemon,
    id: &str,
) -> anyhow::Result<way2mail_wire::queue::QueueLogEntry> {
    let ask = AdminOp::DeliveryLog {
        message: Some(id.to_string()),
        recipient: None,
        since_ms: None,
        limit: None,
    };
    wait_for(&format!("the delivered record of {id}"), DELIVERY, || {
        let AdminResult::DeliveryLog { records, .. } =
            daemon.admin().ok()?.call(ask.clone()).ok()?
        else {
            return None;
        };
        records.into_iter().find(|r| r.outcome == "delivered")
    })
}

#[test]
fn gtube_is_refused_and_clean_mail_is_signed_and_scored() -> anyhow::Result<()> {
    let Some(rspamd) = Rspamd::start()? else {
        return Ok(());
    };
    let rig = Rig::start()?;
    let config = rig.config(
        Backend::Epoll,
        &[
            ("rspamd", format!("\"{}\"", rspamd.url())),
            ("timeout_ms", "10000".into()),
            ("on_failure", "\"tempfail\"".into()),
        ],
    );
    let daemon = Daemon::start(&config)?;

    // GTUBE over SMTP: 550 5.7.1, nothing queued, the symbol (not the content) logged.
    let r = submit(&daemon, "gtube-smtp", GTUBE)?;
    ensure!(
        r.code == 550 && r.enhanced() == Some("5.7.1"),
        "GTUBE over SMTP: {r}\nrspamd:\n{}",
        rspamd.log()
    );
    // A clean message: scored, signed, delivered.
    let r = submit(&daemon, "clean-smtp", "your invoice is attached.")?;
    let id = queued_id(&r).with_context(|| format!("clean over SMTP: {r}"))?;
    let got = arrived(&rig.sink, "clean-smtp")?;
    ensure!(got.starts_with("DKIM-Signature:"), "not signed:\n{got}");
    let log = daemon.stderr();
    let scanned = log
        .lines()
        .find(|l| l.contains("message scanned") && l.contains(&id))
        .with_context(|| format!("no scan line for {id}:\n{log}"))?;
    ensure!(
        scanned.contains("score=") && scanned.contains("action=no_action"),
        "{scanned}"
    );
    // The score goes into the message's delivery log record.
    let delivered = delivered_record(&daemon, &id)?;
    let scan = delivered.scan.as_deref().unwrap_or_default();
    ensure!(
        scan.starts_with("score=") && scan.contains("action=no_action"),
        "{delivered:?}"
    );
    ensure!(
        log.lines()
            .any(|l| l.contains("message refused") && l.contains("GTUBE")),
        "the refusal does not name GTUBE:\n{log}"
    );
    ensure!(!log.contains("XJS*C4J"), "message content in the log");

    // The same over the API: 422 naming GTUBE; a clean message 202 and scored.
    api_ready(&daemon, &rig.api_key)?;
    // rspamd matches GTUBE only when a line end (or space) follows it.
    let a = api_send(&daemon, &rig.api_key, "gtube-api", &format!("{GTUBE}\n"))?;
    ensure!(
        a.status == 422,
        "GTUBE over the API: {} {}",
        a.status,
        a.body
    );
    ensure!(
        a.body["type"] == "urn:way2mail:problem:spam"
            && a.body["errors"]
                .as_array()
                .is_some_and(|e| e.iter().any(|e| e["message"] == "GTUBE")),
        "{}",
        a.body
    );
    let a = api_send(&daemon, &rig.api_key, "clean-api", "a clean message")?;
    ensure!(
        a.status == 202,
        "clean over the API: {} {}",
        a.status,
        a.body
    );
    let got = arrived(&rig.sink, "clean-api")?;
    ensure!(got.starts_with("DKIM-Signature:"), "not signed:\n{got}");
    ensure!(
        rig.sink
            .messages()
            .iter()
            .all(|m| !String::from_utf8_lossy(&m.data).contains("GTUBE-STANDARD")),
        "GTUBE was delivered"
    );
    let log = daemon.stderr();
    ensure!(
        log.lines().any(|l| l.contains("listener=\"api\"")
            && l.contains("message queued")
            && l.contains("score=")),
        "the API's queued line has no score:\n{log}"
    );
    println!("{MARKER}");
    Ok(())
}

#[test]
fn a_stopped_rspamd_follows_on_failure() -> anyhow::Result<()> {
    let Some(mut rspamd) = Rspamd::start()? else {
        return Ok(());
    };
    let rig = Rig::start()?;
    let url = rspamd.url();
    let scan = |on_failure: &str| {
        vec![
            ("rspamd", format!("\"{url}\"")),
            ("timeout_ms", "2000".into()),
            ("on_failure", format!("\"{on_failure}\"")),
        ]
    };
    let daemon = Daemon::start(&rig.config(Backend::Epoll, &scan("tempfail")))?;
    let r = submit(&daemon, "gtube-up", GTUBE)?;
    ensure!(r.code == 550, "GTUBE while rspamd runs: {r}");
    rspamd.stop()?;
    let r = submit(&daemon, "down-tempfail", "hello")?;
    ensure!(
        r.code == 451 && r.enhanced() == Some("4.7.1"),
        "rspamd down, on_failure = tempfail: {r}"
    );
    drop(daemon);

    let daemon = Daemon::start(&rig.config(Backend::Epoll, &scan("accept")))?;
    let r = submit(&daemon, "down-accept", "hello")?;
    queued_id(&r).with_context(|| format!("rspamd down, on_failure = accept: {r}"))?;
    arrived(&rig.sink, "down-accept")?;
    let log = daemon.stderr();
    ensure!(
        log.contains("content scan failed"),
        "no failure logged:\n{log}"
    );
    ensure!(
        rig.sink
            .messages()
            .iter()
            .all(|m| !String::from_utf8_lossy(&m.data).contains("down-tempfail")),
        "a tempfailed message was delivered"
    );
    println!("{MARKER}");
    Ok(())
}

#[test]
fn over_hold_score_is_held_until_released() -> anyhow::Result<()> {
    let Some(rspamd) = Rspamd::start()? else {
        return Ok(());
    };
    let rig = Rig::start()?;
    let config = rig.config(
        Backend::Epoll,
        &[
            ("rspamd", format!("\"{}\"", rspamd.url())),
            ("hold_score", "5.0".into()),
        ],
    );
    let daemon = Daemon::start(&config)?;
    let r = submit(&daemon, "held", GTUBE_ADD_HEADER)?;
    let id = queued_id(&r).with_context(|| format!("over hold_score: {r}"))?;
    // What `way2mail queue list --state held` asks the MTA.
    let list = AdminOp::QueueList {
        filter: QueueFilter {
            state: Some(QueueState::Held),
            ..QueueFilter::default()
        },
        limit: None,
    };
    let held = wait_for("the message to be listed as held", FOLLOW, || {
        let AdminResult::QueueListing(l) = daemon.admin().ok()?.call(list.clone()).ok()? else {
            return None;
        };
        l.messages.iter().any(|m| m.id == id).then_some(())
    });
    held.with_context(|| daemon.stderr())?;
    std::thread::sleep(Duration::from_secs(3));
    ensure!(
        rig.sink.messages().is_empty(),
        "a held message was delivered"
    );
    // `way2mail queue release ID`.
    let release = AdminOp::QueueChange {
        action: QueueAction::Release,
        selection: QueueSelection {
            ids: vec![id.clone()],
            ..QueueSelection::default()
        },
        dry_run: false,
    };
    let AdminResult::QueueChanged(report) = daemon.admin()?.call(release)? else {
        bail!("queue.change");
    };
    ensure!(report.changed == [id.clone()], "{report:?}");
    let got = arrived(&rig.sink, "held")?;
    ensure!(got.starts_with("DKIM-Signature:"), "not signed:\n{got}");
    ensure!(got.contains("\r\nX-Spam: Yes\r\n"), "no X-Spam:\n{got}");
    let log = daemon.stderr();
    ensure!(
        log.lines()
            .any(|l| l.contains("message scanned") && l.contains(&id) && l.contains("held=true")),
        "{log}"
    );
    let delivered = delivered_record(&daemon, &id)?;
    ensure!(
        delivered
            .scan
            .as_deref()
            .is_some_and(|s| s.contains("action=add_header") && s.ends_with(" held")),
        "{delivered:?}"
    );
    println!("{MARKER}");
    Ok(())
}
