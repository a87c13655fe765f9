//! Login with password and TOTP (right, wrong, outside the window, replayed),
//! session expiry and logout, bootstrap rules; and that no secret reaches the audit log.

mod support;

use std::time::Duration;

use support::{code_of, settings, Harness, ADMIN_PASSWORD, ROOT, USER};
use way2mail_control::totp;
use way2mail_wire::protocol::{AuditOutcome, ErrorCode, Request, Response, Role};

fn login_with(
    h: &Harness,
    name: &str,
    password: &str,
    code: &str,
) -> Result<Response, way2mail_wire::protocol::ErrorBody> {
    h.call(
        &USER,
        None,
        None,
        Request::Login {
            name: name.into(),
            password: password.into(),
            totp: code.into(),
        },
    )
}

#[test]
fn totp_right_wrong_outside_window_and_replay() {
    let h = Harness::new();
    let secret = h.bootstrap();
    let now = support::now();
    let current = totp::code(&secret, now).expect("code");

    // Wrong code: every code of the accepted window differs from it.
    let window: Vec<String> = [now - 30, now, now + 30, now + 60]
        .iter()
        .map(|t| totp::code(&secret, *t).expect("code"))
        .collect();
    let wrong = (0..1000)
        .map(|n| format!("{:06}", (n * 7919) % 1_000_000))
        .find(|c| !window.contains(c))
        .expect("a wrong code");
    let r = login_with(&h, "admin", ADMIN_PASSWORD, &wrong);
    assert_eq!(code_of(&r), Some(ErrorCode::LoginFailed));

    // Outside the window: the code of two minutes ago.
    let old = totp::code(&secret, now - 120).expect("code");
    if !window.contains(&old) {
        let r = login_with(&h, "admin", ADMIN_PASSWORD, &old);
        assert_eq!(code_of(&r), Some(ErrorCode::LoginFailed));
    }

    // Right password, wrong one, unknown operator: one generic answer.
    let bad_pw = login_with(&h, "admin", "not the password", &current);
    let unknown = login_with(&h, "mallory", ADMIN_PASSWORD, &current);
    assert_eq!(code_of(&bad_pw), Some(ErrorCode::LoginFailed));
    assert_eq!(bad_pw, unknown);

    // Right code.
    let token = match login_with(&h, "admin", ADMIN_PASSWORD, &current) {
        Ok(Response::LoggedIn {
            token,
            role,
            expires_at,
        }) => {
            assert_eq!(role, Role::Admin);
            assert!(expires_at >= now + 3599 && expires_at <= support::now() + 3600);
            token
        }
        other => panic!("{other:?}"),
    };
    assert!(h.op(&token, Request::TenantList).is_ok());

    // The same code again, and the previous step's code: refused as replays.
    let r = login_with(&h, "admin", ADMIN_PASSWORD, &current);
    assert_eq!(code_of(&r), Some(ErrorCode::LoginFailed));
    let previous = totp::code(&secret, now - 30).expect("code");
    let r = login_with(&h, "admin", ADMIN_PASSWORD, &previous);
    assert_eq!(code_of(&r), Some(ErrorCode::LoginFailed));
    // The next step's code is still good.
    assert!(h.login_at("admin", ADMIN_PASSWORD, &secret, 1).is_ok());

    // Audited: the failures with the name tried, never the password or a code.
    let entries = h.audit();
    let logins: Vec<_> = entries.iter().filter(|e| e.action == "login").collect();
    let failed: Vec<_> = logins
        .iter()
        .filter(|e| e.outcome == AuditOutcome::Failed)
        .collect();
    assert!(failed.len() >= 5, "{failed:?}");
    assert!(failed
        .iter()
        .any(|e| e.detail.as_deref().unwrap_or("").contains("\"mallory\"")));
    let ok: Vec<_> = logins
        .iter()
        .filter(|e| e.outcome == AuditOutcome::Ok)
        .collect();
    assert_eq!(ok.len(), 2);
    assert_eq!(ok[0].actor, "operator:admin");
    let text = serde_json::to_string(&entries).expect("json");
    for secret_text in [
        ADMIN_PASSWORD,
        "not the password",
        &current,
        &secret,
        &token,
    ] {
        assert!(!text.contains(secret_text), "audit log holds a secret");
    }
}

#[test]
fn sessions_expire_and_logout_ends_them() {
    let h = Harness::with_settings(settings(Duration::from_secs(1)));
    let (token, secret) = h.admin();
    assert!(h.op(&token, Request::TenantList).is_ok());
    std::thread::sleep(Duration::from_millis(2100));
    let r = h.op(&token, Request::TenantList);
    assert_eq!(code_of(&r), Some(ErrorCode::Unauthenticated));
    assert_eq!(
        r.unwrap_err().message,
        "session expired, run `way2mail login`"
    );
    let entry = h.audit().pop().expect("audited");
    assert_eq!(
        (entry.actor.as_str(), entry.outcome),
        ("uid:1000", AuditOutcome::Denied)
    );

    // A new login works (next step's code: this step's is used), and logout ends it.
    let token = match h.login_at("admin", ADMIN_PASSWORD, &secret, 1) {
        Ok(Response::LoggedIn { token, .. }) => token,
        other => panic!("{other:?}"),
    };
    assert_eq!(h.op(&token, Request::Logout), Ok(Response::Done));
    let r = h.op(&token, Request::TenantList);
    assert_eq!(code_of(&r), Some(ErrorCode::Unauthenticated));
    // Garbage tokens are the same as none.
    for junk in ["", "x", &"f".repeat(10_000)] {
        assert_eq!(
            code_of(&h.op(junk, Request::OperatorList)),
            Some(ErrorCode::Unauthenticated)
        );
    }
}

#[test]
fn removed_operators_lose_their_sessions_and_role_changes_apply_at_once() {
    let h = Harness::new();
    let (admin, _) = h.admin();
    let op = h.operator(&admin, "olivia", Role::Operator);
    assert!(h.op(&op, Request::CredentialList { tenant: None }).is_ok());
    h.op(
        &admin,
        Request::OperatorRole {
            name: "olivia".into(),
            role: Role::Auditor,
        },
    )
    .expect("role");
    assert_eq!(
        code_of(&h.op(&op, Request::CredentialList { tenant: None })),
        Some(ErrorCode::Forbidden)
    );
    assert!(h.op(&op, Request::AuditVerify).is_ok());
    h.op(
        &admin,
        Request::OperatorRemove {
            name: "olivia".into(),
        },
    )
    .expect("remove");
    assert_eq!(
        code_of(&h.op(&op, Request::AuditVerify)),
        Some(ErrorCode::Unauthenticated)
    );

    // The last admin stays.
    let r = h.op(
        &admin,
        Request::OperatorRole {
            name: "admin".into(),
            role: Role::Operator,
        },
    );
    assert_eq!(code_of(&r), Some(ErrorCode::Conflict));
    let r = h.op(
        &admin,
        Request::OperatorRemove {
            name: "admin".into(),
        },
    );
    assert_eq!(code_of(&r), Some(ErrorCode::Conflict));
    let second = h.operator(&admin, "second", Role::Admin);
    assert_eq!(
        h.op(
            &admin,
            Request::OperatorRole {
                name: "admin".into(),
                role: Role::Operator
            }
        ),
        Ok(Response::Done)
    );
    match h.op(&second, Request::OperatorList) {
        Ok(Response::Operators { operators }) => {
            let names: Vec<_> = operators
                .iter()
                .map(|o| (o.name.as_str(), o.role))
                .collect();
            assert_eq!(names, [("admin", Role::Operator), ("second", Role::Admin)]);
            assert!(operators.iter().all(|o| o.last_login_at.is_some()));
        }
        other => panic!("{other:?}"),
    }
    let r = h.op(
        &admin,
        Request::OperatorAdd {
            name: "Bad Name".into(),
            role: Role::Support,
        },
    );
    assert_eq!(
        code_of(&r),
        Some(ErrorCode::Forbidden),
        "admin is an operator now"
    );
}

#[test]
fn bootstrap_rules() {
    let h = Harness::new();
    let boot = |caller, name: &str, password: &str| {
        h.call(
            caller,
            None,
            None,
            Request::Bootstrap {
                name: name.into(),
                password: password.into(),
            },
        )
    };
    assert_eq!(
        code_of(&boot(&USER, "admin", ADMIN_PASSWORD)),
        Some(ErrorCode::Unauthenticated)
    );
    assert_eq!(
        code_of(&boot(&ROOT, "admin", "short")),
        Some(ErrorCode::Invalid)
    );
    assert_eq!(
        code_of(&boot(&ROOT, "Not Valid", ADMIN_PASSWORD)),
        Some(ErrorCode::Invalid)
    );
    match boot(&ROOT, "admin", ADMIN_PASSWORD) {
        Ok(Response::OperatorCreated {
            password,
            totp_secret,
            totp_uri,
            ..
        }) => {
            assert!(password.is_empty(), "the chosen password is not echoed");
            assert_eq!(
                totp_uri,
                format!("otpauth://totp/Way2Mail:admin?secret={totp_secret}&issuer=Way2Mail")
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        code_of(&boot(&ROOT, "other", ADMIN_PASSWORD)),
        Some(ErrorCode::Conflict)
    );
    // Root without a token can do nothing else.
    let r = h.call(&ROOT, None, None, Request::TenantList);
    assert_eq!(code_of(&r), Some(ErrorCode::Unauthenticated));
    match h.call(&ROOT, None, None, Request::Hello) {
        Ok(Response::Hello {
            caller,
            protocol_versions,
            ..
        }) => {
            assert_eq!(caller, "root");
            assert_eq!(protocol_versions, [1]);
        }
        other => panic!("{other:?}"),
    }
    let text = serde_json::to_string(&h.audit()).expect("json");
    assert!(!text.contains(ADMIN_PASSWORD));
}
