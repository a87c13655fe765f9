//! SMTP smuggling end to end, through the real MTA to real sinks. Each end-of-data
//! lookalike of the published research (bare CR and LF around a dot, a NUL next to
//! it) is submitted inside a message whose text after it is a complete second
//! transaction (`MAIL FROM:<evil@attacker.test>`, `RCPT`, `DATA`, a message). Over
//! DATA and over BDAT each must be answered once, leave the session in step, and
//! reach each sink as exactly one message from the real sender with the smuggled
//! text still inside it:
//!
//! - the `strict` sink has CHUNKING, so the MTA sends it BDAT and the sink records
//!   the octets exactly as sent: every line must end in CRLF;
//! - the `lax` sink has no CHUNKING and reads DATA the way smuggling targets do, a
//!   bare LF ending a line too: a bare line end let through would end its data at
//!   the smuggled dot, and the "second message" would show up there.
//!
//! A NUL is refused with `550 5.6.0` and the session goes on; with `[limits]
//! bare_line_endings = "reject"` every bare CR or LF is refused the same way and the
//! log line says why; and a tenant message with bare line ends, DKIM-signed by the
//! MTA, verifies at the sink: the signature covers what is sent.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use mail_auth::DkimResult;
use way2mail_control::dkim;
use way2mail_tests::{
    for_each_backend, queued_id, wait_for, Backend, Daemon, FakeControl, Received, Record, Sink,
    SinkOptions, SmtpClient, StubDns, TestConfig, TestReply,
};
use way2mail_wire::protocol::{DkimKeyState, TenantStatus};
use way2mail_wire::snapshot::{
    DkimAlgorithm, SendingDomain, SigningKey, Snapshot, SnapshotTenant, TenantLimits,
};

for_each_backend!(
    smuggled_endings_stay_inside_one_message,
    bare_line_endings_refused_when_configured,
    signature_covers_the_normalized_message,
);

/// Upper bound for anything the daemon should do within a few seconds.
const WAIT: Duration = Duration::from_secs(30);
/// After the last expected message: time for a smuggled one to show up. It would
/// come on the same connection, right behind its carrier.
const SETTLE: Duration = Duration::from_secs(1);
const SENDER: &str = "alice@sender.test";
const STRICT_RCPT: &str = "user@strict.test";
const LAX_RCPT: &str = "user@lax.test";
const SMUGGLED: &str = "MAIL FROM:<evil@attacker.test>\r\nRCPT TO:<victim@lax.test>\r\n\
                        DATA\r\nSubject: smuggled\r\n\r\nevil\r\n";

/// The end-of-data lookalikes (SEC Consult's 2023 research and the advisories after
/// it), as in the protocol's dialogue table.
const ENDINGS: [(&str, &str); 12] = [
    ("lf-dot-lf", "\n.\n"),
    ("cr-dot-cr", "\r.\r"),
    ("crlf-dot-lf", "\r\n.\n"),
    ("lf-dot-crlf", "\n.\r\n"),
    ("cr-dot-crlf", "\r.\r\n"),
    ("cr-dot-lf", "\r.\n"),
    ("crlf-dot-cr", "\r\n.\r"),
    ("lf-dot-cr", "\n.\r"),
    ("crlf-dot-crcrlf", "\r\n.\r\r\n"),
    ("lf-dot-lf-crlf", "\n.\n\r\n"),
    ("crlf-nul-dot-crlf", "\r\n\0.\r\n"),
    ("crlf-dot-nul-crlf", "\r\n.\0\r\n"),
];

#[derive(Debug, Clone, Copy)]
enum Via {
    Data,
    Bdat,
}

struct Rig {
    strict: Sink,
    lax: Sink,
    daemon: Daemon,
}

/// The MTA delivering `strict.test` to a CHUNKING sink and `lax.test` to one without.
fn rig(backend: Backend, bare_line_endings: &str) -> Result<Rig> {
    let strict = Sink::start(SinkOptions::default())?;
    let lax = Sink::start(SinkOptions {
        chunking: false,
        ..SinkOptions::default()
    })?;
    let config = TestConfig::new(backend)
        .set("delivery", "enabled", "true")
        .set("delivery", "retry_initial_secs", "1")
        .set(
            "limits",
            "bare_line_endings",
            &format!("\"{bare_line_endings}\""),
        )
        .raw(&strict.route("strict.test"))
        .raw(&lax.route("lax.test"));
    let daemon = Daemon::start(&config)?;
    Ok(Rig {
        strict,
        lax,
        daemon,
    })
}

/// A message carrying `end` and, after it, a whole second transaction.
fn smuggling_content(tag: &str, end: &str) -> String {
    format!(
        "From: <{SENDER}>\r\nSubject: carrier {tag}\r\nMessage-ID: <{tag}@sender.test>\r\n\
         \r\nbefore{end}{SMUGGLED}"
    )
}

/// One transaction on the mx listener from loopback (a trusted network), to one
/// recipient at each sink, with `content` sent as it is: after `DATA` and followed by
/// the `.` line, or as one `BDAT LAST`. Returns the reply to the content, after
/// checking that the session is still in step: the next `NOOP` gets its own `250`,
/// `QUIT` its `221`, and nothing else was ever sent.
fn submit(daemon: &Daemon, via: Via, content: &str) -> Result<TestReply> {
    let (mut c, _) = SmtpClient::connect(daemon.ports().mx)?;
    c.expect("EHLO client.test", 250)?;
    c.expect(&format!("MAIL FROM:<{SENDER}>"), 250)?;
    c.expect(&format!("RCPT TO:<{STRICT_RCPT}>"), 250)?;
    c.expect(&format!("RCPT TO:<{LAX_RCPT}>"), 250)?;
    let reply = match via {
        Via::Data => {
            c.expect("DATA", 354)?;
            c.send(content.as_bytes())?;
            c.command(".")?
        }
        Via::Bdat => {
            c.send(format!("BDAT {} LAST\r\n{content}", content.len()).as_bytes())?;
            c.read_reply()?
        }
    };
    let noop = c.expect("NOOP", 250)?;
    ensure!(
        noop.text() == "2.0.0 Ok",
        "after the content the replies are out of step (a smuggled command ran?): {noop}"
    );
    c.expect("QUIT", 221)?;
    let rest = c.read_to_end()?;
    ensure!(
        rest.is_empty(),
        "sent after QUIT: {:?}",
        String::from_utf8_lossy(&rest)
    );
    Ok(reply)
}

/// Every CR is followed by LF and every LF preceded by CR.
fn crlf_only(bytes: &[u8]) -> bool {
    bytes.iter().enumerate().all(|(i, &b)| match b {
        b'\r' => bytes.get(i + 1) == Some(&b'\n'),
        b'\n' => i > 0 && bytes[i - 1] == b'\r',
        _ => true,
    })
}

/// The `message refused` log lines with this reason and the `550`.
fn refusals_logged(log: &str, reason: &str) -> usize {
    log.lines()
        .filter(|l| {
            l.contains("message refused")
                && l.contains("reason=")
                && l.contains(reason)
                && l.contains("reply=550")
        })
        .count()
}

fn text(m: &Received) -> String {
    String::from_utf8_lossy(&m.data).into_owned()
}

/// Waits for exactly `tags.len()` messages at `sink`, one per tag, each from the real
/// sender to `rcpt`, with CRLF line ends only and the smuggled text still inside.
fn check_sink(sink: &Sink, name: &str, rcpt: &str, tags: &[String]) -> Result<()> {
    sink.wait_for(tags.len(), WAIT)?;
    std::thread::sleep(SETTLE);
    let got = sink.messages();
    ensure!(
        got.len() == tags.len(),
        "{name} sink: {} messages for {} submissions: {:#?}",
        got.len(),
        tags.len(),
        got.iter().map(text).collect::<Vec<_>>()
    );
    for m in &got {
        let data = text(m);
        ensure!(
            m.mail_from == SENDER && m.rcpt_to == [rcpt],
            "{name} sink: a message from <{}> to {:?}:\n{data}",
            m.mail_from,
            m.rcpt_to
        );
        ensure!(
            crlf_only(&m.data),
            "{name} sink: a bare CR or LF arrived: {data:?}"
        );
        ensure!(
            data.contains("\r\nMAIL FROM:<evil@attacker.test>\r\n") && data.ends_with("evil\r\n"),
            "{name} sink: the message was cut at the smuggled dot: {data:?}"
        );
    }
    for tag in tags {
        let carriers = got
            .iter()
            .filter(|m| text(m).contains(&format!("Subject: carrier {tag}\r\n")))
            .count();
        ensure!(carriers == 1, "{name} sink: {carriers} messages for {tag}");
    }
    Ok(())
}

fn smuggled_endings_stay_inside_one_message(backend: Backend) -> Result<()> {
    let rig = rig(backend, "normalize")?;
    let mut accepted = Vec::new();
    for (name, end) in ENDINGS {
        for via in [Via::Data, Via::Bdat] {
            let tag = format!("{name}-{via:?}");
            let reply = submit(&rig.daemon, via, &smuggling_content(&tag, end))
                .with_context(|| tag.clone())?;
            if end.contains('\0') {
                ensure!(
                    reply.code == 550
                        && reply.enhanced() == Some("5.6.0")
                        && reply.text().contains("NUL"),
                    "{tag}: {reply}"
                );
            } else {
                queued_id(&reply).with_context(|| tag.clone())?;
                accepted.push(tag);
            }
        }
    }
    check_sink(&rig.strict, "strict", STRICT_RCPT, &accepted)?;
    check_sink(&rig.lax, "lax", LAX_RCPT, &accepted)?;
    let log = rig.daemon.stderr();
    let logged = refusals_logged(&log, "nul_octet");
    ensure!(logged == 4, "{logged} of 4 NUL refusals logged:\n{log}");
    Ok(())
}

fn bare_line_endings_refused_when_configured(backend: Backend) -> Result<()> {
    let rig = rig(backend, "reject")?;
    let mut refused = 0;
    for (name, end) in ENDINGS {
        for via in [Via::Data, Via::Bdat] {
            let tag = format!("{name}-{via:?}");
            let reply = submit(&rig.daemon, via, &smuggling_content(&tag, end))
                .with_context(|| tag.clone())?;
            let want = if end.contains('\0') {
                "Message contains a NUL octet"
            } else {
                refused += 1;
                "Message contains a bare CR or LF; lines must end with CRLF"
            };
            ensure!(
                reply.code == 550
                    && reply.enhanced() == Some("5.6.0")
                    && reply.text() == format!("5.6.0 {want}"),
                "{tag}: {reply}"
            );
        }
    }
    // CRLF-only mail still goes through, and is the only mail that arrives.
    let clean = "From: <alice@sender.test>\r\nSubject: carrier clean\r\n\r\nbefore\r\n..\r\n\
                 MAIL FROM:<evil@attacker.test>\r\nevil\r\n";
    queued_id(&submit(&rig.daemon, Via::Data, clean)?)?;
    for sink in [&rig.strict, &rig.lax] {
        sink.wait_for(1, WAIT)?;
    }
    std::thread::sleep(SETTLE);
    for sink in [&rig.strict, &rig.lax] {
        let got = sink.messages();
        ensure!(got.len() == 1, "{} messages arrived", got.len());
        ensure!(text(&got[0]).contains("Subject: carrier clean\r\n"));
        ensure!(crlf_only(&got[0].data));
    }
    let log = rig.daemon.stderr();
    let logged = refusals_logged(&log, "bare_line_ending");
    ensure!(
        logged == refused,
        "{logged} of {refused} refusals logged with their reason:\n{log}"
    );
    Ok(())
}

const SIGNED: &str = "signed.test";
const SELECTOR: &str = "smuggle-ed";

/// Tenant `acme` with `signed.test` and an Ed25519 key for it; returns the snapshot
/// and the key's DNS record.
fn signing_snapshot() -> Result<(Snapshot, Record)> {
    let key = dkim::generate(
        SIGNED,
        SELECTOR,
        DkimAlgorithm::Ed25519Sha256,
        1_700_000_000,
        DkimKeyState::Active,
    )
    .map_err(|e| anyhow::anyhow!("generating a DKIM key: {e}"))?;
    let record = Record::txt(
        &dkim::record_name(SELECTOR, SIGNED),
        &dkim::record_value(&key.info),
    );
    let snapshot = Snapshot {
        version: 1,
        generated_at_ms: 1_700_000_000_000,
        tenants: vec![SnapshotTenant {
            tenant: "acme".into(),
            status: TenantStatus::Active,
            domains: vec![SIGNED.into()],
            limits: TenantLimits::default(),
            smtp_users: Vec::new(),
            sending: vec![SendingDomain {
                domain: SIGNED.into(),
                may_send: true,
                dkim: vec![SigningKey {
                    selector: SELECTOR.into(),
                    algorithm: DkimAlgorithm::Ed25519Sha256,
                    private_key: key.record.private_key.clone(),
                }],
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
    };
    Ok((snapshot, record))
}

fn signature_covers_the_normalized_message(backend: Backend) -> Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("way2mail-smuggling-")
        .tempdir()?;
    let (snapshot, record) = signing_snapshot()?;
    let socket = dir.path().join("control.sock");
    let _control = FakeControl::start(&socket, snapshot)?;
    let dns = StubDns::start(vec![record])?;
    let sink = Sink::start(SinkOptions::default())?;
    let config = TestConfig::new(backend)
        .set("control", "socket", &format!("\"{}\"", socket.display()))
        .set(
            "control",
            "snapshot_file",
            &format!("\"{}\"", dir.path().join("snapshot").display()),
        )
        .set("delivery", "enabled", "true")
        .set("dns", "nameservers", &format!("[\"{}\"]", dns.addr()))
        .raw(&sink.route("strict.test"));
    let daemon = Daemon::start(&config)?;
    wait_for("the control snapshot", WAIT, || {
        daemon
            .stderr()
            .contains("control snapshot installed")
            .then_some(())
    })?;

    // Mail from a trusted network for the tenant's domain is signed after the
    // protocol normalised it; bare CR and LF everywhere, a smuggling ending too.
    let (mut c, _) = SmtpClient::connect(daemon.ports().mx)?;
    c.expect("EHLO relay.client.test", 250)?;
    let reply = c.send_message(
        &format!("news@{SIGNED}"),
        &[STRICT_RCPT],
        &format!(
            "From: <news@{SIGNED}>\nTo: <{STRICT_RCPT}>\rSubject: signed carrier\r\n\
             Message-ID: <signed@{SIGNED}>\r\n\nline one\rline two\n.\n{SMUGGLED}"
        ),
    )?;
    queued_id(&reply)?;
    let got = sink.wait_for(1, WAIT)?;
    let data = &got[0].data;
    ensure!(crlf_only(data), "{:?}", String::from_utf8_lossy(data));
    let text = String::from_utf8_lossy(data);
    ensure!(
        text.starts_with("DKIM-Signature: ") && text.contains("\r\nline one\r\nline two\r\n"),
        "{text}"
    );
    let results = dns.dkim_verdicts(data)?;
    ensure!(
        results == [DkimResult::Pass],
        "mail-auth: {results:?}\n{text}"
    );
    Ok(())
}
