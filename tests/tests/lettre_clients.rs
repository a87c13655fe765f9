//! A real third-party client (lettre, rustls) submits to each listener the way it would in
//! production: plain to `mx`, STARTTLS-required to `submission`, implicit TLS to
//! `submissions`, each time verifying the daemon's certificate against `localhost`. Every
//! send must get `250 2.0.0 <id> queued`, and after a clean stop `spool list` must show
//! exactly the acknowledged messages with the right recipient counts. Each stored
//! message, read back from the spool and parsed with mail-parser, must carry our
//! `Received:` trace header (ESMTP or ESMTPS per RFC 3848) first and lettre's headers
//! and body unchanged.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{ensure, Context};
use lettre::message::header::ContentType;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{Message, SmtpTransport, Transport};
use mail_parser::MessageParser;
use way2mail_smtp::MessageId;
use way2mail_tests::{
    for_each_backend, load_pem_cert, queued_id, Backend, Daemon, TestConfig, TestReply,
};

const SENDER: &str = "sender@example.org";

for_each_backend!(lettre_sends_on_every_listener);

fn lettre_sends_on_every_listener(backend: Backend) -> anyhow::Result<()> {
    let mut daemon = Daemon::start(&TestConfig::new(backend))?;
    let cert = load_pem_cert(&daemon.cert_path())?;
    let ports = daemon.ports();
    let tls = || -> anyhow::Result<TlsParameters> {
        Ok(TlsParameters::builder("localhost".into())
            .add_root_certificate(Certificate::from_pem(&cert)?)
            .build_rustls()?)
    };
    let listeners = [
        ("mx", ports.mx, Tls::None),
        ("submission", ports.submission, Tls::Required(tls()?)),
        ("submissions", ports.submissions, Tls::Wrapper(tls()?)),
    ];

    // id → recipient count, for every message the daemon acknowledged.
    let mut acknowledged = BTreeMap::new();
    // id → listener it came through.
    let mut via = BTreeMap::new();
    for (listener, port, tls) in listeners {
        // The address is 127.0.0.1; the TLS parameters carry the name to verify.
        let transport = SmtpTransport::builder_dangerous("127.0.0.1")
            .port(port)
            .tls(tls)
            .hello_name(ClientId::Domain("client.way2mail.test".into()))
            .timeout(Some(Duration::from_secs(20)))
            .build();
        for recipients in 1..=2 {
            let message = message(listener, recipients)?;
            let response = transport
                .send(&message)
                .with_context(|| format!("lettre send to the {listener} listener ({backend:?})"))?;
            let reply = TestReply {
                code: response.code().to_string().parse()?,
                lines: response.message().map(str::to_string).collect(),
            };
            let id = queued_id(&reply).with_context(|| format!("{listener} listener"))?;
            ensure!(
                acknowledged.insert(id.clone(), recipients).is_none(),
                "id {id} was given to two messages"
            );
            via.insert(id, listener);
        }
    }

    daemon.terminate()?;
    let listed: BTreeMap<String, usize> = daemon
        .spool_entries()?
        .into_iter()
        .map(|entry| {
            let sender = entry.sender.trim_start_matches('<').trim_end_matches('>');
            ensure!(sender == SENDER, "spool lists sender {:?}", entry.sender);
            Ok((entry.id, entry.recipients))
        })
        .collect::<anyhow::Result<_>>()?;
    ensure!(
        listed == acknowledged,
        "spool list {listed:?} differs from the acknowledged messages {acknowledged:?}"
    );
    check_stored(&daemon, &via)
}

/// Reads every message back from the spool and parses it like a mail reader would.
fn check_stored(daemon: &Daemon, via: &BTreeMap<String, &str>) -> anyhow::Result<()> {
    let spool = daemon.open_spool()?;
    for (id, listener) in via {
        let message_id: MessageId = id.parse()?;
        let (envelope, body) = spool
            .read(&message_id)?
            .with_context(|| format!("{id} not in the spool"))?;
        ensure!(
            envelope.sender == SENDER,
            "envelope sender {}",
            envelope.sender
        );
        ensure!(
            envelope.origin.listener == *listener,
            "origin {:?}",
            envelope.origin
        );
        let parsed = MessageParser::default()
            .parse(&body)
            .with_context(|| format!("mail-parser cannot parse {id}"))?;
        let first = parsed.headers().first().context("no headers")?;
        ensure!(
            first.name() == "Received",
            "first header is {}",
            first.name()
        );
        let raw = String::from_utf8_lossy(&body);
        let trace = raw.split("\r\n\t").take(3).collect::<Vec<_>>().join(" ");
        let protocol = if *listener == "mx" {
            "with ESMTP id"
        } else {
            "with ESMTPS id"
        };
        ensure!(
            trace.contains("by mx.way2mail.test")
                && trace.contains(protocol)
                && trace.contains(id.as_str()),
            "Received header of {id} via {listener}: {trace}"
        );
        let subject = format!("lettre via {listener}");
        ensure!(
            parsed.subject() == Some(subject.as_str()),
            "subject {:?}",
            parsed.subject()
        );
        let text = parsed.body_text(0).context("no text body")?;
        ensure!(
            text.contains(".leading dot must survive"),
            "body of {id} lost its leading dot: {text:?}"
        );
    }
    Ok(())
}

fn message(listener: &str, recipients: usize) -> anyhow::Result<Message> {
    let mut builder = Message::builder()
        .from(SENDER.parse()?)
        .subject(format!("lettre via {listener}"))
        .header(ContentType::TEXT_PLAIN);
    for n in 0..recipients {
        builder = builder.to(format!("rcpt{n}@example.net").parse()?);
    }
    Ok(builder.body(format!(
        "Sent by lettre to the {listener} listener.\r\n.leading dot must survive\r\n"
    ))?)
}
