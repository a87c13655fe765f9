//! The key file rules, on real files: created 0600 in a 0700 directory, refused when
//! group/others can access it or when it is not exactly 32 bytes, stable across loads.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use way2mail_seal::{Error, MasterKey};

fn mode(path: &std::path::Path) -> u32 {
    fs::metadata(path).expect("metadata").permissions().mode() & 0o777
}

#[test]
fn created_with_mode_0600_in_private_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("keys/nested/spool.key");
    let key = MasterKey::load_or_create(&path).expect("create");
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(path.parent().expect("parent")), 0o700);
    assert_eq!(fs::read(&path).expect("read").len(), 32);
    assert_eq!(format!("{key:?}"), "MasterKey(<redacted>)");
    // A second call loads the same file rather than replacing it.
    let before = fs::read(&path).expect("read");
    MasterKey::load_or_create(&path).expect("load");
    assert_eq!(fs::read(&path).expect("read"), before);
}

#[test]
fn two_created_keys_differ() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = (dir.path().join("a.key"), dir.path().join("b.key"));
    MasterKey::load_or_create(&a).expect("a");
    MasterKey::load_or_create(&b).expect("b");
    assert_ne!(fs::read(a).expect("a"), fs::read(b).expect("b"));
}

#[test]
fn refused_when_group_or_others_have_access() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("spool.key");
    MasterKey::load_or_create(&path).expect("create");
    for bad in [0o644, 0o640, 0o604, 0o610, 0o601] {
        fs::set_permissions(&path, fs::Permissions::from_mode(bad)).expect("chmod");
        match MasterKey::load_or_create(&path) {
            Err(e @ Error::KeyPermissions { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains(&format!("{bad:04o}")), "{msg}");
                assert!(msg.contains(&path.display().to_string()), "{msg}");
            }
            other => panic!("mode {bad:o}: expected KeyPermissions, got {other:?}"),
        }
    }
    fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).expect("chmod");
    MasterKey::load_or_create(&path).expect("0400 is fine");
}

#[test]
fn refused_when_not_exactly_32_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    for len in [0usize, 16, 31, 33, 64, 4096] {
        let path = dir.path().join(format!("k{len}"));
        fs::write(&path, vec![0x5a; len]).expect("write");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod");
        let res = MasterKey::load_or_create(&path);
        assert!(
            matches!(res, Err(Error::KeyFormat { .. })),
            "{len}: {res:?}"
        );
        // Never replaced: the operator must look at it.
        assert_eq!(fs::metadata(&path).expect("meta").len(), len as u64);
    }
}

#[test]
fn a_directory_is_not_a_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("k");
    fs::create_dir(&path).expect("mkdir");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o700)).expect("chmod");
    assert!(MasterKey::load_or_create(&path).is_err());
}

/// Every error about a key file starts with the name its caller gave it, so that an
/// operator knows which file is meant; without a name it is "master key".
#[test]
fn errors_name_the_key_their_caller_named() {
    const NAME: &str = "backup key (`[backup] key_file`)";
    let dir = tempfile::tempdir().expect("tempdir");

    let loose = dir.path().join("loose.key");
    fs::write(&loose, [7u8; 32]).expect("write");
    fs::set_permissions(&loose, fs::Permissions::from_mode(0o644)).expect("chmod");
    let e = MasterKey::load_or_create_named(&loose, NAME).expect_err("0644");
    assert!(
        matches!(e, Error::KeyPermissions { name: NAME, .. }),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        format!(
            "{NAME} {} has mode 0644: group and others must have no access (run `chmod 600 {}`)",
            loose.display(),
            loose.display()
        )
    );
    let unnamed = MasterKey::load_or_create(&loose)
        .expect_err("0644")
        .to_string();
    assert!(unnamed.starts_with("master key "), "{unnamed}");

    let short = dir.path().join("short.key");
    fs::write(&short, [7u8; 5]).expect("write");
    fs::set_permissions(&short, fs::Permissions::from_mode(0o600)).expect("chmod");
    let e = MasterKey::load_or_create_named(&short, NAME).expect_err("5 bytes");
    assert_eq!(
        e.to_string(),
        format!(
            "{NAME} {}: expected exactly 32 bytes, found 5",
            short.display()
        )
    );

    // Neither readable nor creatable: a file below a regular file.
    let below = loose.join("k");
    let e = MasterKey::load_or_create_named(&below, NAME).expect_err("below a file");
    assert!(matches!(e, Error::KeyFile { name: NAME, .. }), "{e:?}");
    assert!(
        e.to_string()
            .starts_with(&format!("{NAME} {}: ", below.display())),
        "{e}"
    );
    for e in [e.to_string(), unnamed] {
        assert!(!e.contains("spool"), "{e}");
    }
}
