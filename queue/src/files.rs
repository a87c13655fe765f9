//! Small files holding secrets (the keyring, the MTA's saved control snapshot):
//! replaced whole and atomically, and the replaced content overwritten.
//!
//! `replace_wiping` writes the new content to a temporary file (0600, fsync), renames
//! it over the old one and syncs the directory, so a crash leaves either the old file
//! or the new one. The old inode is kept open across the rename and overwritten with
//! zeros afterwards: once a tenant's key was shredded, the bytes that held it are not
//! simply left in free blocks. (On copy-on-write file systems and flash translation
//! layers an overwrite may land elsewhere; the master key is what protects those
//! remnants, see docs/compliance.md.)

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Writes `content` to `path` (mode 0600), replacing any previous file atomically and
/// zeroing the previous content.
pub fn replace_wiping(path: &Path, content: &[u8]) -> io::Result<()> {
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
    let old = match OpenOptions::new().write(true).open(path) {
        Ok(f) => Some(f),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
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
    if let Some(old) = old {
        // The new file is in place; failing to wipe the old one loses nothing, so it
        // is reported but not an error of the replacement.
        if let Err(e) = wipe(old) {
            tracing::warn!(path = %path.display(), error = %e, "could not overwrite the replaced file");
        }
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
}
