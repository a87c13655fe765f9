//! The last control snapshot on disk, so that a restart while control is down still
//! authenticates. It holds password hashes and tenant data, so it is sealed with the
//! spool key (AES-256-GCM, the spool's record format, AAD `control-snapshot`) and
//! written 0600 through a temporary file, fsync, rename and directory fsync: a
//! crash leaves either the old file or the new one, never half of one.
//!
//! ```text
//!   "way2mail-control-snapshot 1\n" || seal(JSON {saved_at_ms, snapshot})
//! ```

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use way2mail_control::snapshot::Snapshot;
use way2mail_queue::SpoolKey;

const MAGIC: &[u8] = b"way2mail-control-snapshot 1\n";
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

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Writes `snapshot` to `path`, replacing the previous one atomically.
pub fn save(path: &Path, key: &SpoolKey, snapshot: &Snapshot) -> Result<(), SnapshotFileError> {
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
    let sealed = key
        .seal(AAD, json)
        .map_err(|e| content(format!("cannot seal: {e}")))?;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(dir) = dir {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_err)?;
    }
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    let write = || -> io::Result<()> {
        // A leftover from a crash may carry another mode; `mode` applies only to a
        // file this call creates.
        match std::fs::remove_file(&tmp) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(MAGIC)?;
        file.write_all(&sealed)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        File::open(dir.unwrap_or(Path::new(".")))?.sync_all()
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io_err(e)
    })
}

/// Reads the snapshot saved at `path`; `Ok(None)` when there is none.
pub fn load(path: &Path, key: &SpoolKey) -> Result<Option<Loaded>, SnapshotFileError> {
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
    let Some(sealed) = bytes.strip_prefix(MAGIC) else {
        return Err(SnapshotFileError::NotASnapshot {
            path: path.to_owned(),
        });
    };
    let json = key
        .open(AAD, sealed.to_vec())
        .map_err(|_| SnapshotFileError::Unsealed {
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
        let key = SpoolKey::generate().expect("key");
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
        let key = SpoolKey::generate().expect("key");
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
        let other = SpoolKey::generate().expect("key");
        assert!(matches!(
            load(&path, &other),
            Err(SnapshotFileError::Unsealed { .. })
        ));

        std::fs::write(&path, b"{\"version\":1}").expect("write");
        let e = load(&path, &key).expect_err("not ours");
        assert!(matches!(e, SnapshotFileError::NotASnapshot { .. }), "{e}");
    }
}
