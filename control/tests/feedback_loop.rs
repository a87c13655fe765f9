//! The feedback loop at the service: the MTA's hard signals put addresses on a
//! tenant's suppression list (`api.auto_suppress`: each rule, the tenant's
//! opt-outs, `bad_domain` only at a confirming second failure, duplicates
//! idempotent, reason and source kept, listed and exported), the reputation
//! guard's pause (`api.reputation_pause`: the snapshot, one set of letters, a
//! second report changes nothing) and its lifting (`tenant.resume_sending`),
//! erasure of the candidates with the tenant, and `tenant.deliverability` and
//! `domain.dmarc` through the MTA's admin socket (and their clear error without one).

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use support::mta_admin::{serve_export, serve_one, untar, Sink};
use support::smtp::{FakeMta, Mode};
use support::{code_of, now, settings, Harness, MTA, USER};
use way2mail_control::records::SuppressionCandidate;
use way2mail_control::store::{suppression_prefix, Batch, TreeName};
use way2mail_wire::mta_admin::{
    AdminOp, AdminResult, DeliverabilityReport, DmarcReporter, DmarcSource, DmarcSummary,
    DomainOutcomes,
};
use way2mail_wire::protocol::{
    AuditOutcome, ErrorBody, ErrorCode, ReputationRates, Request, RequestEnvelope, Response, Role,
    SuppressionEntry, TenantInfo, VERSION,
};
use way2mail_wire::snapshot::suppression_hash;

fn signal(
    h: &Harness,
    tenant: &str,
    address: &str,
    rule: &str,
    source: &str,
) -> Result<Response, ErrorBody> {
    h.call(
        &MTA,
        None,
        None,
        Request::ApiAutoSuppress {
            tenant: tenant.into(),
            address: address.into(),
            rule: rule.into(),
            source: source.into(),
        },
    )
}

fn listed(h: &Harness, token: &str, tenant: &str) -> Vec<SuppressionEntry> {
    match h.op(
        token,
        Request::SuppressionList {
            tenant: tenant.into(),
        },
    ) {
        Ok(Response::Suppressions { entries }) => entries,
        other => panic!("suppression.list: {other:?}"),
    }
}

fn show(h: &Harness, token: &str, tenant: &str) -> TenantInfo {
    match h.op(
        token,
        Request::TenantShow {
            tenant: tenant.into(),
        },
    ) {
        Ok(Response::Tenant(t)) => t,
        other => panic!("tenant.show: {other:?}"),
    }
}

fn update_rules(
    h: &Harness,
    token: &str,
    tenant: &str,
    rules: &[(&str, bool)],
) -> Result<Response, ErrorBody> {
    h.op(
        token,
        Request::TenantUpdate {
            tenant: tenant.into(),
            business_name: None,
            contact: None,
            billing_ref: None,
            messages_per_hour: None,
            messages_per_day: None,
            recipients_per_message: None,
            list_unsubscribe: None,
            auto_suppress: rules
                .iter()
                .map(|(r, on)| (r.to_string(), *on))
                .collect::<BTreeMap<_, _>>(),
        },
    )
}

/// The suppressed digests of `tenant` in the snapshot.
fn suppressed_in_snapshot(h: &Harness, tenant: &str) -> Vec<String> {
    h.snapshot()
        .tenants
        .into_iter()
        .find(|t| t.tenant == tenant)
        .expect("tenant in the snapshot")
        .suppressed
}

/// The number of `tenant`'s suppression candidates in the store.
fn candidates(h: &Harness, tenant: &str) -> usize {
    h.service
        .store()
        .keys_with_prefix(TreeName::SuppressionCandidates, &suppression_prefix(tenant))
        .expect("keys")
        .len()
}

/// Stores a candidate as if its first failure had come at `first_at`.
fn seed_candidate(h: &Harness, tenant: &str, address: &str, source: &str, first_at: u64) {
    let store = h.service.store();
    let key = store.suppression_key(tenant, address).expect("key");
    let mut batch = Batch::new();
    batch
        .put_tenant(
            TreeName::SuppressionCandidates,
            tenant,
            key,
            &SuppressionCandidate {
                address: address.into(),
                rule: "bad_domain".into(),
                first_source: source.into(),
                first_at,
            },
        )
        .expect("put");
    store.commit(batch).expect("commit");
}

fn detail(h: &Harness, action: &str) -> String {
    h.last_audit(action).detail.expect("detail")
}

fn rates(crossed: &str) -> ReputationRates {
    ReputationRates {
        window_secs: 86_400,
        accepted: 500,
        hard_bounces: 31,
        complaints: 2,
        crossed: crossed.into(),
        threshold_ppm: 50_000,
    }
}

fn pause(h: &Harness, tenant: &str) -> Result<Response, ErrorBody> {
    h.call(
        &MTA,
        None,
        None,
        Request::ApiReputationPause {
            tenant: tenant.into(),
            rates: rates("bounce_rate"),
        },
    )
}

#[test]
fn invalid_recipients_and_complaints_are_suppressed_with_reason_and_source() {
    let h = Harness::new();
    let (admin, _) = h.admin();
    h.add_tenant(&admin, "acme");
    let version = h.snapshot().version;

    for (address, rule, source) in [
        (
            "Gone@Remote.Example",
            "invalid_recipient",
            "01JEQ7ZK3M8R2W5Y9C4D6F1H0T/bounced",
        ),
        (
            "angry@remote.example",
            "complaint",
            "01JEQ7ZK3M8R2W5Y9C4D6F1H0V",
        ),
    ] {
        assert_eq!(
            signal(&h, "acme", address, rule, source).expect("report"),
            Response::Done
        );
        let entry = h.last_audit("api.auto_suppress");
        assert_eq!(entry.outcome, AuditOutcome::Ok);
        assert_eq!(entry.tenant.as_deref(), Some("acme"));
        assert_eq!(entry.actor, format!("service:{}", MTA.uid));
        assert!(entry.sealed_detail.is_some(), "sealed with acme's key");
        let d = entry.detail.expect("detail");
        assert!(
            d.contains(rule) && d.contains(&address.to_lowercase()) && d.contains("suppressed"),
            "{d}"
        );
    }
    let entries = listed(&h, &admin, "acme");
    assert_eq!(entries.len(), 2);
    let angry = &entries[0];
    assert_eq!(angry.address, "angry@remote.example");
    assert_eq!(angry.added_by, "auto-suppress");
    assert_eq!(angry.reason.as_deref(), Some("complaint"));
    assert_eq!(angry.source.as_deref(), Some("01JEQ7ZK3M8R2W5Y9C4D6F1H0V"));
    assert_eq!(angry.note.as_deref(), Some("automatic: complaint"));
    let gone = &entries[1];
    assert_eq!(gone.address, "gone@remote.example");
    assert_eq!(gone.reason.as_deref(), Some("invalid_recipient"));
    assert_eq!(
        gone.source.as_deref(),
        Some("01JEQ7ZK3M8R2W5Y9C4D6F1H0T/bounced")
    );
    assert_eq!(gone.note.as_deref(), Some("automatic: invalid_recipient"));
    // The MTA refuses them from the next snapshot on.
    let s = h.snapshot();
    assert!(s.version > version);
    let digests = suppressed_in_snapshot(&h, "acme");
    for address in ["gone@remote.example", "angry@remote.example"] {
        assert!(digests.contains(&suppression_hash(address)), "{address}");
    }

    // Reported again: done, nothing changes, the audit says so.
    let before = h.snapshot().version;
    assert_eq!(
        signal(
            &h,
            "acme",
            "gone@remote.example",
            "invalid_recipient",
            "other/bounced"
        )
        .expect("again"),
        Response::Done
    );
    assert!(detail(&h, "api.auto_suppress").contains("already suppressed"));
    assert_eq!(listed(&h, &admin, "acme"), entries);
    assert_eq!(h.snapshot().version, before);

    // An operator's own entry has no reason or source.
    h.op(
        &admin,
        Request::SuppressionAdd {
            tenant: "acme".into(),
            address: "manual@remote.example".into(),
            note: None,
        },
    )
    .expect("suppression.add");
    let manual = listed(&h, &admin, "acme")
        .into_iter()
        .find(|e| e.address == "manual@remote.example")
        .expect("listed");
    assert_eq!((manual.reason, manual.source), (None, None));
    assert_eq!(manual.added_by, "operator:admin");
}

#[test]
fn reports_are_checked_and_only_the_mta_may_send_them() {
    let h = Harness::new();
    let (admin, _) = h.admin();
    h.add_tenant(&admin, "acme");
    for (rule, address, source) in [
        ("unsubscribe", "a@remote.example", "m1"),
        ("mailbox_full", "a@remote.example", "m1"),
        ("", "a@remote.example", "m1"),
        ("complaint", "not an address", "m1"),
        ("complaint", "a@remote.example", ""),
        ("complaint", "a@remote.example", "m1\r\nX: y"),
    ] {
        let r = signal(&h, "acme", address, rule, source);
        assert_eq!(
            code_of(&r),
            Some(ErrorCode::Invalid),
            "{rule} {address} {source:?}"
        );
    }
    let e = signal(&h, "acme", "a@remote.example", "mailbox_full", "m1").expect_err("invalid");
    for rule in ["invalid_recipient", "bad_domain", "complaint"] {
        assert!(e.message.contains(rule), "{}", e.message);
    }
    assert_eq!(
        code_of(&signal(&h, "nosuch", "a@remote.example", "complaint", "m1")),
        Some(ErrorCode::NotFound)
    );
    assert!(listed(&h, &admin, "acme").is_empty());

    // Operators and other peers are refused, and the refusals are audited.
    let support = h.operator(&admin, "support", Role::Support);
    for token in [admin.as_str(), support.as_str()] {
        for request in [
            Request::ApiAutoSuppress {
                tenant: "acme".into(),
                address: "a@remote.example".into(),
                rule: "complaint".into(),
                source: "m1".into(),
            },
            Request::ApiReputationPause {
                tenant: "acme".into(),
                rates: rates("bounce_rate"),
            },
        ] {
            let op = request.op();
            assert_eq!(
                code_of(&h.op(token, request)),
                Some(ErrorCode::Forbidden),
                "{op}"
            );
            let entry = h.last_audit(op);
            assert_eq!(entry.outcome, AuditOutcome::Denied);
            assert_eq!(entry.tenant.as_deref(), Some("acme"));
        }
    }
    let as_peer = h.call(
        &USER,
        None,
        None,
        Request::ApiAutoSuppress {
            tenant: "acme".into(),
            address: "a@remote.example".into(),
            rule: "complaint".into(),
            source: "m1".into(),
        },
    );
    assert_eq!(code_of(&as_peer), Some(ErrorCode::Unauthenticated));
    let as_peer = h.call(
        &USER,
        None,
        None,
        Request::ApiReputationPause {
            tenant: "acme".into(),
            rates: rates("bounce_rate"),
        },
    );
    assert_eq!(code_of(&as_peer), Some(ErrorCode::Unauthenticated));
    assert!(listed(&h, &admin, "acme").is_empty());
    assert!(show(&h, &admin, "acme").sending_paused.is_none());
}

#[test]
fn a_tenant_may_opt_out_of_each_rule() {
    let h = Harness::new();
    let (admin, _) = h.admin();
    h.add_tenant(&admin, "acme");
    let t = show(&h, &admin, "acme");
    for rule in way2mail_wire::protocol::AUTO_SUPPRESS_RULES {
        assert_eq!(
            t.auto_suppress.get(rule),
            Some(true),
            "{rule} on by default"
        );
    }

    // Unknown rules are refused, naming the rules there are.
    let e = update_rules(&h, &admin, "acme", &[("opened", false)]).expect_err("invalid");
    assert_eq!(e.code, ErrorCode::Invalid);
    for rule in way2mail_wire::protocol::AUTO_SUPPRESS_RULES {
        assert!(e.message.contains(rule), "{}", e.message);
    }
    let updated = match update_rules(
        &h,
        &admin,
        "acme",
        &[
            ("complaint", false),
            ("unsubscribe", false),
            ("bad_domain", false),
            ("invalid_recipient", false),
        ],
    ) {
        Ok(Response::Tenant(t)) => t,
        other => panic!("tenant.update: {other:?}"),
    };
    assert!(!updated.auto_suppress.complaint && !updated.auto_suppress.unsubscribe);
    let d = detail(&h, "tenant.update");
    assert!(
        d.contains("auto_suppress.complaint") && d.contains("auto_suppress.unsubscribe"),
        "{d}"
    );
    assert_eq!(
        show(&h, &admin, "acme").auto_suppress,
        updated.auto_suppress
    );

    for rule in ["invalid_recipient", "bad_domain", "complaint"] {
        for _ in 0..2 {
            assert_eq!(
                signal(&h, "acme", "x@remote.example", rule, &format!("m-{rule}")).expect("report"),
                Response::Done
            );
        }
        let d = detail(&h, "api.auto_suppress");
        assert!(d.contains("turned the") && d.contains(rule), "{d}");
    }
    let unsubscribed = h.call(
        &MTA,
        None,
        None,
        Request::ApiUnsubscribe {
            tenant: "acme".into(),
            address: "x@remote.example".into(),
        },
    );
    assert_eq!(unsubscribed.expect("unsubscribe"), Response::Done);
    assert!(detail(&h, "api.unsubscribe").contains("not suppressed"));
    assert!(listed(&h, &admin, "acme").is_empty());
    assert_eq!(
        candidates(&h, "acme"),
        0,
        "an opted-out bad_domain keeps nothing"
    );

    // Back on: the next report counts.
    update_rules(
        &h,
        &admin,
        "acme",
        &[("complaint", true), ("unsubscribe", true)],
    )
    .expect("on again");
    signal(&h, "acme", "x@remote.example", "complaint", "m9").expect("report");
    h.call(
        &MTA,
        None,
        None,
        Request::ApiUnsubscribe {
            tenant: "acme".into(),
            address: "y@remote.example".into(),
        },
    )
    .expect("unsubscribe");
    let entries = listed(&h, &admin, "acme");
    let reasons: Vec<_> = entries
        .iter()
        .map(|e| (e.address.as_str(), e.reason.as_deref(), e.added_by.as_str()))
        .collect();
    assert_eq!(
        reasons,
        [
            ("x@remote.example", Some("complaint"), "auto-suppress"),
            ("y@remote.example", Some("unsubscribe"), "unsubscribe"),
        ]
    );
}

#[test]
fn bad_domain_needs_a_confirming_second_failure() {
    let h = Harness::new();
    let (admin, _) = h.admin();
    h.add_tenant(&admin, "acme");
    h.add_tenant(&admin, "globex");
    let version = h.snapshot().version;

    // The first failure is only a candidate; the same report again changes nothing.
    for _ in 0..2 {
        assert_eq!(
            signal(&h, "acme", "u@typo.example", "bad_domain", "m1/bounced").expect("first"),
            Response::Done
        );
        assert!(listed(&h, &admin, "acme").is_empty());
        assert_eq!(candidates(&h, "acme"), 1);
    }
    assert!(detail(&h, "api.auto_suppress").contains("reported again"));
    let d = h.audit();
    assert!(d.iter().any(|e| e
        .detail
        .as_deref()
        .is_some_and(|d| d.contains("first failure"))));
    assert_eq!(h.snapshot().version, version, "a candidate is not policy");
    assert!(suppressed_in_snapshot(&h, "acme").is_empty());
    // Another tenant's failure for the same address is its own.
    signal(&h, "globex", "u@typo.example", "bad_domain", "m2/bounced").expect("globex");
    assert!(listed(&h, &admin, "globex").is_empty());
    assert_eq!(candidates(&h, "globex"), 1);

    // A second failure of another message suppresses it, with the second source.
    signal(&h, "acme", "U@typo.example", "bad_domain", "m3/bounced").expect("second");
    let entries = listed(&h, &admin, "acme");
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].address, "u@typo.example");
    assert_eq!(entries[0].reason.as_deref(), Some("bad_domain"));
    assert_eq!(entries[0].source.as_deref(), Some("m3/bounced"));
    assert_eq!(entries[0].added_by, "auto-suppress");
    let note = entries[0].note.as_deref().expect("note");
    assert!(
        note.starts_with("automatic: bad_domain") && note.contains("m1/bounced"),
        "{note}"
    );
    assert_eq!(candidates(&h, "acme"), 0, "the candidate is gone");
    assert_eq!(
        suppressed_in_snapshot(&h, "acme"),
        vec![suppression_hash("u@typo.example")]
    );
    assert!(listed(&h, &admin, "globex").is_empty());
    // Further reports: done, already suppressed.
    signal(&h, "acme", "u@typo.example", "bad_domain", "m4/bounced").expect("again");
    assert!(detail(&h, "api.auto_suppress").contains("already suppressed"));
    assert_eq!(listed(&h, &admin, "acme").len(), 1);

    // The same event again, an hour after the first, confirms it too.
    seed_candidate(&h, "acme", "v@typo.example", "m5/bounced", now() - 3_601);
    signal(&h, "acme", "v@typo.example", "bad_domain", "m5/bounced").expect("an hour on");
    let v = listed(&h, &admin, "acme")
        .into_iter()
        .find(|e| e.address == "v@typo.example")
        .expect("suppressed");
    assert_eq!(v.source.as_deref(), Some("m5/bounced"));

    // A first failure older than 30 days counts as never seen: a new first.
    seed_candidate(
        &h,
        "acme",
        "w@typo.example",
        "m6/bounced",
        now() - 31 * 86_400,
    );
    signal(&h, "acme", "w@typo.example", "bad_domain", "m7/bounced").expect("stale");
    assert!(listed(&h, &admin, "acme")
        .iter()
        .all(|e| e.address != "w@typo.example"));
    assert_eq!(candidates(&h, "acme"), 1);
    signal(&h, "acme", "w@typo.example", "bad_domain", "m8/bounced").expect("second");
    let w = listed(&h, &admin, "acme")
        .into_iter()
        .find(|e| e.address == "w@typo.example")
        .expect("suppressed at the second of the new run");
    assert!(
        w.note.as_deref().is_some_and(|n| n.contains("m7/bounced")),
        "{w:?}"
    );

    // Another rule's entry takes the address off the candidates.
    signal(
        &h,
        "globex",
        "u@typo.example",
        "invalid_recipient",
        "m9/bounced",
    )
    .expect("globex");
    assert_eq!(candidates(&h, "globex"), 0);
    assert_eq!(listed(&h, &admin, "globex").len(), 1);

    // Unconfirmed candidates are in the tenant's report, and the sweep drops
    // them once too old.
    seed_candidate(&h, "acme", "old@typo.example", "m10", now() - 31 * 86_400);
    let report = match h.op(
        &admin,
        Request::TenantReport {
            tenant: "acme".into(),
        },
    ) {
        Ok(Response::TenantReport(r)) => r,
        other => panic!("tenant.report: {other:?}"),
    };
    let held = report
        .categories
        .iter()
        .find(|c| c.category.starts_with("suppression candidates"))
        .expect("in the report");
    assert_eq!(held.count, 1);
    h.service.sweep_scheduled().expect("sweep");
    assert_eq!(candidates(&h, "acme"), 0);
}

#[test]
fn suppression_reason_and_source_are_in_the_export() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("mta.sock");
    let mut s = settings(Duration::from_secs(3600));
    s.mta.admin_socket = Some(socket.clone());
    let h = Harness::with_settings(s);
    let (admin, _) = h.admin();
    h.add_tenant(&admin, "acme");
    signal(
        &h,
        "acme",
        "gone@remote.example",
        "invalid_recipient",
        "m1/bounced",
    )
    .expect("report");
    h.op(
        &admin,
        Request::SuppressionAdd {
            tenant: "acme".into(),
            address: "manual@remote.example".into(),
            note: Some("asked by phone".into()),
        },
    )
    .expect("add");
    serve_export(&socket, "acme", Vec::new());
    let mut sink = Sink::default();
    let manifest = match h.service.handle_stream(
        &USER,
        RequestEnvelope {
            v: VERSION,
            id: 1,
            token: Some(admin.clone()),
            reason: None,
            request: Request::TenantExport {
                tenant: "acme".into(),
            },
        },
        &mut sink,
    ) {
        Ok(Response::TenantExported(m)) => m,
        other => panic!("tenant.export: {other:?}"),
    };
    assert_eq!(manifest.suppression_entries, 2);
    let files = untar(&sink.0);
    let list: serde_json::Value =
        serde_json::from_str(&files["acme-export/suppression.json"]).expect("json");
    assert_eq!(list[0]["address"], "gone@remote.example");
    assert_eq!(list[0]["reason"], "invalid_recipient");
    assert_eq!(list[0]["source"], "m1/bounced");
    assert_eq!(list[0]["added_by"], "auto-suppress");
    assert_eq!(list[1]["address"], "manual@remote.example");
    assert_eq!(list[1]["reason"], serde_json::Value::Null);
    assert_eq!(list[1]["source"], serde_json::Value::Null);
    let account: serde_json::Value =
        serde_json::from_str(&files["acme-export/account.json"]).expect("json");
    assert_eq!(account["auto_suppress"]["complaint"], true);
    assert_eq!(account["sending_paused"], serde_json::Value::Null);
}

#[test]
fn a_pause_holds_the_mail_tells_operators_and_contact_once_and_is_lifted() {
    let mta = FakeMta::start(Mode::Accept);
    let h = Harness::notifying_through(mta.addr, Duration::from_secs(5));
    let (admin, _) = h.admin();
    h.add_tenant(&admin, "acme");
    let paused_in_snapshot = |h: &Harness| {
        h.snapshot()
            .tenants
            .into_iter()
            .find(|t| t.tenant == "acme")
            .expect("acme")
            .sending_paused
    };
    assert!(!paused_in_snapshot(&h));
    let version = h.snapshot().version;

    assert_eq!(pause(&h, "acme").expect("pause"), Response::Done);
    assert!(paused_in_snapshot(&h));
    assert!(h.snapshot().version > version);
    let t = show(&h, &admin, "acme");
    let p = t.sending_paused.expect("paused");
    assert_eq!(p.rates, rates("bounce_rate"));
    assert!(p.since + 60 >= now());
    assert_eq!(t.status, way2mail_wire::protocol::TenantStatus::Active);

    // Two letters: the operators (`[notify] from`) and the tenant's contact.
    let letters = mta.messages();
    let mut to: Vec<&str> = letters.iter().map(|(to, _)| to.as_str()).collect();
    to.sort();
    assert_eq!(to, ["ops@acme.example", "security@way2mail.test"]);
    let (_, tenant_letter) = letters
        .iter()
        .find(|(to, _)| to == "ops@acme.example")
        .expect("the contact's");
    for part in [
        "Subject: Sending of acme paused: bounce rate 6.20% over 5.00%",
        "Threshold crossed:  bounce rate",
        "Bounce rate:        6.20% (31 hard bounces)",
        "Complaint rate:     0.40% (2 complaints)",
        "Accepted:           500 recipients in 24h",
        "queued",
        "way2mail tenant resume-sending acme --reason TEXT",
    ] {
        assert!(
            tenant_letter.contains(part),
            "{part:?} not in\n{tenant_letter}"
        );
    }
    let (_, operators_letter) = letters
        .iter()
        .find(|(to, _)| to == "security@way2mail.test")
        .expect("the operators'");
    assert!(operators_letter.contains("way2mail tenant deliverability acme"));
    let entry = h.last_audit("api.reputation_pause");
    assert_eq!(entry.outcome, AuditOutcome::Ok);
    assert_eq!(entry.tenant.as_deref(), Some("acme"));
    let d = entry.detail.expect("detail");
    for part in [
        "sending paused",
        "bounce rate 6.20% over the 5.00% threshold",
        "31 hard bounces, 2 complaints of 500 accepted",
        "letter to the operators",
        "letter to the contact",
        "handed to the MTA",
    ] {
        assert!(d.contains(part), "{part:?} not in {d}");
    }

    // Reported again (the MTA saw the rates again): nothing more, no letter.
    let version = h.snapshot().version;
    assert_eq!(pause(&h, "acme").expect("again"), Response::Done);
    assert_eq!(mta.messages().len(), 2, "no second letter");
    assert_eq!(h.snapshot().version, version);
    assert!(detail(&h, "api.reputation_pause").contains("already"));
    assert_eq!(show(&h, &admin, "acme").sending_paused, Some(p.clone()));
    // A threshold that is none is refused.
    let bad = h.call(
        &MTA,
        None,
        None,
        Request::ApiReputationPause {
            tenant: "acme".into(),
            rates: rates("open_rate"),
        },
    );
    assert_eq!(code_of(&bad), Some(ErrorCode::Invalid));

    // Support may not lift it; an operator may, and it is audited with the reason.
    let support = h.operator(&admin, "support", Role::Support);
    let refused = h.call(
        &USER,
        Some(&support),
        Some("customer asked"),
        Request::TenantResumeSending {
            tenant: "acme".into(),
        },
    );
    assert_eq!(code_of(&refused), Some(ErrorCode::Forbidden));
    let operator = h.operator(&admin, "oper", Role::Operator);
    let resumed = h.call(
        &USER,
        Some(&operator),
        Some("ticket 4711: list cleaned"),
        Request::TenantResumeSending {
            tenant: "acme".into(),
        },
    );
    match resumed {
        Ok(Response::Tenant(t)) => assert!(t.sending_paused.is_none()),
        other => panic!("tenant.resume_sending: {other:?}"),
    }
    assert!(!paused_in_snapshot(&h));
    assert!(h.snapshot().version > version);
    let entry = h.last_audit("tenant.resume_sending");
    assert_eq!(entry.outcome, AuditOutcome::Ok);
    assert_eq!(entry.actor, "operator:oper");
    assert_eq!(entry.reason.as_deref(), Some("ticket 4711: list cleaned"));
    assert_eq!(entry.tenant.as_deref(), Some("acme"));
    let d = entry.detail.expect("detail");
    assert!(
        d.contains("sending resumed") && d.contains("bounce rate"),
        "{d}"
    );
    // Not paused: a clear conflict.
    let again = h.op(
        &admin,
        Request::TenantResumeSending {
            tenant: "acme".into(),
        },
    );
    let e = again.expect_err("not paused");
    assert_eq!(e.code, ErrorCode::Conflict);
    assert!(e.message.contains("not paused"), "{}", e.message);

    // Paused again later: letters again.
    pause(&h, "acme").expect("pause");
    assert_eq!(mta.messages().len(), 4);
    assert!(paused_in_snapshot(&h));
}

#[test]
fn a_contact_without_an_address_still_pauses_and_the_operators_are_told() {
    let mta = FakeMta::start(Mode::Accept);
    let h = Harness::notifying_through(mta.addr, Duration::from_secs(5));
    let (admin, _) = h.admin();
    h.add_tenant(&admin, "acme");
    h.set_contact(&admin, "acme", "Jane Doe, phone 555");
    pause(&h, "acme").expect("pause");
    assert!(show(&h, &admin, "acme").sending_paused.is_some());
    let letters = mta.messages();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].0, "security@way2mail.test");
    let d = detail(&h, "api.reputation_pause");
    assert!(
        d.contains("contact were not told") && d.contains("--contact"),
        "{d}"
    );
    assert_eq!(
        code_of(&pause(&h, "nosuch")),
        Some(ErrorCode::NotFound),
        "an unknown tenant"
    );
}

#[test]
fn erasure_removes_suppression_entries_and_candidates() {
    let h = Harness::new();
    let (admin, _) = h.admin();
    h.add_tenant(&admin, "acme");
    h.add_tenant(&admin, "globex");
    signal(&h, "acme", "gone@remote.example", "invalid_recipient", "m1").expect("entry");
    signal(&h, "acme", "u@typo.example", "bad_domain", "m2").expect("candidate");
    signal(&h, "globex", "u@typo.example", "bad_domain", "m3").expect("candidate");
    assert_eq!(candidates(&h, "acme"), 1);
    let receipt = match h.op(
        &admin,
        Request::TenantErase {
            tenant: "acme".into(),
            confirm: "acme".into(),
        },
    ) {
        Ok(Response::ErasureReceipt(r)) => r,
        other => panic!("tenant.erase: {other:?}"),
    };
    let count = |prefix: &str| {
        receipt
            .removed
            .iter()
            .find(|i| i.category.starts_with(prefix))
            .map(|i| (i.count, i.held_by.clone()))
    };
    assert_eq!(
        count("suppression list entries"),
        Some((1, "control".to_string()))
    );
    assert_eq!(
        count("suppression candidates"),
        Some((1, "control".to_string()))
    );
    let store = h.service.store();
    for tree in [TreeName::Suppression, TreeName::SuppressionCandidates] {
        assert!(
            store
                .keys_with_prefix(tree, &suppression_prefix("acme"))
                .expect("keys")
                .is_empty(),
            "{tree:?}"
        );
    }
    assert_eq!(candidates(&h, "globex"), 1, "globex keeps its own");
    // The MTA's later reports for the erased tenant find nothing.
    assert_eq!(
        code_of(&signal(&h, "acme", "x@remote.example", "complaint", "m4")),
        Some(ErrorCode::NotFound)
    );
}

#[test]
fn deliverability_without_the_mta_is_a_clear_error() {
    let h = Harness::new();
    let (admin, _) = h.admin();
    h.add_tenant(&admin, "acme");
    let e = h
        .op(
            &admin,
            Request::TenantDeliverability {
                tenant: "acme".into(),
                since: None,
            },
        )
        .expect_err("no MTA");
    assert_eq!(e.code, ErrorCode::Unavailable);
    assert!(e.message.contains("MTA"), "{}", e.message);
    let entry = h.last_audit("tenant.deliverability");
    assert_eq!(entry.outcome, AuditOutcome::Failed);
    assert_eq!(entry.tenant.as_deref(), Some("acme"));

    // The same as a queue command says.
    let queue = h
        .op(
            &admin,
            Request::QueueSummary {
                filter: Default::default(),
            },
        )
        .expect_err("no MTA");
    assert_eq!((queue.code, queue.message), (e.code, e.message));

    for (tenant, since, code) in [
        ("nosuch", None, ErrorCode::NotFound),
        ("Not A Tenant", None, ErrorCode::Invalid),
        ("acme", Some(now() + 3_600), ErrorCode::Invalid),
    ] {
        let r = h.op(
            &admin,
            Request::TenantDeliverability {
                tenant: tenant.into(),
                since,
            },
        );
        assert_eq!(code_of(&r), Some(code), "{tenant} {since:?}");
    }
    // Auditors may read it; support with a reason; the MTA's user may not.
    let auditor = h.operator(&admin, "auditor", Role::Auditor);
    let r = h.op(
        &auditor,
        Request::TenantDeliverability {
            tenant: "acme".into(),
            since: None,
        },
    );
    assert_eq!(code_of(&r), Some(ErrorCode::Unavailable));
    let support = h.operator(&admin, "support", Role::Support);
    let r = h.op(
        &support,
        Request::TenantDeliverability {
            tenant: "acme".into(),
            since: None,
        },
    );
    assert_eq!(code_of(&r), Some(ErrorCode::ReasonRequired));
    let r = h.call(
        &MTA,
        None,
        None,
        Request::TenantDeliverability {
            tenant: "acme".into(),
            since: None,
        },
    );
    assert_eq!(code_of(&r), Some(ErrorCode::Unauthenticated));
}

#[test]
fn deliverability_comes_from_the_mta_with_the_suppressions_added() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("mta.sock");
    let mut s = settings(Duration::from_secs(3600));
    s.mta.admin_socket = Some(socket.clone());
    let h = Harness::with_settings(s);
    let (admin, _) = h.admin();
    h.add_tenant(&admin, "acme");
    signal(&h, "acme", "gone@remote.example", "invalid_recipient", "m1").expect("entry");
    signal(&h, "acme", "angry@remote.example", "complaint", "m2").expect("entry");
    let since = now() - 86_400;
    let report = DeliverabilityReport {
        tenant: "acme".into(),
        since_ms: since * 1000,
        until_ms: now() * 1000,
        volume: 100,
        delivered: 90,
        deferred: 5,
        bounced: 6,
        expired: 1,
        bounced_by_category: [("invalid_recipient".to_string(), 6u64)]
            .into_iter()
            .collect(),
        async_bounced: 0,
        complaints: 1,
        unsubscribes: 0,
        suppressed: 2,
        suppressions_added: 0,
        domains: vec![DomainOutcomes {
            domain: "remote.example".into(),
            volume: 100,
            delivered: 90,
            deferred: 5,
            bounced: 6,
            complaints: 1,
        }],
    };
    serve_one(
        &socket,
        move |op| {
            assert_eq!(
                *op,
                AdminOp::Deliverability {
                    tenant: "acme".into(),
                    since_ms: since * 1000,
                }
            );
        },
        AdminResult::Deliverability(report.clone()),
    );
    let answer = h.op(
        &admin,
        Request::TenantDeliverability {
            tenant: "acme".into(),
            since: Some(since),
        },
    );
    let got = match answer {
        Ok(Response::Deliverability(r)) => r,
        other => panic!("tenant.deliverability: {other:?}"),
    };
    assert_eq!(
        got.suppressions_added, 2,
        "control counts its own additions"
    );
    assert_eq!(
        DeliverabilityReport {
            suppressions_added: 0,
            ..got
        },
        report
    );
    let entry = h.last_audit("tenant.deliverability");
    assert_eq!(entry.outcome, AuditOutcome::Ok);
    assert_eq!(entry.tenant.as_deref(), Some("acme"));
    let d = entry.detail.expect("detail");
    assert!(
        d.contains("100 recipients") && d.contains("2 suppressions added"),
        "{d}"
    );
}

fn add_domain(h: &Harness, token: &str, tenant: &str, domain: &str) {
    match h.op(
        token,
        Request::DomainAdd {
            tenant: tenant.into(),
            domain: domain.into(),
        },
    ) {
        Ok(Response::Domains { .. }) => {}
        other => panic!("domain.add: {other:?}"),
    }
}

fn dmarc(domain: &str, since: Option<u64>) -> Request {
    Request::DomainDmarc {
        domain: domain.into(),
        since,
    }
}

#[test]
fn dmarc_without_the_mta_is_a_clear_error() {
    let h = Harness::new();
    let (admin, _) = h.admin();
    h.add_tenant(&admin, "acme");
    add_domain(&h, &admin, "acme", "acme.example");
    let e = h
        .op(&admin, dmarc("acme.example", None))
        .expect_err("no MTA");
    assert_eq!(e.code, ErrorCode::Unavailable);
    assert!(e.message.contains("MTA"), "{}", e.message);
    let entry = h.last_audit("domain.dmarc");
    assert_eq!(entry.outcome, AuditOutcome::Failed);
    assert_eq!(
        entry.tenant.as_deref(),
        Some("acme"),
        "under the domain's tenant"
    );

    // The same as tenant.deliverability says.
    let deliverability = h
        .op(
            &admin,
            Request::TenantDeliverability {
                tenant: "acme".into(),
                since: None,
            },
        )
        .expect_err("no MTA");
    assert_eq!(
        (deliverability.code, deliverability.message),
        (e.code, e.message)
    );

    for (domain, since, code) in [
        // Names are normalized as for the other domain.* requests.
        ("ACME.example.", None, ErrorCode::Unavailable),
        ("nosuch.example", None, ErrorCode::NotFound),
        ("not a domain", None, ErrorCode::Invalid),
        ("acme.example", Some(now() + 3_600), ErrorCode::Invalid),
    ] {
        let r = h.op(&admin, dmarc(domain, since));
        assert_eq!(code_of(&r), Some(code), "{domain} {since:?}");
        let entry = h.last_audit("domain.dmarc");
        assert_eq!(entry.outcome, AuditOutcome::Failed, "{domain}");
    }
    let r = h.op(&admin, dmarc("nosuch.example", None));
    assert!(
        r.unwrap_err().message.contains("is not registered"),
        "the same words as domain.show"
    );
    // Auditors may read it; support with a reason; the MTA's user may not.
    let auditor = h.operator(&admin, "auditor", Role::Auditor);
    let r = h.op(&auditor, dmarc("acme.example", None));
    assert_eq!(code_of(&r), Some(ErrorCode::Unavailable));
    let support = h.operator(&admin, "support", Role::Support);
    let r = h.op(&support, dmarc("acme.example", None));
    assert_eq!(code_of(&r), Some(ErrorCode::ReasonRequired));
    let r = h.call(
        &USER,
        Some(&support),
        Some("ticket 7"),
        dmarc("acme.example", None),
    );
    assert_eq!(code_of(&r), Some(ErrorCode::Unavailable));
    let r = h.call(&MTA, None, None, dmarc("acme.example", None));
    assert_eq!(code_of(&r), Some(ErrorCode::Unauthenticated));
}

#[test]
fn dmarc_comes_from_the_mta_audited_under_the_tenant() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("mta.sock");
    let mut s = settings(Duration::from_secs(3600));
    s.mta.admin_socket = Some(socket.clone());
    let h = Harness::with_settings(s);
    let (admin, _) = h.admin();
    h.add_tenant(&admin, "acme");
    add_domain(&h, &admin, "acme", "acme.example");
    let since = now() - 7 * 86_400;
    let summary = DmarcSummary {
        domain: "acme.example".into(),
        since_ms: since * 1000,
        until_ms: now() * 1000,
        reports: 12,
        duplicate_reports: 1,
        published_policy: Some("none".into()),
        reporters: vec![DmarcReporter {
            org_name: "google.com".into(),
            reports: 12,
            messages: 1200,
        }],
        other_reporters: 0,
        messages: 1200,
        passing: 1150,
        failing: 50,
        sources: vec![DmarcSource {
            ip: "192.0.2.25".into(),
            messages: 1200,
            dkim_aligned: 1150,
            spf_aligned: 1100,
            passing: 1150,
            none: 1200,
            quarantine: 0,
            reject: 0,
        }],
        other_sources: DmarcSource::default(),
    };
    serve_one(
        &socket,
        move |op| {
            assert_eq!(
                *op,
                AdminOp::Dmarc {
                    tenant: "acme".into(),
                    domain: "acme.example".into(),
                    since_ms: since * 1000,
                }
            );
        },
        AdminResult::Dmarc(summary.clone()),
    );
    let answer = h.op(&admin, dmarc("Acme.Example", Some(since)));
    match answer {
        Ok(Response::Dmarc(got)) => assert_eq!(got, summary),
        other => panic!("domain.dmarc: {other:?}"),
    }
    let entry = h.last_audit("domain.dmarc");
    assert_eq!(entry.outcome, AuditOutcome::Ok);
    assert_eq!(entry.tenant.as_deref(), Some("acme"));
    let d = entry.detail.expect("detail");
    assert!(
        d.starts_with("dmarc of acme.example since ")
            && d.ends_with(": 12 reports, 1200 messages, 50 failing"),
        "{d}"
    );
}
