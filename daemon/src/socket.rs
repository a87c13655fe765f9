//! The listening socket's file: created with the configured mode inside a parent
//! directory that is created 0750 when missing, a stale file from a crashed daemon
//! removed, a live daemon never displaced, and on exit removed only if it is
//! still the one this process bound.

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// The bound socket and the identity of its file.
#[derive(Debug)]
pub struct BoundSocket {
    pub listener: UnixListener,
    path: PathBuf,
    dev: u64,
    ino: u64,
}

pub fn bind(path: &Path, mode: u32) -> Result<BoundSocket> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        if !parent.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o750)
                .create(parent)
                .with_context(|| format!("creating the socket directory {}", parent.display()))?;
        }
    }
    remove_stale(path)?;
    // The umask decides the mode the socket file is born with; narrowing it for
    // the bind means the socket is never, even briefly, more open to group or
    // others than `mode`. Owner bits stay: the umask is process-wide.
    let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(!mode & 0o077));
    let bound = UnixListener::bind(path);
    rustix::process::umask(old);
    let listener = bound.with_context(|| format!("binding {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting mode {mode:04o} on {}", path.display()))?;
    let meta = fs::symlink_metadata(path).with_context(|| format!("{}", path.display()))?;
    Ok(BoundSocket {
        listener,
        path: path.to_owned(),
        dev: meta.dev(),
        ino: meta.ino(),
    })
}

impl BoundSocket {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the socket file unless another process has replaced it meanwhile.
    pub fn remove_file(&self) {
        match fs::symlink_metadata(&self.path) {
            Ok(meta) if meta.dev() == self.dev && meta.ino() == self.ino => {
                if let Err(e) = fs::remove_file(&self.path) {
                    tracing::warn!(path = %self.path.display(), error = %e, "cannot remove the socket file");
                }
            }
            _ => {}
        }
    }
}

/// A socket file nobody answers on is left over from a daemon that died; anything
/// else at that path is not ours to remove.
fn remove_stale(path: &Path) -> Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("{}", path.display())),
    };
    if !meta.file_type().is_socket() {
        bail!(
            "{} exists and is not a socket; refusing to replace it",
            path.display()
        );
    }
    match UnixStream::connect(path) {
        Ok(_) => bail!("another process is already listening on {}", path.display()),
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
            tracing::info!(path = %path.display(), "removing a stale socket file");
            fs::remove_file(path)
                .with_context(|| format!("removing the stale socket {}", path.display()))
        }
        Err(e) => Err(e).with_context(|| {
            format!(
                "{} exists and cannot be checked for a running daemon",
                path.display()
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_with_mode_and_replaces_only_stale_sockets() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("run/control.sock");
        let first = bind(&path, 0o660).expect("bind");
        let meta = fs::metadata(&path).expect("meta");
        assert_eq!(meta.permissions().mode() & 0o777, 0o660);
        let parent = fs::metadata(dir.path().join("run")).expect("parent");
        assert_eq!(parent.permissions().mode() & 0o777, 0o750);

        let e = bind(&path, 0o660).expect_err("live daemon");
        assert!(e.to_string().contains("already listening"), "{e}");

        // Closing the listener without removing the file leaves a stale socket.
        drop(first);
        let second = bind(&path, 0o600).expect("stale socket replaced");
        assert_eq!(
            fs::metadata(&path).expect("meta").permissions().mode() & 0o777,
            0o600
        );
        second.remove_file();
        assert!(!path.exists());

        fs::write(&path, b"not a socket").expect("write");
        let e = bind(&path, 0o660).expect_err("regular file");
        assert!(e.to_string().contains("not a socket"), "{e}");
    }
}
