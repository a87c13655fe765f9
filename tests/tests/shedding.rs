//! Load shedding seen from outside: the global connection cap answers `421 4.3.2`,
//! and a spool filesystem below `spool.min_free_space` makes `MAIL` answer
//! `452 4.3.1` while the daemon keeps serving everything else.

use anyhow::{ensure, Context};
use way2mail_tests::{admitted, for_each_backend, Backend, Daemon, SmtpClient, TestConfig};

for_each_backend!(global_connection_limit, low_disk_space_defers_mail);

fn global_connection_limit(backend: Backend) -> anyhow::Result<()> {
    let config = TestConfig::new(backend).set("limits", "max_connections", "3");
    let daemon = Daemon::start(&config)?;
    let ports = daemon.ports();
    let held = [
        admitted(ports.mx)?,
        admitted(ports.submission)?,
        admitted(ports.mx)?,
    ];
    let (mut over, greeting) = SmtpClient::connect(ports.mx)?;
    ensure!(
        greeting.code == 421 && greeting.enhanced() == Some("4.3.2"),
        "connection over max_connections got {greeting}"
    );
    over.read_to_end()
        .context("a refused connection should close")?;
    drop(held);
    let mut again = admitted(ports.mx).context("slots should free up")?;
    again.expect("QUIT", 221)?;
    Ok(())
}

fn low_disk_space_defers_mail(backend: Backend) -> anyhow::Result<()> {
    // No filesystem has this much free space, so the floor is always crossed.
    let config = TestConfig::new(backend).set("spool", "min_free_space", "9223372036854775807");
    let daemon = Daemon::start(&config)?;
    let (mut client, _) = SmtpClient::connect(daemon.ports().mx)?;
    client.expect("EHLO client.example", 250)?;
    let reply = client.command("MAIL FROM:<a@example.com>")?;
    ensure!(
        reply.code == 452 && reply.enhanced() == Some("4.3.1"),
        "MAIL with the spool disk below the floor got {reply}"
    );
    // Everything but new mail still works, and the session is not dropped.
    client.expect("NOOP", 250)?;
    client.expect("RSET", 250)?;
    client.expect("QUIT", 221)?;
    Ok(())
}
