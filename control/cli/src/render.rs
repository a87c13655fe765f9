//! Results for people: a table for lists, `key: value` lines for one record, and
//! secrets framed by a plain note that they are shown this once. DNS records come
//! as zone-file lines that can be pasted into a zone.

use way2mail_control::publish;
use way2mail_wire::protocol::{
    AuditOutcome, CheckStatus, CredentialInfo, CredentialKind, DkimKeyState, DomainInfo,
    DomainRecords, DomainVerification, IncidentInfo, Notification, NotificationOutcome, Response,
    TenantInfo,
};

use super::render_data;
use super::table::{clean, opt, opt_rfc3339, record, rfc3339, status, Table};

/// The TTL suggested in `domain dns` output.
const SUGGESTED_TTL: u32 = 3600;

pub fn human(response: &Response) -> String {
    match response {
        Response::Deliverability(report) => super::deliverability::render(report),
        Response::Dmarc(summary) => super::dmarc::render(summary),
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
        Response::Stream => "(a stream)\n".into(),
        Response::ErasureReceipt(r) => render_data::receipt(r),
        Response::TenantReport(r) => render_data::report(r),
        Response::TenantExported(m) => render_data::exported(m),
        Response::RetentionRun(r) => render_data::run(r),
        Response::RetentionDefaults(d) => render_data::defaults(d),
        Response::Reputation(r) => super::reputation::render(r),
        Response::Suppressions { entries } => render_data::suppressions(entries),
        Response::Webhooks { webhooks } => super::webhook::webhooks(webhooks),
        Response::BackupCreated(b) => render_data::backup(b),
        Response::ReceiptKey {
            algorithm,
            public_key,
        } => record(&[
            ("algorithm", algorithm.clone()),
            ("public key", public_key.clone()),
        ]),
        Response::Domain(d) => domain(d),
        Response::DnsRecords(records) => zone(records),
        Response::Verification(v) => verification(v),
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
            let mut table = Table::new(&["DOMAIN", "TENANT", "SENDING", "DKIM", "CREATED"]);
            for d in domains {
                let active = selectors(d, DkimKeyState::Active);
                table.row(vec![
                    d.domain.clone(),
                    d.tenant.clone(),
                    sending(d).into(),
                    if active.is_empty() {
                        "-".into()
                    } else {
                        active.join(",")
                    },
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
                    match (&e.detail, &e.sealed_detail, e.pruned) {
                        (_, _, true) => "(pruned by the retention sweep)".into(),
                        (Some(d), _, _) => d.clone(),
                        (None, Some(_), _) => "(erased with the tenant's key)".into(),
                        (None, None, _) => "-".into(),
                    },
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
        Response::Incident(i) => incident(i),
        Response::Incidents { incidents } => {
            let mut table = Table::new(&[
                "ID", "STATUS", "DETECTED", "OPENED", "TENANTS", "NOTIFIED", "TITLE",
            ]);
            for i in incidents {
                let notified = i.tenants.iter().filter(|t| i.notified(t)).count();
                table.row(vec![
                    i.id.clone(),
                    if i.closed_at.is_some() {
                        "closed"
                    } else {
                        "open"
                    }
                    .into(),
                    rfc3339(i.detected_at),
                    rfc3339(i.opened_at),
                    i.tenants.len().to_string(),
                    format!("{notified}/{}", i.tenants.len()),
                    i.title.clone(),
                ]);
            }
            table.render()
        }
        Response::IncidentNotified { incident, sent } => {
            let id = clean(&incident.id);
            if sent.is_empty() {
                format!(
                    "{id}: nothing sent: every affected tenant has been notified \
                     (--again sends to all of them once more)\n"
                )
            } else {
                let ok = sent
                    .iter()
                    .filter(|n| n.outcome == NotificationOutcome::Ok)
                    .count();
                format!(
                    "{id}: {ok} of {} notifications handed to the MTA\n\n{}",
                    sent.len(),
                    notifications(sent)
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
        Response::QueueSummary(_)
        | Response::QueueListing(_)
        | Response::QueueMessage { .. }
        | Response::QueueChanged(_) => super::queue::human(response),
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

/// One incident: its fields, the long texts as paragraphs, then its notifications.
fn incident(i: &IncidentInfo) -> String {
    let status = match i.closed_at {
        Some(at) => format!(
            "closed {} by {}",
            rfc3339(at),
            i.closed_by.as_deref().unwrap_or("-")
        ),
        None => "open".into(),
    };
    let tenants = if i.tenants.is_empty() {
        "- (add them: way2mail incident add-tenant ID TENANT)".to_string()
    } else {
        i.tenants
            .iter()
            .map(|t| {
                if i.notified(t) {
                    format!("{t} (notified)")
                } else {
                    format!("{t} (not notified)")
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut out = record(&[
        ("incident", i.id.clone()),
        ("title", i.title.clone()),
        ("status", status),
        ("detected", rfc3339(i.detected_at)),
        (
            "opened",
            format!("{} by {}", rfc3339(i.opened_at), i.opened_by),
        ),
        ("updated", rfc3339(i.updated_at)),
        ("tenants", tenants),
    ]);
    let mut texts = vec![
        ("Nature", i.nature.as_str()),
        ("Data affected", i.data_affected.as_str()),
        ("Likely consequences", i.consequences.as_str()),
        ("Measures", i.measures.as_str()),
    ];
    if let Some(r) = &i.resolution {
        texts.push(("Resolution", r.as_str()));
    }
    for (heading, text) in texts {
        out.push_str(&format!("\n{heading}:\n"));
        for line in text.lines() {
            out.push_str(&format!("  {}\n", clean(line)));
        }
    }
    out.push('\n');
    if i.notifications.is_empty() {
        out.push_str("no notifications sent\n");
    } else {
        out.push_str("Notifications:\n");
        out.push_str(&notifications(&i.notifications));
    }
    out
}

fn notifications(list: &[Notification]) -> String {
    let mut table = Table::new(&[
        "TENANT", "CONTACT", "SENT", "BY", "OUTCOME", "QUEUE ID", "REPLY",
    ]);
    for n in list {
        table.row(vec![
            n.tenant.clone(),
            n.contact.clone(),
            rfc3339(n.sent_at),
            n.sent_by.clone(),
            match n.outcome {
                NotificationOutcome::Ok => "ok",
                NotificationOutcome::Failed => "failed",
            }
            .into(),
            opt(n.queue_id.as_deref()),
            n.reply.clone(),
        ]);
    }
    table.render()
}

fn tenant(t: &TenantInfo) -> String {
    let auto_suppress = way2mail_wire::protocol::AUTO_SUPPRESS_RULES
        .iter()
        .map(|rule| {
            let on = t.auto_suppress.get(rule).unwrap_or(false);
            format!("{rule} {}", if on { "on" } else { "off" })
        })
        .collect::<Vec<_>>()
        .join(", ");
    let sending = match &t.sending_paused {
        None => "normal".to_string(),
        Some(p) => format!(
            "PAUSED since {} by the reputation guard: {} (its mail is held; lift with \
             `way2mail tenant resume-sending {} --reason TEXT`)",
            rfc3339(p.since),
            way2mail_control::notify::reputation::summary(&p.rates),
            t.tenant
        ),
    };
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
        (
            "list-unsubscribe",
            if t.list_unsubscribe { "on" } else { "off" }.into(),
        ),
        ("auto-suppress", auto_suppress),
        ("sending", sending),
        ("created", rfc3339(t.created_at)),
        ("updated", rfc3339(t.updated_at)),
        ("terminated", opt_rfc3339(t.terminated_at)),
        ("erasure scheduled", opt_rfc3339(t.erase_after)),
        (
            "legal hold",
            match &t.legal_hold {
                Some(h) => format!("since {} by {}: {}", rfc3339(h.since), h.by, h.reason),
                None => "-".into(),
            },
        ),
        ("retention", retention_overrides(&t.retention)),
    ])
}

/// The tenant's own periods, `default` for the rest.
fn retention_overrides(r: &way2mail_wire::protocol::RetentionSettings) -> String {
    let own: Vec<String> = [
        ("content", r.content_secs),
        ("delivery log", r.delivery_log_secs),
        ("security log", r.security_log_secs),
        ("account", r.account_secs),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|s| format!("{k} {}", way2mail_daemon::duration::format(s))))
    .collect();
    if own.is_empty() {
        "defaults".into()
    } else {
        format!("{} (others default)", own.join(", "))
    }
}

/// One domain: its state as `key: value` lines, then its DKIM keys.
fn domain(d: &DomainInfo) -> String {
    let bimi = match &d.bimi {
        None => "-".to_string(),
        Some(b) => format!(
            "selector {}, logo {}, VMC {}",
            b.selector,
            b.logo_url,
            b.vmc_url.as_deref().unwrap_or("-")
        ),
    };
    let mut out = record(&[
        ("domain", d.domain.clone()),
        ("tenant", d.tenant.clone()),
        ("created", rfc3339(d.created_at)),
        ("verified", opt_rfc3339(d.verified_at)),
        (
            "send unverified",
            if d.send_unverified {
                "yes (operator override)".into()
            } else {
                "no".into()
            },
        ),
        ("sending", sending(d).into()),
        ("BIMI", bimi),
    ]);
    out.push('\n');
    if d.dkim.is_empty() {
        out.push_str("no DKIM keys: create them with `way2mail domain rotate-dkim DOMAIN`\n");
    } else {
        let mut table = Table::new(&["SELECTOR", "ALGORITHM", "STATE", "CREATED"]);
        for k in &d.dkim {
            table.row(vec![
                k.selector.clone(),
                k.algorithm.as_str().into(),
                state(k.state).into(),
                rfc3339(k.created_at),
            ]);
        }
        out.push_str(&table.render());
    }
    out
}

/// `verified`, `override` or `unverified`: whether and why the domain may send.
fn sending(d: &DomainInfo) -> &'static str {
    if d.verified_at.is_some() {
        "verified"
    } else if d.send_unverified {
        "override"
    } else {
        "unverified"
    }
}

fn selectors(d: &DomainInfo, which: DkimKeyState) -> Vec<String> {
    d.dkim
        .iter()
        .filter(|k| k.state == which)
        .map(|k| k.selector.clone())
        .collect()
}

fn state(s: DkimKeyState) -> &'static str {
    match s {
        DkimKeyState::Pending => "pending",
        DkimKeyState::Active => "active",
        DkimKeyState::Retired => "retired",
    }
}

/// `DKIM selectors: a (rsa-sha256), b (ed25519-sha256)`, for `domain add`.
pub fn dkim_selectors(d: &DomainInfo) -> String {
    let keys: Vec<String> = d
        .dkim
        .iter()
        .map(|k| format!("{} ({})", k.selector, k.algorithm.as_str()))
        .collect();
    format!("DKIM selectors: {}", clean(&keys.join(", ")))
}

/// What to do after adding a domain.
pub fn publish_hint(domain: &str) -> String {
    let domain = clean(domain);
    format!(
        "\nPublish its DNS records (SPF, DKIM, DMARC):  way2mail domain dns {domain}\n\
         then check them:                              way2mail domain verify {domain}\n\
         Until it is verified the domain does not send (unless overridden).\n"
    )
}

/// The first line(s) after `domain rotate-dkim`.
pub fn rotation_done(d: &DomainInfo, activate: bool) -> String {
    let name = clean(&d.domain);
    let pending = selectors(d, DkimKeyState::Pending);
    let active = selectors(d, DkimKeyState::Active).join(", ");
    let retired = selectors(d, DkimKeyState::Retired).join(", ");
    if activate {
        let mut out = format!("DKIM keys {} of {name} now sign\n", clean(&active));
        if !retired.is_empty() {
            out.push_str(&format!(
                "retired: {}: keep their records published while mail signed with them may \
                 still be checked (a few days), then: way2mail domain retire-dkim {name}\n",
                clean(&retired)
            ));
        }
        out
    } else if pending.is_empty() {
        format!(
            "DKIM keys {} of {name} created and active at once (there were none)\n\
                 publish their records: way2mail domain dns {name}\n",
            clean(&active)
        )
    } else {
        format!(
            "DKIM keys {} of {name} created, pending:\n  \
             1. publish their records:       way2mail domain dns {name}\n  \
             2. wait until they resolve:     way2mail domain verify {name}\n  \
             3. sign with them:              way2mail domain rotate-dkim {name} --activate\n",
            clean(&pending.join(", "))
        )
    }
}

/// The records as zone-file lines, each after its note as `;` comments (one per
/// line of the note); values over 255 bytes as several quoted strings (receivers
/// join them).
fn zone(records: &DomainRecords) -> String {
    let mut out = format!(
        "; DNS records for {} (TTL {SUGGESTED_TTL} is a suggestion)\n",
        clean(&records.domain)
    );
    for r in &records.records {
        out.push('\n');
        for line in r.note.lines() {
            out.push_str(&format!("; {}\n", clean(line)));
        }
        let strings: Vec<String> = publish::split_txt(&r.value)
            .into_iter()
            .map(quote)
            .collect();
        out.push_str(&format!(
            "{}. {SUGGESTED_TTL} IN {} {}\n",
            clean(&r.name),
            clean(&r.rtype),
            strings.join(" ")
        ));
    }
    out
}

/// One `"…"` character-string of a zone file: quotes and backslashes escaped,
/// control characters replaced.
fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in clean(text).chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Check by check, then the verdict.
fn verification(v: &DomainVerification) -> String {
    let mut table = Table::new(&["PURPOSE", "NAME", "STATUS", "DETAIL"]);
    for c in &v.checks {
        let status = match c.status {
            CheckStatus::Ok => "ok",
            CheckStatus::Missing => "missing",
            CheckStatus::Wrong => "wrong",
            CheckStatus::Error => "error",
        };
        table.row(vec![
            c.purpose.as_str().into(),
            c.name.clone(),
            if c.required {
                status.into()
            } else {
                format!("{status} (optional)")
            },
            c.detail.clone(),
        ]);
    }
    let mut out = table.render();
    out.push('\n');
    let name = clean(&v.domain);
    if v.verified {
        out.push_str("verified\n");
    } else if v
        .checks
        .iter()
        .any(|c| c.required && matches!(c.status, CheckStatus::Missing | CheckStatus::Wrong))
    {
        out.push_str(&format!(
            "not verified: publish the records shown by `way2mail domain dns {name}`, then verify again\n"
        ));
    } else {
        out.push_str(
            "not verified: some lookups failed (the verification state is unchanged); try again\n",
        );
    }
    out
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

fn kind(k: CredentialKind) -> &'static str {
    match k {
        CredentialKind::Smtp => "smtp",
        CredentialKind::Api => "api",
    }
}

fn outcome(o: AuditOutcome) -> &'static str {
    match o {
        AuditOutcome::Ok => "ok",
        AuditOutcome::Denied => "denied",
        AuditOutcome::Failed => "failed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use way2mail_wire::protocol::{
        DkimAlgorithm, DkimKeyInfo, DnsRecord, RecordCheck, RecordPurpose,
    };

    #[test]
    fn zone_lines_split_long_values_and_comment_notes() {
        let long = format!("v=DKIM1; k=rsa; p={}", "A".repeat(380));
        let records = DomainRecords {
            domain: "shop.example".into(),
            records: vec![
                DnsRecord {
                    purpose: RecordPurpose::Dkim,
                    name: "s1._domainkey.shop.example".into(),
                    rtype: "TXT".into(),
                    value: long.clone(),
                    note: "DKIM selector s1\n(active\x1b)".into(),
                },
                DnsRecord {
                    purpose: RecordPurpose::Bimi,
                    name: "default._bimi.shop.example".into(),
                    rtype: "TXT".into(),
                    value: "v=BIMI1; l=https://x.example/\"q\\.svg; a=;".into(),
                    note: "BIMI".into(),
                },
            ],
        };
        let text = zone(&records);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("; DNS records for shop.example"));
        // Each line of a note is a comment line of its own, control characters
        // replaced.
        assert_eq!(lines[2], "; DKIM selector s1");
        assert_eq!(lines[3], "; (active?)");
        let first = format!(
            "s1._domainkey.shop.example. 3600 IN TXT \"{}\" \"{}\"",
            &long[..255],
            &long[255..]
        );
        assert_eq!(lines[4], first);
        assert_eq!(lines[6], "; BIMI");
        assert_eq!(
            lines[7],
            r#"default._bimi.shop.example. 3600 IN TXT "v=BIMI1; l=https://x.example/\"q\\.svg; a=;""#
        );
    }

    /// Without `[sending]` the note that no SPF record is suggested is a comment line
    /// of its own, not glued to the note of the record after it.
    #[test]
    fn no_spf_note_is_a_line_of_its_own() {
        let info = DomainInfo {
            domain: "shop.example".into(),
            tenant: "shop".into(),
            created_at: 0,
            dkim: vec![DkimKeyInfo {
                selector: "w2m-1-ed".into(),
                algorithm: DkimAlgorithm::Ed25519Sha256,
                state: DkimKeyState::Active,
                public_key: "AAAA".into(),
                created_at: 0,
            }],
            verified_at: None,
            send_unverified: false,
            bimi: None,
        };
        let records = DomainRecords {
            domain: info.domain.clone(),
            records: publish::records(
                &info,
                &way2mail_control::settings::SendingSettings::default(),
            ),
        };
        let text = zone(&records);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with("; DNS records for shop.example"),
            "{text}"
        );
        assert_eq!(lines[1], "", "{text}");
        assert_eq!(lines[2], format!("; {}", publish::NO_SPF_NOTE), "{text}");
        assert!(
            lines[3].starts_with("; DKIM selector w2m-1-ed (ed25519-sha256, active"),
            "{text}"
        );
        assert!(
            lines[4].starts_with("w2m-1-ed._domainkey.shop.example. 3600 IN TXT "),
            "{text}"
        );
        assert_eq!(text.matches("no SPF record suggested").count(), 1, "{text}");
        assert!(
            text.lines()
                .filter(|l| l.contains("no SPF record suggested"))
                .all(|l| l.ends_with("configured.")),
            "{text}"
        );
    }

    #[test]
    fn verification_table_and_verdict() {
        let check = |status, required| RecordCheck {
            purpose: RecordPurpose::Spf,
            name: "shop.example".into(),
            status,
            required,
            expected: None,
            found: Vec::new(),
            detail: "detail".into(),
        };
        let mut v = DomainVerification {
            domain: "shop.example".into(),
            verified: true,
            checks: vec![
                check(CheckStatus::Ok, true),
                check(CheckStatus::Missing, false),
            ],
            checked_at: 0,
        };
        let text = verification(&v);
        assert!(text.starts_with("PURPOSE  NAME"), "{text}");
        assert!(text.contains("missing (optional)"), "{text}");
        assert!(text.ends_with("\nverified\n"), "{text}");
        v.verified = false;
        v.checks[0].status = CheckStatus::Wrong;
        assert!(verification(&v).contains("not verified: publish the records"));
        v.checks[0].status = CheckStatus::Error;
        assert!(verification(&v).contains("not verified: some lookups failed"));
    }
}
