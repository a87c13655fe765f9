//! A tenant export with webhooks: `webhooks.json` lists the endpoints without their
//! secrets, `webhook-outbox.jsonl` holds the MTA's undelivered events one a line
//! (the MTA's part comes from a stand-in for its admin socket).

mod support;

use std::time::Duration;

use support::mta_admin::{serve_export, untar, Sink};
use support::{settings, Harness, USER};
use way2mail_wire::mta_admin::ExportItem;
use way2mail_wire::protocol::{Request, RequestEnvelope, Response, VERSION};

#[test]
fn the_export_holds_the_endpoints_without_secrets_and_the_outbox() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("mta.sock");
    let mut s = settings(Duration::from_secs(3600));
    s.mta.admin_socket = Some(socket.clone());
    let h = Harness::with_settings(s);
    let (admin, _) = h.admin();
    h.add_tenant(&admin, "acme");
    let w = match h.op(
        &admin,
        Request::WebhookAdd {
            tenant: "acme".into(),
            url: "https://hooks.acme.example/w2m".into(),
            events: vec!["bounced".into()],
        },
    ) {
        Ok(Response::Webhooks { webhooks }) => webhooks[0].clone(),
        other => panic!("webhook.add: {other:?}"),
    };
    let secret = w.secret.clone().expect("secret");
    let events = [
        r#"{"id":"e1","webhook":"wh_1","event":{"type":"bounced"},"created_ms":1,"attempts":2,"next_attempt_ms":3,"last_error":"HTTP 500"}"#,
        r#"{"id":"e2","webhook":"wh_1","event":{"type":"bounced","n":2},"created_ms":4,"attempts":0,"next_attempt_ms":4,"last_error":null}"#,
    ];
    serve_export(
        &socket,
        "acme",
        events
            .iter()
            .map(|e| ExportItem::WebhookEvent(e.as_bytes().to_vec()))
            .collect(),
    );
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
    let files = untar(&sink.0);
    for name in ["webhooks.json", "webhook-outbox.jsonl"] {
        let path = format!("acme-export/{name}");
        assert!(files.contains_key(&path), "{path} in {:?}", files.keys());
        assert!(
            manifest.files.iter().any(|f| f.path == path),
            "{path} in the manifest"
        );
    }
    let listed: serde_json::Value =
        serde_json::from_str(&files["acme-export/webhooks.json"]).expect("json");
    assert_eq!(listed[0]["id"], w.id.as_str());
    assert_eq!(listed[0]["url"], "https://hooks.acme.example/w2m");
    assert_eq!(listed[0]["events"], serde_json::json!(["bounced"]));
    assert!(listed[0]["created_at"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z')));
    assert!(listed[0].get("secret").is_none());
    let random = secret.strip_prefix("whsec_").expect("whsec_");
    assert!(
        files.values().all(|f| !f.contains(random)),
        "the secret is nowhere in the archive"
    );
    // Byte for byte as the MTA sent them, one a line.
    assert_eq!(
        files["acme-export/webhook-outbox.jsonl"],
        format!("{}\n{}\n", events[0], events[1])
    );
    let entry = h.last_audit("tenant.export");
    let detail = entry.detail.expect("detail");
    assert!(
        detail.contains("1 webhook endpoints, 2 webhook events not delivered yet"),
        "{detail}"
    );
}
