//! Webhook endpoints at the service: the URL and event checks, the secret shown
//! once (never listed, never audited), ten endpoints a tenant, tenants kept apart
//! (operators name the tenant, API keys are scoped to theirs), the snapshot with
//! the enabled endpoints only, the MTA's failing report (disables once, writes to
//! the contact through a small SMTP server, idempotent), enable, and erasure. The
//! export is `webhook_export.rs`.

mod support;

use std::time::Duration;

use support::smtp::{FakeMta, Mode};
use support::{code_of, Harness, MTA, USER};
use way2mail_control::store::{webhook_prefix, TreeName};
use way2mail_wire::protocol::{
    ApiCall, AuditOutcome, CredentialKind, ErrorBody, ErrorCode, Request, Response, WebhookInfo,
    WEBHOOK_EVENTS,
};

fn add(
    h: &Harness,
    token: &str,
    tenant: &str,
    url: &str,
    events: &[&str],
) -> Result<WebhookInfo, ErrorBody> {
    match h.op(
        token,
        Request::WebhookAdd {
            tenant: tenant.into(),
            url: url.into(),
            events: events.iter().map(|e| e.to_string()).collect(),
        },
    )? {
        Response::Webhooks { mut webhooks } if webhooks.len() == 1 => Ok(webhooks.remove(0)),
        other => panic!("webhook.add: {other:?}"),
    }
}

fn list(h: &Harness, token: &str, tenant: &str) -> Vec<WebhookInfo> {
    match h.op(
        token,
        Request::WebhookList {
            tenant: tenant.into(),
        },
    ) {
        Ok(Response::Webhooks { webhooks }) => webhooks,
        other => panic!("webhook.list: {other:?}"),
    }
}

/// The ids of `tenant`'s endpoints in the snapshot.
fn in_snapshot(h: &Harness, tenant: &str) -> Vec<String> {
    h.snapshot()
        .tenants
        .into_iter()
        .find(|t| t.tenant == tenant)
        .expect("tenant in the snapshot")
        .webhooks
        .into_iter()
        .map(|w| w.id)
        .collect()
}

fn failing(h: &Harness, tenant: &str, id: &str) -> Result<Response, ErrorBody> {
    h.call(
        &MTA,
        None,
        None,
        Request::ApiWebhookFailing {
            tenant: tenant.into(),
            id: id.into(),
            failing_since: 1_767_222_000,
            last_error: "HTTP 503 Service Unavailable\r\nBcc: x@example.net".into(),
        },
    )
}

/// An API key of `tenant`: its credential id and public prefix.
fn api_key(h: &Harness, admin: &str, tenant: &str) -> (String, String) {
    match h.op(
        admin,
        Request::CredentialAdd {
            tenant: tenant.into(),
            kind: CredentialKind::Api,
            username: None,
            description: None,
        },
    ) {
        Ok(Response::CredentialCreated { credential, .. }) => (credential.id, credential.username),
        other => panic!("credential.add: {other:?}"),
    }
}

fn api(h: &Harness, credential_id: &str, call: ApiCall) -> Result<Response, ErrorBody> {
    h.call(
        &MTA,
        None,
        None,
        Request::ApiCall {
            credential_id: credential_id.into(),
            call,
        },
    )
}

#[test]
fn urls_and_events_are_checked() {
    let h = Harness::new();
    let (admin, _) = h.admin();
    h.add_tenant(&admin, "acme");
    let long = format!("https://hooks.acme.example/{}", "a".repeat(2048));
    for bad in [
        "",
        "hooks.acme.example/w2m",
        "ftp://hooks.acme.example/w2m",
        "https://",
        "https:///w2m",
        "https://user:pw@hooks.acme.example/w2m",
        "https://user@hooks.acme.example/w2m",
        "https://hooks.acme.example/w2m#frag",
        "https://hooks.acme.example/w 2m",
        "https://hooks.acme.example/w2m\r\nX: y",
        "https://hooks.acme.example:0/w2m",
        "https://hooks.acme.example:70000/w2m",
        "https://hooks.acme.example:/w2m",
        "https://hooks..acme.example/w2m",
        "https://hooks_acme.example/w2m",
        "https://[::1/w2m",
        "https://[not-v6]/w2m",
        "https://hööks.example/w2m",
        long.as_str(),
    ] {
        let e = add(&h, &admin, "acme", bad, &["delivered"]);
        assert_eq!(
            code_of(&e.map(|_| Response::Done)),
            Some(ErrorCode::Invalid),
            "{bad:?}"
        );
    }
    for (good, stored) in [
        (
            "https://hooks.acme.example/w2m?k=v&x=%20",
            "https://hooks.acme.example/w2m?k=v&x=%20",
        ),
        (" HTTPS://hooks.acme.example ", "https://hooks.acme.example"),
        ("http://127.0.0.1:8080/hook", "http://127.0.0.1:8080/hook"),
        (
            "https://[2001:db8::1]:8443/h",
            "https://[2001:db8::1]:8443/h",
        ),
        ("https://localhost?x", "https://localhost?x"),
    ] {
        let w = add(&h, &admin, "acme", good, &["delivered"]).expect(good);
        assert_eq!(w.url, stored);
    }

    for (events, why) in [
        (vec![], "at least one"),
        (vec!["delivered", "opened"], "\"opened\""),
        (vec![""], "unknown"),
    ] {
        let e = add(&h, &admin, "acme", "https://h.acme.example", &events).expect_err("refused");
        assert_eq!(e.code, ErrorCode::Invalid);
        assert!(e.message.contains(why), "{}", e.message);
        // The message names every event there is.
        for name in WEBHOOK_EVENTS {
            assert!(e.message.contains(name), "{name} not in {}", e.message);
        }
    }
    // Sorted, lower-cased, once each.
    let w = add(
        &h,
        &admin,
        "acme",
        "https://h.acme.example",
        &["Delivered", "bounced", "delivered", " accepted "],
    )
    .expect("add");
    assert_eq!(w.events, ["accepted", "bounced", "delivered"]);
}

#[test]
fn the_secret_is_in_the_answer_that_made_it_and_nowhere_else() {
    let h = Harness::new();
    let (admin, _) = h.admin();
    h.add_tenant(&admin, "acme");
    let version = h.snapshot().version;
    let w = add(
        &h,
        &admin,
        "acme",
        "https://hooks.acme.example/w2m",
        &["delivered", "bounced"],
    )
    .expect("add");
    let id = w.id.strip_prefix("wh_").expect("wh_ id");
    assert!(
        id.len() == 16
            && id
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "{}",
        w.id
    );
    let secret = w.secret.clone().expect("the secret, once");
    let random = secret.strip_prefix("whsec_").expect("whsec_ secret");
    assert!(random.len() == 32 && random.bytes().all(|b| b.is_ascii_alphanumeric()));
    assert_eq!(w.created_by, "operator:admin");
    assert!(w.disabled_at.is_none());

    let listed = list(&h, &admin, "acme");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].secret, None);
    assert_eq!(
        WebhookInfo {
            secret: None,
            ..w.clone()
        },
        listed[0]
    );
    // The audit names the endpoint and its URL, never the secret.
    let entry = h.last_audit("webhook.add");
    let detail = entry.detail.clone().expect("detail");
    assert!(
        detail.contains(&w.id) && detail.contains(&w.url),
        "{detail}"
    );
    assert!(entry.sealed_detail.is_some(), "sealed with acme's key");
    for e in h.audit() {
        let text = serde_json::to_string(&e).expect("json");
        assert!(!text.contains(random), "the secret in {text}");
    }
    // Sealed at rest: neither the URL nor the secret is in the store in clear.
    let mut records = 0;
    h.service
        .store()
        .for_each_raw(|tree, key, sealed| {
            for clear in [random.as_bytes(), b"hooks.acme.example".as_slice()] {
                assert!(!sealed.windows(clear.len()).any(|w| w == clear), "{tree:?}");
            }
            if tree == TreeName::Webhooks {
                assert_eq!(key, [b"acme\0".as_slice(), w.id.as_bytes()].concat());
                records += 1;
            }
            Ok(())
        })
        .expect("raw");
    assert_eq!(records, 1);
    // The MTA gets it, with the secret, in a new snapshot.
    let s = h.snapshot();
    assert!(s.version > version);
    let hook = &s.tenants[0].webhooks[0];
    assert_eq!(
        (&hook.id, &hook.url, &hook.events, &hook.secret),
        (&w.id, &w.url, &w.events, &secret)
    );
    assert!(!format!("{hook:?}").contains(random), "Debug hides it");

    h.op(
        &admin,
        Request::WebhookRemove {
            tenant: "acme".into(),
            id: w.id.clone(),
        },
    )
    .expect("remove");
    assert!(list(&h, &admin, "acme").is_empty());
    assert!(in_snapshot(&h, "acme").is_empty());
    let again = h.op(
        &admin,
        Request::WebhookRemove {
            tenant: "acme".into(),
            id: w.id,
        },
    );
    assert_eq!(code_of(&again), Some(ErrorCode::NotFound));
}

#[test]
fn ten_endpoints_a_tenant_at_most() {
    let h = Harness::new();
    let (admin, _) = h.admin();
    h.add_tenant(&admin, "acme");
    let ids: Vec<String> = (0..10)
        .map(|n| {
            add(
                &h,
                &admin,
                "acme",
                &format!("https://h{n}.acme.example"),
                &["accepted"],
            )
            .expect("add")
            .id
        })
        .collect();
    let eleventh = add(
        &h,
        &admin,
        "acme",
        "https://h10.acme.example",
        &["accepted"],
    );
    let e = eleventh.expect_err("over the limit");
    assert_eq!(e.code, ErrorCode::Conflict);
    assert!(e.message.contains("10"), "{}", e.message);
    let mut listed: Vec<String> = list(&h, &admin, "acme").into_iter().map(|w| w.id).collect();
    let mut made = ids.clone();
    listed.sort();
    made.sort();
    assert_eq!(listed, made);
    h.op(
        &admin,
        Request::WebhookRemove {
            tenant: "acme".into(),
            id: ids[3].clone(),
        },
    )
    .expect("remove");
    add(
        &h,
        &admin,
        "acme",
        "https://h10.acme.example",
        &["accepted"],
    )
    .expect("room again");
}

#[test]
fn tenants_and_api_keys_are_kept_apart() {
    let h = Harness::new();
    let (admin, _) = h.admin();
    h.add_tenant(&admin, "acme");
    h.add_tenant(&admin, "globex");
    let theirs = add(
        &h,
        &admin,
        "globex",
        "https://hooks.globex.example",
        &["bounced"],
    )
    .expect("globex's");
    // An operator naming the wrong tenant does not reach it.
    for request in [
        Request::WebhookRemove {
            tenant: "acme".into(),
            id: theirs.id.clone(),
        },
        Request::WebhookEnable {
            tenant: "acme".into(),
            id: theirs.id.clone(),
        },
    ] {
        assert_eq!(code_of(&h.op(&admin, request)), Some(ErrorCode::NotFound));
    }
    assert!(list(&h, &admin, "acme").is_empty());

    // An API key sees and changes its own tenant's endpoints only.
    let (key, prefix) = api_key(&h, &admin, "acme");
    let ours = match api(
        &h,
        &key,
        ApiCall::WebhookAdd {
            url: "https://hooks.acme.example/w2m".into(),
            events: vec!["delivered".into()],
        },
    ) {
        Ok(Response::Webhooks { webhooks }) => webhooks[0].clone(),
        other => panic!("api.webhook.add: {other:?}"),
    };
    assert!(ours.secret.is_some());
    assert_eq!(ours.created_by, format!("api:{prefix}"));
    let entry = h.last_audit("api.webhook.add");
    assert_eq!(entry.actor, format!("api:{prefix}"));
    assert_eq!(entry.tenant.as_deref(), Some("acme"));
    assert_eq!(entry.outcome, AuditOutcome::Ok);
    match api(&h, &key, ApiCall::WebhookList) {
        Ok(Response::Webhooks { webhooks }) => {
            let ids: Vec<_> = webhooks.iter().map(|w| w.id.as_str()).collect();
            assert_eq!(ids, [ours.id.as_str()]);
            assert!(webhooks.iter().all(|w| w.secret.is_none()));
        }
        other => panic!("api.webhook.list: {other:?}"),
    }
    let refused = api(
        &h,
        &key,
        ApiCall::WebhookRemove {
            id: theirs.id.clone(),
        },
    );
    assert_eq!(code_of(&refused), Some(ErrorCode::NotFound));
    assert_eq!(
        list(&h, &admin, "globex").len(),
        1,
        "globex's is still there"
    );
    api(&h, &key, ApiCall::WebhookRemove { id: ours.id }).expect("its own endpoint");
    assert_eq!(h.last_audit("api.webhook.remove").outcome, AuditOutcome::Ok);
    assert!(list(&h, &admin, "acme").is_empty());
}

#[test]
fn failing_disables_once_tells_the_contact_and_enable_brings_it_back() {
    let mta = FakeMta::start(Mode::Accept);
    let h = Harness::notifying_through(mta.addr, Duration::from_secs(5));
    let (admin, _) = h.admin();
    h.add_tenant(&admin, "acme");
    let kept = add(
        &h,
        &admin,
        "acme",
        "https://ok.acme.example",
        &["delivered"],
    )
    .expect("add");
    let broken = add(
        &h,
        &admin,
        "acme",
        "https://down.acme.example/h",
        &["bounced"],
    )
    .expect("add");
    let mut both = vec![kept.id.clone(), broken.id.clone()];
    both.sort();
    assert_eq!(in_snapshot(&h, "acme"), both);

    // Only the MTA's user may report.
    let as_operator = h.op(
        &admin,
        Request::ApiWebhookFailing {
            tenant: "acme".into(),
            id: broken.id.clone(),
            failing_since: 1,
            last_error: "x".into(),
        },
    );
    assert_eq!(code_of(&as_operator), Some(ErrorCode::Forbidden));
    let as_peer = h.call(
        &USER,
        None,
        None,
        Request::ApiWebhookFailing {
            tenant: "acme".into(),
            id: broken.id.clone(),
            failing_since: 1,
            last_error: "x".into(),
        },
    );
    assert_eq!(code_of(&as_peer), Some(ErrorCode::Unauthenticated));

    let version = h.snapshot().version;
    assert_eq!(
        failing(&h, "acme", &broken.id).expect("report"),
        Response::Done
    );
    assert_eq!(in_snapshot(&h, "acme"), std::slice::from_ref(&kept.id));
    assert!(h.snapshot().version > version);
    let listed = list(&h, &admin, "acme");
    let disabled = listed.iter().find(|w| w.id == broken.id).expect("listed");
    assert!(disabled.disabled_at.is_some());
    assert_eq!(
        disabled.disabled_reason.as_deref(),
        Some(
            "deliveries failed since 2025-12-31T23:00:00Z: HTTP 503 Service Unavailable  Bcc: \
             x@example.net"
        )
    );
    // One letter to the contact, naming the endpoint, its URL and the way back.
    let letters = mta.messages();
    assert_eq!(letters.len(), 1);
    let (to, text) = &letters[0];
    assert_eq!(to, "ops@acme.example");
    for part in [
        "Subject: Webhook endpoint ",
        broken.id.as_str(),
        "https://down.acme.example/h",
        "Failing since:  2025-12-31T23:00:00Z",
        "HTTP 503 Service Unavailable",
        &format!("way2mail webhook enable acme {}", broken.id),
    ] {
        assert!(text.contains(part), "{part:?} not in\n{text}");
    }
    let entry = h.last_audit("api.webhook_failing");
    assert_eq!(entry.outcome, AuditOutcome::Ok);
    assert_eq!(entry.tenant.as_deref(), Some("acme"));
    let detail = entry.detail.expect("detail");
    assert!(
        detail.contains(&broken.id) && detail.contains("handed to the MTA"),
        "{detail}"
    );

    // Reported again, or for an endpoint that does not exist: done, nothing more.
    for id in [broken.id.as_str(), "wh_0000000000000000"] {
        assert_eq!(failing(&h, "acme", id).expect("report"), Response::Done);
        let detail = h.last_audit("api.webhook_failing").detail.expect("detail");
        assert!(detail.contains("nothing to do"), "{detail}");
    }
    assert_eq!(
        failing(&h, "nosuch", &broken.id).expect("report"),
        Response::Done
    );
    assert_eq!(mta.messages().len(), 1, "one letter");

    // Enabled again: back in the snapshot, reason gone; enabling twice is fine.
    for _ in 0..2 {
        match h.op(
            &admin,
            Request::WebhookEnable {
                tenant: "acme".into(),
                id: broken.id.clone(),
            },
        ) {
            Ok(Response::Webhooks { webhooks }) => {
                assert_eq!(webhooks[0].disabled_at, None);
                assert_eq!(webhooks[0].disabled_reason, None);
                assert_eq!(webhooks[0].secret, None);
            }
            other => panic!("webhook.enable: {other:?}"),
        }
    }
    assert_eq!(in_snapshot(&h, "acme"), both);
    let unknown = h.op(
        &admin,
        Request::WebhookEnable {
            tenant: "acme".into(),
            id: "wh_0000000000000000".into(),
        },
    );
    assert_eq!(code_of(&unknown), Some(ErrorCode::NotFound));
}

#[test]
fn a_letter_that_cannot_go_does_not_keep_the_endpoint_enabled() {
    let mta = FakeMta::start(Mode::Refuse);
    let h = Harness::notifying_through(mta.addr, Duration::from_secs(5));
    let (admin, _) = h.admin();
    h.add_tenant(&admin, "acme");
    let w = add(
        &h,
        &admin,
        "acme",
        "https://down.acme.example",
        &["bounced"],
    )
    .expect("add");
    assert_eq!(failing(&h, "acme", &w.id).expect("report"), Response::Done);
    assert!(in_snapshot(&h, "acme").is_empty());
    let detail = h.last_audit("api.webhook_failing").detail.expect("detail");
    assert!(
        detail.contains("disabled") && detail.contains("failed"),
        "{detail}"
    );

    // A contact that is no address: disabled all the same, and the audit says why.
    h.set_contact(&admin, "acme", "Jane Doe, phone 555");
    let other = add(
        &h,
        &admin,
        "acme",
        "https://other.acme.example",
        &["bounced"],
    )
    .expect("add");
    assert_eq!(
        failing(&h, "acme", &other.id).expect("report"),
        Response::Done
    );
    let detail = h.last_audit("api.webhook_failing").detail.expect("detail");
    assert!(
        detail.contains("not told") && detail.contains("--contact"),
        "{detail}"
    );
    assert!(list(&h, &admin, "acme")
        .iter()
        .all(|w| w.disabled_at.is_some()));
}

#[test]
fn erasure_removes_the_endpoints() {
    let h = Harness::new();
    let (admin, _) = h.admin();
    h.add_tenant(&admin, "acme");
    h.add_tenant(&admin, "globex");
    for tenant in ["acme", "acme", "globex"] {
        add(
            &h,
            &admin,
            tenant,
            &format!("https://hooks.{tenant}.example"),
            &["delivered"],
        )
        .expect("add");
    }
    let receipt = match h.op(
        &admin,
        Request::TenantErase {
            tenant: "acme".into(),
            confirm: "acme".into(),
        },
    ) {
        Ok(Response::ErasureReceipt(r)) => r,
        other => panic!("erase: {other:?}"),
    };
    let removed = receipt
        .removed
        .iter()
        .find(|i| i.category.starts_with("webhook endpoints"))
        .expect("in the receipt");
    assert_eq!((removed.count, removed.held_by.as_str()), (2, "control"));
    let store = h.service.store();
    assert!(store
        .keys_with_prefix(TreeName::Webhooks, &webhook_prefix("acme"))
        .expect("keys")
        .is_empty());
    assert_eq!(list(&h, &admin, "globex").len(), 1);
    assert_eq!(in_snapshot(&h, "globex").len(), 1);
}
