//! A tmpfs mounted for the length of a test: a filesystem that fills up on purpose
//! (the disk-full and readiness tests). Mounting needs root.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::ensure;

/// A tmpfs mounted for the length of a test.
pub struct Tmpfs(pub PathBuf);

impl Tmpfs {
    /// `None` when it cannot be mounted (not root, no mount permission).
    pub fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).ok()?;
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(dir.to_owned()))
    }

    pub fn resize(&self, size: &str) -> anyhow::Result<()> {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()?;
        ensure!(status.success(), "remount {} failed", self.0.display());
        Ok(())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}
