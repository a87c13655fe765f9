//! The policy snapshot: what it holds, and that its version moves with every change
//! to tenants, domains and credentials and with nothing else.

mod support;

use support::{code_of, Harness, MTA};
use way2mail_seal::password;
use way2mail_wire::protocol::{CredentialKind, ErrorCode, Request, Response, TenantStatus};
use way2mail_wire::snapshot::Snapshot;

fn snapshot(h: &Harness, known: Option<u64>) -> Response {
    h.call(
        &MTA,
        None,
        None,
        Request::SnapshotGet {
            known_version: known,
        },
    )
    .expect("snapshot.get")
}

fn full(h: &Harness) -> Snapshot {
    match snapshot(h, None) {
        Response::Snapshot(s) => s,
        other => panic!("{other:?}"),
    }
}

#[test]
fn version_follows_changes_and_content_is_complete() {
    let h = Harness::new();
    let (admin, _) = h.admin();
    let s0 = full(&h);
    assert_eq!((s0.version, s0.tenants.len()), (0, 0));

    h.add_tenant(&admin, "acme");
    let v1 = full(&h).version;
    assert!(v1 > s0.version);

    // Unchanged: answered without the snapshot, and not audited.
    let before = h.audit_head_seq();
    assert_eq!(
        snapshot(&h, Some(v1)),
        Response::SnapshotUnchanged { version: v1 }
    );
    assert_eq!(h.audit_head_seq(), before);
    // A full answer is audited.
    full(&h);
    assert_eq!(h.audit_head_seq(), before + 1);
    let last = h.audit().pop().expect("entry");
    assert_eq!(
        (last.action.as_str(), last.actor.as_str()),
        ("snapshot.get", "service:990")
    );

    // Reads do not move it.
    h.op(&admin, Request::TenantList).expect("list");
    h.op(
        &admin,
        Request::TenantShow {
            tenant: "acme".into(),
        },
    )
    .expect("show");
    assert_eq!(full(&h).version, v1);
    // Failed changes do not either.
    let dup = h.op(
        &admin,
        Request::TenantAdd {
            tenant: "acme".into(),
            business_name: "x".into(),
            contact: "y".into(),
            billing_ref: None,
            messages_per_hour: None,
            messages_per_day: None,
            recipients_per_message: None,
        },
    );
    assert_eq!(code_of(&dup), Some(ErrorCode::AlreadyExists));
    assert_eq!(full(&h).version, v1);

    h.op(
        &admin,
        Request::DomainAdd {
            tenant: "acme".into(),
            domain: "Mail.ACME.example".into(),
        },
    )
    .expect("domain");
    let v2 = full(&h).version;
    assert!(v2 > v1);

    let (id, secret) = match h.op(
        &admin,
        Request::CredentialAdd {
            tenant: "acme".into(),
            kind: CredentialKind::Smtp,
            username: Some("sender@acme.example".into()),
            description: Some("newsletter".into()),
        },
    ) {
        Ok(Response::CredentialCreated { credential, secret }) => (credential.id, secret),
        other => panic!("{other:?}"),
    };
    let s3 = full(&h);
    assert!(s3.version > v2);
    let acme = &s3.tenants[0];
    assert_eq!(acme.tenant, "acme");
    assert_eq!(acme.status, TenantStatus::Active);
    assert_eq!(acme.domains, ["mail.acme.example"]);
    assert_eq!(acme.smtp_users.len(), 1);
    let user = &acme.smtp_users[0];
    assert_eq!(
        (user.username.as_str(), user.credential_id.as_str()),
        ("sender@acme.example", id.as_str())
    );
    assert!(password::verify(&secret, &user.password_hash));
    assert!(!password::verify("wrong", &user.password_hash));

    // API keys are not SMTP users.
    h.op(
        &admin,
        Request::CredentialAdd {
            tenant: "acme".into(),
            kind: CredentialKind::Api,
            username: None,
            description: None,
        },
    )
    .expect("api key");
    let s4 = full(&h);
    assert!(s4.version > s3.version);
    assert_eq!(s4.tenants[0].smtp_users.len(), 1);

    h.op(
        &admin,
        Request::TenantUpdate {
            tenant: "acme".into(),
            business_name: None,
            contact: None,
            billing_ref: None,
            messages_per_hour: Some(5),
            messages_per_day: None,
            recipients_per_message: Some(2),
            list_unsubscribe: None,
            auto_suppress: Default::default(),
        },
    )
    .expect("update");
    let s5 = full(&h);
    assert!(s5.version > s4.version);
    assert_eq!(
        (
            s5.tenants[0].limits.messages_per_hour,
            s5.tenants[0].limits.recipients_per_message
        ),
        (5, 2)
    );

    h.op(
        &admin,
        Request::TenantSuspend {
            tenant: "acme".into(),
        },
    )
    .expect("suspend");
    let s6 = full(&h);
    assert!(s6.version > s5.version);
    assert_eq!(s6.tenants[0].status, TenantStatus::Suspended);

    h.op(&admin, Request::CredentialRevoke { id: id.clone() })
        .expect("revoke");
    let s7 = full(&h);
    assert!(s7.version > s6.version);
    assert!(s7.tenants[0].smtp_users.is_empty());

    h.op(
        &admin,
        Request::DomainRemove {
            tenant: "acme".into(),
            domain: "mail.acme.example".into(),
        },
    )
    .expect("remove");
    let s8 = full(&h);
    assert!(s8.version > s7.version);
    assert!(s8.tenants[0].domains.is_empty());
    // Operator changes are not policy.
    h.operator(&admin, "olivia", way2mail_wire::protocol::Role::Operator);
    assert_eq!(full(&h).version, s8.version);
}

#[test]
fn version_survives_a_restart() {
    let h = Harness::new();
    let (admin, _) = h.admin();
    h.add_tenant(&admin, "acme");
    let v = full(&h).version;
    let support::Harness { dir, service } = h;
    drop(service);
    // sled releases its file lock when its background flusher lets go of the
    // database, shortly after the last handle is dropped.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let reopened = loop {
        match way2mail_control::service::Service::open(
            &way2mail_control::store::StoreFiles::in_dir(dir.path()),
            support::settings(std::time::Duration::from_secs(60)),
        ) {
            Ok(service) => break service,
            Err(e) if std::time::Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(e) => panic!("reopen: {e:?}"),
        }
    };
    assert_eq!(reopened.snapshot_version().expect("version"), v);
    let h = Harness {
        dir,
        service: reopened,
    };
    assert_eq!(
        snapshot(&h, Some(v)),
        Response::SnapshotUnchanged { version: v }
    );
    // The admin's session survived too.
    assert!(h
        .op(
            &admin,
            Request::TenantShow {
                tenant: "acme".into()
            }
        )
        .is_ok());
}
