//! The rig of the data-protection tests: a real `way2mail-control` (tenants made
//! with the `way2mail` CLI) and a real `way2mail-mta` following it, joined both ways
//! (snapshot; admin socket), tenants submitting with AUTH over STARTTLS, delivery
//! to a sink for `remote.example` and to a closed port for `stuck.example` (mail
//! stays queued there, with `deferred` records in the delivery log).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::Value;
use way2mail_tests::control::{json_str, Control, Operator};
use way2mail_tests::{
    queued_id, wait_for, Backend, ClosedPort, Daemon, Sink, SinkOptions, SmtpClient, TestConfig,
};
use way2mail_wire::mta_admin::{AdminClient, AdminOp, AdminResult, MtaInventory};

pub const WAIT: Duration = Duration::from_secs(20);

pub fn toml_str(path: &Path) -> String {
    format!("\"{}\"", path.display())
}

/// One tenant as the CLI made it.
pub struct Tenant {
    pub id: String,
    pub user: String,
    pub password: String,
}

pub struct Rig {
    pub control: Control,
    pub admin: Operator,
    pub mta: Daemon,
    pub mta_config: TestConfig,
    pub sink: Sink,
    pub acme: Tenant,
    pub globex: Tenant,
    /// The MTA's state (spool, keys, snapshot, admin socket) across restarts.
    pub state: tempfile::TempDir,
    _stuck: ClosedPort,
}

fn make_tenant(control: &Control, admin: &Operator, id: &str) -> Result<Tenant> {
    let domain = format!("{id}.example");
    let business = format!("{} Trading Ltd", id.to_uppercase());
    let contact = format!("privacy-officer@{id}.example");
    control
        .run_as(
            admin,
            &[
                "tenant",
                "add",
                id,
                "--business-name",
                &business,
                "--contact",
                &contact,
            ],
        )?
        .ok()?;
    control
        .run_as(admin, &["domain", "add", id, &domain])?
        .ok()?;
    control
        .run_as(
            admin,
            &[
                "domain", "override", &domain, "--allow", "--reason", "test rig",
            ],
        )?
        .ok()?;
    let user = format!("app@{domain}");
    let created = control
        .run_as(admin, &["--json", "credential", "add", id, "--smtp", &user])?
        .ok()?
        .json()?;
    control
        .run_as(
            admin,
            &[
                "suppression",
                "add",
                id,
                &format!("unsubscribed@{id}-customer.example"),
            ],
        )?
        .ok()?;
    Ok(Tenant {
        id: id.to_owned(),
        user,
        password: json_str(&created, "secret")?,
    })
}

impl Rig {
    /// Control with `retention` (a `[retention]` table body), the MTA, two tenants.
    pub fn start(backend: Backend, retention: &str) -> Result<Rig> {
        let state = tempfile::Builder::new()
            .prefix("way2mail-data-protection-")
            .tempdir()?;
        let admin_socket = state.path().join("mta.sock");
        let control = Control::start_with(&format!(
            "[mta]\nadmin_socket = {}\n[backup]\nkey_file = {}\n[retention]\n{retention}\n",
            toml_str(&admin_socket),
            toml_str(&state.path().join("backup.key")),
        ))?;
        let admin = control.bootstrap_admin("admin")?;
        let acme = make_tenant(&control, &admin, "acme")?;
        let globex = make_tenant(&control, &admin, "globex")?;
        let sink = Sink::start(SinkOptions::default())?;
        let stuck = ClosedPort::new()?;
        let stuck_port = stuck.port;
        let s = state.path();
        let mta_config = TestConfig::new(backend)
            .set("control", "socket", &toml_str(&control.socket()))
            .set("control", "snapshot_file", &toml_str(&s.join("snapshot")))
            .set("control", "poll_ms", "100")
            .set("spool", "path", &toml_str(&s.join("spool")))
            .set("spool", "key_file", &toml_str(&s.join("spool.key")))
            .set("spool", "keyring_file", &toml_str(&s.join("spool.keyring")))
            .set("admin", "socket", &toml_str(&admin_socket))
            .set("relay", "trusted_networks", "[]")
            .set("delivery", "enabled", "true")
            .set("delivery", "retry_initial_secs", "300")
            .raw(&sink.route("remote.example"))
            .raw(&format!(
                "[[route]]\ndomain = \"stuck.example\"\nhost = \"[127.0.0.1]:{stuck_port}\"\ntls = \"none\"\n"
            ));
        let mta = Daemon::start(&mta_config)?;
        Ok(Rig {
            control,
            admin,
            mta,
            mta_config,
            sink,
            acme,
            globex,
            state,
            _stuck: stuck,
        })
    }

    /// `way2mail ARGS…` as the admin; must succeed.
    pub fn cli(&self, args: &[&str]) -> Result<String> {
        Ok(self.control.run_as(&self.admin, args)?.ok()?.stdout)
    }

    /// `way2mail --json ARGS…` as the admin.
    pub fn cli_json(&self, args: &[&str]) -> Result<Value> {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        self.control.run_as(&self.admin, &all)?.ok()?.json()
    }

    /// Submits `marker`'s message as `tenant` to `to`; returns the queue id.
    pub fn submit(&self, tenant: &Tenant, to: &str, marker: &str) -> Result<String> {
        let auth = format!(
            "AUTH PLAIN {}",
            B64.encode(format!("\0{}\0{}", tenant.user, tenant.password))
        );
        let mut c: SmtpClient = wait_for(&format!("AUTH as {}", tenant.user), WAIT, || {
            let mut c = self.mta.submission_tls().ok()?;
            let r = c.command(&auth).ok()?;
            (r.code == 235).then_some(c)
        })?;
        let body = format!(
            "From: <{from}>\r\nTo: <{to}>\r\nSubject: {marker}\r\nMessage-ID: <{marker}@test>\r\n\r\n\
             The confidential content {marker}.\r\n",
            from = tenant.user
        );
        let r = c.send_message(&tenant.user, &[to], &body)?;
        queued_id(&r)
    }

    /// The MTA's admin socket, as control reaches it.
    pub fn admin(&self) -> Result<AdminClient> {
        let path = self.state.path().join("mta.sock");
        Ok(AdminClient::connect(&path, Duration::from_secs(10))?)
    }

    pub fn inventory(&self, tenant: &str) -> Result<MtaInventory> {
        match self.admin()?.call(AdminOp::TenantInventory {
            tenant: tenant.into(),
        })? {
            AdminResult::Inventory(inv) => Ok(inv),
            other => bail!("tenant.inventory answered {other:?}"),
        }
    }

    /// Waits until `tenant` has `messages` queued and at least `log` log records.
    pub fn settled(&self, tenant: &str, messages: u64, log: u64) -> Result<MtaInventory> {
        wait_for(
            &format!("{tenant}: {messages} queued, {log} log records"),
            WAIT,
            || {
                self.inventory(tenant)
                    .ok()
                    .filter(|i| i.messages == messages && i.log_records >= log)
            },
        )
        .with_context(|| {
            format!(
                "last inventory {:?}\nMTA log:\n{}",
                self.inventory(tenant),
                tail(&self.mta.stderr(), 30)
            )
        })
    }

    /// Queues two messages of each tenant on `stuck.example` and delivers one of
    /// each to the sink; returns the queued ids (acme's, globex's).
    pub fn traffic(&self) -> Result<(Vec<String>, Vec<String>)> {
        let mut ids = (Vec::new(), Vec::new());
        for (tenant, out) in [(&self.acme, &mut ids.0), (&self.globex, &mut ids.1)] {
            let up = tenant.id.to_uppercase();
            out.push(self.submit(tenant, "a@stuck.example", &format!("{up}-SECRET-QUEUED-1"))?);
            out.push(self.submit(tenant, "b@stuck.example", &format!("{up}-SECRET-QUEUED-2"))?);
            self.submit(
                tenant,
                "c@remote.example",
                &format!("{up}-SECRET-DELIVERED"),
            )?;
        }
        self.sink.wait_for(2, WAIT)?;
        // One deferred record per queued message, one delivered per delivered one.
        self.settled("acme", 2, 3)?;
        self.settled("globex", 2, 3)?;
        Ok(ids)
    }

    /// Restores a backup archive onto this (stopped) node with the CLI; its JSON summary.
    pub fn restore(&self, archive: &Path, key: &Path) -> Result<Value> {
        self.control
            .cli(
                None,
                &[
                    "--json",
                    "backup",
                    "restore",
                    "--in",
                    &archive.display().to_string(),
                    "--key",
                    &key.display().to_string(),
                    "--control-config",
                    &self.control_config().display().to_string(),
                    "--mta-config",
                    &self.mta_config_path()?.display().to_string(),
                    "--yes",
                ],
                None,
            )?
            .ok()?
            .json()
    }

    pub fn control_config(&self) -> PathBuf {
        self.control.dir().join("control.toml")
    }

    pub fn mta_config_path(&self) -> Result<PathBuf> {
        self.mta
            .config_path()
            .map(Path::to_path_buf)
            .context("the MTA runs without a config file")
    }
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Every regular file under `dir` (or `dir` itself), with its bytes.
pub fn files_under(dir: &Path) -> Result<Vec<(PathBuf, Vec<u8>)>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        let meta = match std::fs::symlink_metadata(&p) {
            Ok(m) => m,
            Err(_) => continue,
        };
        if meta.is_dir() {
            for e in std::fs::read_dir(&p)? {
                stack.push(e?.path());
            }
        } else if meta.is_file() {
            out.push((p.clone(), std::fs::read(&p)?));
        }
    }
    Ok(out)
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// The raw data key of `tenant` in a keyring file (as an attacker holding the
/// master key would read it), or `None` when it has none.
pub fn raw_tenant_key(keyring: &Path, master: &Path, tenant: &str) -> Result<Option<Vec<u8>>> {
    let bytes = std::fs::read(keyring)?;
    let magic = b"way2mail-keyring 1\n";
    let sealed = bytes.strip_prefix(&magic[..]).context("keyring header")?;
    let master = way2mail_seal::MasterKey::load_or_create(master)?;
    let json = master
        .open(b"way2mail-keyring", sealed.to_vec())
        .map_err(|e| anyhow::anyhow!("opening the keyring: {e}"))?;
    let content: Value = serde_json::from_slice(&json)?;
    for k in content["keys"].as_array().context("keys")? {
        if k["owner"]["tenant"].as_str() == Some(tenant) {
            let hex = k["key"].as_str().context("key")?;
            let raw = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16))
                .collect::<Result<Vec<u8>, _>>()?;
            return Ok(Some(raw));
        }
    }
    Ok(None)
}
