//! Tampering with the stored audit log, by someone without the key (changing or
//! moving sealed bytes) and by an insider with it (re-sealing changed entries):
//! `verify` must report each case, and an intact chain must verify clean.

mod support;

use support::Harness;
use way2mail_control::audit::{entry_hash, AuditLog};
use way2mail_control::store::Store;
use way2mail_wire::protocol::{AuditProblem, Request, Response, Role};

/// A service with a few dozen audited requests, and an auditor's token.
fn populated() -> (Harness, String) {
    let h = Harness::new();
    let (admin, _) = h.admin();
    for t in ["acme", "globex", "initech"] {
        h.add_tenant(&admin, t);
    }
    let auditor = h.operator(&admin, "auditor", Role::Auditor);
    for _ in 0..3 {
        h.op(&admin, Request::TenantList).expect("list");
    }
    (h, auditor)
}

fn problems(store: &Store) -> Vec<AuditProblem> {
    AuditLog::verify(store).expect("verify").problems
}

fn has(problems: &[AuditProblem], kind: &str, seq: u64) -> bool {
    problems.iter().any(|p| p.kind == kind && p.seq == seq)
}

/// Runs `tamper` on the store, checks what verify reports, then puts every record
/// back as it was and checks the chain is clean again.
fn case(store: &Store, tamper: impl FnOnce(&Store), check: impl FnOnce(&[AuditProblem])) {
    let original = store.audit_raw().expect("raw");
    tamper(store);
    let found = problems(store);
    assert!(!found.is_empty(), "tampering went unnoticed");
    check(&found);
    for (seq, _) in store.audit_raw().expect("raw") {
        store.audit_remove_raw(seq).expect("remove");
    }
    for (seq, bytes) in &original {
        store.audit_put_raw(*seq, bytes).expect("restore");
    }
    assert_eq!(problems(store), vec![], "restored chain");
}

fn raw(store: &Store, seq: u64) -> Vec<u8> {
    store
        .audit_raw()
        .expect("raw")
        .into_iter()
        .find(|(s, _)| *s == seq)
        .expect("record")
        .1
}

#[test]
fn intact_chain_verifies_clean_through_the_service() {
    let (h, auditor) = populated();
    let entries = h.audit();
    assert_eq!(entries.len(), 10);
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e.seq, i as u64 + 1);
        assert_eq!(e.hash, entry_hash(e));
        if i > 0 {
            assert_eq!(e.prev_hash, entries[i - 1].hash);
        }
    }
    match h.op(&auditor, Request::AuditVerify) {
        Ok(Response::AuditVerified(report)) => {
            assert_eq!(report.entries, entries.len() as u64);
            assert!(report.problems.is_empty(), "{:?}", report.problems);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn each_kind_of_tampering_is_reported() {
    let (h, auditor) = populated();
    let store = h.service.store();
    let last = h.audit_head_seq();

    // Without the key: one flipped byte.
    case(
        store,
        |s| {
            let mut bytes = raw(s, 5);
            let mid = bytes.len() / 2;
            bytes[mid] ^= 1;
            s.audit_put_raw(5, &bytes).expect("put");
        },
        |p| assert!(has(p, "unreadable", 5), "{p:?}"),
    );

    // With the key: content changed and re-sealed, hash left alone.
    case(
        store,
        |s| {
            let mut e = AuditLog::open_entry(s, 6, &raw(s, 6)).expect("open");
            e.actor = "operator:someone-else".into();
            s.audit_put_raw(6, &AuditLog::seal_entry(s, &e).expect("seal"))
                .expect("put");
        },
        |p| assert!(has(p, "changed", 6), "{p:?}"),
    );

    // With the key: content changed and its own hash recomputed; the next entry's
    // link still gives it away.
    case(
        store,
        |s| {
            let mut e = AuditLog::open_entry(s, 6, &raw(s, 6)).expect("open");
            e.detail = Some("nothing to see".into());
            e.hash = entry_hash(&e);
            s.audit_put_raw(6, &AuditLog::seal_entry(s, &e).expect("seal"))
                .expect("put");
        },
        |p| assert!(has(p, "changed", 6), "{p:?}"),
    );

    // One entry deleted in the middle.
    case(
        store,
        |s| s.audit_remove_raw(7).expect("remove"),
        |p| assert!(has(p, "removed", 7), "{p:?}"),
    );

    // The newest entry deleted: only the head in meta knows.
    case(
        store,
        |s| s.audit_remove_raw(last).expect("remove"),
        |p| assert!(p.iter().any(|x| x.kind == "truncated"), "{p:?}"),
    );

    // Two sealed records swapped between their keys (no key needed).
    case(
        store,
        |s| {
            let (a, b) = (raw(s, 3), raw(s, 4));
            s.audit_put_raw(3, &b).expect("put");
            s.audit_put_raw(4, &a).expect("put");
        },
        |p| assert!(has(p, "unreadable", 3) && has(p, "unreadable", 4), "{p:?}"),
    );

    // Two entries swapped and re-sealed under their new keys (with the key).
    case(
        store,
        |s| {
            let a = AuditLog::open_entry(s, 3, &raw(s, 3)).expect("open");
            let b = AuditLog::open_entry(s, 4, &raw(s, 4)).expect("open");
            s.audit_put_raw(3, &AuditLog::seal_entry_at(s, 3, &b).expect("seal"))
                .expect("put");
            s.audit_put_raw(4, &AuditLog::seal_entry_at(s, 4, &a).expect("seal"))
                .expect("put");
        },
        |p| assert!(has(p, "reordered", 3), "{p:?}"),
    );

    // Swapped, with seq numbers and hashes rewritten to look in order.
    case(
        store,
        |s| {
            let mut a = AuditLog::open_entry(s, 3, &raw(s, 3)).expect("open");
            let mut b = AuditLog::open_entry(s, 4, &raw(s, 4)).expect("open");
            std::mem::swap(&mut a.seq, &mut b.seq);
            a.hash = entry_hash(&a);
            b.hash = entry_hash(&b);
            s.audit_put_raw(3, &AuditLog::seal_entry(s, &b).expect("seal"))
                .expect("put");
            s.audit_put_raw(4, &AuditLog::seal_entry(s, &a).expect("seal"))
                .expect("put");
        },
        |p| {
            assert!(
                p.iter()
                    .any(|x| x.kind == "reordered" || x.kind == "changed"),
                "{p:?}"
            )
        },
    );

    // And through the service, as `way2mail audit verify` sees it.
    store.audit_remove_raw(8).expect("remove");
    match h.op(&auditor, Request::AuditVerify) {
        Ok(Response::AuditVerified(report)) => {
            assert!(has(&report.problems, "removed", 8), "{:?}", report.problems)
        }
        other => panic!("{other:?}"),
    }
}
