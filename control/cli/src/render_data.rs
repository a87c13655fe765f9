//! Human output for the data-protection results: receipts, reports, exports,
//! retention runs, suppression lists, backups.

use way2mail_daemon::duration;
use way2mail_wire::protocol::{
    BackupInfo, EffectiveRetention, ErasureReceipt, ExportManifest, ReceiptItem, RetentionDefaults,
    RetentionRunReport, SuppressionEntry, TenantReport,
};

use super::table::{opt, opt_rfc3339, record, rfc3339, status, Table};

fn period(p: &way2mail_wire::protocol::Period) -> String {
    format!("{} ({})", duration::format(p.secs), p.source)
}

pub fn retention_lines(e: &EffectiveRetention) -> Vec<(&'static str, String)> {
    vec![
        ("content", period(&e.content)),
        ("delivery log", period(&e.delivery_log)),
        ("security log", period(&e.security_log)),
        ("account", period(&e.account)),
        ("termination grace", period(&e.termination_grace)),
    ]
}

pub fn defaults(d: &RetentionDefaults) -> String {
    record(&[
        ("content", duration::format(d.content_secs)),
        ("delivery log", duration::format(d.delivery_log_secs)),
        ("security log", duration::format(d.security_log_secs)),
        ("account", duration::format(d.account_secs)),
        (
            "termination grace",
            duration::format(d.termination_grace_secs),
        ),
        ("sweep interval", duration::format(d.sweep_interval_secs)),
    ])
}

fn items(items: &[ReceiptItem], kept: bool) -> String {
    let mut table = if kept {
        Table::new(&["KEPT", "BY", "COUNT", "UNTIL", "WHY"])
    } else {
        Table::new(&["REMOVED", "BY", "COUNT"])
    };
    for i in items {
        let mut row = vec![i.category.clone(), i.held_by.clone(), i.count.to_string()];
        if kept {
            row.push(opt_rfc3339(i.until));
            row.push(opt(i.why.as_deref()));
        }
        table.row(row);
    }
    table.render()
}

pub fn receipt(r: &ErasureReceipt) -> String {
    let signed = match way2mail_control::service::verify_receipt(r, None) {
        Ok(()) => "ed25519, valid".to_string(),
        Err(e) => format!("INVALID: {e}"),
    };
    let mut out = record(&[
        ("receipt", r.receipt.clone()),
        ("tenant", r.tenant.clone()),
        ("business name", r.business_name.clone()),
        ("erased", rfc3339(r.erased_at)),
        ("requested by", r.requested_by.clone()),
        ("reason", opt(r.reason.as_deref())),
        ("signature", signed),
    ]);
    out.push('\n');
    out.push_str(&items(&r.removed, false));
    out.push('\n');
    out.push_str(&items(&r.kept, true));
    out.push('\n');
    let mut keys = Table::new(&["KEY DESTROYED", "KEY ID", "AT"]);
    for k in &r.shredded_keys {
        keys.row(vec![
            k.held_by.clone(),
            opt(k.key_id.as_deref()),
            match k.at_ms {
                Some(ms) => rfc3339(ms / 1000),
                None => "pending".into(),
            },
        ]);
    }
    out.push_str(&keys.render());
    for p in &r.pending {
        out.push_str(&format!("\npending: {p}\n"));
    }
    out
}

pub fn report(r: &TenantReport) -> String {
    let mut fields = vec![
        ("tenant", r.tenant.clone()),
        ("generated", rfc3339(r.generated_at)),
        ("status", status(r.status).into()),
        ("terminated", opt_rfc3339(r.terminated_at)),
        ("erasure scheduled", opt_rfc3339(r.erase_after)),
        (
            "legal hold",
            match &r.legal_hold {
                Some(h) => format!("since {} by {}: {}", rfc3339(h.since), h.by, h.reason),
                None => "-".into(),
            },
        ),
    ];
    fields.extend(retention_lines(&r.retention));
    let mut out = record(&fields);
    out.push_str("\nData held\n");
    let mut table = Table::new(&["CATEGORY", "BY", "COUNT", "OLDEST", "KEPT"]);
    for c in &r.categories {
        table.row(vec![
            c.category.clone(),
            c.held_by.clone(),
            c.count.to_string(),
            opt_rfc3339(c.oldest),
            c.kept.clone(),
        ]);
    }
    out.push_str(&table.render());
    if let Some(why) = &r.mta_unavailable {
        out.push_str(&format!("(the MTA's part is missing: {why})\n"));
    }
    out.push_str("\nDelivery partners (smart-host routes); all other mail goes to the recipients' own mail exchangers\n");
    if r.delivery_partners.is_empty() {
        out.push_str("none\n");
    } else {
        let mut table = Table::new(&["DOMAINS", "HOSTS", "TLS", "AUTH"]);
        for p in &r.delivery_partners {
            table.row(vec![
                p.domains.join(" "),
                p.hosts.join(" "),
                p.tls.clone(),
                if p.authenticated { "yes" } else { "no" }.into(),
            ]);
        }
        out.push_str(&table.render());
    }
    out.push_str(&format!(
        "\nAccess since {}\n",
        rfc3339(r.access_since_ms / 1000)
    ));
    let mut table = Table::new(&["ACTOR", "ACTION", "OUTCOME", "COUNT", "LAST"]);
    for a in &r.access {
        table.row(vec![
            a.actor.clone(),
            a.action.clone(),
            a.outcome.clone(),
            a.count.to_string(),
            rfc3339(a.last_at_ms / 1000),
        ]);
    }
    out.push_str(&table.render());
    out
}

pub fn exported(m: &ExportManifest) -> String {
    record(&[
        ("tenant", m.tenant.clone()),
        ("format", m.format.clone()),
        ("created", rfc3339(m.created_at)),
        ("files", m.files.len().to_string()),
        ("messages", m.messages.to_string()),
        ("delivery log records", m.delivery_log_records.to_string()),
        ("domains", m.domains.to_string()),
        ("credentials", m.credentials.to_string()),
        ("suppression entries", m.suppression_entries.to_string()),
        ("access log entries", m.access_log_entries.to_string()),
    ])
}

pub fn run(r: &RetentionRunReport) -> String {
    let mut fields = vec![
        ("audit entries pruned", r.audit_entries_pruned.to_string()),
        (
            "billing records deleted",
            r.billing_records_deleted.to_string(),
        ),
        ("receipts deleted", r.receipts_deleted.to_string()),
        (
            "erased after termination",
            if r.erased.is_empty() {
                "-".into()
            } else {
                r.erased.join(", ")
            },
        ),
        (
            "held (legal hold)",
            if r.held.is_empty() {
                "-".into()
            } else {
                r.held.join(", ")
            },
        ),
    ];
    match (&r.mta, &r.mta_unavailable) {
        (Some(s), _) => {
            let messages: u64 = s.entries.iter().map(|e| e.messages_removed).sum();
            let records: u64 = s.entries.iter().map(|e| e.log_records_removed).sum();
            fields.push(("MTA messages removed", messages.to_string()));
            fields.push(("MTA log records removed", records.to_string()));
            fields.push((
                "MTA erased leftovers",
                format!(
                    "{} messages, {} log records",
                    s.erased_messages, s.erased_log_records
                ),
            ));
        }
        (None, Some(why)) => fields.push(("MTA", format!("not swept: {why}"))),
        (None, None) => {}
    }
    record(&fields)
}

pub fn suppressions(entries: &[SuppressionEntry]) -> String {
    let mut table = Table::new(&["ADDRESS", "ADDED", "BY", "REASON", "SOURCE", "NOTE"]);
    for e in entries {
        table.row(vec![
            e.address.clone(),
            rfc3339(e.added_at),
            e.added_by.clone(),
            opt(e.reason.as_deref()),
            opt(e.source.as_deref()),
            opt(e.note.as_deref()),
        ]);
    }
    table.render()
}

pub fn backup(b: &BackupInfo) -> String {
    record(&[
        ("created", rfc3339(b.created_at)),
        ("bytes", b.bytes.to_string()),
        ("control store records", b.control_records.to_string()),
        ("spool records", b.spool_records.to_string()),
        ("backup key", b.key_fingerprint.clone()),
    ])
}
