//! `way2mail-control`: the control plane daemon. Configuration first (fail fast,
//! naming the key), then logging, then the server, which opens the store (under a
//! watchdog, checked against its anchor), binds the socket and serves until SIGTERM
//! or SIGINT. `--verify-store` checks the store offline instead of serving.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Parser;
use way2mail_control::audit::AuditLog;
use way2mail_control::server::{self, config::Config};
use way2mail_control::store::verify::StoreReport;
use way2mail_control::store::{AnchorPolicy, Store, StoreFiles, StoreOptions, STORE_KEY};
use way2mail_daemon::watchdog::{self, Progress};
use way2mail_seal::{Keyring, MasterKey};
use way2mail_wire::protocol::AuditReport;

#[derive(Parser)]
#[command(
    name = "way2mail-control",
    version,
    about = "Way2Mail control plane daemon (tenants, credentials, operators, audit log)"
)]
struct Cli {
    /// Configuration file (TOML); without it the dev defaults apply.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Validate the configuration and exit: 0 valid, 1 invalid.
    #[arg(long)]
    check: bool,
    /// Start on a store that is not what its anchor recorded (committed changes were
    /// lost, or an older copy was put in place), once you decided to keep it as it
    /// is. Written to the audit log; the anchor is rewritten.
    #[arg(long, conflicts_with = "verify_store")]
    accept_rollback: bool,
    /// Check the store offline (the daemon stopped): every record opens and decodes,
    /// the audit chain verifies, the store is at its anchor. Exit 0 when clean, 1
    /// otherwise. Changes nothing.
    #[arg(long)]
    verify_store: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("way2mail-control: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    let config = match &cli.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    let settings = config.validate()?;
    if cli.check {
        println!("configuration OK");
        return Ok(ExitCode::SUCCESS);
    }
    if cli.verify_store {
        return verify_store(&settings.store);
    }
    way2mail_daemon::logging::init(&settings.log);
    server::run(settings, cli.accept_rollback)?;
    Ok(ExitCode::SUCCESS)
}

/// `--verify-store`: the store opened for reading only, under the daemon's
/// watchdog, every record and the audit chain checked.
fn verify_store(files: &StoreFiles) -> Result<ExitCode> {
    let keyring = existing_keyring(files)?;
    let progress = Progress::new();
    let options = StoreOptions {
        anchor: AnchorPolicy::Inspect,
        progress: progress.clone(),
    };
    let dir = files.dir.clone();
    if !dir.join("db").exists() {
        bail!("{} holds no control store", dir.display());
    }
    let what = format!("checking the control store {}", dir.display());
    let (records, audit) =
        watchdog::bounded(&what, server::STORE_OPEN_STALL, &progress, move || {
            let store = Store::open_with_keyring_options(&dir, keyring, &options)?;
            let records = way2mail_control::store::verify::verify(&store)?;
            let audit = AuditLog::verify(&store)?;
            Ok::<_, way2mail_control::Error>((records, audit))
        })
        .map_err(|stuck| anyhow::anyhow!("{stuck}. {}", server::STORE_DAMAGED_HINT))?
        .context("checking the control store")?;
    let problems = records.problem_count() + audit.problems.len() as u64;
    print_report(&records, &audit, problems);
    Ok(if problems == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The keyring as it is: a verification never creates a key or a keyring.
fn existing_keyring(files: &StoreFiles) -> Result<Keyring> {
    if !files.key_file.exists() {
        bail!(
            "key_file {} does not exist: no store was ever made with this configuration",
            files.key_file.display()
        );
    }
    // Its errors name the key and its file.
    let master = MasterKey::load_or_create_named(&files.key_file, STORE_KEY)?;
    Keyring::open_existing(&files.keyring_file, master)
        .with_context(|| format!("keyring_file {}", files.keyring_file.display()))
}

fn print_report(records: &StoreReport, audit: &AuditReport, problems: u64) {
    let seq = |s: Option<u64>| s.map_or_else(|| "none".to_owned(), |n| n.to_string());
    println!("control store {}", records.dir.display());
    println!(
        "  commit {}, anchor {}",
        seq(records.commit_seq),
        match &records.anchor {
            Some(a) => format!("commit {}, audit entry {}", a.commit_seq, a.audit_seq),
            None => "none".into(),
        }
    );
    println!(
        "  {:<14} {:>8} {:>8} {:>10}",
        "tree", "records", "erased", "unreadable"
    );
    for (tree, count) in &records.trees {
        println!(
            "  {:<14} {:>8} {:>8} {:>10}",
            tree.as_str(),
            count.records,
            count.erased,
            count.unreadable
        );
    }
    println!(
        "  audit log: {} entries, {} problem(s)",
        audit.entries,
        audit.problems.len()
    );
    if problems == 0 {
        println!("verify-store: no problem found");
        return;
    }
    println!("problems:");
    for example in &records.examples {
        println!("  {example}");
    }
    for p in audit.problems.iter().take(20) {
        println!("  audit entry {}: {} ({})", p.seq, p.message, p.kind);
    }
    println!(
        "verify-store: {problems} problem(s) found. {}",
        server::STORE_DAMAGED_HINT
    );
}
