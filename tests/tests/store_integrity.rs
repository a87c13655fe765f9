//! Damaged and rolled-back stores, with the real binaries on real sled files: bytes
//! flipped at the start, in the middle third and at the end of the spool's and of
//! control's sled file make the daemons and the verify commands either fail with an
//! error naming the store within 30 s, or run on the complete state, never hang and
//! never start on less than was committed; an older copy of a store under a newer
//! anchor is refused until `--accept-rollback`, which is logged (and, for control,
//! audited); `spool verify` and `--verify-store` find a record damaged through sled;
//! a store from before anchors still starts and gets one.

mod store_integrity {
    pub mod procs;
}

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use serde_json::Value;
use store_integrity::procs::{copy_dir, flip, put_back_sled_files, raw_sled, Proc, Start, BOUND};
use way2mail_tests::control::{Control, Operator};
use way2mail_tests::{
    control_binary, daemon_binary, queued_id, run_bounded, Backend, Daemon, Ports, SmtpClient,
    TestConfig,
};

/// Where bytes are flipped, as fractions of the sled file: its start, the middle
/// third (where the spin was found), its end.
const FLIPS: [f64; 6] = [0.02, 0.35, 0.45, 0.55, 0.65, 0.97];
const MESSAGES: usize = 300;
const ANCHOR: &str = "way2mail.anchor";

fn toml_path(path: &Path) -> String {
    format!("\"{}\"", path.display())
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

// ---- the MTA's spool -------------------------------------------------------------

/// Sends `n` messages to the daemon's MX listener, each acknowledged.
fn send(port: u16, n: usize, tag: &str) -> Result<Vec<String>> {
    let (mut smtp, greeting) = SmtpClient::connect(port)?;
    ensure!(greeting.code == 220, "greeting {greeting}");
    smtp.expect("EHLO integrity.client.test", 250)?;
    let mut ids = Vec::new();
    for i in 0..n {
        let mut body = format!("Subject: {tag} {i}\r\n\r\n");
        for line in 0..48 {
            body.push_str(&format!("{tag} {i} line {line:02} {}\r\n", "y".repeat(60)));
        }
        let reply = smtp.send_message("integrity@example.org", &["rcpt@example.net"], &body)?;
        ids.push(queued_id(&reply)?);
    }
    smtp.expect("QUIT", 221)?;
    Ok(ids)
}

/// A stopped daemon whose spool holds `n` messages; its temp dir keeps the spool,
/// key and keyring for the test's copies.
fn spool_with(n: usize) -> Result<Daemon> {
    let mut daemon = Daemon::start(&TestConfig::new(Backend::Epoll))?;
    send(daemon.ports().mx, n, "first")?;
    daemon.terminate()?;
    Ok(daemon)
}

/// A config on the spool at `spool`, sealed with `original`'s key and keyring, that
/// gives up opening after 5 s without progress.
fn config_on(spool: &Path, original: &Daemon) -> TestConfig {
    TestConfig::new(Backend::Epoll)
        .set("spool", "path", &toml_path(spool))
        .set("spool", "key_file", &toml_path(&original.spool_key_path()))
        .set(
            "spool",
            "keyring_file",
            &toml_path(&original.spool_keyring_path()),
        )
        .set("spool", "open_timeout_secs", "5")
}

/// `way2mail-mta --config … ARGS`, bounded by [`BOUND`] (killed and failed past it).
fn mta_command(config: &TestConfig, dir: &Path, args: &[&str]) -> Result<Output> {
    let path = config.write(dir, &Ports::ephemeral()?)?;
    let mut command = Command::new(daemon_binary()?);
    command
        .current_dir(dir)
        .arg("--config")
        .arg(path)
        .args(args)
        .env_remove("RUST_LOG");
    let started = Instant::now();
    let output = run_bounded(&mut command, BOUND)?;
    ensure!(
        started.elapsed() < BOUND,
        "{args:?} took {:?}",
        started.elapsed()
    );
    Ok(output)
}

/// The count `spool verify` printed for `what` ("envelopes", …).
fn verified_count(stdout: &str, what: &str) -> Option<usize> {
    stdout.lines().find_map(|line| {
        let (count, rest) = line.trim().split_once(' ')?;
        (rest.trim() == what).then(|| count.parse().ok()).flatten()
    })
}

#[test]
fn a_damaged_spool_is_refused_in_bounded_time_never_started_short() -> Result<()> {
    let original = spool_with(MESSAGES)?;
    let work = tempfile::tempdir()?;
    let pristine = work.path().join("pristine");
    copy_dir(&original.spool_dir(), &pristine)?;
    let mut refused = 0;
    for at in FLIPS {
        let spool = work.path().join(format!("spool-{at}"));
        copy_dir(&pristine, &spool)?;
        flip(&spool.join("db"), at)?;
        let config = config_on(&spool, &original);
        let dir = tempfile::tempdir()?;

        let verify = mta_command(&config, dir.path(), &["spool", "verify"])?;
        let said = text(&verify);
        if verify.status.success() {
            ensure!(
                verified_count(&said, "envelopes") == Some(MESSAGES),
                "flip at {at}: verify passed a spool without every message:\n{said}"
            );
        }

        eprintln!("spool flip at {at}: verify {}", verify.status);
        let started = Instant::now();
        match Daemon::start(&config) {
            Ok(mut daemon) => {
                eprintln!("spool flip at {at}: the daemon started");
                daemon.terminate()?;
                let listed = daemon.spool_entries()?.len();
                ensure!(
                    listed == MESSAGES,
                    "flip at {at}: the daemon started on a spool with {listed} of {MESSAGES} messages"
                );
            }
            Err(e) => {
                let error = format!("{e:#}");
                eprintln!(
                    "spool flip at {at}: refused: {}",
                    error.lines().last().unwrap_or("")
                );
                ensure!(
                    error.contains("exited during startup"),
                    "flip at {at}: not a clean refusal: {error}"
                );
                ensure!(
                    error.contains(&spool.display().to_string()),
                    "flip at {at}: the error does not name the spool: {error}"
                );
                refused += 1;
            }
        }
        ensure!(
            started.elapsed() < BOUND,
            "flip at {at}: the daemon took {:?}",
            started.elapsed()
        );
    }
    ensure!(refused > 0, "no flipped byte was noticed at all");
    Ok(())
}

#[test]
fn a_spool_behind_its_anchor_is_refused_until_accepted() -> Result<()> {
    let original = spool_with(3)?;
    let work = tempfile::tempdir()?;
    let old = work.path().join("old");
    copy_dir(&original.spool_dir(), &old)?;
    let config = config_on(&original.spool_dir(), &original);
    {
        let mut daemon = Daemon::start(&config)?;
        send(daemon.ports().mx, 4, "later")?;
        daemon.terminate()?;
    }
    // The older sled files under the newer anchor: the spool lost 4 messages.
    put_back_sled_files(&old, &original.spool_dir(), ANCHOR)?;

    let verify = mta_command(&config, work.path(), &["spool", "verify"])?;
    ensure!(
        !verify.status.success(),
        "verify passed a rolled-back spool"
    );
    ensure!(text(&verify).contains("anchor"), "{}", text(&verify));
    let list = mta_command(&config, work.path(), &["spool", "list"])?;
    ensure!(
        !list.status.success(),
        "spool list opened a rolled-back spool"
    );
    ensure!(text(&list).contains("--accept-rollback"), "{}", text(&list));
    let refused = match Daemon::start(&config) {
        Ok(_) => anyhow::bail!("the daemon started on a rolled-back spool"),
        Err(e) => format!("{e:#}"),
    };
    ensure!(
        refused.contains("anchor") && refused.contains("--accept-rollback"),
        "{refused}"
    );

    // The operator decides to keep it.
    let ports = Ports::ephemeral()?;
    let path = config.write(work.path(), &ports)?;
    let mut command = Command::new(daemon_binary()?);
    command
        .current_dir(work.path())
        .arg("--config")
        .arg(&path)
        .arg("--accept-rollback");
    let mut daemon = Proc::spawn(command, work.path().join("accept.log"))?;
    let start = daemon.start(
        || matches!(SmtpClient::connect(ports.mx), Ok((_, greeting)) if greeting.code == 220),
    )?;
    ensure!(
        matches!(start, Start::Ready),
        "{start:?} with --accept-rollback:\n{}",
        daemon.log()
    );
    let status = daemon.stop()?;
    ensure!(status.success(), "{status}:\n{}", daemon.log());
    let log = daemon.log();
    ensure!(
        log.contains("WARN") && log.contains("--accept-rollback"),
        "the accepted rollback is not logged at WARN:\n{log}"
    );
    // Accepted once: the anchor follows the spool, a normal start works again.
    let mut daemon = Daemon::start(&config)?;
    daemon.terminate()?;
    ensure!(daemon.spool_entries()?.len() == 3);
    Ok(())
}

#[test]
fn spool_verify_finds_a_record_damaged_through_sled() -> Result<()> {
    let original = spool_with(3)?;
    let work = tempfile::tempdir()?;
    let config = config_on(&original.spool_dir(), &original);
    let clean = mta_command(&config, work.path(), &["spool", "verify"])?;
    ensure!(clean.status.success(), "{}", text(&clean));
    ensure!(
        text(&clean).contains("no problem found"),
        "{}",
        text(&clean)
    );
    ensure!(verified_count(&text(&clean), "envelopes") == Some(3));

    let damaged = {
        let db = raw_sled(&original.spool_dir())?;
        let (key, value) = db.scan_prefix(b"b").next().context("a body record")??;
        let mut value = value.to_vec();
        let mid = value.len() / 2;
        value[mid] ^= 0x01;
        db.insert(&key, value)?;
        db.flush()?;
        way2mail_queue::keys::describe(&key)
    };
    let found = mta_command(&config, work.path(), &["spool", "verify"])?;
    let said = text(&found);
    ensure!(!found.status.success(), "verify missed the damage:\n{said}");
    ensure!(said.contains("records that do not open"), "{said}");
    ensure!(
        said.contains(&damaged),
        "the damaged {damaged} is not named:\n{said}"
    );
    Ok(())
}

#[test]
fn a_spool_from_before_anchors_starts_and_gets_one() -> Result<()> {
    let original = spool_with(2)?;
    let spool = original.spool_dir();
    std::fs::remove_file(spool.join(ANCHOR))?;
    {
        let db = raw_sled(&spool)?;
        db.remove(way2mail_queue::keys::COMMIT_SEQ)?;
        db.flush()?;
    }
    let mut daemon = Daemon::start(&config_on(&spool, &original))?;
    daemon.terminate()?;
    ensure!(
        daemon.stderr().contains("had no anchor"),
        "no log line about the first anchor:\n{}",
        daemon.stderr()
    );
    ensure!(spool.join(ANCHOR).exists(), "no anchor written");
    ensure!(daemon.spool_entries()?.len() == 2);
    Ok(())
}

// ---- control's store -------------------------------------------------------------

fn control_config(control: &Control) -> PathBuf {
    control.dir().join("control.toml")
}

/// `way2mail-control --config … ARGS`, bounded by [`BOUND`].
fn control_command(control: &Control, args: &[&str]) -> Result<Output> {
    let mut command = Command::new(control_binary()?);
    command
        .current_dir(control.dir())
        .arg("--config")
        .arg(control_config(control))
        .args(args)
        .env_remove("RUST_LOG");
    let started = Instant::now();
    let output = run_bounded(&mut command, BOUND)?;
    ensure!(
        started.elapsed() < BOUND,
        "{args:?} took {:?}",
        started.elapsed()
    );
    Ok(output)
}

/// Starts `way2mail-control` on `control`'s config with `args`: serving or exited,
/// within [`BOUND`].
fn start_control(control: &Control, args: &[&str], log: &str) -> Result<(Proc, Start)> {
    let mut command = Command::new(control_binary()?);
    command
        .current_dir(control.dir())
        .arg("--config")
        .arg(control_config(control))
        .args(args);
    let mut proc = Proc::spawn(command, control.dir().join(log))?;
    let start = proc.start(|| {
        control
            .cli(None, &["whoami"], None)
            .is_ok_and(|out| out.status.success())
    })?;
    Ok((proc, start))
}

/// Every audit entry, as the CLI lists them.
fn audit_entries(control: &Control, admin: &Operator) -> Result<Vec<Value>> {
    let out = control
        .run_as(admin, &["--json", "audit", "list", "--limit", "10000"])?
        .ok()?;
    let json = out.json()?;
    json.as_array()
        .cloned()
        .or_else(|| json.get("entries").and_then(Value::as_array).cloned())
        .context("audit list is not a list")
}

fn tenant_status(control: &Control, admin: &Operator, tenant: &str) -> Result<String> {
    let out = control
        .run_as(admin, &["--json", "tenant", "show", tenant])?
        .ok()?;
    let json = out.json()?;
    json.get("status")
        .or_else(|| json.get("tenant").and_then(|t| t.get("status")))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .with_context(|| format!("no status in {json}"))
}

/// The entry count `--verify-store` printed: `audit log: N entries, …`.
fn audit_entries_checked(said: &str) -> Option<usize> {
    let rest = said.split("audit log: ").nth(1)?;
    rest.split_whitespace().next()?.parse().ok()
}

fn add_tenant(control: &Control, admin: &Operator, id: &str) -> Result<()> {
    control
        .run_as(
            admin,
            &[
                "tenant",
                "add",
                id,
                "--business-name",
                "Integrity Ltd",
                "--contact",
                "ops@integrity.example",
            ],
        )?
        .ok()
        .map(|_| ())
}

/// A control daemon with tenants t0..t3, t1 suspended, and the audit trail of it.
fn populated_control() -> Result<(Control, Operator)> {
    let control = Control::start()?;
    let admin = control.bootstrap_admin("admin")?;
    for i in 0..4 {
        add_tenant(&control, &admin, &format!("t{i}"))?;
    }
    control.run_as(&admin, &["tenant", "suspend", "t1"])?.ok()?;
    Ok((control, admin))
}

#[test]
fn a_damaged_control_store_is_refused_in_bounded_time_never_rolled_back() -> Result<()> {
    let (mut control, admin) = populated_control()?;
    let entries = audit_entries(&control, &admin)?.len();
    control.stop()?;
    let store = control.store_dir();
    let work = tempfile::tempdir()?;
    let pristine = work.path().join("pristine");
    copy_dir(&store, &pristine)?;
    let mut refused = 0;
    for at in FLIPS {
        copy_dir(&pristine, &store)?;
        flip(&store.join("db"), at)?;

        let verify = control_command(&control, &["--verify-store"])?;
        if verify.status.success() {
            let checked = audit_entries_checked(&text(&verify));
            ensure!(
                checked.is_some_and(|n| n >= entries),
                "flip at {at}: verify passed a store without every entry:\n{}",
                text(&verify)
            );
        }

        eprintln!("control flip at {at}: verify {}", verify.status);
        let started = Instant::now();
        let (mut proc, start) = start_control(&control, &[], &format!("flip-{at}.log"))?;
        eprintln!(
            "control flip at {at}: {start:?}: {}",
            proc.log().lines().last().unwrap_or("")
        );
        match start {
            Start::Ready => {
                let now = audit_entries(&control, &admin)?.len();
                ensure!(
                    now >= entries,
                    "flip at {at}: started with {now} audit entries of {entries}"
                );
                ensure!(
                    tenant_status(&control, &admin, "t1")? == "suspended",
                    "flip at {at}: the suspended tenant is active again"
                );
                control.run_as(&admin, &["audit", "verify"])?.ok()?;
                proc.stop()?;
            }
            Start::Exited(status) => {
                let log = proc.log();
                ensure!(!status.success(), "flip at {at}: exited 0:\n{log}");
                ensure!(
                    log.contains(&store.display().to_string()),
                    "flip at {at}: the error does not name the store:\n{log}"
                );
                refused += 1;
            }
        }
        ensure!(
            started.elapsed() < BOUND,
            "flip at {at}: took {:?}",
            started.elapsed()
        );
    }
    ensure!(refused > 0, "no flipped byte was noticed at all");
    Ok(())
}

#[test]
fn a_control_store_behind_its_anchor_is_refused_until_accepted_and_audited() -> Result<()> {
    let (mut control, admin) = populated_control()?;
    control.stop()?;
    let store = control.store_dir();
    let work = tempfile::tempdir()?;
    let old = work.path().join("old");
    copy_dir(&store, &old)?;
    control.restart()?;
    control.run_as(&admin, &["tenant", "suspend", "t2"])?.ok()?;
    control.run_as(&admin, &["tenant", "resume", "t1"])?.ok()?;
    let newer = audit_entries(&control, &admin)?.len();
    control.stop()?;
    // The older sled files under the newer anchor: the suspension of t2 is gone.
    put_back_sled_files(&old, &store, ANCHOR)?;

    let verify = control_command(&control, &["--verify-store"])?;
    ensure!(
        !verify.status.success(),
        "verify passed:\n{}",
        text(&verify)
    );
    ensure!(text(&verify).contains("anchor"), "{}", text(&verify));
    let (mut proc, start) = start_control(&control, &[], "refused.log")?;
    let log = proc.log();
    ensure!(
        matches!(start, Start::Exited(status) if !status.success()),
        "started on a rolled-back store:\n{log}"
    );
    ensure!(
        log.contains("anchor") && log.contains("--accept-rollback"),
        "{log}"
    );
    proc.stop()?;

    let (mut proc, start) = start_control(&control, &["--accept-rollback"], "accept.log")?;
    ensure!(matches!(start, Start::Ready), "{start:?}:\n{}", proc.log());
    let entries = audit_entries(&control, &admin)?;
    ensure!(entries.len() < newer, "the log was not rolled back?");
    let accepted = entries
        .iter()
        .find(|e| e.get("action").and_then(Value::as_str) == Some("store.accept_rollback"))
        .with_context(|| format!("no store.accept_rollback entry in {entries:?}"))?;
    let detail = accepted.get("detail").and_then(Value::as_str).unwrap_or("");
    ensure!(detail.contains("anchor recorded commit"), "{detail}");
    // The chain is whole again, with the decision in it; t2 is as the store had it.
    control.run_as(&admin, &["audit", "verify"])?.ok()?;
    ensure!(tenant_status(&control, &admin, "t2")? == "active");
    proc.stop()?;
    Ok(())
}

#[test]
fn verify_store_finds_a_record_damaged_through_sled() -> Result<()> {
    let (mut control, _admin) = populated_control()?;
    control.stop()?;
    let clean = control_command(&control, &["--verify-store"])?;
    ensure!(clean.status.success(), "{}", text(&clean));
    ensure!(
        text(&clean).contains("no problem found"),
        "{}",
        text(&clean)
    );
    {
        let db = raw_sled(&control.store_dir())?;
        let tenants = db.open_tree("tenants")?;
        let (key, value) = tenants.iter().next().context("a tenant record")??;
        let mut value = value.to_vec();
        let last = value.len() - 1;
        value[last] ^= 0x01;
        tenants.insert(key, value)?;
        db.flush()?;
    }
    let found = control_command(&control, &["--verify-store"])?;
    let said = text(&found);
    ensure!(!found.status.success(), "verify missed the damage:\n{said}");
    let tenants_line = said
        .lines()
        .find(|l| l.trim_start().starts_with("tenants "))
        .with_context(|| format!("no tenants line:\n{said}"))?;
    ensure!(
        tenants_line.split_whitespace().last() == Some("1"),
        "{said}"
    );
    ensure!(said.contains("control store record tenants/"), "{said}");
    Ok(())
}

#[test]
fn a_control_store_from_before_anchors_starts_and_gets_one() -> Result<()> {
    let (mut control, admin) = populated_control()?;
    control.stop()?;
    let store = control.store_dir();
    std::fs::remove_file(store.join(ANCHOR))?;
    {
        let db = raw_sled(&store)?;
        db.open_tree("meta")?.remove("commit_seq")?;
        db.flush()?;
    }
    control.restart()?;
    ensure!(
        control.log().contains("had no anchor"),
        "no log line about the first anchor:\n{}",
        control.log()
    );
    ensure!(store.join(ANCHOR).exists(), "no anchor written");
    control.run_as(&admin, &["audit", "verify"])?.ok()?;
    Ok(())
}
