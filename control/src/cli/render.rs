//! Results for people: a table for lists, `key: value` lines for one record, and
//! secrets framed by a plain note that they are shown this once.

use crate::protocol::{
    CredentialInfo, CredentialKind, Outcome, Response, TenantInfo, TenantStatus,
};

use super::table::{opt, opt_rfc3339, record, rfc3339, Table};

pub fn human(response: &Response) -> String {
    match response {
        Response::Hello {
            daemon_version,
            protocol_versions,
            caller,
        } => record(&[
            ("caller", caller.clone()),
            ("daemon version", daemon_version.clone()),
            (
                "protocol versions",
                protocol_versions
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
        ]),
        Response::OperatorCreated { .. } => operator_created(response, true),
        Response::LoggedIn {
            role, expires_at, ..
        } => record(&[
            ("role", role.as_str().into()),
            ("expires", rfc3339(*expires_at)),
        ]),
        Response::Done => "done\n".into(),
        Response::Tenant(t) => tenant(t),
        Response::Tenants { tenants } => {
            let mut table = Table::new(&[
                "TENANT",
                "STATUS",
                "BUSINESS NAME",
                "CONTACT",
                "BILLING",
                "MSG/HOUR",
                "MSG/DAY",
                "RCPT/MSG",
                "CREATED",
            ]);
            for t in tenants {
                table.row(vec![
                    t.tenant.clone(),
                    status(t.status).into(),
                    t.business_name.clone(),
                    t.contact.clone(),
                    opt(t.billing_ref.as_deref()),
                    t.limits.messages_per_hour.to_string(),
                    t.limits.messages_per_day.to_string(),
                    t.limits.recipients_per_message.to_string(),
                    rfc3339(t.created_at),
                ]);
            }
            table.render()
        }
        Response::Domains { domains } => {
            let mut table = Table::new(&["DOMAIN", "TENANT", "CREATED"]);
            for d in domains {
                table.row(vec![
                    d.domain.clone(),
                    d.tenant.clone(),
                    rfc3339(d.created_at),
                ]);
            }
            table.render()
        }
        Response::CredentialCreated { credential, secret } => {
            let what = match credential.kind {
                CredentialKind::Smtp => "password",
                CredentialKind::Api => "API key",
            };
            let mut fields = credential_fields(credential);
            fields.push((what, secret.clone()));
            let mut out = record(&fields);
            out.push_str(&format!(
                "\nThe {what} is shown only this once; only its hash is kept. Store it now.\n"
            ));
            out
        }
        Response::Credentials { credentials } => {
            let mut table = Table::new(&[
                "ID",
                "TENANT",
                "KIND",
                "USERNAME",
                "DESCRIPTION",
                "CREATED",
                "REVOKED",
            ]);
            for c in credentials {
                table.row(vec![
                    c.id.clone(),
                    c.tenant.clone(),
                    kind(c.kind).into(),
                    c.username.clone(),
                    opt(c.description.as_deref()),
                    rfc3339(c.created_at),
                    opt_rfc3339(c.revoked_at),
                ]);
            }
            table.render()
        }
        Response::Operators { operators } => {
            let mut table = Table::new(&["NAME", "ROLE", "CREATED", "LAST LOGIN"]);
            for o in operators {
                table.row(vec![
                    o.name.clone(),
                    o.role.as_str().into(),
                    rfc3339(o.created_at),
                    opt_rfc3339(o.last_login_at),
                ]);
            }
            table.render()
        }
        Response::Audit { entries } => {
            let mut table = Table::new(&[
                "SEQ", "TIME", "ACTOR", "ROLE", "ACTION", "TENANT", "OUTCOME", "REASON", "DETAIL",
            ]);
            for e in entries {
                table.row(vec![
                    e.seq.to_string(),
                    rfc3339(e.at_ms / 1000),
                    e.actor.clone(),
                    opt(e.role.map(|r| r.as_str())),
                    e.action.clone(),
                    opt(e.tenant.as_deref()),
                    outcome(e.outcome).into(),
                    opt(e.reason.as_deref()),
                    opt(e.detail.as_deref()),
                ]);
            }
            table.render()
        }
        Response::AuditVerified(report) => {
            if report.problems.is_empty() {
                format!("{} entries checked; the chain is intact\n", report.entries)
            } else {
                let mut table = Table::new(&["SEQ", "PROBLEM", "MESSAGE"]);
                for p in &report.problems {
                    table.row(vec![p.seq.to_string(), p.kind.clone(), p.message.clone()]);
                }
                format!(
                    "{} entries checked; {} problems:\n{}",
                    report.entries,
                    report.problems.len(),
                    table.render()
                )
            }
        }
        Response::Snapshot(s) => format!(
            "snapshot version {} with {} tenants\n",
            s.version,
            s.tenants.len()
        ),
        Response::SnapshotUnchanged { version } => {
            format!("snapshot version {version} unchanged\n")
        }
    }
}

/// `bootstrap` (the operator chose the password: not repeated) and `operator add`
/// (a generated password, shown with the TOTP secret).
pub fn operator_created(response: &Response, show_password: bool) -> String {
    let Response::OperatorCreated {
        name,
        role,
        password,
        totp_secret,
        totp_uri,
    } = response
    else {
        return human(response);
    };
    let mut fields = vec![("operator", name.clone()), ("role", role.as_str().into())];
    if show_password {
        fields.push(("password", password.clone()));
    }
    fields.push(("TOTP secret", totp_secret.clone()));
    fields.push(("otpauth URI", totp_uri.clone()));
    let mut out = record(&fields);
    out.push_str(if show_password {
        "\nThe password and TOTP secret are shown only this once. Hand them to the operator\n\
         over a safe channel; the TOTP secret goes into an authenticator app.\n"
    } else {
        "\nThe TOTP secret is shown only this once: add it to an authenticator app now\n\
         (scan the otpauth URI as a QR code, or type the secret).\n"
    });
    out
}

fn tenant(t: &TenantInfo) -> String {
    record(&[
        ("tenant", t.tenant.clone()),
        ("status", status(t.status).into()),
        ("business name", t.business_name.clone()),
        ("contact", t.contact.clone()),
        ("billing ref", opt(t.billing_ref.as_deref())),
        ("messages/hour", t.limits.messages_per_hour.to_string()),
        ("messages/day", t.limits.messages_per_day.to_string()),
        (
            "recipients/message",
            t.limits.recipients_per_message.to_string(),
        ),
        ("created", rfc3339(t.created_at)),
        ("updated", rfc3339(t.updated_at)),
    ])
}

fn credential_fields(c: &CredentialInfo) -> Vec<(&'static str, String)> {
    vec![
        ("credential", c.id.clone()),
        ("tenant", c.tenant.clone()),
        ("kind", kind(c.kind).into()),
        ("username", c.username.clone()),
        ("description", opt(c.description.as_deref())),
    ]
}

fn status(s: TenantStatus) -> &'static str {
    match s {
        TenantStatus::Active => "active",
        TenantStatus::Suspended => "suspended",
        TenantStatus::Terminated => "terminated",
    }
}

fn kind(k: CredentialKind) -> &'static str {
    match k {
        CredentialKind::Smtp => "smtp",
        CredentialKind::Api => "api",
    }
}

fn outcome(o: Outcome) -> &'static str {
    match o {
        Outcome::Ok => "ok",
        Outcome::Denied => "denied",
        Outcome::Failed => "failed",
    }
}
