//! Bad and borderline input at the service: wrong protocol version, names and
//! domains that break the rules, duplicates, state conflicts; and a chain that
//! stays linear under concurrent requests.

mod support;

use std::sync::Arc;

use support::{code_of, Harness, USER};
use way2mail_control::audit::AuditLog;
use way2mail_wire::protocol::{
    AuditOutcome, CredentialKind, ErrorCode, Request, RequestEnvelope, Response, Role, TenantStatus,
};

fn tenant_add(tenant: &str) -> Request {
    Request::TenantAdd {
        tenant: tenant.into(),
        business_name: "Biz".into(),
        contact: "c@example.com".into(),
        billing_ref: Some("INV-1".into()),
        messages_per_hour: None,
        messages_per_day: None,
        recipients_per_message: None,
    }
}

fn update(tenant: &str) -> Request {
    Request::TenantUpdate {
        tenant: tenant.into(),
        business_name: None,
        contact: None,
        billing_ref: None,
        messages_per_hour: None,
        messages_per_day: None,
        recipients_per_message: None,
        list_unsubscribe: None,
        auto_suppress: Default::default(),
    }
}

#[test]
fn unsupported_version_is_refused_and_audited() {
    let h = Harness::new();
    let (admin, _) = h.admin();
    for v in [0, 2, u32::MAX] {
        let r = h.service.handle(
            &USER,
            RequestEnvelope {
                v,
                id: 9,
                token: Some(admin.clone()),
                reason: None,
                request: Request::TenantList,
            },
        );
        let e = r.expect_err("refused");
        assert_eq!(e.code, ErrorCode::UnsupportedVersion);
        assert!(
            e.message.contains(&v.to_string()) && e.message.contains("version 1"),
            "{}",
            e.message
        );
        let entry = h.audit().pop().expect("audited");
        assert_eq!(
            (entry.action.as_str(), entry.outcome),
            ("tenant.list", AuditOutcome::Failed)
        );
    }
}

#[test]
fn tenant_rules() {
    let h = Harness::new();
    let (admin, _) = h.admin();
    for bad in ["", "Acme", "-acme", "a_b", &"x".repeat(64)] {
        assert_eq!(
            code_of(&h.op(&admin, tenant_add(bad))),
            Some(ErrorCode::Invalid),
            "{bad:?}"
        );
    }
    let mut empty_name = tenant_add("acme");
    if let Request::TenantAdd { business_name, .. } = &mut empty_name {
        *business_name = "   ".into();
    }
    assert_eq!(code_of(&h.op(&admin, empty_name)), Some(ErrorCode::Invalid));
    let mut zero = tenant_add("acme");
    if let Request::TenantAdd {
        messages_per_hour, ..
    } = &mut zero
    {
        *messages_per_hour = Some(0);
    }
    assert_eq!(code_of(&h.op(&admin, zero)), Some(ErrorCode::Invalid));

    match h.op(&admin, tenant_add("acme")) {
        Ok(Response::Tenant(t)) => {
            assert_eq!(t.limits, way2mail_wire::snapshot::TenantLimits::default());
            assert_eq!(t.billing_ref.as_deref(), Some("INV-1"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        code_of(&h.op(&admin, tenant_add("acme"))),
        Some(ErrorCode::AlreadyExists)
    );
    assert_eq!(
        code_of(&h.op(&admin, update("acme"))),
        Some(ErrorCode::Invalid),
        "nothing to change"
    );

    // Update: old and new values in the audit detail.
    let mut change = update("acme");
    if let Request::TenantUpdate {
        contact,
        messages_per_day,
        billing_ref,
        ..
    } = &mut change
    {
        *contact = Some("new@example.com".into());
        *messages_per_day = Some(50);
        *billing_ref = Some(String::new());
    }
    match h.op(&admin, change) {
        Ok(Response::Tenant(t)) => {
            assert_eq!(t.contact, "new@example.com");
            assert_eq!(t.limits.messages_per_day, 50);
            assert_eq!(t.billing_ref, None);
        }
        other => panic!("{other:?}"),
    }
    let detail: serde_json::Value = serde_json::from_str(
        h.audit()
            .pop()
            .expect("entry")
            .detail
            .as_deref()
            .expect("detail"),
    )
    .expect("json");
    assert_eq!(detail["contact"]["old"], "c@example.com");
    assert_eq!(detail["contact"]["new"], "new@example.com");
    assert_eq!(detail["messages_per_day"]["new"], 50);
    let mut zero = update("acme");
    if let Request::TenantUpdate {
        recipients_per_message,
        ..
    } = &mut zero
    {
        *recipients_per_message = Some(0);
    }
    assert_eq!(code_of(&h.op(&admin, zero)), Some(ErrorCode::Invalid));

    // Status moves; terminate is final.
    let t = |r: Request| h.op(&admin, r);
    assert_eq!(
        code_of(&t(Request::TenantResume {
            tenant: "acme".into()
        })),
        Some(ErrorCode::Conflict)
    );
    assert!(t(Request::TenantSuspend {
        tenant: "acme".into()
    })
    .is_ok());
    assert_eq!(
        code_of(&t(Request::TenantSuspend {
            tenant: "acme".into()
        })),
        Some(ErrorCode::Conflict)
    );
    assert!(t(Request::TenantResume {
        tenant: "acme".into()
    })
    .is_ok());
    match t(Request::TenantTerminate {
        tenant: "acme".into(),
    }) {
        Ok(Response::Tenant(info)) => assert_eq!(info.status, TenantStatus::Terminated),
        other => panic!("{other:?}"),
    }
    for r in [
        Request::TenantResume {
            tenant: "acme".into(),
        },
        Request::TenantSuspend {
            tenant: "acme".into(),
        },
        Request::TenantTerminate {
            tenant: "acme".into(),
        },
        update("acme"),
        Request::DomainAdd {
            tenant: "acme".into(),
            domain: "acme.example".into(),
        },
        Request::CredentialAdd {
            tenant: "acme".into(),
            kind: CredentialKind::Api,
            username: None,
            description: None,
        },
    ] {
        assert_eq!(code_of(&t(r.clone())), Some(ErrorCode::Conflict), "{r:?}");
    }
    assert_eq!(
        code_of(&t(Request::TenantShow {
            tenant: "nosuch".into()
        })),
        Some(ErrorCode::NotFound)
    );
}

#[test]
fn domain_and_credential_rules() {
    let h = Harness::new();
    let (admin, _) = h.admin();
    h.add_tenant(&admin, "acme");
    h.add_tenant(&admin, "globex");
    let add = |tenant: &str, domain: &str| {
        h.op(
            &admin,
            Request::DomainAdd {
                tenant: tenant.into(),
                domain: domain.into(),
            },
        )
    };
    for bad in [
        "",
        "localhost",
        "a..b",
        "-x.example",
        "bücher.example",
        "x_y.example",
        "1.2.3.4",
    ] {
        assert_eq!(
            code_of(&add("acme", bad)),
            Some(ErrorCode::Invalid),
            "{bad:?}"
        );
    }
    assert!(add("acme", "ACME.Example.").is_ok());
    let dup = add("globex", "acme.example").expect_err("taken");
    assert_eq!(dup.code, ErrorCode::AlreadyExists);
    assert!(
        dup.message.contains("acme"),
        "the owner is named to an admin: {}",
        dup.message
    );
    assert_eq!(
        code_of(&add("nosuch", "n.example")),
        Some(ErrorCode::NotFound)
    );
    match h.op(
        &admin,
        Request::DomainList {
            tenant: Some("globex".into()),
        },
    ) {
        Ok(Response::Domains { domains }) => assert!(domains.is_empty()),
        other => panic!("{other:?}"),
    }
    let remove = |tenant: &str| {
        h.op(
            &admin,
            Request::DomainRemove {
                tenant: tenant.into(),
                domain: "acme.example".into(),
            },
        )
    };
    assert_eq!(
        code_of(&remove("globex")),
        Some(ErrorCode::NotFound),
        "not globex's domain"
    );
    assert!(remove("acme").is_ok());
    assert!(add("globex", "acme.example").is_ok(), "free again");

    let cred = |tenant: &str, kind, username: Option<&str>| {
        h.op(
            &admin,
            Request::CredentialAdd {
                tenant: tenant.into(),
                kind,
                username: username.map(str::to_owned),
                description: None,
            },
        )
    };
    assert_eq!(
        code_of(&cred("acme", CredentialKind::Smtp, None)),
        Some(ErrorCode::Invalid)
    );
    assert_eq!(
        code_of(&cred("acme", CredentialKind::Smtp, Some("a b"))),
        Some(ErrorCode::Invalid)
    );
    assert_eq!(
        code_of(&cred("acme", CredentialKind::Api, Some("x"))),
        Some(ErrorCode::Invalid)
    );
    let id = match cred("acme", CredentialKind::Smtp, Some("sender")) {
        Ok(Response::CredentialCreated { credential, secret }) => {
            assert_eq!(secret.len(), way2mail_seal::password::PASSWORD_LEN);
            credential.id
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(
        code_of(&cred("globex", CredentialKind::Smtp, Some("sender"))),
        Some(ErrorCode::AlreadyExists)
    );
    match cred("acme", CredentialKind::Api, None) {
        Ok(Response::CredentialCreated { credential, secret }) => {
            let (prefix, _) =
                way2mail_seal::password::parse_api_key(&secret).expect("api key shape");
            assert_eq!(prefix, credential.username);
        }
        other => panic!("{other:?}"),
    }
    assert!(h
        .op(&admin, Request::CredentialRevoke { id: id.clone() })
        .is_ok());
    assert_eq!(
        code_of(&h.op(&admin, Request::CredentialRevoke { id: id.clone() })),
        Some(ErrorCode::Conflict)
    );
    let entry = h.audit().pop().expect("entry");
    assert_eq!(
        entry.tenant.as_deref(),
        Some("acme"),
        "revoke audits the credential's tenant"
    );
    match h.op(
        &admin,
        Request::CredentialList {
            tenant: Some("acme".into()),
        },
    ) {
        Ok(Response::Credentials { credentials }) => {
            let revoked = credentials.iter().find(|c| c.id == id).expect("kept");
            assert!(revoked.revoked_at.is_some());
            assert_eq!(credentials.len(), 2);
        }
        other => panic!("{other:?}"),
    }
    // A revoked username may be given out again.
    assert!(cred("globex", CredentialKind::Smtp, Some("sender")).is_ok());
    // No secret in the log.
    let text = serde_json::to_string(&h.audit()).expect("json");
    assert!(!text.contains("$argon2id$"));
}

#[test]
fn reasons_are_recorded_and_bounded() {
    let h = Harness::new();
    let (admin, _) = h.admin();
    let support = h.operator(&admin, "sam", Role::Support);
    h.add_tenant(&admin, "acme");
    let show = Request::TenantShow {
        tenant: "acme".into(),
    };
    assert_eq!(
        code_of(&h.call(&USER, Some(&support), Some("   "), show.clone())),
        Some(ErrorCode::ReasonRequired)
    );
    let long = "r".repeat(501);
    assert_eq!(
        code_of(&h.call(&USER, Some(&support), Some(&long), show.clone())),
        Some(ErrorCode::Invalid)
    );
    assert!(h
        .call(&USER, Some(&support), Some("  ticket 7 "), show)
        .is_ok());
    let entry = h.audit().pop().expect("entry");
    assert_eq!(
        (entry.reason.as_deref(), entry.tenant.as_deref(), entry.role),
        (Some("ticket 7"), Some("acme"), Some(Role::Support))
    );
    // Support never sees credentials.
    let r = h.call(
        &USER,
        Some(&support),
        Some("ticket 7"),
        Request::CredentialList { tenant: None },
    );
    assert_eq!(code_of(&r), Some(ErrorCode::Forbidden));
}

#[test]
fn concurrent_requests_keep_one_linear_chain() {
    let h = Arc::new(Harness::new());
    let (admin, _) = h.admin();
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let h = Arc::clone(&h);
            let admin = admin.clone();
            std::thread::spawn(move || {
                for j in 0..10 {
                    h.op(&admin, tenant_add(&format!("t{i}-{j}"))).expect("add");
                    h.op(&admin, Request::TenantList).expect("list");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("thread");
    }
    let report = AuditLog::verify(h.service.store()).expect("verify");
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.entries, 2 + 8 * 10 * 2);
    assert_eq!(h.service.snapshot_version().expect("version"), 80);
}
