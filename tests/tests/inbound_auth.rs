//! Inbound authentication on the mx listener, end to end: messages go into the real
//! daemon over SMTP from 127.0.0.1 (an internet client: `trusted_networks = []`), the
//! daemon checks SPF, DKIM, ARC and DMARC against the stub DNS over UDP/TCP, and delivers
//! to a sink through a route for the local domain. What the sink received (the
//! `Authentication-Results:` header, the quarantine mark, the forged headers left or
//! removed), the replies at the end of DATA and the daemon's log lines are checked.
//!
//! DKIM signatures and ARC sets are made here with mail-auth's signer and sealer and
//! RSA-2048 keys generated for the run (rcgen over aws-lc-rs); the public keys are
//! published in the stub.

use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use base64::Engine as _;
use mail_auth::arc::ArcSealer;
use mail_auth::common::crypto::{RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::{DkimSigner, Done};
use mail_auth::{ArcOutput, AuthenticatedMessage, AuthenticationResults, SpfOutput, SpfResult};
use way2mail_tests::{
    for_each_backend, queued_id, Backend, Daemon, Record, Sink, SinkOptions, SmtpClient, StubDns,
    TestConfig, TestReply,
};

const WAIT: Duration = Duration::from_secs(30);
/// The test daemon's hostname, hence the default authserv-id.
const OUR_ID: &str = "mx.way2mail.test";
const RCPT: &str = "user@example.net";
const SPF_LOCAL: &str = "v=spf1 ip4:127.0.0.1 -all";

/// An RSA key for DKIM or ARC, and its DNS record.
struct Key {
    pkcs8: Vec<u8>,
    record: String,
}

impl Key {
    fn generate() -> Result<Key> {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256)
            .context("generating an RSA key")?;
        let public = base64::engine::general_purpose::STANDARD
            .encode(rcgen::PublicKeyData::subject_public_key_info(&pair));
        Ok(Key {
            pkcs8: pair.serialize_der(),
            record: format!("v=DKIM1; k=rsa; p={public}"),
        })
    }

    fn rsa(&self) -> Result<RsaKey<Sha256>> {
        let der = rustls_pki_types::PrivatePkcs8KeyDer::from(self.pkcs8.as_slice());
        RsaKey::<Sha256>::from_key_der(der.into()).map_err(|e| anyhow::anyhow!("{e}"))
    }
}

/// The keys of one test: `sel._domainkey.sender.test` and `arc._domainkey.forwarder.test`.
struct Keys {
    dkim: Key,
    arc: Key,
}

impl Keys {
    fn generate() -> Result<Keys> {
        Ok(Keys {
            dkim: Key::generate()?,
            arc: Key::generate()?,
        })
    }

    fn signer(&self) -> Result<DkimSigner<RsaKey<Sha256>, Done>> {
        Ok(DkimSigner::from_key(self.dkim.rsa()?)
            .domain("sender.test")
            .selector("sel")
            .headers(["From", "To", "Subject", "Date", "Message-ID"]))
    }

    /// `message` with a DKIM signature of sender.test prepended.
    fn sign(&self, message: &str) -> Result<String> {
        let signature = self
            .signer()?
            .sign(message.as_bytes())
            .map_err(|e| anyhow::anyhow!("signing: {e}"))?;
        Ok(format!("{}{message}", signature.to_header()))
    }

    /// `message` with an ARC set (i=1, cv=none) of forwarder.test prepended.
    fn seal(&self, message: &str) -> Result<String> {
        let parsed = AuthenticatedMessage::parse(message.as_bytes()).context("parsing")?;
        let spf = SpfOutput::new("sender.test".into()).with_result(SpfResult::Pass);
        let results = AuthenticationResults::new("forwarder.test").with_spf_mailfrom_result(
            &spf,
            "192.0.2.7".parse()?,
            "alice@sender.test",
            "client.test",
        );
        let set = ArcSealer::from_key(self.arc.rsa()?)
            .domain("forwarder.test")
            .selector("arc")
            .headers(["From", "To", "Subject", "Date", "DKIM-Signature"])
            .seal(&parsed, &results, &ArcOutput::default())
            .map_err(|e| anyhow::anyhow!("sealing: {e}"))?;
        Ok(format!("{}{message}", set.to_header()))
    }
}

/// The zone every test uses.
fn records(keys: &Keys) -> Vec<Record> {
    vec![
        Record::txt("client.test", SPF_LOCAL),
        Record::txt("helo-fail.test", "v=spf1 -all"),
        Record::txt("sender.test", SPF_LOCAL),
        Record::txt("sel._domainkey.sender.test", &keys.dkim.record),
        Record::txt("_dmarc.sender.test", "v=DMARC1; p=reject"),
        Record::txt("forwarder.test", SPF_LOCAL),
        Record::txt("arc._domainkey.forwarder.test", &keys.arc.record),
        Record::txt("spf-fail.test", "v=spf1 -all"),
        Record::txt("spf-softfail.test", "v=spf1 ~all"),
        Record::txt("spf-neutral.test", "v=spf1 ?all"),
        Record::a("spf-none.test", std::net::Ipv4Addr::new(192, 0, 2, 1)),
        Record::txt("spf-permerror.test", "v=spf1 ip4:not-an-address -all"),
        Record::no_answer("spf-temperror.test"),
        Record::txt("reject.test", "v=spf1 -all"),
        Record::txt("_dmarc.reject.test", "v=DMARC1; p=reject"),
        Record::txt("quarantine.test", "v=spf1 -all"),
        Record::txt("_dmarc.quarantine.test", "v=DMARC1; p=quarantine"),
        Record::txt("monitor.test", "v=spf1 -all"),
        Record::txt("_dmarc.monitor.test", "v=DMARC1; p=none"),
    ]
}

/// An internet-facing daemon: no trusted network, example.net local and routed to the
/// sink, DNS from the stub with a short timeout.
fn config(backend: Backend, dns: &StubDns, sink: &Sink) -> TestConfig {
    TestConfig::new(backend)
        .set("relay", "domains", r#"["example.net"]"#)
        .set("relay", "trusted_networks", "[]")
        .set("dns", "nameservers", &format!("[\"{}\"]", dns.addr()))
        .set("dns", "timeout_ms", "300")
        .set("dns", "attempts", "1")
        .set("delivery", "enabled", "true")
        .raw(&sink.route("example.net"))
}

fn message(from: &str, subject: &str, extra_headers: &str) -> String {
    format!(
        "{extra_headers}From: <{from}>\r\nTo: <{RCPT}>\r\nSubject: {subject}\r\n\
         Date: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <{subject}@test>\r\n\r\n\
         Hello, this is {subject}.\r\n"
    )
}

/// One transaction on a fresh connection; returns the reply to the final dot.
fn send(d: &Daemon, helo: &str, mail_from: &str, body: &str) -> Result<TestReply> {
    let (mut c, _) = SmtpClient::connect(d.ports().mx)?;
    c.expect(&format!("EHLO {helo}"), 250)?;
    c.expect(&format!("MAIL FROM:<{mail_from}>"), 250)?;
    c.expect(&format!("RCPT TO:<{RCPT}>"), 250)?;
    c.expect("DATA", 354)?;
    c.send(body.as_bytes())?;
    let reply = c.command(".")?;
    c.expect("QUIT", 221)?;
    Ok(reply)
}

/// Sends and expects `250 ... queued`; returns the queue id.
fn accepted(d: &Daemon, helo: &str, mail_from: &str, body: &str) -> Result<String> {
    queued_id(&send(d, helo, mail_from, body)?)
}

/// The header fields of a message, unfolded (a line end before whitespace removed).
fn fields(data: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(data);
    let head = text.split("\r\n\r\n").next().unwrap_or("");
    let mut out: Vec<(String, String)> = Vec::new();
    for line in head.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            if let Some(last) = out.last_mut() {
                last.1.push_str(line);
            }
        } else if let Some((name, value)) = line.split_once(':') {
            out.push((name.trim().to_string(), value.trim().to_string()));
        }
    }
    out
}

/// A delivered message, found by its subject.
struct Delivered {
    fields: Vec<(String, String)>,
    data: String,
}

impl Delivered {
    fn find(sink: &Sink, subject: &str) -> Result<Delivered> {
        let wanted = format!("Subject: {subject}\r\n");
        let messages = sink.messages();
        let found: Vec<_> = messages
            .iter()
            .filter(|m| String::from_utf8_lossy(&m.data).contains(&wanted))
            .collect();
        ensure!(found.len() == 1, "{} copies of {subject:?}", found.len());
        Ok(Delivered {
            fields: fields(&found[0].data),
            data: String::from_utf8_lossy(&found[0].data).into_owned(),
        })
    }

    fn all(&self, name: &str) -> Vec<&str> {
        self.fields
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Our Authentication-Results: it must be the first field, and the only one
    /// whose authserv-id is `id`.
    fn ours(&self, id: &str) -> Result<String> {
        let Some((name, value)) = self.fields.first() else {
            bail!("no header fields:\n{}", self.data);
        };
        ensure!(
            name == "Authentication-Results" && value.starts_with(&format!("{id};")),
            "first field is not our Authentication-Results:\n{}",
            self.data
        );
        let claiming: Vec<&str> = self
            .all("Authentication-Results")
            .into_iter()
            .filter(|v| {
                v.split([';', ' '])
                    .next()
                    .is_some_and(|first| first.eq_ignore_ascii_case(id))
            })
            .collect();
        ensure!(
            claiming.len() == 1,
            "{} fields claim {id}:\n{}",
            claiming.len(),
            self.data
        );
        // Unfolded: `id;\tspf=...` → single spaces for the assertions.
        Ok(value.replace('\t', " "))
    }
}

/// The resinfo (`method=result ... properties`) of an unfolded A-R value that
/// contains `needle`; exactly one must.
fn resinfo<'a>(ar: &'a str, needle: &str) -> Result<&'a str> {
    let found: Vec<&str> = ar
        .split(';')
        .map(str::trim)
        .filter(|r| r.contains(needle))
        .collect();
    ensure!(
        found.len() == 1,
        "{} resinfo with {needle:?} in {ar}",
        found.len()
    );
    Ok(found[0])
}

fn assert_has(haystack: &str, needle: &str) -> Result<()> {
    ensure!(haystack.contains(needle), "{needle:?} not in:\n{haystack}");
    Ok(())
}

/// The daemon logged a line for message `id` carrying `summary`.
fn logged(d: &Daemon, id: &str, summary: &str) -> Result<()> {
    let log = d.stderr();
    ensure!(
        log.lines().any(|l| l.contains(id) && l.contains(summary)),
        "no log line for {id} with {summary:?}:\n{log}"
    );
    Ok(())
}

/// Every SPF result, for the MAIL FROM identity and the HELO identity, in the header
/// and in the log.
fn spf_results(backend: Backend) -> Result<()> {
    let keys = Keys::generate()?;
    let dns = StubDns::start(records(&keys))?;
    let sink = Sink::start(SinkOptions::default())?;
    let d = Daemon::start(&config(backend, &dns, &sink))?;

    let cases = [
        ("sender.test", "pass", "dmarc=pass"),
        ("spf-fail.test", "fail", "dmarc=none"),
        ("spf-softfail.test", "softfail", "dmarc=none"),
        ("spf-neutral.test", "neutral", "dmarc=none"),
        ("spf-none.test", "none", "dmarc=none"),
        ("spf-permerror.test", "permerror", "dmarc=none"),
        ("spf-temperror.test", "temperror", "dmarc=none"),
    ];
    let mut ids = Vec::new();
    for (domain, _, _) in cases {
        let from = format!("alice@{domain}");
        let body = message(&from, &format!("spf-{domain}"), "");
        ids.push(accepted(&d, "client.test", &from, &body)?);
    }
    // The null sender: the HELO identity is the only one (RFC 7208 §2.4).
    let null_id = accepted(
        &d,
        "client.test",
        "",
        &message("alice@spf-none.test", "null-sender", ""),
    )?;
    // A HELO identity that fails, with a MAIL FROM that passes.
    let helo_id = accepted(
        &d,
        "helo-fail.test",
        "alice@sender.test",
        &message("alice@sender.test", "helo-fail", ""),
    )?;

    sink.wait_for(cases.len() + 2, WAIT)?;
    for ((domain, result, dmarc), id) in cases.iter().zip(&ids) {
        let got = Delivered::find(&sink, &format!("spf-{domain}"))?;
        let ar = got.ours(OUR_ID)?;
        let spf = resinfo(&ar, "smtp.mailfrom=")?;
        ensure!(
            spf.starts_with(&format!("spf={result} "))
                && spf.ends_with(&format!(" smtp.mailfrom=alice@{domain}")),
            "{spf:?} in {ar}"
        );
        assert_has(&ar, "spf=pass smtp.helo=client.test;")?;
        assert_has(&ar, "dkim=none;")?;
        assert_has(&ar, "arc=none smtp.remote-ip=127.0.0.1;")?;
        let found = resinfo(&ar, "dmarc=")?;
        ensure!(
            found.starts_with(dmarc) && found.ends_with(&format!("header.from={domain}")),
            "{found:?} in {ar}"
        );
        logged(&d, id, &format!("spf={result} dkim=none {dmarc} arc=none"))?;
    }
    // The p=reject record of sender.test is named in the dmarc result.
    let got = Delivered::find(&sink, "spf-sender.test")?;
    assert_has(
        &got.ours(OUR_ID)?,
        "dmarc=pass (p=reject) header.from=sender.test",
    )?;

    let got = Delivered::find(&sink, "null-sender")?;
    let ar = got.ours(OUR_ID)?;
    ensure!(!ar.contains("smtp.mailfrom"), "{ar}");
    assert_has(&ar, "spf=pass smtp.helo=client.test;")?;
    logged(&d, &null_id, "spf=pass dkim=none dmarc=none arc=none")?;

    let got = Delivered::find(&sink, "helo-fail")?;
    let ar = got.ours(OUR_ID)?;
    assert_has(&ar, "spf=pass smtp.mailfrom=alice@sender.test;")?;
    assert_has(&ar, "spf=fail smtp.helo=helo-fail.test;")?;
    logged(&d, &helo_id, "spf=pass dkim=none dmarc=pass arc=none")?;

    // The temperror came from a nameserver that did not answer, not from a shortcut.
    ensure!(
        dns.queries("spf-temperror.test", way2mail_tests::RecordType::Txt) >= 1,
        "no TXT query for spf-temperror.test"
    );

    // The same nine results, counted by method and result on the metrics endpoint.
    let (status, metrics) = way2mail_tests::http_get(d.metrics_addr(), "/metrics")?;
    ensure!(status == 200, "GET /metrics: {status}");
    for (method, result, count) in [
        ("spf", "pass", 3.0),
        ("spf", "fail", 1.0),
        ("spf", "softfail", 1.0),
        ("spf", "neutral", 1.0),
        ("spf", "none", 1.0),
        ("spf", "permerror", 1.0),
        ("spf", "temperror", 1.0),
        ("dkim", "none", 9.0),
        ("dmarc", "pass", 2.0),
        ("dmarc", "none", 7.0),
        ("arc", "none", 9.0),
    ] {
        let labels = [("method", method), ("result", result)];
        let got = way2mail_tests::metric_value(&metrics, "way2mail_inbound_auth_total", &labels);
        ensure!(got == Some(count), "{method}={result}: {got:?}\n{metrics}");
    }
    Ok(())
}

/// DKIM pass and fail, DMARC pass through SPF or DKIM, DMARC failures under p=reject
/// (refused), p=quarantine (marked) and p=none (only reported), ARC none/pass/fail,
/// forged headers removed and foreign ones kept.
fn dkim_dmarc_arc(backend: Backend) -> Result<()> {
    let keys = Keys::generate()?;
    let dns = StubDns::start(records(&keys))?;
    let sink = Sink::start(SinkOptions::default())?;
    let d = Daemon::start(&config(backend, &dns, &sink))?;

    // Signed, aligned; forged results of our id (two spellings, one folded) and a
    // forged quarantine mark go, results of another id stay.
    let forged = format!(
        "Authentication-Results: {OUR_ID}; spf=pass smtp.mailfrom=ceo@bank.test\r\n\
         Authentication-Results: other.example; dkim=pass header.d=other.example\r\n\
         authentication-results:\r\n\t{}\r\n\t; dmarc=pass\r\n\
         Authentication-Results: {OUR_ID}.evil; spf=pass\r\n\
         X-Way2Mail-Quarantine: dmarc=fail policy=reject header.from=sender.test\r\n",
        OUR_ID.to_uppercase()
    );
    let signed = keys.sign(&message("alice@sender.test", "dkim-pass", &forged))?;
    let id_pass = accepted(&d, "client.test", "alice@sender.test", &signed)?;

    // Body changed after signing: DKIM fails, SPF still aligns.
    let tampered = keys
        .sign(&message("alice@sender.test", "dkim-fail", ""))?
        .replace("Hello, this is", "Goodbye, this was");
    let id_fail = accepted(&d, "client.test", "alice@sender.test", &tampered)?;

    // SPF fails for the bounce domain, DKIM alone aligns.
    let dkim_only = keys.sign(&message("alice@sender.test", "dkim-only", ""))?;
    accepted(&d, "client.test", "bounce@spf-fail.test", &dkim_only)?;

    // From reject.test: SPF passes for sender.test (not aligned), no signature.
    let reply = send(
        &d,
        "client.test",
        "alice@sender.test",
        &message("ceo@reject.test", "dmarc-reject", ""),
    )?;
    ensure!(
        reply.code == 550 && reply.enhanced() == Some("5.7.1"),
        "expected 550 5.7.1, got {reply}"
    );
    assert_has(&reply.text(), "reject.test")?;
    assert_has(&reply.text(), "p=reject")?;

    let id_quarantine = accepted(
        &d,
        "client.test",
        "alice@sender.test",
        &message("ceo@quarantine.test", "dmarc-quarantine", ""),
    )?;
    let id_monitor = accepted(
        &d,
        "client.test",
        "alice@sender.test",
        &message("ceo@monitor.test", "dmarc-none", ""),
    )?;

    // Forwarded: signed by sender.test, sealed by forwarder.test.
    let sealed = keys.seal(&keys.sign(&message("alice@sender.test", "arc-pass", ""))?)?;
    let id_arc = accepted(&d, "client.test", "bounce@forwarder.test", &sealed)?;
    // Sealed, then the subject changed: the seal and the signature break.
    let broken = keys
        .seal(&keys.sign(&message("alice@sender.test", "arc-fail", ""))?)?
        .replace("Subject: arc-fail", "Subject: arc-fail-changed");
    let id_arc_fail = accepted(&d, "client.test", "alice@sender.test", &broken)?;

    // Past `[spool] message_buffer`: written in parts as it arrives, read back whole
    // for the checks. The signature still verifies over what was reassembled.
    let mut large_body = message("alice@sender.test", "dkim-large", "");
    while large_body.len() < 1_000_000 {
        large_body.push_str("A long line of a large message, to be read back whole.\r\n");
    }
    let large = keys.sign(&large_body)?;
    let id_large = accepted(&d, "client.test", "alice@sender.test", &large)?;

    let delivered = 8;
    sink.wait_for(delivered, WAIT)?;

    let got = Delivered::find(&sink, "dkim-large")?;
    assert_has(&got.ours(OUR_ID)?, "dkim=pass header.d=sender.test")?;
    ensure!(got.data.len() > 1_000_000, "cut: {}", got.data.len());
    logged(&d, &id_large, "spf=pass dkim=pass dmarc=pass arc=none")?;

    let got = Delivered::find(&sink, "dkim-pass")?;
    let ar = got.ours(OUR_ID)?;
    assert_has(&ar, "spf=pass smtp.mailfrom=alice@sender.test;")?;
    assert_has(&ar, "dkim=pass header.d=sender.test header.s=sel header.b=")?;
    assert_has(&ar, "arc=none smtp.remote-ip=127.0.0.1;")?;
    assert_has(&ar, "dmarc=pass (p=reject) header.from=sender.test")?;
    let others = got.all("Authentication-Results");
    ensure!(others.len() == 3, "{others:#?}");
    ensure!(
        others.contains(&"other.example; dkim=pass header.d=other.example")
            && others.contains(&"mx.way2mail.test.evil; spf=pass"),
        "foreign results not kept: {others:#?}"
    );
    ensure!(
        !got.data.contains("ceo@bank.test") && got.all("X-Way2Mail-Quarantine").is_empty(),
        "forged header kept:\n{}",
        got.data
    );
    logged(&d, &id_pass, "spf=pass dkim=pass dmarc=pass arc=none")?;

    let ar = Delivered::find(&sink, "dkim-fail")?.ours(OUR_ID)?;
    assert_has(
        &ar,
        "dkim=fail (body hash did not verify) header.d=sender.test header.s=sel",
    )?;
    assert_has(&ar, "dmarc=pass")?;
    logged(&d, &id_fail, "spf=pass dkim=fail dmarc=pass arc=none")?;

    let ar = Delivered::find(&sink, "dkim-only")?.ours(OUR_ID)?;
    assert_has(&ar, "spf=fail smtp.mailfrom=bounce@spf-fail.test;")?;
    assert_has(&ar, "dkim=pass header.d=sender.test")?;
    assert_has(&ar, "dmarc=pass (p=reject) header.from=sender.test")?;

    let got = Delivered::find(&sink, "dmarc-quarantine")?;
    assert_has(
        &got.ours(OUR_ID)?,
        "dmarc=fail (p=quarantine) header.from=quarantine.test",
    )?;
    ensure!(
        got.all("X-Way2Mail-Quarantine")
            == ["dmarc=fail policy=quarantine header.from=quarantine.test"],
        "{}",
        got.data
    );
    ensure!(
        got.fields[1].0 == "X-Way2Mail-Quarantine",
        "quarantine mark not right under Authentication-Results:\n{}",
        got.data
    );
    logged(&d, &id_quarantine, "spf=pass dkim=none dmarc=fail arc=none")?;

    let got = Delivered::find(&sink, "dmarc-none")?;
    assert_has(
        &got.ours(OUR_ID)?,
        "dmarc=fail (p=none) header.from=monitor.test",
    )?;
    ensure!(got.all("X-Way2Mail-Quarantine").is_empty(), "{}", got.data);
    logged(&d, &id_monitor, "spf=pass dkim=none dmarc=fail arc=none")?;

    let ar = Delivered::find(&sink, "arc-pass")?.ours(OUR_ID)?;
    assert_has(&ar, "arc=pass smtp.remote-ip=127.0.0.1;")?;
    assert_has(&ar, "dkim=pass header.d=sender.test")?;
    assert_has(&ar, "spf=pass smtp.mailfrom=bounce@forwarder.test;")?;
    assert_has(&ar, "dmarc=pass")?;
    logged(&d, &id_arc, "spf=pass dkim=pass dmarc=pass arc=pass")?;

    let ar = Delivered::find(&sink, "arc-fail-changed")?.ours(OUR_ID)?;
    assert_has(&ar, "arc=fail")?;
    assert_has(&ar, "dkim=fail")?;
    logged(&d, &id_arc_fail, "spf=pass dkim=fail dmarc=pass arc=fail")?;

    // The refused message: logged with its results, never queued nor delivered.
    let log = d.stderr();
    ensure!(
        log.lines().any(|l| l.contains("message refused")
            && l.contains("550")
            && l.contains("spf=pass dkim=none dmarc=fail arc=none")),
        "no refusal logged:\n{log}"
    );
    std::thread::sleep(Duration::from_secs(1));
    ensure!(
        sink.messages().len() == delivered
            && !sink
                .messages()
                .iter()
                .any(|m| String::from_utf8_lossy(&m.data).contains("dmarc-reject")),
        "the refused message was delivered"
    );
    Ok(())
}

/// `dmarc_reject = "quarantine"` marks a p=reject failure instead of refusing it;
/// `"none"` (for both policies) only reports. A configured authserv-id is the one
/// written and stripped.
fn dmarc_actions_configurable(backend: Backend) -> Result<()> {
    let keys = Keys::generate()?;
    let dns = StubDns::start(records(&keys))?;
    let sink = Sink::start(SinkOptions::default())?;

    let d = Daemon::start(
        &config(backend, &dns, &sink)
            .set("inbound", "dmarc_reject", "\"quarantine\"")
            .set("inbound", "authserv_id", "\"auth.example.net\""),
    )?;
    let forged = "Authentication-Results: Auth.Example.Net; dmarc=pass\r\n\
                  Authentication-Results: mx.way2mail.test; dmarc=pass\r\n";
    accepted(
        &d,
        "client.test",
        "alice@sender.test",
        &message("ceo@reject.test", "reject-as-quarantine", forged),
    )?;
    sink.wait_for(1, WAIT)?;
    let got = Delivered::find(&sink, "reject-as-quarantine")?;
    assert_has(
        &got.ours("auth.example.net")?,
        "dmarc=fail (p=reject) header.from=reject.test",
    )?;
    ensure!(
        got.all("X-Way2Mail-Quarantine") == ["dmarc=fail policy=reject header.from=reject.test"],
        "{}",
        got.data
    );
    ensure!(
        got.all("Authentication-Results")
            .contains(&"mx.way2mail.test; dmarc=pass"),
        "another id's results were removed:\n{}",
        got.data
    );
    drop(d);

    let d = Daemon::start(
        &config(backend, &dns, &sink)
            .set("inbound", "dmarc_reject", "\"none\"")
            .set("inbound", "dmarc_quarantine", "\"none\""),
    )?;
    for (from, subject) in [
        ("ceo@reject.test", "reject-as-none"),
        ("ceo@quarantine.test", "quarantine-as-none"),
    ] {
        accepted(
            &d,
            "client.test",
            "alice@sender.test",
            &message(from, subject, ""),
        )?;
    }
    sink.wait_for(3, WAIT)?;
    for (domain, subject) in [
        ("reject.test", "reject-as-none"),
        ("quarantine.test", "quarantine-as-none"),
    ] {
        let got = Delivered::find(&sink, subject)?;
        assert_has(&got.ours(OUR_ID)?, "dmarc=fail (p=")?;
        assert_has(&got.ours(OUR_ID)?, &format!("header.from={domain}"))?;
        ensure!(got.all("X-Way2Mail-Quarantine").is_empty(), "{}", got.data);
    }
    Ok(())
}

/// Mail from a trusted network, and mail on a daemon with `checks = false`, is not
/// checked: no lookup, no header added, nothing removed.
fn unchecked_when_trusted_or_disabled(backend: Backend) -> Result<()> {
    let keys = Keys::generate()?;
    let dns = StubDns::start(records(&keys))?;
    let sink = Sink::start(SinkOptions::default())?;
    let forged = format!("Authentication-Results: {OUR_ID}; spf=pass\r\n");

    let trusted =
        config(backend, &dns, &sink).set("relay", "trusted_networks", r#"["127.0.0.0/8"]"#);
    let disabled = config(backend, &dns, &sink).set("inbound", "checks", "false");
    for (n, (setup, subject)) in [(trusted, "trusted"), (disabled, "disabled")]
        .into_iter()
        .enumerate()
    {
        let d = Daemon::start(&setup)?;
        let body = message("ceo@reject.test", subject, &forged);
        let id = accepted(&d, "client.test", "alice@sender.test", &body)?;
        sink.wait_for(n + 1, WAIT)?;
        let got = Delivered::find(&sink, subject)?;
        ensure!(
            got.fields[0].0 == "Received" && got.data.ends_with(&body),
            "message changed:\n{}",
            got.data
        );
        let log = d.stderr();
        ensure!(
            log.lines()
                .any(|l| l.contains(&id) && l.contains("message queued")),
            "{log}"
        );
        ensure!(!log.contains("spf="), "checks ran for {subject}:\n{log}");
    }
    ensure!(
        dns.total_queries() == 0,
        "{} DNS queries without checks",
        dns.total_queries()
    );
    Ok(())
}

/// Two From: fields, or one naming two domains, would let a sender pick which
/// domain's DMARC policy applies (mail-auth says dmarc=none): refused like a p=reject
/// failure, or marked when `dmarc_reject = "quarantine"`.
fn ambiguous_from(backend: Backend) -> Result<()> {
    let keys = Keys::generate()?;
    let dns = StubDns::start(records(&keys))?;
    let sink = Sink::start(SinkOptions::default())?;
    let two_fields = message(
        "news@sender.test",
        "two-from-fields",
        "From: <ceo@reject.test>\r\n",
    );
    let two_domains = message("news@sender.test", "two-from-domains", "").replace(
        "From: <news@sender.test>",
        "From: <ceo@reject.test>, <news@sender.test>",
    );

    let d = Daemon::start(&config(backend, &dns, &sink))?;
    for body in [&two_fields, &two_domains] {
        let reply = send(&d, "client.test", "alice@sender.test", body)?;
        ensure!(
            reply.code == 550 && reply.text().contains("5.7.1") && reply.text().contains("From:"),
            "expected 550 5.7.1 about From:, got {} {}",
            reply.code,
            reply.text()
        );
    }
    // One From: in one domain is not ambiguous.
    accepted(
        &d,
        "client.test",
        "alice@sender.test",
        &message("news@sender.test", "one-from", ""),
    )?;
    sink.wait_for(1, WAIT)?;
    ensure!(
        Delivered::find(&sink, "one-from")?
            .all("X-Way2Mail-Quarantine")
            .is_empty(),
        "one From: was marked"
    );
    drop(d);

    let d = Daemon::start(&config(backend, &dns, &sink).set(
        "inbound",
        "dmarc_reject",
        "\"quarantine\"",
    ))?;
    accepted(&d, "client.test", "alice@sender.test", &two_fields)?;
    sink.wait_for(2, WAIT)?;
    let got = Delivered::find(&sink, "two-from-fields")?;
    ensure!(
        got.all("X-Way2Mail-Quarantine") == ["dmarc=none reason=ambiguous-from"],
        "{}",
        got.data
    );
    Ok(())
}

for_each_backend!(
    spf_results,
    dkim_dmarc_arc,
    dmarc_actions_configurable,
    ambiguous_from,
    unchecked_when_trusted_or_disabled
);
