//! The CLI's data-protection commands: a tenant's retention, legal hold, erasure,
//! receipt, report and export; retention runs; suppression lists; backups (made
//! online through control, restored offline on a stopped node); receipt checks.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{ArgGroup, Subcommand};
use serde::Deserialize;
use way2mail_seal::{Keyring, MasterKey};

use way2mail_control::backup::{self, ArchiveReader, RestoreTarget, BACKUP_KEY};
use way2mail_control::records::{ErasedTenant, ReceiptRecord, META_SNAPSHOT_VERSION};
use way2mail_control::server::config::Config as ControlConfig;
use way2mail_control::store::{AnchorPolicy, Store, StoreFiles, StoreOptions, TreeName, STORE_KEY};
use way2mail_daemon::duration;
use way2mail_daemon::watchdog::{self, Progress};
use way2mail_wire::protocol::{ErasureReceipt, Request, Response};

use super::session::Session;
use super::{prompt, render, Failure};

#[derive(Debug, Subcommand)]
pub enum TenantDataCommand {
    /// Set the tenant's own retention periods (its agreement), e.g. --content 7d;
    /// --reset goes back to the defaults.
    #[command(group(ArgGroup::new("periods").required(true).multiple(true)
        .args(["content", "delivery_log", "security_log", "account", "reset"])))]
    Retention {
        tenant: String,
        /// Queued message content and recipient lists.
        #[arg(long, value_name = "PERIOD")]
        content: Option<String>,
        #[arg(long, value_name = "PERIOD")]
        delivery_log: Option<String>,
        /// Audit entries about the tenant.
        #[arg(long, value_name = "PERIOD")]
        security_log: Option<String>,
        /// Account and billing records, after the subscription ends.
        #[arg(long, value_name = "PERIOD")]
        account: Option<String>,
        #[arg(long)]
        reset: bool,
    },
    /// Place a legal hold (nothing of the tenant is deleted), or --release it.
    /// Needs --reason.
    Hold {
        tenant: String,
        #[arg(long)]
        release: bool,
    },
    /// Erase the tenant: delete what the retention rules allow, destroy its keys,
    /// print the signed receipt. Asks for the tenant id unless --confirm gives it.
    Erase {
        tenant: String,
        /// The tenant id again (required without a terminal).
        #[arg(long, value_name = "TENANT")]
        confirm: Option<String>,
        /// Also write the receipt (JSON) to this file.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// The erasure receipt of an erased tenant.
    Receipt {
        tenant: String,
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// What is held about the tenant, how long, where its mail may go, who
    /// accessed it in the last 90 days.
    Report { tenant: String },
    /// Everything held about the tenant as one tar archive (JSON and .eml files,
    /// with a manifest of counts and SHA-256 checksums).
    Export {
        tenant: String,
        /// The archive to write (must not exist yet; created 0600).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum RetentionCommand {
    /// Sweep now, in control and in the MTA; prints what was removed.
    Run,
    /// The default periods.
    Show,
}

#[derive(Debug, Subcommand)]
pub enum SuppressionCommand {
    Add {
        tenant: String,
        address: String,
        #[arg(long)]
        note: Option<String>,
    },
    List {
        tenant: String,
    },
    Remove {
        tenant: String,
        address: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Back up the control store and the spool, online, sealed with the backup key.
    Create {
        /// The archive to write (must not exist yet; created 0600).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Restore a backup onto this node, with both daemons stopped (as root). The
    /// stores there are moved aside, not deleted; erased tenants stay erased.
    Restore {
        #[arg(long = "in", value_name = "FILE")]
        input: PathBuf,
        /// The backup key [default: control's backup.key_file].
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
        /// way2mail-control's configuration [default: the dev defaults].
        #[arg(long, value_name = "FILE")]
        control_config: Option<PathBuf>,
        /// way2mail-mta's configuration [default: the dev defaults].
        #[arg(long, value_name = "FILE")]
        mta_config: Option<PathBuf>,
        /// Do not ask (required without a terminal).
        #[arg(long)]
        yes: bool,
    },
    /// Check that a backup opens with the key and is whole, without restoring it.
    Verify {
        #[arg(long = "in", value_name = "FILE")]
        input: PathBuf,
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
        #[arg(long, value_name = "FILE")]
        control_config: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ReceiptCommand {
    /// Check an erasure receipt's signature (offline).
    Verify {
        file: PathBuf,
        /// The expected signing key (base64) [default: the key the receipt names].
        #[arg(long, value_name = "BASE64")]
        public_key: Option<String>,
    },
    /// The key control signs receipts with.
    Key,
}

fn failed(what: &str) -> impl Fn(std::io::Error) -> Failure + '_ {
    move |e| Failure::Failed(format!("{what}: {e}"))
}

fn period(flag: &str, text: Option<String>) -> Result<Option<u64>, Failure> {
    text.map(|t| duration::parse(&t).map_err(|e| Failure::Usage(format!("--{flag}: {e}"))))
        .transpose()
}

/// A new private file; an existing one is never overwritten.
fn create_private(path: &Path) -> Result<File, Failure> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Failure::Failed(format!("{}: {e}", path.display())))
}

/// Streams a request's answer into a new file at `out`; a failed or cut stream
/// removes the partial file.
fn stream_to_file(
    session: &mut Session,
    request: Request,
    out: &Path,
) -> Result<Response, Failure> {
    let file = create_private(out)?;
    let mut sink = BufWriter::new(file);
    let result = session.call_stream(request, &mut sink).and_then(|r| {
        sink.flush().map_err(failed("writing"))?;
        sink.get_ref().sync_all().map_err(failed("writing"))?;
        Ok(r)
    });
    if result.is_err() {
        let _ = std::fs::remove_file(out);
    }
    result
}

fn write_receipt(path: &Path, receipt: &ErasureReceipt) -> Result<(), Failure> {
    let text = serde_json::to_vec_pretty(receipt)
        .map_err(|e| Failure::Failed(format!("encoding the receipt: {e}")))?;
    let mut file = create_private(path)?;
    file.write_all(&text)
        .map_err(failed("writing the receipt"))?;
    file.sync_all().map_err(failed("writing the receipt"))
}

fn confirm_erase(tenant: &str) -> Result<String, Failure> {
    let mut tty = prompt::tty().ok_or_else(|| {
        Failure::Usage("erasure needs confirmation: no terminal, so give --confirm TENANT".into())
    })?;
    prompt::ask(
        &mut tty,
        &format!(
            "Erase tenant {0}? Its data is deleted and its keys destroyed: this cannot be undone. \
             Type {0} to confirm: ",
            super::table::clean(tenant)
        ),
    )
    .map(|a| a.trim().to_owned())
    .map_err(|e| Failure::Failed(format!("reading the confirmation: {e}")))
}

pub(super) fn tenant(session: &mut Session, command: TenantDataCommand) -> Result<(), Failure> {
    match command {
        TenantDataCommand::Retention {
            tenant,
            content,
            delivery_log,
            security_log,
            account,
            reset,
        } => {
            let request = Request::TenantRetention {
                tenant,
                content_secs: period("content", content)?,
                delivery_log_secs: period("delivery-log", delivery_log)?,
                security_log_secs: period("security-log", security_log)?,
                account_secs: period("account", account)?,
                reset,
            };
            let response = session.call(request)?;
            session.show(&response, || render::human(&response))
        }
        TenantDataCommand::Hold { tenant, release } => {
            let done = if release {
                format!("legal hold on {} lifted", super::table::clean(&tenant))
            } else {
                format!(
                    "tenant {} is under legal hold",
                    super::table::clean(&tenant)
                )
            };
            session.simple(
                Request::TenantHold {
                    tenant,
                    hold: !release,
                },
                done,
            )
        }
        TenantDataCommand::Erase {
            tenant,
            confirm,
            out,
        } => {
            let confirm = match confirm {
                Some(c) => c,
                None => confirm_erase(&tenant)?,
            };
            if confirm != tenant {
                return Err(Failure::Failed("not confirmed; nothing changed".into()));
            }
            let response = session.call(Request::TenantErase { tenant, confirm })?;
            if let (Some(path), Response::ErasureReceipt(r)) = (&out, &response) {
                write_receipt(path, r)?;
            }
            session.show(&response, || render::human(&response))
        }
        TenantDataCommand::Receipt { tenant, out } => {
            let response = session.call(Request::TenantReceipt { tenant })?;
            if let (Some(path), Response::ErasureReceipt(r)) = (&out, &response) {
                write_receipt(path, r)?;
            }
            session.show(&response, || render::human(&response))
        }
        TenantDataCommand::Report { tenant } => {
            let response = session.call(Request::TenantReport { tenant })?;
            session.show(&response, || render::human(&response))
        }
        TenantDataCommand::Export { tenant, out } => {
            let response = stream_to_file(session, Request::TenantExport { tenant }, &out)?;
            session.show(&response, || {
                format!(
                    "export written to {}\n\n{}",
                    out.display(),
                    render::human(&response)
                )
            })
        }
    }
}

pub(super) fn retention(session: &mut Session, command: RetentionCommand) -> Result<(), Failure> {
    let request = match command {
        RetentionCommand::Run => Request::RetentionRun,
        RetentionCommand::Show => Request::RetentionShow,
    };
    let response = session.call(request)?;
    session.show(&response, || render::human(&response))
}

pub(super) fn suppression(
    session: &mut Session,
    command: SuppressionCommand,
) -> Result<(), Failure> {
    let request = match command {
        SuppressionCommand::Add {
            tenant,
            address,
            note,
        } => Request::SuppressionAdd {
            tenant,
            address,
            note,
        },
        SuppressionCommand::List { tenant } => Request::SuppressionList { tenant },
        SuppressionCommand::Remove { tenant, address } => {
            let done = format!(
                "{} removed from the suppression list",
                super::table::clean(&address)
            );
            return session.simple(Request::SuppressionRemove { tenant, address }, done);
        }
    };
    let response = session.call(request)?;
    session.show(&response, || render::human(&response))
}

pub(super) fn receipt(session: &mut Session, command: ReceiptCommand) -> Result<ExitCode, Failure> {
    match command {
        ReceiptCommand::Key => {
            let response = session.call(Request::ReceiptKey)?;
            session.show(&response, || render::human(&response))?;
            Ok(ExitCode::SUCCESS)
        }
        ReceiptCommand::Verify { file, public_key } => {
            let text = std::fs::read(&file).map_err(failed("reading the receipt"))?;
            let receipt: ErasureReceipt = serde_json::from_slice(&text).map_err(|e| {
                Failure::Failed(format!("{} is not a receipt: {e}", file.display()))
            })?;
            match way2mail_control::service::verify_receipt(&receipt, public_key.as_deref()) {
                Ok(()) => {
                    let key = receipt
                        .signature
                        .as_ref()
                        .map(|s| s.public_key.clone())
                        .unwrap_or_default();
                    println!(
                        "receipt {} for tenant {}: signature valid (ed25519 key {key})",
                        receipt.receipt, receipt.tenant
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    println!("receipt {}: signature INVALID: {e}", receipt.receipt);
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
}

pub(super) fn backup(session: &mut Session, command: BackupCommand) -> Result<ExitCode, Failure> {
    match command {
        BackupCommand::Create { out } => {
            let response = stream_to_file(session, Request::BackupCreate, &out)?;
            session.show(&response, || {
                format!(
                    "backup written to {}\n\n{}",
                    out.display(),
                    render::human(&response)
                )
            })?;
            Ok(ExitCode::SUCCESS)
        }
        BackupCommand::Verify {
            input,
            key,
            control_config,
        } => {
            let control = control_settings(control_config.as_deref())?;
            let key = backup_key(key.as_deref(), &control)?;
            let file = File::open(&input).map_err(failed("opening the backup"))?;
            let mut reader = ArchiveReader::new(BufReader::new(file), &key)
                .map_err(|e| Failure::Failed(format!("{}: {e}", input.display())))?;
            let created = reader.header().created_at;
            let bytes = std::io::copy(&mut reader, &mut std::io::sink())
                .map_err(|e| Failure::Failed(format!("{}: {e}", input.display())))?;
            println!(
                "backup {} made {}: whole, opens with key {} ({bytes} bytes of records)",
                input.display(),
                super::table::rfc3339(created),
                key.fingerprint()
            );
            Ok(ExitCode::SUCCESS)
        }
        BackupCommand::Restore {
            input,
            key,
            control_config,
            mta_config,
            yes,
        } => {
            restore(
                &input,
                key.as_deref(),
                control_config.as_deref(),
                mta_config.as_deref(),
                yes,
                session.json(),
            )?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// What errors call the MTA's spool key, read by a restore.
const MTA_SPOOL_KEY: &str = "the MTA's spool key (`[spool] key_file` of its configuration)";

fn control_settings(
    path: Option<&Path>,
) -> Result<way2mail_control::server::config::Settings, Failure> {
    let config = match path {
        Some(p) => ControlConfig::load(p).map_err(|e| Failure::Failed(e.to_string()))?,
        None => ControlConfig::default(),
    };
    config
        .validate()
        .map_err(|e| Failure::Failed(e.to_string()))
}

fn backup_key(
    flag: Option<&Path>,
    control: &way2mail_control::server::config::Settings,
) -> Result<MasterKey, Failure> {
    let (path, name) = match flag {
        Some(path) => (path, "backup key (--key)"),
        None => (control.backup_key_file.as_path(), BACKUP_KEY),
    };
    if !path.exists() {
        return Err(Failure::Failed(format!(
            "the {name} {} does not exist (give the key file the backup was made with: --key FILE)",
            path.display()
        )));
    }
    // Its errors name the key and its file.
    MasterKey::load_or_create_named(path, name).map_err(|e| Failure::Failed(e.to_string()))
}

/// What a restore needs of the MTA's configuration: `[spool]`. Read leniently, so
/// that a whole `mta.toml` parses; the defaults are the MTA's dev defaults.
#[derive(Debug, Deserialize, Default)]
struct MtaFile {
    #[serde(default)]
    spool: MtaSpool,
}

#[derive(Debug, Deserialize)]
#[serde(default)]
struct MtaSpool {
    path: PathBuf,
    key_file: PathBuf,
    keyring_file: PathBuf,
}

impl Default for MtaSpool {
    fn default() -> Self {
        MtaSpool {
            path: "./var/spool".into(),
            key_file: "./var/spool.key".into(),
            // As the MTA: empty means beside the spool directory.
            keyring_file: PathBuf::new(),
        }
    }
}

/// `key_name` says which key `key_file` is, in errors ([`STORE_KEY`]); `what` whose
/// keyring it opens.
fn open_keyring(
    key_file: &Path,
    key_name: &'static str,
    keyring_file: &Path,
    what: &str,
) -> Result<Keyring, Failure> {
    let master = MasterKey::load_or_create_named(key_file, key_name)
        .map_err(|e| Failure::Failed(e.to_string()))?;
    Keyring::open_existing(keyring_file, master).map_err(|e| {
        Failure::Failed(format!(
            "{what}: {e} (a restore needs this node's keyring: it is never in a backup)"
        ))
    })
}

fn restore(
    input: &Path,
    key: Option<&Path>,
    control_config: Option<&Path>,
    mta_config: Option<&Path>,
    yes: bool,
    json: bool,
) -> Result<(), Failure> {
    let control = control_settings(control_config)?;
    let mta: MtaFile = match mta_config {
        Some(p) => way2mail_daemon::config::load::<MtaFile>(p)
            .map_err(|e| Failure::Failed(e.to_string()))?,
        None => MtaFile::default(),
    };
    let key = backup_key(key, &control)?;
    let files = &control.store;
    ensure_stopped(&files.dir)?;
    let spool_keyring_file = if mta.spool.keyring_file.as_os_str().is_empty() {
        Keyring::beside(&mta.spool.path).ok_or_else(|| {
            Failure::Failed(format!(
                "spool.keyring_file: cannot be put beside spool.path {}; set it",
                mta.spool.path.display()
            ))
        })?
    } else {
        mta.spool.keyring_file.clone()
    };
    let target = RestoreTarget {
        control_dir: files.dir.clone(),
        control_keyring: open_keyring(&files.key_file, STORE_KEY, &files.keyring_file, "control")?,
        spool_dir: mta.spool.path.clone(),
        spool_keyring: open_keyring(
            &mta.spool.key_file,
            MTA_SPOOL_KEY,
            &spool_keyring_file,
            "the MTA",
        )?,
    };
    if !yes {
        let mut tty = prompt::tty().ok_or_else(|| {
            Failure::Usage("a restore needs confirmation: no terminal, so give --yes".into())
        })?;
        let answer = prompt::ask(
            &mut tty,
            &format!(
                "Restore {} over {} and {}? Both are moved aside first. Type restore to confirm: ",
                input.display(),
                target.control_dir.display(),
                target.spool_dir.display()
            ),
        )
        .map_err(|e| Failure::Failed(format!("reading the confirmation: {e}")))?;
        if answer.trim() != "restore" {
            return Err(Failure::Failed("not confirmed; nothing changed".into()));
        }
    }
    let file = File::open(input).map_err(failed("opening the backup"))?;
    let report = backup::restore(BufReader::new(file), &key, &target)
        .map_err(|e| Failure::Failed(e.to_string()))?;
    record_restore(files, &target, &report)?;
    // Recording the restore may have made files as root: the daemon's user owns the store.
    let like = match (&report.control_moved_aside, files.dir.parent()) {
        (Some(aside), _) => aside.clone(),
        (None, Some(parent)) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        (None, _) => PathBuf::from("."),
    };
    way2mail_daemon::files::chown_tree_like(&files.dir, &like)
        .map_err(|e| Failure::Failed(format!("{}: {e}", files.dir.display())))?;
    if json {
        let text = serde_json::to_string_pretty(&report)
            .map_err(|e| Failure::Failed(format!("cannot print the result: {e}")))?;
        println!("{text}");
    } else {
        print!(
            "{}",
            super::table::record(&[
                ("backup", report.archive.clone()),
                ("made", super::table::rfc3339(report.created_at)),
                ("control records", report.control_records.to_string()),
                (
                    "control records of erased tenants dropped",
                    report.control_erased_dropped.to_string()
                ),
                ("spool records", report.spool_records.to_string()),
                ("queued messages", report.spool_messages.to_string()),
                (
                    "spool records of erased tenants dropped",
                    report.spool_erased_dropped.to_string()
                ),
                (
                    "control store moved aside to",
                    report
                        .control_moved_aside
                        .as_ref()
                        .map_or("-".into(), |p| p.display().to_string()),
                ),
                (
                    "spool moved aside to",
                    report
                        .spool_moved_aside
                        .as_ref()
                        .map_or("-".into(), |p| p.display().to_string()),
                ),
            ])
        );
    }
    Ok(())
}

/// A restore needs the daemon stopped: sled holds an exclusive `flock` on the
/// store's `db` file while it is open. Only the lock is tried, the store is not
/// opened: it may be damaged (the reason for the restore), and sled could spin on it.
fn ensure_stopped(dir: &Path) -> Result<(), Failure> {
    let db = dir.join("db");
    let file = match File::open(&db) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(Failure::Failed(format!(
                "the control store {} cannot be opened ({e})",
                dir.display()
            )))
        }
    };
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        // Released when `file` is dropped.
        Ok(()) => Ok(()),
        Err(e) => Err(Failure::Failed(format!(
            "the control store {} cannot be opened ({e}: it is locked): stop way2mail-control first",
            dir.display()
        ))),
    }
}

/// Runs `work` on a store under the daemon's watchdog, so that a damaged store
/// gives an error instead of a hang.
fn bounded_store<T: Send + 'static>(
    dir: &Path,
    work: impl FnOnce(Progress) -> Result<T, way2mail_control::Error> + Send + 'static,
) -> Result<T, String> {
    let progress = Progress::new();
    let ticks = progress.clone();
    let what = format!("opening the control store {}", dir.display());
    match watchdog::bounded(
        &what,
        way2mail_control::server::STORE_OPEN_STALL,
        &progress,
        move || work(ticks),
    ) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(e.to_string()),
        Err(stuck) => Err(stuck.to_string()),
    }
}

/// What the store moved aside by a restore says about the time since the backup.
#[derive(Default)]
struct Aside {
    /// The snapshot version the MTA may have seen.
    seen: u64,
    erased: Vec<(Vec<u8>, ErasedTenant)>,
    receipts: Vec<(Vec<u8>, ReceiptRecord)>,
}

/// Reads the store moved aside by a restore, for reading only and under a
/// watchdog: it may be the damaged store the restore replaces, and then nothing is
/// carried over (the keyring still lists the erasures).
fn read_aside(dir: &Path, keyring: &Keyring) -> Aside {
    let (owned_dir, keyring) = (dir.to_owned(), keyring.clone());
    let read = bounded_store(dir, move |progress| {
        let options = StoreOptions {
            anchor: AnchorPolicy::Inspect,
            progress,
        };
        let store = Store::open_with_keyring_options(&owned_dir, keyring, &options)?;
        let seen = store
            .get::<u64>(TreeName::Meta, META_SNAPSHOT_VERSION)
            .ok()
            .flatten()
            .unwrap_or(0);
        Ok(Aside {
            seen,
            erased: store
                .scan::<ErasedTenant>(TreeName::Erased)
                .unwrap_or_default(),
            receipts: store
                .scan::<ReceiptRecord>(TreeName::Receipts)
                .unwrap_or_default(),
        })
    });
    read.unwrap_or_else(|e| {
        eprintln!(
            "way2mail: the store moved aside cannot be read ({e}); erasures since the backup \
             are carried over from the keyring only"
        );
        Aside::default()
    })
}

/// After a restore: erasures made since the backup (their records in the store that
/// was moved aside, and the keyring's list) are carried into the restored store, so
/// an erased tenant stays known as erased, with its receipt; the snapshot version
/// goes past anything the MTA may have seen; and the restore is written to the
/// restored audit log.
fn record_restore(
    files: &StoreFiles,
    target: &RestoreTarget,
    report: &backup::RestoreReport,
) -> Result<(), Failure> {
    let store_error =
        |e: way2mail_control::Error| Failure::Failed(format!("recording the restore: {e}"));
    let Aside {
        seen,
        erased: erased_then,
        receipts: receipts_then,
    } = match &report.control_moved_aside {
        Some(dir) => read_aside(dir, &target.control_keyring),
        None => Aside::default(),
    };
    // The restored store is a new starting point: its anchor is written from it.
    let (dir, keyring) = (files.dir.clone(), target.control_keyring.clone());
    let store = bounded_store(&files.dir, move |progress| {
        let options = StoreOptions {
            anchor: AnchorPolicy::Adopt,
            progress,
        };
        Store::open_with_keyring_options(&dir, keyring, &options)
    })
    .map_err(|e| Failure::Failed(format!("recording the restore: {e}")))?;
    let restored = store
        .get::<u64>(TreeName::Meta, META_SNAPSHOT_VERSION)
        .map_err(store_error)?
        .unwrap_or(0);
    let mut batch = way2mail_control::store::Batch::new();
    batch
        .put(
            TreeName::Meta,
            META_SNAPSHOT_VERSION,
            &(seen.max(restored) + 1),
        )
        .map_err(store_error)?;
    let mut carried = 0;
    for (key, receipt) in receipts_then {
        if store
            .get::<ReceiptRecord>(TreeName::Receipts, &key)
            .map_err(store_error)?
            .is_none()
        {
            batch
                .put(TreeName::Receipts, key, &receipt)
                .map_err(store_error)?;
        }
    }
    let mut known: std::collections::HashSet<String> = std::collections::HashSet::new();
    for (key, erased) in erased_then {
        known.insert(erased.tenant.clone());
        if store
            .get::<ErasedTenant>(TreeName::Erased, &key)
            .map_err(store_error)?
            .is_none()
        {
            batch
                .put(TreeName::Erased, key, &erased)
                .map_err(store_error)?;
            carried += 1;
        }
    }
    for e in target.control_keyring.erasures() {
        let have = store
            .get::<ErasedTenant>(TreeName::Erased, e.tenant.as_bytes())
            .map_err(store_error)?
            .is_some();
        if !have && !known.contains(&e.tenant) {
            let record = ErasedTenant {
                tenant: e.tenant.clone(),
                erased_at: e.at_ms / 1000,
                receipt: "(not kept: the store was restored from an earlier backup)".into(),
            };
            batch
                .put(TreeName::Erased, e.tenant.as_bytes(), &record)
                .map_err(store_error)?;
            carried += 1;
        }
    }
    let log = way2mail_control::audit::AuditLog::new();
    let draft = way2mail_control::audit::AuditDraft {
        actor: format!("uid:{}", rustix::process::getuid().as_raw()),
        role: None,
        action: "backup.restore".into(),
        tenant: None,
        outcome: way2mail_wire::protocol::AuditOutcome::Ok,
        reason: None,
        detail: Some(format!(
            "restored backup {} made at unix {}: {} control and {} spool records; {} + {} records of erased tenants dropped; {carried} erasures since the backup carried over",
            report.archive,
            report.created_at,
            report.control_records,
            report.spool_records,
            report.control_erased_dropped,
            report.spool_erased_dropped
        )),
        public_detail: true,
    };
    log.writer()
        .append(
            &store,
            &mut batch,
            draft,
            way2mail_daemon::time::now_secs() * 1000,
        )
        .map_err(store_error)?;
    store.commit(batch).map_err(store_error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// The backup key is named as the backup key (and where it was given), never as
    /// the spool key.
    #[test]
    fn backup_key_errors_name_the_backup_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("backup.key");
        std::fs::write(&path, [7u8; 32]).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let mut control = ControlConfig::default().validate().expect("defaults");
        control.backup_key_file = path.clone();
        let shown = |r: Result<MasterKey, Failure>| match r {
            Err(Failure::Failed(m)) => m,
            other => panic!("{other:?}"),
        };
        let configured = shown(backup_key(None, &control));
        assert!(
            configured.starts_with(&format!(
                "backup key (`[backup] key_file`) {} has mode 0644",
                path.display()
            )),
            "{configured}"
        );
        let flag = shown(backup_key(Some(&path), &control));
        assert!(flag.starts_with("backup key (--key) "), "{flag}");
        let missing = shown(backup_key(Some(&dir.path().join("nope")), &control));
        assert!(missing.starts_with("the backup key (--key) "), "{missing}");
        for m in [configured, flag, missing] {
            assert!(!m.contains("spool"), "{m}");
        }
    }
}
