//! The spool's filesystem filling up under load: clients get `452 4.3.1` (never a
//! 5xx, never a crash), every message that got `250` is still in the spool and
//! readable after the daemon stops, and once there is space again a restarted
//! daemon accepts mail. The spool lives on a small tmpfs mounted for the test, which
//! needs root; elsewhere the test says so and passes without running.

use std::path::PathBuf;

use anyhow::{bail, ensure, Context};
use way2mail_tests::{
    for_each_backend, queued_id, Backend, Daemon, Signal, SmtpClient, TestConfig, Tmpfs,
};

for_each_backend!(full_spool_filesystem_defers_and_loses_nothing);

fn full_spool_filesystem_defers_and_loses_nothing(backend: Backend) -> anyhow::Result<()> {
    let outside = tempfile::tempdir()?;
    let Some(fs) = Tmpfs::mount(&outside.path().join("fs"), "6m") else {
        eprintln!("note: cannot mount a tmpfs here (not root?); disk-full test not run");
        return Ok(());
    };
    let quoted = |p: PathBuf| format!("\"{}\"", p.display());
    let config = TestConfig::new(backend)
        .set("spool", "path", &quoted(fs.0.join("spool")))
        .set(
            "spool",
            "key_file",
            &quoted(outside.path().join("spool.key")),
        )
        .set(
            "spool",
            "keyring_file",
            &quoted(outside.path().join("spool.keyring")),
        )
        .set("spool", "min_free_space", "0");
    let mut daemon = Daemon::start(&config)?;
    let (mut client, _) = SmtpClient::connect(daemon.ports().mx)?;
    client.expect("EHLO filler.example", 250)?;
    let body = format!(
        "Subject: filler\r\n\r\n{}\r\n",
        format!("{}\r\n", "x".repeat(76)).repeat(64)
    );
    let mut acknowledged = Vec::new();
    let deferred = loop {
        let reply = client.send_message("a@example.com", &["b@example.net"], &body)?;
        match reply.code {
            250 => acknowledged.push(queued_id(&reply)?),
            452 => break reply,
            _ => bail!("while the spool filled up: {reply}"),
        }
        ensure!(acknowledged.len() < 5000, "6 MB never filled up");
    };
    ensure!(
        deferred.enhanced() == Some("4.3.1"),
        "full disk gave {deferred}"
    );
    ensure!(
        !acknowledged.is_empty(),
        "nothing was accepted before the disk filled"
    );
    // The daemon is still there and refuses politely rather than crashing.
    ensure!(daemon.try_exit()?.is_none(), "daemon died on a full disk");
    daemon.stop_with(Signal::TERM)?;

    fs.resize("64m")?;
    let listed = daemon
        .spool_entries()
        .context("spool list after the disk filled")?;
    for id in &acknowledged {
        ensure!(
            listed.iter().any(|e| &e.id == id),
            "acknowledged {id} is missing after the disk filled ({} listed)",
            listed.len()
        );
    }
    let again = Daemon::start(&config)?;
    let (mut client, _) = SmtpClient::connect(again.ports().mx)?;
    client.expect("EHLO after.example", 250)?;
    let reply = client.send_message(
        "a@example.com",
        &["b@example.net"],
        "Subject: x\r\n\r\nok\r\n",
    )?;
    ensure!(reply.code == 250, "after freeing space: {reply}");
    Ok(())
}
