//! Security incidents end to end: a real `way2mail-control` whose `[notify]` points at
//! the real MTA's mx listener, the MTA relaying (loopback is a trusted network) to a
//! test sink through `[[route]]`s for the contacts' domains. Two tenants are affected;
//! `way2mail incident notify` hands one email per contact to the MTA, which delivers
//! them: the sink receives exactly one message per contact with the incident's fields,
//! `incident show` records both with the MTA's queue ids, the audit log has the
//! notification under each tenant, a second notify sends nothing, and a closed
//! incident refuses to notify.
//!
//! The MTA's I/O backend does not matter here (the MTA only relays), so this runs on
//! epoll only.

use std::time::Duration;

use anyhow::{ensure, Context};
use serde_json::Value;
use way2mail_tests::control::{json_str, Control};
use way2mail_tests::{is_message_id, Backend, Daemon, Sink, SinkOptions, StubDns, TestConfig};

const DELIVERY: Duration = Duration::from_secs(30);

/// The header field `name` of a message (first occurrence, unfolded).
fn field(data: &str, name: &str) -> Option<String> {
    let header = data.split("\r\n\r\n").next()?;
    let mut lines = header.split("\r\n").peekable();
    while let Some(line) = lines.next() {
        if let Some((n, v)) = line.split_once(':') {
            if n.eq_ignore_ascii_case(name) {
                let mut value = v.trim().to_string();
                while let Some(next) = lines.peek().filter(|l| l.starts_with([' ', '\t'])) {
                    value.push(' ');
                    value.push_str(next.trim());
                    lines.next();
                }
                return Some(value);
            }
        }
    }
    None
}

#[test]
fn incident_notification_arrives_at_the_sink() -> anyhow::Result<()> {
    let sink = Sink::start(SinkOptions::default())?;
    let dns = StubDns::start(Vec::new())?;
    // Tenants off in the MTA: the notification is plain relayed mail.
    let config = TestConfig::new(Backend::Epoll)
        .set("control", "socket", "\"\"")
        .set("delivery", "enabled", "true")
        .set("delivery", "retry_initial_secs", "1")
        .set("dns", "nameservers", &format!("[\"{}\"]", dns.addr()))
        .set("dns", "timeout_ms", "500")
        .raw(&sink.route("acme.test"))
        .raw(&sink.route("beta.test"));
    let daemon = Daemon::start(&config)?;
    let control = Control::start_with(&format!(
        "[notify]\nsmtp_server = \"127.0.0.1:{}\"\nfrom = \"security@way2mail.test\"\n",
        daemon.ports().mx
    ))?;
    let admin = control.bootstrap_admin("admin")?;
    let run = |args: &[&str]| control.run_as(&admin, args);

    run(&[
        "tenant",
        "add",
        "acme",
        "--business-name",
        "Acme Ltd",
        "--contact",
        "ops@acme.test",
    ])?
    .ok()?;
    run(&[
        "tenant",
        "add",
        "beta",
        "--business-name",
        "Beta GmbH",
        "--contact",
        "Beta Security <sec@beta.test>",
    ])?
    .ok()?;

    let opened = run(&[
        "--json",
        "incident",
        "open",
        "--title",
        "Exposed delivery log backup",
        "--nature",
        "A backup of the delivery log was readable from the internet for 3 hours.",
        "--data-affected",
        "Recipient addresses and subjects of 1,200 messages.",
        "--consequences",
        "Recipients may receive targeted phishing.",
        "--measures",
        "Access closed, backup deleted, storage credentials rotated.",
        "--detected-at",
        "2026-01-02T03:04:05Z",
    ])?
    .ok()?
    .json()?;
    let id = json_str(&opened, "id")?;
    ensure!(
        id.starts_with("INC-") && id.ends_with("-0001"),
        "first id {id}"
    );
    ensure!(opened["detected_at"] == 1_767_323_045u64, "{opened}");
    for tenant in ["acme", "beta"] {
        run(&["incident", "add-tenant", &id, tenant])?.ok()?;
    }

    let out = run(&["incident", "notify", &id])?.ok()?;
    ensure!(
        out.stdout
            .contains(&format!("{id}: 2 of 2 notifications handed to the MTA")),
        "{}",
        out.stdout
    );

    // Exactly one message per contact, with the incident in it.
    let messages = sink.wait_for(2, DELIVERY)?;
    ensure!(messages.len() == 2, "{} messages", messages.len());
    let shown = run(&["--json", "incident", "show", &id])?.ok()?.json()?;
    let notifications = shown["notifications"]
        .as_array()
        .context("notifications")?
        .clone();
    ensure!(notifications.len() == 2, "{shown}");
    for (tenant, contact) in [("acme", "ops@acme.test"), ("beta", "sec@beta.test")] {
        let m = messages
            .iter()
            .find(|m| m.rcpt_to == [contact])
            .with_context(|| format!("no message to {contact}"))?;
        ensure!(
            m.mail_from == "security@way2mail.test",
            "MAIL FROM {}",
            m.mail_from
        );
        let data = String::from_utf8_lossy(&m.data).into_owned();
        ensure!(field(&data, "To").as_deref() == Some(contact), "{data}");
        ensure!(
            field(&data, "From").as_deref() == Some("security@way2mail.test"),
            "{data}"
        );
        ensure!(
            field(&data, "Subject")
                == Some(format!(
                    "Security incident {id}: Exposed delivery log backup"
                )),
            "{data}"
        );
        ensure!(
            field(&data, "Content-Type").as_deref() == Some("text/plain; charset=utf-8"),
            "{data}"
        );
        ensure!(field(&data, "Date").is_some(), "{data}");
        let body = data.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        for part in [
            format!("Incident:  {id}"),
            "Detected:  2026-01-02T03:04:05Z".into(),
            "Nature of the incident:\r\nA backup of the delivery log was readable from the internet for 3 hours.".into(),
            "Data affected:\r\nRecipient addresses and subjects of 1,200 messages.".into(),
            "Likely consequences:\r\nRecipients may receive targeted phishing.".into(),
            "Measures taken or proposed:\r\nAccess closed, backup deleted, storage credentials rotated.".into(),
            "security@way2mail.test".into(),
        ] {
            ensure!(body.contains(&part), "{part:?} not in the body:\n{body}");
        }

        // The record: ok, the MTA's reply and queue id, the same Message-ID.
        let n = notifications
            .iter()
            .find(|n| n["tenant"] == tenant)
            .with_context(|| format!("no notification of {tenant}: {shown}"))?;
        ensure!(n["outcome"] == "ok" && n["contact"] == contact, "{n}");
        let queue_id = json_str(n, "queue_id")?;
        ensure!(is_message_id(&queue_id), "queue id {queue_id}");
        ensure!(
            n["reply"] == format!("250 2.0.0 {queue_id} queued").as_str(),
            "{n}"
        );
        ensure!(
            data.contains(&format!("id {queue_id}")),
            "the delivered message is not the one queued as {queue_id}:\n{data}"
        );
        let message_id = json_str(n, "message_id")?;
        ensure!(
            field(&data, "Message-ID") == Some(format!("<{message_id}>")),
            "{data}"
        );

        // The audit log shows, under the tenant, that it was notified.
        let audit = run(&["--json", "audit", "list", "--tenant", tenant])?
            .ok()?
            .json()?;
        let entries = audit["entries"].as_array().context("entries")?;
        ensure!(
            entries.iter().any(|e| e["action"] == "incident.notify"
                && e["outcome"] == "ok"
                && e["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains(&id) && d.contains(&queue_id))),
            "no notification of {tenant} in the audit: {audit}"
        );
    }

    // Nothing more without --again.
    let again = run(&["--json", "incident", "notify", &id])?.ok()?.json()?;
    ensure!(
        again["sent"].as_array().is_some_and(Vec::is_empty),
        "{again}"
    );
    let human = run(&["incident", "notify", &id])?.ok()?;
    ensure!(human.stdout.contains("nothing sent"), "{}", human.stdout);
    std::thread::sleep(Duration::from_secs(2));
    ensure!(
        sink.messages().len() == 2,
        "{} messages",
        sink.messages().len()
    );

    // The register in human form.
    let list = run(&["incident", "list"])?.ok()?;
    ensure!(
        list.stdout.contains(&id) && list.stdout.contains("2/2"),
        "{}",
        list.stdout
    );
    let show = run(&["incident", "show", &id])?.ok()?;
    ensure!(
        show.stdout.contains("acme (notified), beta (notified)"),
        "{}",
        show.stdout
    );

    // Closed: no more notifications.
    run(&[
        "incident",
        "close",
        &id,
        "--resolution",
        "Clients notified; no misuse observed.",
    ])?
    .ok()?;
    let refused = run(&["incident", "notify", &id, "--again"])?;
    ensure!(
        refused.status.code() == Some(1) && refused.stderr.contains("closed"),
        "{refused:?}"
    );
    let closed: Value = run(&["--json", "incident", "show", &id])?.ok()?.json()?;
    ensure!(closed["closed_at"].is_u64(), "{closed}");
    ensure!(sink.messages().len() == 2);
    Ok(())
}
