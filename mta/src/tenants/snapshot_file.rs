//! The last control snapshot on disk, so that a restart while control is down still
//! authenticates. It holds password hashes and tenant data, so it is sealed with the
//! node's own data key (AES-256-GCM, the spool's record format, AAD
//! `control-snapshot`) and written 0600 through a temporary file, fsync, rename and
//! directory fsync: a crash leaves either the old file or the new one, never half of
//! one. The replaced file's content is overwritten, so an erased tenant's data does
//! not linger in it.
//!
//! ```text
//!   "way2mail-control-snapshot 2\n" || seal(JSON {saved_at_ms, snapshot})
//! ```
//!
//! A file of version 1 (sealed with the master key itself) is still read once.

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use way2mail_daemon::time::now_ms;
use way2mail_seal::Keyring;
use way2mail_wire::snapshot::Snapshot;

const MAGIC: &[u8] = b"way2mail-control-snapshot 2\n";
const MAGIC_V1: &[u8] = b"way2mail-control-snapshot 1\n";
const AAD: &[u8] = b"control-snapshot";

#[derive(Debug, thiserror::Error)]
pub enum SnapshotFileError {
    #[error("saved control snapshot {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("saved control snapshot {}: not a snapshot file (wrong header)", path.display())]
    NotASnapshot { path: PathBuf },
    #[error(
        "saved control snapshot {}: cannot be opened with this spool key \
         (altered, damaged, or sealed with another key); it is ignored",
        path.display()
    )]
    Unsealed { path: PathBuf },
    #[error("saved control snapshot {}: unreadable content: {reason}", path.display())]
    Content { path: PathBuf, reason: String },
}

#[derive(Serialize, Deserialize)]
struct Saved {
    saved_at_ms: u64,
    snapshot: Snapshot,
}

/// A snapshot read back, with when it was written.
#[derive(Debug)]
pub struct Loaded {
    pub saved_at_ms: u64,
    pub snapshot: Snapshot,
}

/// Writes `snapshot` to `path`, replacing the previous one atomically.
pub fn save(path: &Path, keyring: &Keyring, snapshot: &Snapshot) -> Result<(), SnapshotFileError> {
    let io_err = |source| SnapshotFileError::Io {
        path: path.to_owned(),
        source,
    };
    let content = |reason: String| SnapshotFileError::Content {
        path: path.to_owned(),
        reason,
    };
    let json = serde_json::to_vec(&Saved {
        saved_at_ms: now_ms(),
        snapshot: snapshot.clone(),
    })
    .map_err(|e| content(e.to_string()))?;
    let sealed = keyring
        .system()
        .seal(AAD, json)
        .map_err(|e| content(format!("cannot seal: {e}")))?;
    let mut file = Vec::with_capacity(MAGIC.len() + sealed.len());
    file.extend_from_slice(MAGIC);
    file.extend_from_slice(&sealed);
    way2mail_daemon::files::replace_wiping(path, &file).map_err(io_err)
}

/// Reads the snapshot saved at `path`; `Ok(None)` when there is none.
pub fn load(path: &Path, keyring: &Keyring) -> Result<Option<Loaded>, SnapshotFileError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(SnapshotFileError::Io {
                path: path.to_owned(),
                source,
            })
        }
    };
    let opened = if let Some(sealed) = bytes.strip_prefix(MAGIC) {
        keyring.open_record(AAD, sealed)
    } else if let Some(sealed) = bytes.strip_prefix(MAGIC_V1) {
        keyring.open_with_master(AAD, sealed.to_vec())
    } else {
        return Err(SnapshotFileError::NotASnapshot {
            path: path.to_owned(),
        });
    };
    let json = opened.map_err(|_| SnapshotFileError::Unsealed {
        path: path.to_owned(),
    })?;
    let saved: Saved = serde_json::from_slice(&json).map_err(|e| SnapshotFileError::Content {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    Ok(Some(Loaded {
        saved_at_ms: saved.saved_at_ms,
        snapshot: saved.snapshot,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenants::directory::tests::snapshot;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn round_trip_and_mode() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("var/control-snapshot");
        let key = Keyring::ephemeral().expect("key");
        assert!(load(&path, &key).expect("absent is fine").is_none());
        save(&path, &key, &snapshot(3)).expect("save");
        save(&path, &key, &snapshot(4)).expect("replace");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let loaded = load(&path, &key).expect("load").expect("present");
        assert_eq!(loaded.snapshot, snapshot(4));
        assert!(loaded.saved_at_ms > 1_600_000_000_000);
        assert!(!path.with_extension("tmp").exists());
        let raw = std::fs::read(&path).expect("read");
        assert!(
            !raw.windows(8).any(|w| w == b"$argon2i"),
            "hashes are not stored in clear"
        );
    }

    #[test]
    fn tampered_or_foreign_files_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("control-snapshot");
        let key = Keyring::ephemeral().expect("key");
        save(&path, &key, &snapshot(1)).expect("save");
        let mut raw = std::fs::read(&path).expect("read");
        let last = raw.len() - 5;
        raw[last] ^= 1;
        std::fs::write(&path, &raw).expect("write");
        let e = load(&path, &key).expect_err("tampered");
        assert!(matches!(e, SnapshotFileError::Unsealed { .. }), "{e}");
        assert!(
            e.to_string()
                .contains("cannot be opened with this spool key"),
            "{e}"
        );

        save(&path, &key, &snapshot(1)).expect("save");
        let other = Keyring::ephemeral().expect("key");
        assert!(matches!(
            load(&path, &other),
            Err(SnapshotFileError::Unsealed { .. })
        ));

        std::fs::write(&path, b"{\"version\":1}").expect("write");
        let e = load(&path, &key).expect_err("not ours");
        assert!(matches!(e, SnapshotFileError::NotASnapshot { .. }), "{e}");
    }
}
