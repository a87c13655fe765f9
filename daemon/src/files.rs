//! Small files holding secrets (the keyring, the MTA's saved control snapshot):
//! replaced whole and atomically, and the replaced content overwritten. Small files
//! that hold no secret (the stores' anchors) replaced the same way, without the
//! overwrite. And the scratch copies a backup makes beside a store.
//!
//! `replace` writes the new content to a temporary file (0600, fsync), renames it
//! over the old one and syncs the directory, so a crash leaves either the old file
//! or the new one. `replace_wiping` also keeps the old inode open across the rename
//! and overwrites it with zeros afterwards: once a tenant's key was shredded, the
//! bytes that held it are not simply left in free blocks. (On copy-on-write file systems and flash translation
//! layers an overwrite may land elsewhere; the master key is what protects those
//! remnants, see docs/compliance.md.)

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Why a small file (a store's anchor) cannot be read or parsed, in words for the
/// operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable(pub String);

impl std::fmt::Display for Unreadable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<String> for Unreadable {
    fn from(reason: String) -> Unreadable {
        Unreadable(reason)
    }
}

impl From<&str> for Unreadable {
    fn from(reason: &str) -> Unreadable {
        Unreadable(reason.to_owned())
    }
}

/// Reads the small text file at `path` and parses it: `Ok(None)` when there is no
/// such file, `Err` when it cannot be read or `parse` refuses it.
pub fn read_parsed<T>(
    path: &Path,
    parse: impl FnOnce(&str) -> Result<T, Unreadable>,
) -> Result<Option<T>, Unreadable> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text).map(Some),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.to_string().into()),
    }
}

/// Writes `content` to `path` (mode 0600), replacing any previous file atomically and
/// zeroing the previous content.
pub fn replace_wiping(path: &Path, content: &[u8]) -> io::Result<()> {
    let old = match OpenOptions::new().write(true).open(path) {
        Ok(f) => Some(f),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    replace(path, content)?;
    if let Some(old) = old {
        // The new file is in place; failing to wipe the old one loses nothing, so it
        // is reported but not an error of the replacement.
        if let Err(e) = wipe(old) {
            tracing::warn!(path = %path.display(), error = %e, "could not overwrite the replaced file");
        }
    }
    Ok(())
}

/// Writes `content` to `path` (mode 0600), replacing any previous file atomically:
/// once this returns, the new content is on disk, and a crash at any point leaves
/// either the old file or the new one.
pub fn replace(path: &Path, content: &[u8]) -> io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(dir) = dir {
        DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    }
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    // A leftover from a crash may carry another mode; `mode` applies only to a file
    // this call creates.
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(content)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        File::open(dir.unwrap_or(Path::new(".")))?.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(())
}

/// Gives `dir` and everything under it the owner and group of `like` — or, when
/// `like` does not exist, of its parent directory (a restore, run as root, builds
/// a store the daemon's user must own). Nothing changes where they already match.
pub fn chown_tree_like(dir: &Path, like: &Path) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let reference = match std::fs::metadata(like) {
        Ok(m) => m,
        Err(_) => match like.parent().filter(|p| !p.as_os_str().is_empty()) {
            Some(parent) => std::fs::metadata(parent)?,
            None => return Ok(()),
        },
    };
    let (uid, gid) = (reference.uid(), reference.gid());
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path)?;
        if meta.uid() != uid || meta.gid() != gid {
            rustix::fs::chown(
                &path,
                Some(rustix::fs::Uid::from_raw(uid)),
                Some(rustix::fs::Gid::from_raw(gid)),
            )?;
        }
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path)? {
                stack.push(entry?.path());
            }
        }
    }
    Ok(())
}

/// A private (0600) scratch file beside a store directory, removed when dropped:
/// the copy a backup takes under the store's lock, so that writers wait for a
/// local write rather than for the peer that reads it. Named
/// `.<store name>.<purpose>-<pid>-<n>` in the store's parent directory, so that
/// [`Scratch::remove_stale`] finds those a crashed process left.
pub struct Scratch {
    path: PathBuf,
    pub file: File,
}

impl Scratch {
    pub fn beside(store: &Path, purpose: &str) -> io::Result<Scratch> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!(
            "{}{}-{n}",
            scratch_prefix(store, purpose),
            std::process::id()
        );
        let path = scratch_dir(store).join(name);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        Ok(Scratch { path, file })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the scratch files of `purpose` that an earlier process left beside
    /// `store` (it died while a backup was read); call it at start.
    pub fn remove_stale(store: &Path, purpose: &str) {
        let prefix = scratch_prefix(store, purpose);
        let Ok(entries) = std::fs::read_dir(scratch_dir(store)) else {
            return;
        };
        for entry in entries.flatten() {
            if !entry.file_name().to_string_lossy().starts_with(&prefix) {
                continue;
            }
            match std::fs::remove_file(entry.path()) {
                Ok(()) => {
                    tracing::info!(path = %entry.path().display(), "removed a stale scratch file")
                }
                Err(e) => tracing::warn!(
                    path = %entry.path().display(), error = %e,
                    "cannot remove a stale scratch file"
                ),
            }
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot remove a scratch file");
        }
    }
}

/// The directory that holds `store`, where its scratch files go.
fn scratch_dir(store: &Path) -> PathBuf {
    store
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), PathBuf::from)
}

fn scratch_prefix(store: &Path, purpose: &str) -> String {
    let name = store
        .file_name()
        .map_or_else(|| "store".into(), |n| n.to_string_lossy().into_owned());
    format!(".{name}.{purpose}-")
}

/// Overwrites an (unlinked) file's content with zeros and syncs it.
fn wipe(mut file: File) -> io::Result<()> {
    let len = file.metadata()?.len();
    file.seek(SeekFrom::Start(0))?;
    let zeros = [0u8; 4096];
    let mut left = len;
    while left > 0 {
        let n = left.min(zeros.len() as u64) as usize;
        file.write_all(&zeros[..n])?;
        left -= n as u64;
    }
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn replaces_and_wipes_the_old_inode() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/secret");
        replace_wiping(&path, b"first secret").expect("create");
        // A second handle on the first inode sees what happens to its blocks.
        let first = File::open(&path).expect("open first");
        replace_wiping(&path, b"second").expect("replace");
        assert_eq!(std::fs::read(&path).expect("read"), b"second");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let old = std::io::read_to_string(first).expect("read old inode");
        assert_eq!(old.as_bytes(), &[0u8; 12], "the replaced content is zeroed");
        assert!(!dir.path().join("sub/secret.tmp").exists());
    }

    #[test]
    fn scratch_files_are_private_and_leave_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = dir.path().join("spool");
        let listing = || -> Vec<String> {
            let mut names: Vec<String> = std::fs::read_dir(dir.path())
                .expect("read_dir")
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        };
        let scratch = Scratch::beside(&store, "dump").expect("create");
        let mode = scratch.file.metadata().expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(scratch.path().parent(), Some(dir.path()));
        drop(scratch);
        assert!(listing().is_empty(), "{:?}", listing());
        // A crashed process's file goes at the next start; others' files stay.
        let left = Scratch::beside(&store, "dump").expect("create");
        std::mem::forget(left);
        std::fs::write(dir.path().join("unrelated"), b"x").expect("write");
        Scratch::beside(&store, "backup")
            .map(std::mem::forget)
            .expect("create");
        Scratch::remove_stale(&store, "dump");
        let names = listing();
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(names.contains(&"unrelated".to_owned()));
        assert!(names[0].starts_with(".spool.backup-"), "{names:?}");
    }
}
