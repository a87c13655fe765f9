//! Protocol features end to end over a raw socket, checked against what lands in the
//! spool: a pipelined transaction, BDAT chunks (RFC 3030), and SMTP smuggling attempts
//! with bare-LF end-of-data look-alikes, which must never yield a second message.

use std::collections::BTreeSet;

use anyhow::{ensure, Context};
use way2mail_queue::Spool;
use way2mail_smtp::MessageId;
use way2mail_tests::{for_each_backend, queued_id, Backend, Daemon, SmtpClient, TestConfig};

for_each_backend!(pipelining_bdat_and_smuggling);

fn pipelining_bdat_and_smuggling(backend: Backend) -> anyhow::Result<()> {
    let mut daemon = Daemon::start(&TestConfig::new(backend))?;
    let port = daemon.ports().mx;
    let mut ids = BTreeSet::new();

    ids.insert(pipelined(port)?);
    let bdat_id = bdat(port)?;
    ids.insert(bdat_id.clone());
    let smuggled = smuggling(port)?;
    ids.extend(smuggled.iter().cloned());

    daemon.terminate()?;
    let entries = daemon.spool_entries()?;
    let listed: BTreeSet<String> = entries.iter().map(|e| e.id.clone()).collect();
    ensure!(
        listed == ids,
        "spool lists {listed:?}, acknowledged {ids:?}"
    );
    ensure!(
        entries.iter().all(|e| !e.sender.contains("smuggler")),
        "a smuggled transaction was queued: {entries:?}"
    );

    let spool = daemon.open_spool()?;
    let bdat_content = read_content(&spool, &bdat_id)?;
    ensure!(
        bdat_content.windows(12).any(|w| w == b"second chunk"),
        "BDAT chunks not stored"
    );
    for id in &smuggled {
        let content = read_content(&spool, id)?;
        ensure!(
            content.windows(7).any(|w| w == b"payload"),
            "the smuggling attempt lost its tail: {:?}",
            String::from_utf8_lossy(&content)
        );
    }
    Ok(())
}

fn read_content(spool: &Spool, id: &str) -> anyhow::Result<Vec<u8>> {
    let message_id: MessageId = id.parse()?;
    let (_, content) = spool.read(&message_id)?.context("listed but unreadable")?;
    Ok(content)
}

/// RFC 2920: MAIL, two RCPTs and DATA in one write; the replies come back in order.
fn pipelined(port: u16) -> anyhow::Result<String> {
    let (mut client, _) = SmtpClient::connect(port)?;
    let ehlo = client.expect("EHLO pipe.client.test", 250)?;
    ensure!(ehlo.has_extension("PIPELINING"), "no PIPELINING: {ehlo}");
    client.send(
        b"MAIL FROM:<pipe@example.org>\r\nRCPT TO:<a@example.net>\r\n\
          RCPT TO:<b@example.net>\r\nDATA\r\n",
    )?;
    for expected in [250, 250, 250, 354] {
        let reply = client.read_reply()?;
        ensure!(
            reply.code == expected,
            "pipelined: want {expected}, got {reply}"
        );
    }
    client.send(b"Subject: pipelined\r\n\r\nbody\r\n.\r\n")?;
    queued_id(&client.read_reply()?)
}

/// RFC 3030: two BDAT chunks, the second LAST; the chunk bytes are not dot-processed.
fn bdat(port: u16) -> anyhow::Result<String> {
    let (mut client, _) = SmtpClient::connect(port)?;
    let ehlo = client.expect("EHLO bdat.client.test", 250)?;
    ensure!(ehlo.has_extension("CHUNKING"), "no CHUNKING: {ehlo}");
    client.expect("MAIL FROM:<bdat@example.org>", 250)?;
    client.expect("RCPT TO:<a@example.net>", 250)?;
    let first = b"Subject: bdat\r\n\r\n.first chunk\r\n";
    client.send(format!("BDAT {}\r\n", first.len()).as_bytes())?;
    client.send(first)?;
    let reply = client.read_reply()?;
    ensure!(reply.code == 250, "first BDAT chunk: {reply}");
    let last = b"second chunk\r\n";
    client.send(format!("BDAT {} LAST\r\n", last.len()).as_bytes())?;
    client.send(last)?;
    queued_id(&client.read_reply()?)
}

/// Bodies containing `<LF>.<LF>`, `<CR>.<CR>` and `<LF>.<CR><LF>` followed by a second
/// transaction. Whatever the daemon does with them (store them as data, or refuse the
/// message), the smuggled MAIL FROM must never start a transaction of its own. Returns
/// the ids of the attempts the daemon accepted.
fn smuggling(port: u16) -> anyhow::Result<Vec<String>> {
    let mut accepted = Vec::new();
    for fake_end in ["\n.\n", "\r.\r", "\n.\r\n", "\r\n.\n"] {
        let (mut client, _) = SmtpClient::connect(port)?;
        client.expect("EHLO smuggle.client.test", 250)?;
        client.expect("MAIL FROM:<honest@example.org>", 250)?;
        client.expect("RCPT TO:<a@example.net>", 250)?;
        client.expect("DATA", 354)?;
        let body = format!(
            "Subject: smuggling\r\n\r\nbefore{fake_end}MAIL FROM:<smuggler@example.org>\r\n\
             RCPT TO:<victim@example.net>\r\nDATA\r\npayload\r\n.\r\n"
        );
        client.send(body.as_bytes())?;
        let reply = client.read_reply()?;
        match reply.code {
            250 => accepted.push(queued_id(&reply)?),
            500..=599 => {}
            _ => anyhow::bail!("smuggling attempt {fake_end:?}: {reply}"),
        }
        // Exactly one reply for the whole body: the next reply must answer this QUIT.
        let quit = client.command("QUIT")?;
        ensure!(
            quit.code == 221,
            "after {fake_end:?} the smuggled commands were answered: {quit}"
        );
    }
    Ok(accepted)
}
