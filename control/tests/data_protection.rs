//! Control's data protection at the service: retention per tenant, legal holds,
//! suppression lists, termination, erasure with its signed receipt (no MTA beside
//! these services: the spool's part stays pending), reports, and the sweep.

mod support;

use std::time::Duration;

use support::{code_of, settings, Harness};
use way2mail_control::service::verify_receipt;
use way2mail_control::store::TreeName;
use way2mail_wire::protocol::{
    AuditOutcome, CredentialKind, ErrorCode, Request, Response, RetentionDefaults, TenantInfo,
    TenantStatus,
};
use way2mail_wire::snapshot::suppression_hash;

fn tenant_of(r: Result<Response, way2mail_wire::protocol::ErrorBody>) -> TenantInfo {
    match r {
        Ok(Response::Tenant(t)) => t,
        other => panic!("expected a tenant: {other:?}"),
    }
}

/// A tenant with a domain, an SMTP credential and a suppressed address.
fn populated(h: &Harness, admin: &str, tenant: &str) {
    h.add_tenant(admin, tenant);
    h.op(
        admin,
        Request::DomainAdd {
            tenant: tenant.into(),
            domain: format!("{tenant}.example"),
        },
    )
    .expect("domain");
    h.op(
        admin,
        Request::CredentialAdd {
            tenant: tenant.into(),
            kind: CredentialKind::Smtp,
            username: Some(format!("app@{tenant}.example")),
            description: None,
        },
    )
    .expect("credential");
    h.op(
        admin,
        Request::SuppressionAdd {
            tenant: tenant.into(),
            address: format!("Gone@{tenant}-customer.example"),
            note: Some("unsubscribed".into()),
        },
    )
    .expect("suppression");
}

fn erase(h: &Harness, admin: &str, tenant: &str) -> way2mail_wire::protocol::ErasureReceipt {
    match h.op(
        admin,
        Request::TenantErase {
            tenant: tenant.into(),
            confirm: tenant.into(),
        },
    ) {
        Ok(Response::ErasureReceipt(r)) => r,
        other => panic!("erase: {other:?}"),
    }
}

#[test]
fn retention_periods_follow_the_agreement_and_reach_the_mta() {
    let h = Harness::new();
    let (admin, _) = h.admin();
    populated(&h, &admin, "acme");
    let defaults = RetentionDefaults::default();
    let s = h.snapshot();
    let acme = &s.tenants[0];
    let r = acme.retention.expect("retention in the snapshot");
    assert_eq!(r.content_secs, defaults.content_secs);
    assert_eq!(r.delivery_log_secs, defaults.delivery_log_secs);
    assert_eq!(
        acme.suppressed,
        vec![suppression_hash("gone@acme-customer.example")]
    );
    assert!(!acme.legal_hold);

    let t = tenant_of(h.op(
        &admin,
        Request::TenantRetention {
            tenant: "acme".into(),
            content_secs: Some(7 * 86_400),
            delivery_log_secs: Some(90 * 86_400),
            security_log_secs: None,
            account_secs: None,
            reset: false,
        },
    ));
    assert_eq!(t.retention.content_secs, Some(7 * 86_400));
    let r = h.snapshot().tenants[0].retention.expect("retention");
    assert_eq!(
        (r.content_secs, r.delivery_log_secs),
        (7 * 86_400, 90 * 86_400)
    );
    // Bad periods and empty changes are refused; reset goes back to the defaults.
    for bad in [Some(0), Some(u64::MAX)] {
        let e = h.op(
            &admin,
            Request::TenantRetention {
                tenant: "acme".into(),
                content_secs: bad,
                delivery_log_secs: None,
                security_log_secs: None,
                account_secs: None,
                reset: false,
            },
        );
        assert_eq!(code_of(&e), Some(ErrorCode::Invalid), "{bad:?}");
    }
    let t = tenant_of(h.op(
        &admin,
        Request::TenantRetention {
            tenant: "acme".into(),
            content_secs: None,
            delivery_log_secs: None,
            security_log_secs: None,
            account_secs: None,
            reset: true,
        },
    ));
    assert_eq!(t.retention, Default::default());
    // The change is in the audit log with old and new values, sealed with acme's key.
    let entry = h
        .audit()
        .into_iter()
        .rev()
        .find(|e| e.action == "tenant.retention" && e.outcome == AuditOutcome::Ok)
        .expect("audited");
    assert!(entry.sealed_detail.is_some());
    assert!(entry
        .detail
        .as_deref()
        .is_some_and(|d| d.contains("\"old\"")));
}

#[test]
fn suppression_lists_and_legal_holds() {
    let h = Harness::new();
    let (admin, _) = h.admin();
    populated(&h, &admin, "acme");
    let dup = h.op(
        &admin,
        Request::SuppressionAdd {
            tenant: "acme".into(),
            address: "gone@ACME-customer.example".into(),
            note: None,
        },
    );
    assert_eq!(code_of(&dup), Some(ErrorCode::AlreadyExists));
    for bad in ["not-an-address", "a@b@c", "<x@y>", ""] {
        let e = h.op(
            &admin,
            Request::SuppressionAdd {
                tenant: "acme".into(),
                address: bad.into(),
                note: None,
            },
        );
        assert_eq!(code_of(&e), Some(ErrorCode::Invalid), "{bad:?}");
    }
    match h.op(
        &admin,
        Request::SuppressionList {
            tenant: "acme".into(),
        },
    ) {
        Ok(Response::Suppressions { entries }) => {
            assert_eq!(entries.len(), 1);
            assert_eq!(entries[0].address, "gone@acme-customer.example");
        }
        other => panic!("{other:?}"),
    }
    // No address is a sled key: the raw tree holds none.
    for item in h
        .service
        .store()
        .keys_with_prefix(TreeName::Suppression, b"")
        .expect("keys")
    {
        assert!(!item.windows(8).any(|w| w == b"customer"));
    }
    h.op(
        &admin,
        Request::SuppressionRemove {
            tenant: "acme".into(),
            address: "GONE@acme-customer.example".into(),
        },
    )
    .expect("remove");
    assert!(h.snapshot().tenants[0].suppressed.is_empty());

    // A hold needs a reason, shows in the snapshot, and blocks erasure.
    let no_reason = h.op(
        &admin,
        Request::TenantHold {
            tenant: "acme".into(),
            hold: true,
        },
    );
    assert_eq!(code_of(&no_reason), Some(ErrorCode::ReasonRequired));
    let held = tenant_of(h.call(
        &support::USER,
        Some(&admin),
        Some("litigation 2026-17"),
        Request::TenantHold {
            tenant: "acme".into(),
            hold: true,
        },
    ));
    let hold = held.legal_hold.expect("held");
    assert_eq!(hold.reason, "litigation 2026-17");
    assert!(h.snapshot().tenants[0].legal_hold);
    let refused = h.op(
        &admin,
        Request::TenantErase {
            tenant: "acme".into(),
            confirm: "acme".into(),
        },
    );
    assert_eq!(code_of(&refused), Some(ErrorCode::Conflict));
    assert!(refused.unwrap_err().message.contains("legal hold"));
    h.call(
        &support::USER,
        Some(&admin),
        Some("settled"),
        Request::TenantHold {
            tenant: "acme".into(),
            hold: false,
        },
    )
    .expect("release");
}

#[test]
fn termination_schedules_the_erasure_and_keeps_billing() {
    let h = Harness::new();
    let (admin, _) = h.admin();
    populated(&h, &admin, "acme");
    let t = tenant_of(h.op(
        &admin,
        Request::TenantTerminate {
            tenant: "acme".into(),
        },
    ));
    assert_eq!(t.status, TenantStatus::Terminated);
    let terminated = t.terminated_at.expect("terminated_at");
    let d = RetentionDefaults::default();
    assert_eq!(t.erase_after, Some(terminated + d.termination_grace_secs));
    let billing: way2mail_control::records::BillingRecord = h
        .service
        .store()
        .get(TreeName::Billing, b"acme")
        .expect("read")
        .expect("billing record");
    assert_eq!(billing.delete_after, terminated + d.account_secs);
    assert_eq!(billing.business_name, "acme Ltd");
    assert_eq!(h.snapshot().tenants[0].status, TenantStatus::Terminated);
}

#[test]
fn erasure_removes_shreds_and_signs_a_receipt() {
    let h = Harness::new();
    let (admin, _) = h.admin();
    populated(&h, &admin, "acme");
    populated(&h, &admin, "globex");
    h.op(
        &admin,
        Request::TenantShow {
            tenant: "acme".into(),
        },
    )
    .expect("show");
    let key_id = h
        .service
        .store()
        .keyring()
        .existing("acme")
        .expect("key")
        .id();

    let unconfirmed = h.op(
        &admin,
        Request::TenantErase {
            tenant: "acme".into(),
            confirm: "acme-no".into(),
        },
    );
    assert_eq!(code_of(&unconfirmed), Some(ErrorCode::Invalid));
    assert!(
        h.service.store().keyring().existing("acme").is_some(),
        "nothing erased"
    );

    let receipt = erase(&h, &admin, "acme");
    assert!(receipt.receipt.starts_with("ER-"));
    verify_receipt(&receipt, None).expect("a valid signature");
    match h.op(&admin, Request::ReceiptKey) {
        Ok(Response::ReceiptKey { public_key, .. }) => {
            verify_receipt(&receipt, Some(&public_key)).expect("signed with the daemon's key")
        }
        other => panic!("{other:?}"),
    }
    let mut forged = receipt.clone();
    forged.removed[0].count += 1;
    assert!(verify_receipt(&forged, None).is_err());
    let count = |cat: &str| {
        receipt
            .removed
            .iter()
            .find(|i| i.category.starts_with(cat))
            .map(|i| i.count)
    };
    assert_eq!(count("account record"), Some(1));
    assert_eq!(count("sending domains"), Some(1));
    assert_eq!(count("DKIM private keys"), Some(2));
    assert_eq!(count("SMTP credentials"), Some(1));
    assert_eq!(count("suppression list"), Some(1));
    assert!(receipt
        .kept
        .iter()
        .any(|i| i.category.starts_with("billing record") && i.until.is_some()));
    assert!(
        receipt.pending.iter().any(|p| p.contains("MTA")),
        "no MTA here: pending"
    );
    let control = &receipt.shredded_keys[0];
    assert_eq!(control.key_id.as_deref(), Some(key_id.to_string().as_str()));
    assert!(control.at_ms.is_some());

    // Nothing sealed with acme's key is left in any tenant tree; globex is whole.
    let store = h.service.store();
    for tree in TreeName::ALL {
        assert!(
            store
                .keys_sealed_with(tree, key_id)
                .expect("scan")
                .is_empty(),
            "{tree:?}"
        );
    }
    assert!(store.keyring().existing("acme").is_none());
    assert!(store.keyring().existing("globex").is_some());
    let show = h.op(
        &admin,
        Request::TenantShow {
            tenant: "acme".into(),
        },
    );
    assert_eq!(code_of(&show), Some(ErrorCode::NotFound));
    assert!(show.unwrap_err().message.contains(&receipt.receipt));
    let again = h.op(
        &admin,
        Request::TenantAdd {
            tenant: "acme".into(),
            business_name: "New".into(),
            contact: "c@new.example".into(),
            billing_ref: None,
            messages_per_hour: None,
            messages_per_day: None,
            recipients_per_message: None,
        },
    );
    assert_eq!(
        code_of(&again),
        Some(ErrorCode::Conflict),
        "ids are never reused"
    );
    let snap = h.snapshot();
    assert_eq!(snap.erased, vec!["acme".to_string()]);
    assert!(snap.tenants.iter().all(|t| t.tenant != "acme"));

    // Audit details about acme are unreadable now, the erasure's own are not, and
    // the chain still verifies.
    let entries = h.audit();
    let about: Vec<_> = entries
        .iter()
        .filter(|e| e.tenant.as_deref() == Some("acme"))
        .collect();
    assert!(about
        .iter()
        .any(|e| e.action == "tenant.add" && e.detail.is_none() && e.sealed_detail.is_some()));
    assert!(about
        .iter()
        .filter(|e| e.action == "tenant.erase" && e.outcome == AuditOutcome::Ok)
        .all(|e| e
            .detail
            .as_deref()
            .is_some_and(|d| d.contains(&receipt.receipt))));
    match h.op(&admin, Request::AuditVerify) {
        Ok(Response::AuditVerified(r)) => assert!(r.problems.is_empty(), "{:?}", r.problems),
        other => panic!("{other:?}"),
    }
    // The receipt is kept and can be fetched again.
    match h.op(
        &admin,
        Request::TenantReceipt {
            tenant: "acme".into(),
        },
    ) {
        Ok(Response::ErasureReceipt(r)) => assert_eq!(r, receipt),
        other => panic!("{other:?}"),
    }
    let second = h.op(
        &admin,
        Request::TenantErase {
            tenant: "acme".into(),
            confirm: "acme".into(),
        },
    );
    assert_eq!(code_of(&second), Some(ErrorCode::NotFound));
}

#[test]
fn reports_list_what_is_held_and_who_touched_it() {
    let h = Harness::new();
    let (admin, _) = h.admin();
    populated(&h, &admin, "acme");
    h.op(
        &admin,
        Request::TenantShow {
            tenant: "acme".into(),
        },
    )
    .expect("show");
    let report = match h.op(
        &admin,
        Request::TenantReport {
            tenant: "acme".into(),
        },
    ) {
        Ok(Response::TenantReport(r)) => r,
        other => panic!("{other:?}"),
    };
    let count = |cat: &str| {
        report
            .categories
            .iter()
            .find(|c| c.category.starts_with(cat))
            .map(|c| c.count)
    };
    assert_eq!(count("sending domains"), Some(1));
    assert_eq!(count("DKIM private keys"), Some(2));
    assert_eq!(count("SMTP credentials"), Some(1));
    assert_eq!(count("suppression list"), Some(1));
    assert!(count("audit log entries").is_some_and(|n| n >= 5));
    assert!(report.mta_unavailable.is_some(), "no MTA here");
    assert!(report
        .access
        .iter()
        .any(|a| a.actor == "operator:admin" && a.action == "tenant.show" && a.count == 1));
    assert_eq!(report.retention.content.source, "default");
}

#[test]
fn the_sweep_prunes_old_audit_entries_and_erases_after_the_grace_period() {
    let mut s = settings(Duration::from_secs(3600));
    s.retention.termination_grace_secs = 1;
    let h = Harness::with_settings(s);
    let (admin, _) = h.admin();
    populated(&h, &admin, "acme");
    populated(&h, &admin, "globex");
    h.op(
        &admin,
        Request::TenantRetention {
            tenant: "globex".into(),
            content_secs: None,
            delivery_log_secs: None,
            security_log_secs: Some(1),
            account_secs: None,
            reset: false,
        },
    )
    .expect("retention");
    h.op(
        &admin,
        Request::TenantTerminate {
            tenant: "acme".into(),
        },
    )
    .expect("terminate");
    std::thread::sleep(Duration::from_millis(2100));
    let run = match h.op(&admin, Request::RetentionRun) {
        Ok(Response::RetentionRun(r)) => r,
        other => panic!("{other:?}"),
    };
    assert_eq!(run.erased.len(), 1, "{run:?}");
    assert!(run.mta_unavailable.is_some());
    assert!(run.audit_entries_pruned >= 4, "{run:?}");
    let entries = h.audit();
    assert!(entries
        .iter()
        .filter(|e| e.pruned)
        .all(|e| e.tenant.is_none() && e.actor.is_empty()));
    assert!(!entries
        .iter()
        .any(|e| e.tenant.as_deref() == Some("globex") && e.action == "tenant.add"));
    assert!(entries
        .iter()
        .any(|e| e.action == "tenant.erase" && e.actor == "operator:admin"));
    match h.op(&admin, Request::AuditVerify) {
        Ok(Response::AuditVerified(r)) => assert!(r.problems.is_empty(), "{:?}", r.problems),
        other => panic!("{other:?}"),
    }
    assert!(
        h.service.store().keyring().existing("acme").is_none(),
        "erased after the grace"
    );
    let receipt = match h.op(
        &admin,
        Request::TenantReceipt {
            tenant: "acme".into(),
        },
    ) {
        Ok(Response::ErasureReceipt(r)) => r,
        other => panic!("{other:?}"),
    };
    assert_eq!(receipt.requested_by, "operator:admin");
}
