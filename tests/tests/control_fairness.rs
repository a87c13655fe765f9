//! A local flood on control's socket does not starve the MTA: five local users (other
//! uids than the MTA's) open connections until control refuses them, each held to its
//! share, all of them to the connections not reserved for `service_uids`; then the
//! real MTA starts, fetches its snapshot through the flood, and authenticates the
//! tenant user made before it. The test runs as root (as CI does): its threads connect
//! as the other uids, and everything else (the MTA, the CLI) runs as root, control's
//! default service uid.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{ensure, Context};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use way2mail_tests::control::{json_str, Control};
use way2mail_tests::{wait_for, Backend, Daemon, TestConfig};

/// `n` connections to `socket` made as `uid`: only the connecting thread changes
/// identity (Linux keeps credentials per thread, and `SO_PEERCRED` records the
/// connecting one's), and it keeps gid 0, which the socket's group permissions let in.
fn connect_as(socket: &Path, uid: u32, n: usize) -> anyhow::Result<Vec<UnixStream>> {
    let socket: PathBuf = socket.to_owned();
    let connected = std::thread::spawn(move || -> std::io::Result<Vec<UnixStream>> {
        rustix::thread::set_thread_uid(rustix::process::Uid::from_raw(uid))?;
        (0..n).map(|_| UnixStream::connect(&socket)).collect()
    })
    .join();
    match connected {
        Ok(result) => result.with_context(|| format!("connecting as uid {uid}")),
        Err(_) => anyhow::bail!("the thread connecting as uid {uid} panicked"),
    }
}

/// The line control answers a `hello` with on `stream`: the hello, or `busy`.
fn first_line(stream: &UnixStream) -> anyhow::Result<String> {
    let mut writer = stream.try_clone()?;
    // A refused connection may be closed before the request is written.
    let _ = writer.write_all(b"{\"v\":1,\"id\":1,\"op\":\"hello\"}\n");
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line)?;
    Ok(line)
}

#[test]
fn a_local_flood_on_controls_socket_does_not_starve_the_mta() -> anyhow::Result<()> {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: connecting as other uids needs root (CI runs as root)");
        return Ok(());
    }
    let control = Control::start_with("max_connections = 16")?;
    let admin = control.bootstrap_admin("admin")?;
    for args in [
        &[
            "tenant",
            "add",
            "acme",
            "--business-name",
            "Acme Ltd",
            "--contact",
            "ops@acme.example",
        ][..],
        &["domain", "add", "acme", "acme.example"],
        &[
            "domain",
            "override",
            "acme.example",
            "--allow",
            "--reason",
            "test",
        ],
    ] {
        control.run_as(&admin, args)?.ok()?;
    }
    let created = control
        .run_as(
            &admin,
            &[
                "--json",
                "credential",
                "add",
                "acme",
                "--smtp",
                "app@acme.example",
            ],
        )?
        .ok()?
        .json()?;
    let password = json_str(&created, "secret")?;

    std::fs::set_permissions(control.dir(), std::fs::Permissions::from_mode(0o750))?;
    // The CLI's connections above hold their slots until control has seen them
    // close: a flood that meets one of them is retried after a moment.
    let mut attempts = 0;
    let flood = loop {
        let mut flood = Vec::new();
        for user in 0..5 {
            flood.extend(connect_as(&control.socket(), 60_001 + user, 8)?);
        }
        // The flood is real: all of the sixteen but the two reserved are held.
        let held = flood
            .iter()
            .map(first_line)
            .collect::<anyhow::Result<Vec<_>>>()?;
        let served = held.iter().filter(|l| l.contains("\"ok\":true")).count();
        attempts += 1;
        if served == 14 {
            break flood;
        }
        ensure!(
            attempts < 20,
            "the flood holds {served} connections: {held:?}"
        );
        drop(flood);
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let late = connect_as(&control.socket(), 60_010, 1)?;
    let refused = first_line(&late[0])?;
    ensure!(refused.contains("busy"), "another user got {refused}");

    let state = tempfile::tempdir()?;
    let quote = |p: PathBuf| format!("\"{}\"", p.display());
    let config = TestConfig::new(Backend::Epoll)
        .set("control", "socket", &quote(control.socket()))
        .set(
            "control",
            "snapshot_file",
            &quote(state.path().join("snapshot")),
        )
        .set("relay", "trusted_networks", "[]");
    let daemon = Daemon::start(&config)?;
    let token = B64.encode(format!("\0app@acme.example\0{password}"));
    wait_for(
        "the MTA to authenticate from control's snapshot",
        Duration::from_secs(10),
        || {
            let mut c = daemon.submission_tls().ok()?;
            let reply = c.command(&format!("AUTH PLAIN {token}")).ok()?;
            (reply.code == 235).then_some(())
        },
    )
    .with_context(|| {
        format!(
            "MTA log:\n{}\ncontrol log:\n{}",
            daemon.stderr(),
            control.log()
        )
    })?;
    drop(flood);
    Ok(())
}
