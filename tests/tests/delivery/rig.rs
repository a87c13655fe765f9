//! The delivery tests' rig: a daemon configuration pointed at the stub DNS and the
//! sinks, submission over SMTP, the delivery log file, and stopping the daemon to read
//! `spool list` (which refuses to run against a live spool).

use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::{ensure, Result};
use serde_json::Value;
use way2mail_tests::{
    queued_id, wait_for, Backend, Behaviour, Daemon, Sink, SinkOptions, SmtpClient, SpoolEntry,
    StubDns, TestConfig,
};

/// Upper bound for anything the daemon should do within a few seconds.
pub const WAIT: Duration = Duration::from_secs(30);
pub const SENDER: &str = "alice@sender.test";

pub fn lo(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, last)
}

pub fn sink(behaviour: Behaviour) -> Result<Sink> {
    Sink::start(SinkOptions {
        behaviour,
        ..SinkOptions::default()
    })
}

/// Delivery on, quick retries, the stub DNS, MX hosts on `port`, bounces for
/// `sender.test` to `capture` (when given).
pub fn config(backend: Backend, dns: &StubDns, port: u16, capture: Option<&Sink>) -> TestConfig {
    let mut c = TestConfig::new(backend)
        .set("delivery", "enabled", "true")
        .set("delivery", "port", &port.to_string())
        .set("delivery", "retry_initial_secs", "1")
        .set("delivery", "retry_max_secs", "2")
        .set("delivery", "retry_jitter_percent", "0")
        .set("delivery", "log_file", "\"delivery.log\"")
        .set("dns", "nameservers", &format!("[\"{}\"]", dns.addr()))
        .set("dns", "timeout_ms", "500");
    if let Some(capture) = capture {
        c = c.raw(&route(
            "sender.test",
            &format!("[127.0.0.1]:{}", capture.port()),
            "none",
        ));
    }
    c
}

pub fn route(domain: &str, host: &str, tls: &str) -> String {
    format!("[[route]]\ndomain = \"{domain}\"\nhost = \"{host}\"\ntls = \"{tls}\"\n")
}

pub fn message(subject: &str) -> String {
    format!(
        "From: <{SENDER}>\r\nTo: <someone@dest.test>\r\nSubject: {subject}\r\n\
         Message-ID: <{subject}@sender.test>\r\n\r\nHello, this is {subject}.\r\n\
         ..a dot-stuffed line\r\n"
    )
}

/// One transaction on the MX listener with the given MAIL and RCPT parameters;
/// returns the queue id.
pub fn submit_with(d: &Daemon, mail: &str, rcpts: &[&str], body: &str) -> Result<String> {
    let (mut c, _) = SmtpClient::connect(d.ports().mx)?;
    c.expect("EHLO client.test", 250)?;
    c.expect(&format!("MAIL FROM:{mail}"), 250)?;
    for rcpt in rcpts {
        c.expect(&format!("RCPT TO:{rcpt}"), 250)?;
    }
    c.expect("DATA", 354)?;
    c.send(body.as_bytes())?;
    let id = queued_id(&c.command(".")?)?;
    c.expect("QUIT", 221)?;
    Ok(id)
}

pub fn submit(d: &Daemon, to: &[&str], body: &str) -> Result<String> {
    let rcpts: Vec<String> = to.iter().map(|r| format!("<{r}>")).collect();
    let rcpts: Vec<&str> = rcpts.iter().map(String::as_str).collect();
    submit_with(d, &format!("<{SENDER}>"), &rcpts, body)
}

pub fn log_records(d: &Daemon) -> Vec<Value> {
    let text = std::fs::read_to_string(d.dir().join("delivery.log")).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Waits for a log record of `outcome` for message `id` and recipient `rcpt`.
pub fn wait_log(d: &Daemon, id: &str, rcpt: &str, outcome: &str) -> Result<Value> {
    wait_for(&format!("log record {outcome} {id} {rcpt}"), WAIT, || {
        log_records(d)
            .into_iter()
            .find(|r| r["message_id"] == id && r["recipient"] == rcpt && r["outcome"] == outcome)
    })
}

pub fn wait_finals(d: &Daemon, finals: usize) -> Result<()> {
    let is_final = |r: &Value| {
        ["delivered", "bounced", "expired"].contains(&r["outcome"].as_str().unwrap_or(""))
    };
    wait_for(
        &format!("{finals} final outcomes in the delivery log"),
        WAIT,
        || (log_records(d).iter().filter(|r| is_final(r)).count() >= finals).then_some(()),
    )
}

/// Stops the daemon (SIGTERM: a completion in progress is written first) and returns
/// `spool list`, which only runs against a stopped daemon.
pub fn stop_and_list(d: &mut Daemon) -> Result<Vec<SpoolEntry>> {
    d.terminate()?;
    d.spool_entries()
}

/// Waits until the delivery log holds `finals` final outcomes (delivered, bounced,
/// expired; bounces delivered to the capture sink included), then stops the daemon and
/// checks that nothing is left queued. Waiting for the log first matters: a message the
/// sink accepted is still leased until its completion is written, and a SIGTERM then
/// leaves it for a retry after the restart (at-least-once).
pub fn stop_expecting_empty_spool(d: &mut Daemon, finals: usize) -> Result<()> {
    wait_finals(d, finals)?;
    let entries = stop_and_list(d)?;
    ensure!(entries.is_empty(), "spool not empty: {entries:#?}");
    Ok(())
}

/// The data must be our Received header (one field, possibly folded) and then exactly
/// the submitted message.
pub fn check_relayed_copy(data: &[u8], original: &str) -> Result<()> {
    let text = String::from_utf8_lossy(data);
    ensure!(text.ends_with(original), "body changed in transit:\n{text}");
    let prefix = &text[..text.len() - original.len()];
    ensure!(prefix.starts_with("Received: from client.test"), "{prefix}");
    ensure!(prefix.contains("by mx.way2mail.test"), "{prefix}");
    let lines: Vec<&str> = prefix.split_terminator("\r\n").collect();
    ensure!(
        lines[1..].iter().all(|l| l.starts_with([' ', '\t'])),
        "more than the Received field was added: {prefix:?}"
    );
    Ok(())
}

/// Submits `n` messages to user@dest.test over one connection.
pub fn submit_many(d: &Daemon, n: usize, tag: &str) -> Result<()> {
    let (mut client, _) = SmtpClient::connect(d.ports().mx)?;
    client.expect("EHLO client.test", 250)?;
    for i in 0..n {
        let body = message(&format!("{tag}-{i}"));
        queued_id(&client.send_message(SENDER, &["user@dest.test"], &body)?)?;
    }
    client.expect("QUIT", 221)?;
    Ok(())
}
