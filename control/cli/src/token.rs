//! The session token file `login` writes and every later command reads, so that an
//! operator logs in once per session. It lives in `$WAY2MAIL_TOKEN_FILE`, else
//! `$XDG_RUNTIME_DIR/way2mail/token` (a tmpfs that goes away at logout), else
//! `~/.config/way2mail/token`; the file is 0600 in a 0700 directory because the
//! token is as good as the password and TOTP code for its lifetime.

use std::fs;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};

pub fn path() -> Result<PathBuf> {
    locate(
        std::env::var_os("WAY2MAIL_TOKEN_FILE").map(PathBuf::from),
        std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from),
        std::env::var_os("HOME").map(PathBuf::from),
    )
}

fn locate(
    explicit: Option<PathBuf>,
    runtime: Option<PathBuf>,
    home: Option<PathBuf>,
) -> Result<PathBuf> {
    let non_empty = |p: Option<PathBuf>| p.filter(|p| !p.as_os_str().is_empty());
    if let Some(path) = non_empty(explicit) {
        return Ok(path);
    }
    if let Some(dir) = non_empty(runtime) {
        return Ok(dir.join("way2mail/token"));
    }
    if let Some(home) = non_empty(home) {
        return Ok(home.join(".config/way2mail/token"));
    }
    Err(anyhow!(
        "no place for the token file: set WAY2MAIL_TOKEN_FILE, XDG_RUNTIME_DIR or HOME"
    ))
}

/// The saved token, or `None` when there is no token file.
pub fn load(path: &Path) -> Result<Option<String>> {
    match fs::read_to_string(path) {
        Ok(text) => {
            let token = text.lines().next().unwrap_or("").trim().to_string();
            Ok((!token.is_empty()).then_some(token))
        }
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading the token file {}", path.display())),
    }
}

/// Writes the token atomically (a 0600 temporary file renamed over the old one).
pub fn save(path: &Path, token: &str) -> Result<()> {
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        if !dir.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .with_context(|| format!("creating {}", dir.display()))?;
        }
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let written = (|| -> std::io::Result<()> {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        // The umask could only narrow the mode; this makes it exact.
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
        file.write_all(token.as_bytes())?;
        file.write_all(b"\n")?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written.with_context(|| format!("writing the token file {}", path.display()))
}

/// Removes the token file; `false` when there was none.
pub fn remove(path: &Path) -> Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("removing the token file {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_order() {
        let p = |s: &str| Some(PathBuf::from(s));
        assert_eq!(
            locate(p("/t"), p("/run/user/1"), p("/home/a")).expect("explicit"),
            PathBuf::from("/t")
        );
        assert_eq!(
            locate(None, p("/run/user/1"), p("/home/a")).expect("runtime"),
            PathBuf::from("/run/user/1/way2mail/token")
        );
        assert_eq!(
            locate(p(""), None, p("/home/a")).expect("home"),
            PathBuf::from("/home/a/.config/way2mail/token")
        );
        assert!(locate(None, None, None).is_err());
    }

    #[test]
    fn save_load_remove_with_modes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/token");
        assert_eq!(load(&path).expect("load"), None);
        save(&path, "abc").expect("save");
        save(&path, "def").expect("overwrite");
        assert_eq!(load(&path).expect("load").as_deref(), Some("def"));
        let mode = |p: &Path| fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&dir.path().join("sub")), 0o700);
        assert!(remove(&path).expect("remove"));
        assert!(!remove(&path).expect("again"));
    }
}
