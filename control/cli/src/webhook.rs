//! The CLI's webhook commands: a tenant's endpoints (where the MTA posts its
//! delivery events, signed), the signing secret shown once when one is added, and
//! enable for one the MTA disabled after its deliveries failed.

use clap::builder::PossibleValuesParser;
use clap::Subcommand;
use way2mail_wire::protocol::{Request, WebhookInfo, WEBHOOK_EVENTS};

use super::session::Session;
use super::table::{clean, record, rfc3339, Table};
use super::{render, Failure};

#[derive(Debug, Subcommand)]
pub enum WebhookCommand {
    /// Register an endpoint that receives the tenant's events as signed JSON posts
    /// (at most 10 a tenant); its signing secret is shown once.
    Add {
        tenant: String,
        /// Where to post: https://, or http:// where the MTA's configuration allows.
        url: String,
        /// The events to send, comma-separated.
        #[arg(long, value_name = "EVENT,...", value_delimiter = ',', required = true,
            value_parser = PossibleValuesParser::new(WEBHOOK_EVENTS))]
        events: Vec<String>,
    },
    /// The tenant's endpoints, enabled or disabled (never their secrets).
    List { tenant: String },
    /// Delete an endpoint: nothing more is posted to it.
    Remove { tenant: String, id: String },
    /// Enable an endpoint that was disabled after its deliveries failed.
    Enable { tenant: String, id: String },
}

pub(super) fn run(session: &mut Session, command: WebhookCommand) -> Result<(), Failure> {
    let request = match command {
        WebhookCommand::Add {
            tenant,
            url,
            events,
        } => Request::WebhookAdd {
            tenant,
            url,
            events,
        },
        WebhookCommand::List { tenant } => Request::WebhookList { tenant },
        WebhookCommand::Remove { tenant, id } => {
            let done = format!("webhook {} of {tenant} removed", clean(&id));
            return session.simple(Request::WebhookRemove { tenant, id }, done);
        }
        WebhookCommand::Enable { tenant, id } => {
            let done = format!("webhook {} of {tenant} enabled", clean(&id));
            return session.simple(Request::WebhookEnable { tenant, id }, done);
        }
    };
    let response = session.call(request)?;
    session.show(&response, || render::human(&response))
}

/// An endpoint just added (the one answer with its secret) as a record with the
/// secret and the note that it is shown once; any others as a table.
pub fn webhooks(webhooks: &[WebhookInfo]) -> String {
    match webhooks {
        [added] if added.secret.is_some() => created(added),
        _ => table(webhooks),
    }
}

fn created(w: &WebhookInfo) -> String {
    let mut out = record(&[
        ("id", w.id.clone()),
        ("url", w.url.clone()),
        ("events", w.events.join(", ")),
        ("created", rfc3339(w.created_at)),
        ("secret", w.secret.clone().unwrap_or_default()),
    ]);
    out.push_str(
        "\nThe signing secret is shown only this once and will not be shown again: give it\n\
         to whoever checks the signatures of the posts, now.\n",
    );
    out
}

fn table(webhooks: &[WebhookInfo]) -> String {
    let mut table = Table::new(&["ID", "URL", "EVENTS", "STATE", "REASON"]);
    for w in webhooks {
        table.row(vec![
            w.id.clone(),
            w.url.clone(),
            w.events.join(","),
            state(w),
            w.disabled_reason.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    table.render()
}

fn state(w: &WebhookInfo) -> String {
    match w.disabled_at {
        None => "enabled".into(),
        Some(at) => format!("disabled since {}", rfc3339(at)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(secret: Option<&str>, disabled_at: Option<u64>) -> WebhookInfo {
        WebhookInfo {
            id: "wh_0123456789abcdef".into(),
            url: "https://hooks.acme.example/w2m".into(),
            events: vec!["bounced".into(), "delivered".into()],
            created_at: 1_767_225_600,
            created_by: "operator:alice".into(),
            disabled_at,
            disabled_reason: disabled_at.map(|_| "deliveries failed since …: HTTP 503".into()),
            secret: secret.map(str::to_owned),
        }
    }

    #[test]
    fn the_secret_once_with_its_note() {
        let text = webhooks(&[endpoint(Some("whsec_abc"), None)]);
        assert!(text.starts_with("id:      wh_0123456789abcdef\n"), "{text}");
        assert!(text.contains("\nsecret:  whsec_abc\n"), "{text}");
        assert!(text.contains("will not be shown again"), "{text}");
    }

    #[test]
    fn the_list_says_which_are_disabled_and_why() {
        let text = webhooks(&[endpoint(None, None), endpoint(None, Some(1_767_225_600))]);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("ID  "), "{text}");
        assert!(
            lines[1].contains("  bounced,delivered  enabled  "),
            "{text}"
        );
        assert!(lines[1].ends_with("  -"), "{text}");
        assert!(
            lines[2].contains("disabled since 2026-01-01T00:00:00Z  deliveries failed"),
            "{text}"
        );
        assert!(!text.contains("secret"));
    }
}
