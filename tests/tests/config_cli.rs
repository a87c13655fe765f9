//! The configuration contract from docs/configuration.md, checked through the command
//! line: `--check` exits 0 for a valid file and 1 naming the key for each kind of mistake,
//! a spool key readable by others is refused, and with no config at all the daemon runs
//! on the dev defaults and creates its files under `./var`.

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use anyhow::{ensure, Context};
use way2mail_tests::{daemon_binary, run_bounded, Backend, Daemon, Ports, TestConfig};

fn check(config: &TestConfig) -> anyhow::Result<(Output, tempfile::TempDir)> {
    let dir = tempfile::tempdir()?;
    let file = config.write(dir.path(), &Ports::ephemeral()?)?;
    let mut command = Command::new(daemon_binary()?);
    command
        .current_dir(dir.path())
        .arg("--config")
        .arg(&file)
        .arg("--check");
    let output = run_bounded(&mut command, Duration::from_secs(30))?;
    Ok((output, dir))
}

#[test]
fn check_accepts_a_valid_file() -> anyhow::Result<()> {
    for backend in Backend::ALL {
        let config = TestConfig::new(backend)
            .set("relay", "domains", r#"["example.com", "example.net"]"#)
            .set(
                "relay",
                "trusted_networks",
                r#"["127.0.0.0/8", "::1/128", "10.20.0.0/16"]"#,
            )
            .set("limits", "max_recipients", "200")
            .set("timeouts", "command_secs", "60")
            .set("log", "format", r#""json""#);
        let (output, dir) = check(&config)?;
        ensure!(
            output.status.code() == Some(0),
            "--check on a valid file ({backend:?}): {:?}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        // Validation starts nothing: no spool is created.
        ensure!(
            !dir.path().join("spool").exists(),
            "--check created the spool"
        );
    }
    Ok(())
}

#[test]
fn check_rejects_mistakes_naming_the_key() -> anyhow::Result<()> {
    // (section, key, value, the name stderr must mention)
    let cases = [
        ("limits", "max_recipients", r#""x""#, "max_recipients"),
        ("limits", "max_recipents", "5", "max_recipents"),
        ("runtime", "io", r#""kqueue""#, "io"),
        (
            "relay",
            "trusted_networks",
            r#"["10.0.0.0/33"]"#,
            "trusted_networks",
        ),
        ("timeouts", "command_secs", "-1", "command_secs"),
        ("", "hostnam", r#""typo.example""#, "hostnam"),
    ];
    for (section, key, value, named) in cases {
        let config = TestConfig::new(Backend::Epoll).set(section, key, value);
        let (output, _dir) = check(&config)?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        ensure!(
            output.status.code() == Some(1),
            "[{section}] {key} = {value}: expected exit 1, got {:?}\n{stderr}",
            output.status
        );
        ensure!(
            stderr.contains(named),
            "[{section}] {key} = {value}: stderr does not name `{named}`:\n{stderr}"
        );
    }
    Ok(())
}

#[test]
fn spool_key_readable_by_others_is_refused() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let key = dir.path().join("spool.key");
    std::fs::write(&key, [7u8; 32])?;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644))?;
    let file = TestConfig::new(Backend::Epoll).write(dir.path(), &Ports::ephemeral()?)?;
    let mut command = Command::new(daemon_binary()?);
    command.current_dir(dir.path()).arg("--config").arg(&file);
    let output = run_bounded(&mut command, Duration::from_secs(30))
        .context("the daemon should refuse to start, not keep running")?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(!output.status.success(), "started with a 0644 spool key");
    ensure!(
        stderr.contains("spool key (`[spool] key_file`)") && stderr.contains("spool.key"),
        "error does not name the key file:\n{stderr}"
    );
    Ok(())
}

/// Binds each dev-default port briefly; false when one is taken.
fn dev_ports_free() -> bool {
    let ports = Ports::dev_defaults();
    [ports.mx, ports.submission, ports.submissions]
        .into_iter()
        .all(|port| TcpListener::bind(("127.0.0.1", port)).is_ok())
}

#[test]
fn no_config_runs_on_dev_defaults() -> anyhow::Result<()> {
    if !dev_ports_free() {
        eprintln!("skipped: a dev-default port (2525/2587/2465) is in use on this machine");
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let root = dir.path().to_path_buf();
    // start_dev_defaults waits for 220 on all three ports, TLS included.
    let mut daemon = Daemon::start_dev_defaults(dir)?;
    let var = root.join("var");
    ensure!(var.join("spool").is_dir(), "./var/spool missing");
    ensure!(
        var.join("tls/cert.pem").is_file(),
        "./var/tls/cert.pem missing"
    );
    check_key_file(&var.join("spool.key"))?;
    daemon.terminate()?;
    Ok(())
}

fn check_key_file(path: &Path) -> anyhow::Result<()> {
    let meta = std::fs::metadata(path).with_context(|| format!("{}", path.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    ensure!(mode == 0o600, "{} has mode {mode:o}", path.display());
    ensure!(
        meta.len() == 32,
        "{} is {} bytes",
        path.display(),
        meta.len()
    );
    Ok(())
}
