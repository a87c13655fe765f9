//! The `way2mail` operator CLI: one command, one or two requests to
//! `way2mail-control` over its socket, the answer as a table (or the raw `result`
//! JSON with `--json`).
//!
//! ```text
//!   main ── Cli::parse (clap; usage errors exit 2)
//!    └── commands::run ── Session (session.rs: socket, token, reason) ── ControlClient
//!         └── render (tables, records, "shown once" secrets)
//! ```
//!
//! Exit codes: 0 done, 1 refused or failed (`error: …` on stderr), 2 usage,
//! 3 the daemon cannot be reached.

mod commands;
mod data;
mod deliverability;
mod dmarc;
mod prompt;
mod queue;
mod render;
mod render_data;
mod reputation;
mod session;
mod table;
mod token;
mod webhook;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};

use way2mail_wire::protocol::Role;

#[derive(Debug, Parser)]
#[command(
    name = "way2mail",
    version,
    about = "Way2Mail operator CLI: tenants, domains, credentials, webhooks, operators, incidents, the queue and the audit log, through way2mail-control"
)]
pub struct Cli {
    /// The control socket [env: WAY2MAIL_SOCKET; default ./var/control.sock, or
    /// /run/way2mail/control.sock when only that exists].
    #[arg(long, global = true, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Print the raw `result` JSON instead of tables (for scripts).
    #[arg(long, global = true)]
    pub json: bool,
    /// Why you are doing this (recorded in the audit log; required of some roles).
    #[arg(long, global = true, value_name = "TEXT")]
    pub reason: Option<String>,
    /// Session token [env: WAY2MAIL_TOKEN; default: the token file `login` wrote].
    #[arg(long, global = true, value_name = "TOKEN")]
    pub token: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the first admin (as root on the socket, only while no admin exists).
    Bootstrap {
        #[arg(long)]
        name: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Log in with password and TOTP code; saves the session token.
    Login {
        #[arg(long)]
        name: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        /// The current code from the authenticator app (asked when missing).
        #[arg(long, value_name = "CODE")]
        totp: Option<String>,
    },
    /// End the session and remove the token file.
    Logout,
    /// Who the daemon thinks you are.
    Whoami,
    /// Client businesses.
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// Sending domains of tenants.
    Domain {
        #[command(subcommand)]
        command: DomainCommand,
    },
    /// SMTP users and API keys of tenants.
    Credential {
        #[command(subcommand)]
        command: CredentialCommand,
    },
    /// Operators and their roles.
    Operator {
        #[command(subcommand)]
        command: OperatorCommand,
    },
    /// The security incident register and the notification of affected tenants.
    Incident {
        #[command(subcommand)]
        command: IncidentCommand,
    },
    /// The hash-chained audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Retention: the defaults, and a sweep now.
    Retention {
        #[command(subcommand)]
        command: data::RetentionCommand,
    },
    /// The platform's sending addresses in DNS blocklists: current listings and
    /// history (`reputation`), or a check now (`reputation check`).
    Reputation {
        #[command(subcommand)]
        command: Option<reputation::ReputationCommand>,
    },
    /// Addresses a tenant's mail must not go to.
    Suppression {
        #[command(subcommand)]
        command: data::SuppressionCommand,
    },
    /// Endpoints that receive a tenant's delivery events as signed JSON posts.
    Webhook {
        #[command(subcommand)]
        command: webhook::WebhookCommand,
    },
    /// The MTA's live queue: summary, list, show; hold, release, retry, bounce,
    /// delete (with --dry-run).
    Queue {
        #[command(subcommand)]
        command: queue::QueueCommand,
    },
    /// Backups of the control store and the spool: create online, restore offline.
    Backup {
        #[command(subcommand)]
        command: data::BackupCommand,
    },
    /// Erasure receipts: check a receipt's signature, show the signing key.
    Receipt {
        #[command(subcommand)]
        command: data::ReceiptCommand,
    },
}

#[derive(Debug, Clone, Default, Args)]
pub struct LimitArgs {
    #[arg(long, value_name = "N")]
    pub messages_per_hour: Option<u32>,
    #[arg(long, value_name = "N")]
    pub messages_per_day: Option<u32>,
    #[arg(long, value_name = "N")]
    pub recipients_per_message: Option<u32>,
}

/// `on` / `off` as a bool.
fn on_off(text: &str) -> Result<bool, String> {
    match text {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err("expected on or off".into()),
    }
}

/// `RULE=on` / `RULE=off`, RULE one of the automatic suppression rules.
fn rule_setting(text: &str) -> Result<(String, bool), String> {
    let rules = way2mail_wire::protocol::AUTO_SUPPRESS_RULES.join(", ");
    let Some((rule, value)) = text.split_once('=') else {
        return Err(format!(
            "expected RULE=on or RULE=off; the rules are {rules}"
        ));
    };
    let rule = rule.trim().to_ascii_lowercase();
    if !way2mail_wire::protocol::AUTO_SUPPRESS_RULES.contains(&rule.as_str()) {
        return Err(format!("unknown rule {rule:?}; the rules are {rules}"));
    }
    Ok((rule, on_off(value.trim())?))
}

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Add a tenant (limits not given take the daemon's tenant_defaults).
    Add {
        tenant: String,
        #[arg(long)]
        business_name: String,
        #[arg(long)]
        contact: String,
        #[arg(long)]
        billing_ref: Option<String>,
        #[command(flatten)]
        limits: LimitArgs,
    },
    List,
    Show {
        tenant: String,
    },
    /// Change only the fields given.
    Update {
        tenant: String,
        #[arg(long)]
        business_name: Option<String>,
        #[arg(long)]
        contact: Option<String>,
        #[arg(long)]
        billing_ref: Option<String>,
        #[command(flatten)]
        limits: LimitArgs,
        /// One-click unsubscribe (RFC 8058) headers on the tenant's mail.
        #[arg(long, value_name = "on|off", value_parser = on_off)]
        list_unsubscribe: Option<bool>,
        /// Turn an automatic suppression rule on or off (repeatable): RULE is
        /// invalid_recipient, bad_domain, complaint or unsubscribe.
        #[arg(long, value_name = "RULE=on|off", value_parser = rule_setting)]
        auto_suppress: Vec<(String, bool)>,
    },
    /// Refuse the tenant's mail until resumed.
    Suspend {
        tenant: String,
    },
    /// Lift a suspension.
    Resume {
        tenant: String,
    },
    /// Lift the reputation guard's pause: the tenant's held mail is delivered
    /// again. Needs --reason.
    ResumeSending {
        tenant: String,
    },
    /// Volume and outcomes of the tenant's mail (from the MTA's delivery log), by
    /// outcome, bounce category and receiving domain.
    Deliverability {
        tenant: String,
        /// From when: a period back from now (7d, 24h) or an RFC 3339 date-time
        /// [default: 7d].
        #[arg(long, value_name = "PERIOD|RFC3339")]
        since: Option<String>,
    },
    /// End the subscription: the tenant's mail stops at once (also what is
    /// queued), and the tenant is erased after the grace period (asks for
    /// confirmation).
    Terminate {
        tenant: String,
        /// Do not ask (required without a terminal).
        #[arg(long)]
        yes: bool,
    },
    #[command(flatten)]
    Data(data::TenantDataCommand),
}

#[derive(Debug, Subcommand)]
pub enum DomainCommand {
    /// Add a domain to a tenant; creates its DKIM keys (RSA and Ed25519).
    Add { tenant: String, domain: String },
    List {
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Remove a domain and its DKIM keys.
    Remove { tenant: String, domain: String },
    /// One domain: DKIM keys, verification, override and BIMI.
    Show { domain: String },
    /// The DNS records to publish, as zone-file lines (`--json`: the records).
    Dns { domain: String },
    /// The DMARC aggregate reports received for the domain, summed: reporters,
    /// sending IPs with their alignment, and what p=reject would refuse.
    Dmarc {
        domain: String,
        /// From when: a period back from now (30d, 24h) or an RFC 3339 date-time
        /// [default: 30d].
        #[arg(long, value_name = "PERIOD|RFC3339")]
        since: Option<String>,
    },
    /// Look the records up and say what is missing or wrong; exit 1 when not verified.
    Verify { domain: String },
    /// Create a pending DKIM pair to publish; with --activate, sign with it from now on.
    RotateDkim {
        domain: String,
        /// Make the pending pair active (the active one becomes retired).
        #[arg(long)]
        activate: bool,
        /// Activate even when the pending records are not found in DNS.
        #[arg(long, requires = "activate")]
        force: bool,
    },
    /// Delete retired DKIM keys (all of them, or the one named).
    RetireDkim {
        domain: String,
        #[arg(long, value_name = "SELECTOR")]
        selector: Option<String>,
    },
    /// Let an unverified domain send (--allow), or stop that (--deny). Needs --reason.
    #[command(group(ArgGroup::new("decision").required(true).args(["allow", "deny"])))]
    Override {
        domain: String,
        #[arg(long)]
        allow: bool,
        #[arg(long)]
        deny: bool,
    },
    /// Set the BIMI logo (and VMC) of a domain, or clear BIMI.
    #[command(group(ArgGroup::new("bimi").required(true).args(["logo", "clear"])))]
    Bimi {
        domain: String,
        /// https:// location of the SVG Tiny PS logo.
        #[arg(long, value_name = "URL")]
        logo: Option<String>,
        /// https:// location of the Verified Mark Certificate (PEM).
        #[arg(long, value_name = "URL", requires = "logo")]
        vmc: Option<String>,
        /// The BIMI selector [default: default].
        #[arg(long, value_name = "SELECTOR", requires = "logo")]
        selector: Option<String>,
        /// Remove the BIMI settings.
        #[arg(long)]
        clear: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum CredentialCommand {
    /// Create an SMTP user or an API key; the secret is shown once.
    #[command(group(ArgGroup::new("kind").required(true).args(["smtp", "api"])))]
    Add {
        tenant: String,
        /// An SMTP AUTH user with this username.
        #[arg(long, value_name = "USERNAME")]
        smtp: Option<String>,
        /// An API key.
        #[arg(long)]
        api: bool,
        #[arg(long)]
        description: Option<String>,
    },
    List {
        #[arg(long)]
        tenant: Option<String>,
    },
    Revoke {
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum OperatorCommand {
    /// Create an operator; the generated password and TOTP secret are shown once.
    Add {
        name: String,
        #[arg(long)]
        role: RoleArg,
    },
    List,
    /// Change an operator's role.
    Role {
        name: String,
        role: RoleArg,
    },
    Remove {
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum IncidentCommand {
    /// Open an incident; prints its id (INC-YYYY-NNNN).
    Open {
        /// One line, also the notification's subject.
        #[arg(long)]
        title: String,
        /// What happened.
        #[arg(long)]
        nature: String,
        /// Which data (categories, approximate volume) is affected.
        #[arg(long)]
        data_affected: String,
        /// The likely consequences.
        #[arg(long)]
        consequences: String,
        /// Measures taken or proposed.
        #[arg(long)]
        measures: String,
        /// When it was detected, RFC 3339 (2026-03-01T14:30:00Z) [default: now].
        #[arg(long, value_name = "RFC3339")]
        detected_at: Option<String>,
    },
    /// Mark a tenant as affected.
    AddTenant {
        id: String,
        tenant: String,
    },
    /// Change only the fields given.
    Update {
        id: String,
        #[arg(long)]
        title: Option<String>,
        #[arg(long)]
        nature: Option<String>,
        #[arg(long)]
        data_affected: Option<String>,
        #[arg(long)]
        consequences: Option<String>,
        #[arg(long)]
        measures: Option<String>,
    },
    /// Email each affected tenant's contact not yet notified, through the MTA; exit 1
    /// when one could not be handed over.
    Notify {
        id: String,
        /// Send to every affected tenant, including those notified already.
        #[arg(long)]
        again: bool,
    },
    /// Close the incident: no more tenants or notifications.
    Close {
        id: String,
        #[arg(long)]
        resolution: String,
    },
    List,
    /// One incident with its tenants and every notification sent.
    Show {
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Entries, oldest first.
    List {
        #[arg(long)]
        tenant: Option<String>,
        /// Only entries with this sequence number or later.
        #[arg(long, value_name = "SEQ")]
        since: Option<u64>,
        /// At most this many (the newest); the daemon's default is 100.
        #[arg(long, value_name = "N")]
        limit: Option<u32>,
    },
    /// Check the whole hash chain; exit 1 and list the problems when it is broken.
    Verify,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RoleArg {
    Admin,
    Operator,
    Support,
    Auditor,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Role {
        match r {
            RoleArg::Admin => Role::Admin,
            RoleArg::Operator => Role::Operator,
            RoleArg::Support => Role::Support,
            RoleArg::Auditor => Role::Auditor,
        }
    }
}

/// Why a command did not succeed, and so its exit code.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// Refused by the daemon, or failed (exit 1).
    #[error("{0}")]
    Failed(String),
    /// Wrong use that clap cannot see, e.g. no terminal to ask on (exit 2).
    #[error("{0}")]
    Usage(String),
    /// The socket cannot be reached (exit 3).
    #[error("cannot reach way2mail-control at {path}: {reason}; is the daemon running?")]
    Unreachable { path: String, reason: String },
}

impl Failure {
    fn exit_code(&self) -> u8 {
        match self {
            Failure::Failed(_) => 1,
            Failure::Usage(_) => 2,
            Failure::Unreachable { .. } => 3,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match commands::run(cli) {
        Ok(code) => code,
        Err(failure) => {
            eprintln!("error: {failure}");
            ExitCode::from(failure.exit_code())
        }
    }
}
