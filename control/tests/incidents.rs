//! The incident register at the service: ids, roles, the closed-incident refusals,
//! updates audited old → new, and notifications handed to a small SMTP server on
//! loopback (accepting, refusing with 554, silent, or absent), each attempt recorded
//! in the incident and in the audit log under its tenant. The network exchange runs
//! outside the writer lock: other requests go on while an MTA stalls.

mod support;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::smtp::{FakeMta, Mode};
use support::{code_of, Harness, USER};
use way2mail_wire::protocol::{
    AuditOutcome, ErrorCode, IncidentInfo, Notification, NotificationOutcome, Request, Response,
    Role,
};

fn harness(server: SocketAddr, timeout: Duration) -> Harness {
    Harness::notifying_through(server, timeout)
}

fn open(h: &Harness, token: &str, title: &str) -> IncidentInfo {
    match h.op(
        token,
        Request::IncidentOpen {
            title: title.into(),
            nature: "A backup of the delivery log was readable\r\nfrom the internet".into(),
            data_affected: "Recipient addresses and subjects".into(),
            consequences: "Targeted phishing".into(),
            measures: "Access closed; keys rotated".into(),
            detected_at: None,
        },
    ) {
        Ok(Response::Incident(i)) => i,
        other => panic!("incident.open: {other:?}"),
    }
}

fn add(h: &Harness, token: &str, id: &str, tenant: &str) -> Result<Response, String> {
    h.op(
        token,
        Request::IncidentAddTenant {
            id: id.into(),
            tenant: tenant.into(),
        },
    )
    .map_err(|e| format!("{:?}: {}", e.code, e.message))
}

fn notify(h: &Harness, token: &str, id: &str, again: bool) -> (IncidentInfo, Vec<Notification>) {
    match h.op(
        token,
        Request::IncidentNotify {
            id: id.into(),
            again,
        },
    ) {
        Ok(Response::IncidentNotified { incident, sent }) => (incident, sent),
        other => panic!("incident.notify: {other:?}"),
    }
}

#[test]
fn ids_are_sequential_and_the_register_lists_and_shows() {
    let mta = FakeMta::start(Mode::Accept);
    let h = harness(mta.addr, Duration::from_secs(5));
    let (admin, _) = h.admin();
    let year = way2mail_smtp::date::rfc3339(support::now())[..4].to_string();
    let first = open(&h, &admin, "First");
    let second = open(&h, &admin, "Second");
    assert_eq!(first.id, format!("INC-{year}-0001"));
    assert_eq!(second.id, format!("INC-{year}-0002"));
    assert_eq!(first.opened_by, "operator:admin");
    assert_eq!(
        first.nature,
        "A backup of the delivery log was readable\nfrom the internet"
    );
    assert!(first.detected_at <= first.opened_at && first.closed_at.is_none());
    match h.op(&admin, Request::IncidentList) {
        Ok(Response::Incidents { incidents }) => {
            let ids: Vec<_> = incidents.iter().map(|i| i.id.as_str()).collect();
            assert_eq!(ids, [first.id.as_str(), second.id.as_str()]);
        }
        other => panic!("{other:?}"),
    }
    // Ids are accepted in any case and with spaces around.
    match h.op(
        &admin,
        Request::IncidentShow {
            id: format!(" {} ", second.id.to_lowercase()),
        },
    ) {
        Ok(Response::Incident(i)) => assert_eq!(i, second),
        other => panic!("{other:?}"),
    }
    let r = h.op(
        &admin,
        Request::IncidentShow {
            id: format!("INC-{year}-0099"),
        },
    );
    assert_eq!(code_of(&r), Some(ErrorCode::NotFound));
    let r = h.op(&admin, Request::IncidentShow { id: "42".into() });
    assert_eq!(code_of(&r), Some(ErrorCode::Invalid));

    // Bad input: a title with a line break (it becomes the Subject), empty fields,
    // a detection time in the future.
    for (title, nature, detected_at) in [
        ("Leak\r\nBcc: someone@example.net", "n", None),
        ("", "n", None),
        ("t", "  ", None),
        ("t", "n", Some(support::now() + 3600)),
    ] {
        let r = h.op(
            &admin,
            Request::IncidentOpen {
                title: title.into(),
                nature: nature.into(),
                data_affected: "d".into(),
                consequences: "c".into(),
                measures: "m".into(),
                detected_at,
            },
        );
        assert_eq!(code_of(&r), Some(ErrorCode::Invalid), "{title:?} {r:?}");
    }
    // The counter did not move for refused requests.
    assert_eq!(open(&h, &admin, "Third").id, format!("INC-{year}-0003"));
}

#[test]
fn roles_keep_the_register_to_admins_and_auditors() {
    let mta = FakeMta::start(Mode::Accept);
    let h = harness(mta.addr, Duration::from_secs(5));
    let (admin, _) = h.admin();
    h.add_tenant(&admin, "acme");
    let incident = open(&h, &admin, "Roles");
    let operator = h.operator(&admin, "operator", Role::Operator);
    let support = h.operator(&admin, "support", Role::Support);
    let auditor = h.operator(&admin, "auditor", Role::Auditor);
    let id = incident.id.clone();
    let every = |tag: &str| {
        vec![
            Request::IncidentOpen {
                title: tag.into(),
                nature: "n".into(),
                data_affected: "d".into(),
                consequences: "c".into(),
                measures: "m".into(),
                detected_at: None,
            },
            Request::IncidentAddTenant {
                id: id.clone(),
                tenant: "acme".into(),
            },
            Request::IncidentUpdate {
                id: id.clone(),
                title: None,
                nature: None,
                data_affected: None,
                consequences: None,
                measures: Some(format!("more {tag}")),
            },
            Request::IncidentNotify {
                id: id.clone(),
                again: false,
            },
            Request::IncidentClose {
                id: id.clone(),
                resolution: "r".into(),
            },
            Request::IncidentList,
            Request::IncidentShow { id: id.clone() },
        ]
    };
    for (who, token) in [
        ("operator", &operator),
        ("support", &support),
        ("auditor", &auditor),
    ] {
        for request in every(who) {
            let op = request.op();
            let before = h.audit_head_seq();
            let r = h.op(token, request);
            let reads = matches!(op, "incident.list" | "incident.show");
            if who == "auditor" && reads {
                assert!(r.is_ok(), "{who} {op}: {r:?}");
            } else {
                assert_eq!(code_of(&r), Some(ErrorCode::Forbidden), "{who} {op}: {r:?}");
                let entry = h.audit().pop().expect("audited");
                assert_eq!(
                    (entry.seq, entry.action.as_str(), entry.outcome),
                    (before + 1, op, AuditOutcome::Denied)
                );
            }
        }
    }
    assert!(mta.messages().is_empty(), "a refused notify sent mail");
}

#[test]
fn closed_incidents_refuse_changes_and_updates_are_audited() {
    let mta = FakeMta::start(Mode::Accept);
    let h = harness(mta.addr, Duration::from_secs(5));
    let (admin, _) = h.admin();
    h.add_tenant(&admin, "acme");
    let i = open(&h, &admin, "Closing");

    assert!(add(&h, &admin, &i.id, "acme").is_ok());
    let again = add(&h, &admin, &i.id, "acme").expect_err("twice");
    assert!(again.starts_with("AlreadyExists"), "{again}");
    let ghost = add(&h, &admin, &i.id, "ghost").expect_err("unknown tenant");
    assert!(ghost.starts_with("NotFound"), "{ghost}");
    let entry = h.audit().pop().expect("entry");
    assert_eq!(entry.tenant.as_deref(), Some("ghost"));

    // Update: only what changes, old and new in the audit detail.
    let r = h.op(
        &admin,
        Request::IncidentUpdate {
            id: i.id.clone(),
            title: None,
            nature: None,
            data_affected: None,
            consequences: Some("Targeted phishing".into()),
            measures: Some("Access closed; keys rotated; customers told".into()),
        },
    );
    match r {
        Ok(Response::Incident(u)) => {
            assert_eq!(u.measures, "Access closed; keys rotated; customers told");
            assert_eq!(u.consequences, i.consequences);
        }
        other => panic!("{other:?}"),
    }
    let entry = h.audit().pop().expect("entry");
    let detail = entry.detail.expect("detail");
    let (_, diff) = detail.split_once(": ").expect("id: diff");
    let diff: serde_json::Value = serde_json::from_str(diff).expect("json");
    assert_eq!(
        diff,
        serde_json::json!({"measures": {
            "old": "Access closed; keys rotated",
            "new": "Access closed; keys rotated; customers told"
        }})
    );
    let nothing = h.op(
        &admin,
        Request::IncidentUpdate {
            id: i.id.clone(),
            title: Some("Closing".into()),
            nature: None,
            data_affected: None,
            consequences: None,
            measures: None,
        },
    );
    assert_eq!(code_of(&nothing), Some(ErrorCode::Invalid));

    let closed = match h.op(
        &admin,
        Request::IncidentClose {
            id: i.id.clone(),
            resolution: "Fixed".into(),
        },
    ) {
        Ok(Response::Incident(c)) => c,
        other => panic!("{other:?}"),
    };
    assert!(closed.closed_at.is_some());
    assert_eq!(closed.closed_by.as_deref(), Some("operator:admin"));
    assert_eq!(closed.resolution.as_deref(), Some("Fixed"));
    let detail = h.audit().pop().and_then(|e| e.detail).expect("detail");
    assert!(detail.contains("never notified: acme"), "{detail}");

    h.add_tenant(&admin, "beta");
    let r = add(&h, &admin, &i.id, "beta").expect_err("closed");
    assert!(r.starts_with("Conflict") && r.contains("closed"), "{r}");
    let r = h.op(
        &admin,
        Request::IncidentNotify {
            id: i.id.clone(),
            again: true,
        },
    );
    assert_eq!(code_of(&r), Some(ErrorCode::Conflict), "{r:?}");
    let r = h.op(
        &admin,
        Request::IncidentClose {
            id: i.id.clone(),
            resolution: "again".into(),
        },
    );
    assert_eq!(code_of(&r), Some(ErrorCode::Conflict));
    assert!(mta.messages().is_empty(), "a closed incident sent mail");
    let report = way2mail_control::audit::AuditLog::verify(h.service.store()).expect("verify");
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

#[test]
fn notifications_are_sent_recorded_and_audited_per_tenant() {
    let mta = FakeMta::start(Mode::Accept);
    let h = harness(mta.addr, Duration::from_secs(5));
    let (admin, _) = h.admin();
    h.add_tenant(&admin, "acme");
    h.add_tenant(&admin, "beta");
    h.add_tenant(&admin, "gamma");
    // gamma's contact is a person's name and number: nothing can be sent.
    h.set_contact(&admin, "gamma", "Jane Doe, +1 555 0100");
    let i = open(&h, &admin, "Notify");
    let r = h.op(
        &admin,
        Request::IncidentNotify {
            id: i.id.clone(),
            again: false,
        },
    );
    assert_eq!(code_of(&r), Some(ErrorCode::Conflict), "no tenants yet");
    for t in ["acme", "beta", "gamma"] {
        add(&h, &admin, &i.id, t).expect("add");
    }
    let before = h.audit_head_seq();
    let (incident, sent) = notify(&h, &admin, &i.id, false);
    assert_eq!(sent.len(), 3);
    assert_eq!(incident.notifications, sent);
    let by = |t: &str| sent.iter().find(|n| n.tenant == t).expect("tenant");
    for (t, n) in [("acme", 1), ("beta", 2)] {
        let n_ = by(t);
        assert_eq!(n_.outcome, NotificationOutcome::Ok);
        assert_eq!(n_.contact, format!("ops@{t}.example"));
        let queue = format!("QUEUE{n:021}");
        assert_eq!(n_.reply, format!("250 2.0.0 {queue} queued"));
        assert_eq!(n_.queue_id.as_deref(), Some(queue.as_str()));
        assert_eq!(n_.sent_by, "operator:admin");
        assert!(
            n_.message_id.ends_with("@way2mail.test"),
            "{}",
            n_.message_id
        );
    }
    let gamma = by("gamma");
    assert_eq!(gamma.outcome, NotificationOutcome::Failed);
    assert!(
        gamma.reply.contains("not an email address"),
        "{}",
        gamma.reply
    );

    // What arrived: one message per contact, the right fields.
    let messages = mta.messages();
    assert_eq!(messages.len(), 2);
    for (rcpt, data) in &messages {
        let t = if rcpt == "ops@acme.example" {
            "acme"
        } else {
            "beta"
        };
        assert_eq!(rcpt, &format!("ops@{t}.example"));
        assert!(
            data.contains(&format!("\r\nTo: ops@{t}.example\r\n")),
            "{data}"
        );
        assert!(
            data.contains(&format!(
                "\r\nSubject: Security incident {}: Notify\r\n",
                i.id
            )),
            "{data}"
        );
        assert!(data.contains(&format!("\r\nMessage-ID: <{}>\r\n", by(t).message_id)));
        assert!(data.contains("Nature of the incident:\r\nA backup of the delivery log"));
        assert!(data.contains("Data affected:\r\nRecipient addresses and subjects\r\n"));
        assert!(data.contains("Likely consequences:\r\nTargeted phishing\r\n"));
        assert!(data.contains("Measures taken or proposed:\r\nAccess closed; keys rotated\r\n"));
    }

    // The audit: the request, then one entry per tenant, under that tenant.
    let new: Vec<_> = h.audit().into_iter().filter(|e| e.seq > before).collect();
    assert_eq!(new.len(), 4, "{new:?}");
    assert_eq!(
        (new[0].action.as_str(), new[0].tenant.as_deref()),
        ("incident.notify", None)
    );
    for e in &new[1..] {
        let t = e.tenant.as_deref().expect("tenant");
        assert_eq!(e.action, "incident.notify");
        assert_eq!(e.actor, "operator:admin");
        let detail = e.detail.as_deref().expect("detail");
        assert!(detail.starts_with(&i.id), "{detail}");
        if t == "gamma" {
            assert_eq!(e.outcome, AuditOutcome::Failed);
        } else {
            assert_eq!(e.outcome, AuditOutcome::Ok);
            assert!(detail.contains(&format!("ops@{t}.example")), "{detail}");
            assert!(detail.contains(by(t).queue_id.as_deref().expect("id")));
        }
    }
    let acme = way2mail_control::audit::AuditLog::list(h.service.store(), Some("acme"), 0, 100)
        .expect("list");
    assert!(acme
        .iter()
        .any(|e| e.action == "incident.notify" && e.outcome == AuditOutcome::Ok));

    // Again without `again`: only gamma, still failing; nothing new at the MTA.
    let (_, sent) = notify(&h, &admin, &i.id, false);
    assert_eq!(
        sent.iter().map(|n| n.tenant.as_str()).collect::<Vec<_>>(),
        ["gamma"]
    );
    assert_eq!(mta.messages().len(), 2);
    // Fixed: gamma gets its mail, then nothing is left.
    h.set_contact(&admin, "gamma", "Jane Doe <jane@gamma.example>");
    let (_, sent) = notify(&h, &admin, &i.id, false);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].contact, "jane@gamma.example");
    assert_eq!(sent[0].outcome, NotificationOutcome::Ok);
    let (incident, sent) = notify(&h, &admin, &i.id, false);
    assert!(sent.is_empty());
    assert_eq!(incident.notifications.len(), 5);
    assert_eq!(mta.messages().len(), 3);
    // `again` sends to everyone once more.
    let (incident, sent) = notify(&h, &admin, &i.id, true);
    assert_eq!(sent.len(), 3);
    assert_eq!(incident.notifications.len(), 8);
    assert_eq!(mta.messages().len(), 6);
    let report = way2mail_control::audit::AuditLog::verify(h.service.store()).expect("verify");
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

#[test]
fn refused_and_unreachable_mtas_are_recorded_as_failed() {
    let mta = FakeMta::start(Mode::Refuse);
    let h = harness(mta.addr, Duration::from_secs(5));
    let (admin, _) = h.admin();
    h.add_tenant(&admin, "acme");
    let i = open(&h, &admin, "Refused");
    add(&h, &admin, &i.id, "acme").expect("add");
    let (_, sent) = notify(&h, &admin, &i.id, false);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].outcome, NotificationOutcome::Failed);
    assert_eq!(sent[0].reply, "RCPT TO: 554 5.7.1 relay access denied");
    assert_eq!(sent[0].queue_id, None);
    let entry = h.audit().pop().expect("entry");
    assert_eq!(
        (entry.tenant.as_deref(), entry.outcome),
        (Some("acme"), AuditOutcome::Failed)
    );
    assert!(entry
        .detail
        .expect("detail")
        .contains("554 5.7.1 relay access denied"));

    // Then accepted: the failed tenant is sent to again without `again`.
    mta.set_mode(Mode::Accept);
    let (incident, sent) = notify(&h, &admin, &i.id, false);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].outcome, NotificationOutcome::Ok);
    assert_eq!(incident.notifications.len(), 2);

    // Nothing listening at all.
    let dead = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let h = harness(dead, Duration::from_secs(2));
    let (admin, _) = h.admin();
    h.add_tenant(&admin, "acme");
    let i = open(&h, &admin, "Down");
    add(&h, &admin, &i.id, "acme").expect("add");
    let (incident, sent) = notify(&h, &admin, &i.id, false);
    assert_eq!(sent[0].outcome, NotificationOutcome::Failed);
    assert!(
        sent[0]
            .reply
            .starts_with(&format!("cannot connect to {dead}")),
        "{}",
        sent[0].reply
    );
    assert!(!incident.notified("acme"));
}

#[test]
fn a_stalled_mta_does_not_block_other_requests() {
    let mta = FakeMta::start(Mode::Silent);
    let h = Arc::new(harness(mta.addr, Duration::from_secs(3)));
    let (admin, _) = h.admin();
    h.add_tenant(&admin, "acme");
    let i = open(&h, &admin, "Stall");
    add(&h, &admin, &i.id, "acme").expect("add");
    let (h2, token, id) = (h.clone(), admin.clone(), i.id.clone());
    let started = Instant::now();
    let notifier = std::thread::spawn(move || notify(&h2, &token, &id, false));
    std::thread::sleep(Duration::from_millis(300));
    // While the notification waits for the silent server, the store answers.
    let t = Instant::now();
    let r = h.call(&USER, Some(&admin), None, Request::TenantList);
    assert!(r.is_ok(), "{r:?}");
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "tenant.list waited {:?} behind the notification",
        t.elapsed()
    );
    let (_, sent) = notifier.join().expect("notifier");
    assert!(started.elapsed() >= Duration::from_secs(2));
    assert_eq!(sent[0].outcome, NotificationOutcome::Failed);
    assert!(sent[0].reply.starts_with("greeting:"), "{}", sent[0].reply);
}
