//! Handing a draining node's queue over to a peer (`way2mail-mta drain --handover`):
//! node A (delivery off, so only the handover can empty its queue) sends every
//! queued message to node B over mutual TLS; B keeps each message's queue id and
//! envelope (sender, recipients with their DSN parameters, received time) and
//! delivers it; A stops by itself with an empty spool. A node whose certificate
//! was not signed by the nodes' CA is refused and keeps its mail, and so is a
//! client without any certificate.

use std::io::{ErrorKind, Read};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, ensure, Context};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use way2mail_tests::{
    daemon_binary, free_port, http_get, metric_value, queued_id, run_bounded, wait_for, Backend,
    Daemon, Sink, SinkOptions, SmtpClient, TestConfig,
};
use way2mail_wire::mta_admin::{AdminOp, AdminResult};
use way2mail_wire::queue::{QueueLogEntry, QueueMessage};

const WAIT: Duration = Duration::from_secs(60);
const METRIC: &str = "way2mail_handover_messages_total";
/// In every handed-over message's body, to find them at the sink.
const MARKER: &str = "handover-test";

/// PEM files of one certificate and its key.
struct NodeFiles {
    cert: PathBuf,
    key: PathBuf,
}

/// The nodes' CA, two node certificates it signed, and a rogue CA with a node
/// certificate of its own, all as PEM files in a temp dir.
struct Pki {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    a: NodeFiles,
    b: NodeFiles,
    rogue: NodeFiles,
}

fn ca(name: &str) -> anyhow::Result<(CertificateParams, KeyPair)> {
    let key = KeyPair::generate().context("a CA key")?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok((params, key))
}

/// A node certificate for `localhost` and 127.0.0.1, usable as server and client
/// certificate, signed by `issuer`; written as `<name>.pem` and `<name>.key`.
fn node(dir: &Path, name: &str, issuer: &Issuer<'_, KeyPair>) -> anyhow::Result<NodeFiles> {
    let key = KeyPair::generate().context("a node key")?;
    let mut params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".into()])?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let cert = params
        .signed_by(&key, issuer)
        .context("signing a node cert")?;
    let files = NodeFiles {
        cert: dir.join(format!("{name}.pem")),
        key: dir.join(format!("{name}.key")),
    };
    std::fs::write(&files.cert, cert.pem())?;
    std::fs::write(&files.key, key.serialize_pem())?;
    Ok(files)
}

fn pki() -> anyhow::Result<Pki> {
    let dir = tempfile::Builder::new()
        .prefix("way2mail-handover-pki-")
        .tempdir()?;
    let (ca_params, ca_key) = ca("way2mail test nodes CA")?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, ca_cert.pem())?;
    let issuer = Issuer::new(ca_params, ca_key);
    let a = node(dir.path(), "node-a", &issuer)?;
    let b = node(dir.path(), "node-b", &issuer)?;

    let (rogue_params, rogue_key) = ca("way2mail rogue CA")?;
    let rogue_ca = rogue_params.self_signed(&rogue_key)?;
    std::fs::write(dir.path().join("rogue-ca.pem"), rogue_ca.pem())?;
    let rogue_issuer = Issuer::new(rogue_params, rogue_key);
    let rogue = node(dir.path(), "rogue", &rogue_issuer)?;
    Ok(Pki {
        _dir: dir,
        ca: ca_path,
        a,
        b,
        rogue,
    })
}

fn quoted(path: &Path) -> String {
    format!("\"{}\"", path.display())
}

/// `[handover]` with this node's certificate and key, the nodes' CA, and `listen`.
fn with_handover(config: TestConfig, files: &NodeFiles, ca: &Path, listen: &str) -> TestConfig {
    config
        .set("control", "socket", "\"\"")
        .set("handover", "listen", &format!("\"{listen}\""))
        .set("handover", "cert", &quoted(&files.cert))
        .set("handover", "key", &quoted(&files.key))
        .set("handover", "ca", &quoted(ca))
}

/// `way2mail-mta --config <daemon's> drain --handover 127.0.0.1:<port> --peer-name
/// localhost --wait <secs>`, as an operator runs it.
fn drain_to(daemon: &Daemon, port: u16, wait_secs: u64) -> anyhow::Result<Output> {
    let config_path = daemon.config_path().context("config path")?;
    run_bounded(
        Command::new(daemon_binary()?)
            .arg("--config")
            .arg(config_path)
            .args(["drain", "--handover", &format!("127.0.0.1:{port}")])
            .args(["--peer-name", "localhost"])
            .args(["--wait", &wait_secs.to_string()]),
        Duration::from_secs(wait_secs + 30),
    )
}

fn describe(output: &Output) -> String {
    format!(
        "{:?}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Queues one message on the mx listener with raw MAIL/RCPT lines (parameters
/// included) and returns its queue id.
fn queue(daemon: &Daemon, mail: &str, rcpt: &str, body: &str) -> anyhow::Result<String> {
    let (mut c, greeting) = SmtpClient::connect(daemon.ports().mx)?;
    ensure!(greeting.code == 220, "greeting {greeting}");
    c.expect("EHLO client.test", 250)?;
    c.expect(&format!("MAIL FROM:{mail}"), 250)?;
    c.expect(&format!("RCPT TO:{rcpt}"), 250)?;
    c.expect("DATA", 354)?;
    c.send(body.as_bytes())?;
    let id = queued_id(&c.command(".")?)?;
    c.expect("QUIT", 221)?;
    Ok(id)
}

fn show(daemon: &Daemon, id: &str) -> anyhow::Result<QueueMessage> {
    match daemon.admin()?.call(AdminOp::QueueShow { id: id.into() })? {
        AdminResult::QueueMessage { message, .. } => Ok(message),
        other => bail!("queue.show {id}: {other:?}"),
    }
}

fn delivery_log(daemon: &Daemon, id: &str) -> anyhow::Result<Vec<QueueLogEntry>> {
    match daemon.admin()?.call(AdminOp::DeliveryLog {
        message: Some(id.into()),
        recipient: None,
        since_ms: None,
        limit: None,
    })? {
        AdminResult::DeliveryLog { records, .. } => Ok(records),
        other => bail!("delivery.log {id}: {other:?}"),
    }
}

fn handover_metric(daemon: &Daemon, direction: &str) -> anyhow::Result<Option<f64>> {
    let (code, text) = http_get(daemon.metrics_addr(), "/metrics")?;
    ensure!(code == 200, "/metrics answered {code}");
    Ok(metric_value(&text, METRIC, &[("direction", direction)]))
}

/// A TLS 1.3 client trusting `ca`, presenting `client` (certificate and key) if
/// given.
fn tls_client(ca: &Path, client: Option<&NodeFiles>) -> anyhow::Result<Arc<ClientConfig>> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca)? {
        roots.add(cert?)?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some(files) => {
            let chain = CertificateDer::pem_file_iter(&files.cert)?
                .collect::<Result<Vec<_>, _>>()
                .context("the client chain")?;
            let key = PrivateKeyDer::from_pem_file(&files.key).context("the client key")?;
            builder.with_client_auth_cert(chain, key)?
        }
    };
    Ok(Arc::new(config))
}

/// What became of a TLS session with the handover listener in which the client
/// says nothing: the handshake's result, then the first read's (within 3 s).
enum Session {
    HandshakeFailed(String),
    /// The handshake passed and the server then closed or sent an alert.
    RefusedAfterHandshake(String),
    /// The server kept the session open (timeout) or sent data.
    Open,
}

fn probe(port: u16, config: Arc<ClientConfig>) -> anyhow::Result<Session> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).context("connecting to the handover port")?;
    tcp.set_read_timeout(Some(Duration::from_secs(3)))?;
    tcp.set_write_timeout(Some(Duration::from_secs(3)))?;
    let conn = ClientConnection::new(config, ServerName::try_from("localhost")?)?;
    let mut tls = StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        if let Err(e) = tls.conn.complete_io(&mut tls.sock) {
            return Ok(Session::HandshakeFailed(e.to_string()));
        }
    }
    let mut buf = [0u8; 256];
    Ok(match tls.read(&mut buf) {
        Ok(0) => Session::RefusedAfterHandshake("closed".into()),
        Ok(_) => Session::Open,
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Session::Open,
        Err(e) => Session::RefusedAfterHandshake(e.to_string()),
    })
}

#[test]
fn a_draining_node_hands_its_queue_over_to_a_peer_over_mutual_tls() -> anyhow::Result<()> {
    let pki = pki()?;

    // Node B, the peer: accepts handed-over mail and delivers it to the sink.
    let sink = Sink::start(SinkOptions::default())?;
    let b_port = free_port()?;
    let b_config = with_handover(
        TestConfig::quick_delivery(Backend::Epoll),
        &pki.b,
        &pki.ca,
        &format!("127.0.0.1:{b_port}"),
    )
    .raw(&sink.route("remote.example"));
    let mut b = Daemon::start(&b_config)?;
    wait_for("B's handover listener", WAIT, || {
        TcpStream::connect(("127.0.0.1", b_port)).ok()
    })?;

    // The listener proves its certificate (valid for localhost, signed by the CA)
    // and insists on the client's: none, or one of another CA, is refused.
    match probe(b_port, tls_client(&pki.ca, Some(&pki.a))?)? {
        Session::Open => {}
        Session::HandshakeFailed(e) | Session::RefusedAfterHandshake(e) => {
            bail!("a node with a certificate of the CA was refused: {e}")
        }
    }
    for (who, client) in [
        ("no certificate", None),
        ("a rogue certificate", Some(&pki.rogue)),
    ] {
        if let Session::Open = probe(b_port, tls_client(&pki.ca, client)?)? {
            bail!("the handover listener accepted a client with {who}");
        }
    }

    // Node A, delivery off: only a handover empties its queue.
    let a_config = with_handover(TestConfig::new(Backend::Epoll), &pki.a, &pki.ca, "");
    let mut a = Daemon::start(&a_config)?;
    let mut ids = Vec::new();
    for i in 0..3 {
        let rcpt = format!("bob{i}@remote.example");
        let body = format!("Subject: {MARKER} {i}\r\n\r\nqueued on A, number {i}\r\n");
        let id = if i == 2 {
            // DSN parameters, which must travel with the envelope.
            queue(
                &a,
                "<a@client.test> RET=HDRS ENVID=abc",
                &format!("<{rcpt}> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;{rcpt}"),
                &body,
            )?
        } else {
            queue(&a, "<a@client.test>", &format!("<{rcpt}>"), &body)?
        };
        ids.push(id);
    }
    let mut before = Vec::new();
    for id in &ids {
        let message = show(&a, id)?;
        ensure!(message.sender == "a@client.test", "{message:?}");
        ensure!(message.recipients.len() == 1, "{message:?}");
        before.push(message);
    }
    ensure!(
        sink.messages().is_empty(),
        "A delivered although delivery is off"
    );
    // Time passes between receipt and handover: a received time reset by the peer
    // would show.
    std::thread::sleep(Duration::from_millis(1500));

    let output = drain_to(&a, b_port, 60)?;
    eprintln!("drain of A: {}", describe(&output));
    ensure!(
        output.status.success(),
        "drain --handover: {}",
        describe(&output)
    );
    ensure!(
        String::from_utf8_lossy(&output.stdout).contains("the daemon stopped"),
        "drain --handover: {}",
        describe(&output)
    );
    let status = a.wait_exit()?;
    ensure!(status.success(), "A's exit {status}: {}", a.stderr());
    let spool = a.open_spool()?;
    ensure!(
        spool.is_empty(),
        "{} message(s) left on A: {:?}",
        spool.len(),
        spool.list()?
    );

    // B delivered the three messages, with their envelopes as A had them.
    let received = wait_for("B to deliver the three messages", WAIT, || {
        let got: Vec<_> = sink
            .messages()
            .into_iter()
            .filter(|m| String::from_utf8_lossy(&m.data).contains(MARKER))
            .collect();
        (got.len() >= 3).then_some(got)
    })?;
    ensure!(received.len() == 3, "{} delivered, not 3", received.len());
    for (i, message) in before.iter().enumerate() {
        let subject = format!("Subject: {MARKER} {i}\r\n");
        let copy = received
            .iter()
            .find(|m| String::from_utf8_lossy(&m.data).contains(&subject))
            .with_context(|| format!("message {i} ({}) did not reach the sink", message.id))?;
        ensure!(copy.mail_from == message.sender, "{copy:?} vs {message:?}");
        let want: Vec<&str> = message
            .recipients
            .iter()
            .map(|r| r.address.as_str())
            .collect();
        ensure!(copy.rcpt_to == want, "{copy:?} vs {message:?}");
        if i == 2 {
            let params = copy.mail_params.to_ascii_uppercase();
            ensure!(
                params.contains("RET=HDRS") && params.contains("ENVID=ABC"),
                "DSN parameters of MAIL lost in the handover: {:?}",
                copy.mail_params
            );
            let rcpt = copy.rcpt_params.join(" ").to_ascii_uppercase();
            ensure!(
                rcpt.contains("NOTIFY=")
                    && rcpt.contains("SUCCESS")
                    && rcpt.contains("FAILURE")
                    && rcpt.contains("ORCPT=RFC822;BOB2@REMOTE.EXAMPLE"),
                "DSN parameters of RCPT lost in the handover: {:?}",
                copy.rcpt_params
            );
        }
    }

    // B kept each queue id: its delivery log has the delivery under A's id, with
    // A's received time and attempt count carried on.
    for message in &before {
        let record = wait_for(
            &format!("B's delivery record of {}", message.id),
            WAIT,
            || {
                delivery_log(&b, &message.id)
                    .ok()?
                    .into_iter()
                    .find(|r| r.outcome == "delivered")
            },
        )?;
        ensure!(
            record.recipient == message.recipients[0].address,
            "{record:?} vs {message:?}"
        );
        let received_at = record.time_ms.saturating_sub(record.queue_time_ms);
        ensure!(
            received_at.abs_diff(message.received_at_ms) < 1000,
            "received time not kept: A had {}, B's record implies {received_at} ({record:?})",
            message.received_at_ms
        );
        ensure!(
            record.attempt == message.attempts + 1,
            "attempts not kept: A had {}, B's delivery was attempt {}",
            message.attempts,
            record.attempt
        );
    }
    let got = wait_for("B's received counter to reach 3", WAIT, || {
        handover_metric(&b, "received")
            .ok()
            .flatten()
            .filter(|v| *v >= 3.0)
    })?;
    ensure!(got == 3.0, "{METRIC}{{direction=\"received\"}} = {got}");

    // Node C: certificate from the rogue CA (it trusts B's CA, so only B's check
    // of the client certificate can stop it). The handover fails and C keeps its
    // mail.
    let c_config = with_handover(TestConfig::new(Backend::Epoll), &pki.rogue, &pki.ca, "");
    let mut c = Daemon::start(&c_config)?;
    let rogue_id = queue(
        &c,
        "<a@client.test>",
        "<rogue@remote.example>",
        &format!("Subject: {MARKER} rogue\r\n\r\nfrom an unknown node\r\n"),
    )?;
    let output = drain_to(&c, b_port, 15)?;
    eprintln!("drain of the rogue node: {}", describe(&output));
    // The ping before anything is drained meets B's refusal of the certificate:
    // the command fails at once, and C does not drain.
    ensure!(
        !output.status.success() && String::from_utf8_lossy(&output.stderr).contains("handover to"),
        "drain to a peer refusing our certificate: {}",
        describe(&output)
    );
    let (code, _) = http_get(c.metrics_addr(), "/readyz")?;
    ensure!(
        code == 200,
        "C drains although the handover was refused: {code}"
    );
    let c_sent = match c.try_exit()? {
        None => handover_metric(&c, "sent").ok().flatten(),
        Some(_) => None,
    };
    c.terminate()?;
    let spool = c.open_spool()?;
    let kept: Vec<String> = spool.list()?.iter().map(|s| s.id.to_string()).collect();
    // Whatever the CLI's exit status (1 when the daemon did not stop within
    // --wait), the message must not be lost: B has none of it.
    ensure!(
        kept == [rogue_id.clone()],
        "C kept {kept:?}, not its message {rogue_id}; drain: {}",
        describe(&output)
    );
    ensure!(
        c_sent.unwrap_or(0.0) == 0.0,
        "C counts {c_sent:?} messages sent"
    );

    // B took nothing from C.
    ensure!(
        handover_metric(&b, "received")? == Some(3.0),
        "B's received counter moved"
    );
    ensure!(
        delivery_log(&b, &rogue_id)?.is_empty(),
        "B logged C's message"
    );
    ensure!(
        !sink
            .messages()
            .iter()
            .any(|m| String::from_utf8_lossy(&m.data).contains("from an unknown node")),
        "C's message reached the sink"
    );
    b.terminate()?;
    Ok(())
}
