//! The control store's anchor on a real sled store: `audit verify` reports a log
//! that ends before the anchor's entry, or holds another entry there, even when the
//! head in meta agrees with the log (a store rolled back whole); a store behind its
//! anchor is refused until the rollback is accepted, and the acceptance is the
//! next audit entry, after which the chain verifies.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::{now, settings, Harness};
use way2mail_control::audit::AuditLog;
use way2mail_control::service::Service;
use way2mail_control::store::anchor::{self, Divergence};
use way2mail_control::store::{AnchorCheck, AnchorPolicy, Store, StoreFiles, StoreOptions};
use way2mail_control::Error;
use way2mail_wire::protocol::{Request, Response};

fn write_anchor(dir: &Path, commit_seq: u64, audit_seq: u64, hash: &str) {
    std::fs::write(
        dir.join(anchor::ANCHOR_FILE),
        format!(
            "way2mail-control-anchor 1\ncommit_seq {commit_seq}\naudit_seq {audit_seq}\naudit_hash {hash}\n"
        ),
    )
    .expect("write anchor");
}

/// Opens the store, retrying while the previous handle's sled threads let go.
fn reopen(files: &StoreFiles, options: &StoreOptions) -> Result<Store, Error> {
    let start = Instant::now();
    loop {
        match Store::open_with(files, options) {
            Err(Error::Open { .. }) if start.elapsed() < Duration::from_secs(5) => {
                std::thread::sleep(Duration::from_millis(20))
            }
            other => return other,
        }
    }
}

fn copy_sled_files(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("dir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "db" || name == "conf" || name.starts_with("snap.") {
            std::fs::copy(entry.path(), to.join(&name)).expect("copy");
        }
    }
}

#[test]
fn audit_verify_checks_the_chain_against_the_anchor() {
    let h = Harness::new();
    let (admin, _) = h.admin();
    h.add_tenant(&admin, "acme");
    let store = h.service.store();
    let dir = store.dir().to_owned();
    let kinds = |store: &Store| -> Vec<(String, u64)> {
        AuditLog::verify(store)
            .expect("verify")
            .problems
            .into_iter()
            .map(|p| (p.kind, p.seq))
            .collect()
    };
    assert_eq!(kinds(store), vec![], "in step with its anchor");
    let last = h.audit_head_seq();
    let head = h.audit().pop().expect("entries").hash;
    let saved = std::fs::read(dir.join(anchor::ANCHOR_FILE)).expect("anchor");

    // The log and its head agree, but the anchor recorded three entries more.
    write_anchor(&dir, 99, last + 3, &head);
    assert_eq!(kinds(store), vec![("truncated".to_owned(), last + 1)]);
    // The anchor's entry is there, but it is another one.
    write_anchor(&dir, 99, last, &"0".repeat(64));
    assert_eq!(kinds(store), vec![("changed".to_owned(), last)]);
    std::fs::remove_file(dir.join(anchor::ANCHOR_FILE)).expect("remove");
    assert_eq!(kinds(store), vec![("anchor".to_owned(), last)]);

    std::fs::write(dir.join(anchor::ANCHOR_FILE), saved).expect("restore");
    match h.op(&admin, Request::AuditVerify) {
        Ok(Response::AuditVerified(report)) => {
            assert!(report.problems.is_empty(), "{:?}", report.problems)
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_store_behind_its_anchor_is_refused_and_an_accepted_rollback_is_audited() {
    let h = Harness::new();
    let (admin, _) = h.admin();
    h.add_tenant(&admin, "acme");
    let Harness { dir, service } = h;
    let files = StoreFiles::in_dir(dir.path());
    drop(service);
    let old = dir.path().join("old");
    copy_sled_files(&files.dir, &old);

    let service = Service::with_store(
        reopen(&files, &StoreOptions::default()).expect("reopen"),
        settings(Duration::from_secs(3600)),
    );
    let h = Harness { dir, service };
    h.add_tenant(&admin, "globex");
    let newer = h.audit_head_seq();
    let Harness { dir, service } = h;
    drop(service);
    copy_sled_files(&old, &files.dir);

    let refused = reopen(&files, &StoreOptions::default());
    let Err(Error::RolledBack { divergence, .. }) = refused else {
        panic!("expected RolledBack, got {refused:?}");
    };
    assert!(
        matches!(divergence, Divergence::Behind { .. }),
        "{divergence:?}"
    );
    let text = Error::RolledBack {
        dir: files.dir.clone(),
        divergence,
    }
    .to_string();
    assert!(
        text.contains("--accept-rollback") && text.contains("--verify-store"),
        "{text}"
    );

    let options = StoreOptions {
        anchor: AnchorPolicy::AcceptRollback,
        ..StoreOptions::default()
    };
    let store = reopen(&files, &options).expect("accepted");
    let AnchorCheck::Accepted {
        anchor, store: was, ..
    } = store.anchor_check().clone()
    else {
        panic!("{:?}", store.anchor_check());
    };
    assert_eq!(anchor.expect("it had one").audit_seq, newer);
    assert!(was.audit_seq < newer);
    let entry = AuditLog::note_accepted_rollback(&store, "test".into(), now() * 1000)
        .expect("note")
        .expect("an entry");
    assert_eq!(entry.action, "store.accept_rollback");
    assert_eq!(entry.seq, was.audit_seq + 1);
    assert!(
        entry
            .detail
            .as_deref()
            .unwrap_or("")
            .contains(&format!("audit entry {newer}")),
        "{entry:?}"
    );
    let report = AuditLog::verify(&store).expect("verify");
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    drop(store);
    // Accepted once: a plain start finds the store at its anchor.
    let store = reopen(&files, &StoreOptions::default()).expect("reopen");
    assert_eq!(store.anchor_check(), &AnchorCheck::Current);
    drop(dir);
}
