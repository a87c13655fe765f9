//! `way2mail queue …`: the MTA's live queue through control, which checks the role
//! (`queue` rights: admins and operators change it, support reads it with a
//! reason) and audits every command.

use clap::{Args, Subcommand};
use way2mail_daemon::duration;
use way2mail_daemon::time::now_ms;
use way2mail_wire::protocol::{Request, Response};
use way2mail_wire::queue::{text, QueueFilter, QueueSelection, QueueState};

use super::session::Session;
use super::Failure;

#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// Messages per recipient domain by age in minutes (Postfix qshape's view).
    Summary {
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// The matching messages with their recipients' states (like mailq).
    List {
        #[command(flatten)]
        filter: FilterArgs,
        /// Show at most this many messages.
        #[arg(long, value_name = "N", default_value_t = 1000)]
        limit: u64,
    },
    /// One message: its recipients, attempts and delivery log records.
    Show { id: String },
    /// Take messages off the schedule until released (never delivered or expired
    /// meanwhile).
    Hold(ChangeArgs),
    /// Put held messages back on the schedule, due now.
    Release(ChangeArgs),
    /// Make deferred or incoming messages due now.
    Retry(ChangeArgs),
    /// End messages: every pending recipient fails (5.0.0 "removed by the
    /// operator") and the sender gets a bounce.
    Bounce(ChangeArgs),
    /// Remove messages without a notice to anyone.
    Delete(ChangeArgs),
}

#[derive(Debug, Clone, Default, Args)]
pub struct FilterArgs {
    /// Only this tenant's mail.
    #[arg(long)]
    pub tenant: Option<String>,
    /// Only messages with a pending recipient in this domain.
    #[arg(long)]
    pub domain: Option<String>,
    /// Only this envelope sender: an address, @domain, or <> for bounces.
    #[arg(long)]
    pub sender: Option<String>,
    /// Only messages in this state: incoming, deferred, active or held.
    #[arg(long, value_parser = parse_state)]
    pub state: Option<QueueState>,
    /// Only messages accepted at least this long ago (90s, 30m, 4h, 2d).
    #[arg(long, value_name = "AGE")]
    pub older_than: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct ChangeArgs {
    /// Queue ids (each must also match the filters given).
    pub ids: Vec<String>,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Every queued message (needed when neither ids nor filters are given).
    #[arg(long)]
    pub all: bool,
    /// Say what would change, change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

fn parse_state(text: &str) -> Result<QueueState, String> {
    QueueState::parse(text)
        .ok_or_else(|| format!("unknown state {text:?}; use incoming, deferred, active or held"))
}

impl FilterArgs {
    fn filter(self) -> Result<QueueFilter, Failure> {
        let older_than_secs = self
            .older_than
            .map(|t| duration::parse(&t).map_err(|e| Failure::Usage(format!("--older-than: {e}"))))
            .transpose()?;
        Ok(QueueFilter {
            tenant: self.tenant,
            domain: self.domain,
            sender: self.sender,
            state: self.state,
            older_than_secs,
        })
    }
}

impl ChangeArgs {
    /// The request `make` builds from the selection and the dry-run flag.
    fn request(
        self,
        make: impl FnOnce(QueueSelection, bool) -> Request,
    ) -> Result<Request, Failure> {
        let selection = QueueSelection {
            ids: self.ids,
            filter: self.filter.filter()?,
            all: self.all,
        };
        if let Some(problem) = selection.problem() {
            return Err(Failure::Usage(problem.to_owned()));
        }
        Ok(make(selection, self.dry_run))
    }
}

pub(super) fn run(session: &mut Session, command: QueueCommand) -> Result<(), Failure> {
    let request = match command {
        QueueCommand::Summary { filter } => Request::QueueSummary {
            filter: filter.filter()?,
        },
        QueueCommand::List { filter, limit } => Request::QueueList {
            filter: filter.filter()?,
            limit: Some(limit),
        },
        QueueCommand::Show { id } => Request::QueueShow { id },
        QueueCommand::Hold(a) => {
            a.request(|selection, dry_run| Request::QueueHold { selection, dry_run })?
        }
        QueueCommand::Release(a) => {
            a.request(|selection, dry_run| Request::QueueRelease { selection, dry_run })?
        }
        QueueCommand::Retry(a) => {
            a.request(|selection, dry_run| Request::QueueRetry { selection, dry_run })?
        }
        QueueCommand::Bounce(a) => {
            a.request(|selection, dry_run| Request::QueueBounce { selection, dry_run })?
        }
        QueueCommand::Delete(a) => {
            a.request(|selection, dry_run| Request::QueueDelete { selection, dry_run })?
        }
    };
    let response = session.call(request)?;
    session.show(&response, || human(&response))
}

/// The answer for people, in the same forms as `way2mail-mta spool …` (the
/// queue's answers only; `render::human` sends them here).
pub(super) fn human(response: &Response) -> String {
    let mut out = Vec::new();
    let now = now_ms();
    let written = match response {
        Response::QueueSummary(s) => text::summary(&mut out, s),
        Response::QueueListing(l) => text::list(&mut out, &l.messages, false, now).and_then(|_| {
            use std::io::Write;
            if l.matched > l.messages.len() as u64 {
                writeln!(
                    out,
                    "{} message(s) matched, the first {} shown (--limit)",
                    l.matched,
                    l.messages.len()
                )
            } else {
                writeln!(out, "{} message(s)", l.matched)
            }
        }),
        Response::QueueMessage { message, log } => {
            text::list(&mut out, std::slice::from_ref(message), false, now).and_then(|_| {
                use std::io::Write;
                writeln!(out, "delivery log:")?;
                for r in log {
                    writeln!(
                        out,
                        "  {} {}{} {} attempt={} {}",
                        super::table::rfc3339(r.time_ms / 1000),
                        r.outcome,
                        r.category
                            .as_deref()
                            .map(|c| format!(" ({c})"))
                            .unwrap_or_default(),
                        r.recipient,
                        r.attempt,
                        r.reply
                            .as_deref()
                            .map(|t| format!("{t:?}"))
                            .unwrap_or_default()
                    )?;
                }
                // The scan is the message's: every record carries the same.
                if let Some(scan) = log.iter().find_map(|r| r.scan.as_deref()) {
                    writeln!(out, "content scan: {scan}")?;
                }
                Ok(())
            })
        }
        Response::QueueChanged(r) => text::change(&mut out, r),
        _ => return String::new(),
    };
    match written {
        Ok(()) => String::from_utf8_lossy(&out).into_owned(),
        Err(e) => format!("cannot render the answer: {e}\n"),
    }
}
