//! Finding the project's binaries (`way2mail-mta`, `way2mail-control`, `way2mail`). A test in this crate cannot use `CARGO_BIN_EXE_*` of
//! another package, so the binary is looked up in the target directory the test executable
//! itself was built into (`target/<profile>/deps/<test>` → `target/<profile>/way2mail-mta`).
//! When cargo runs the tests, the binary is (re)built once per test process so that a
//! daemon edited since the last build is never tested stale; cargo makes that a no-op
//! when it is up to date. `WAY2MAIL_MTA_BIN` overrides the lookup of the daemon entirely.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{bail, Context};

/// The path of the MTA daemon binary, built if needed. Computed once per test process;
/// every caller sees the same result (or the same error).
pub fn daemon_binary() -> anyhow::Result<PathBuf> {
    static BINARY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            if let Some(path) = env::var_os("WAY2MAIL_MTA_BIN") {
                let path = PathBuf::from(path);
                return if path.is_file() {
                    Ok(path)
                } else {
                    Err(format!("WAY2MAIL_MTA_BIN={} is not a file", path.display()))
                };
            }
            locate("way2mail-mta", "way2mail-mta").map_err(|error| format!("{error:#}"))
        })
        .clone()
        .map_err(anyhow::Error::msg)
}

/// The `way2mail-control` daemon binary, built if needed (once per test process).
pub fn control_binary() -> anyhow::Result<PathBuf> {
    static BINARY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            locate("way2mail-control", "way2mail-control").map_err(|error| format!("{error:#}"))
        })
        .clone()
        .map_err(anyhow::Error::msg)
}

/// The `way2mail` operator CLI binary, built if needed (once per test process).
pub fn cli_binary() -> anyhow::Result<PathBuf> {
    static BINARY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            locate("way2mail", "way2mail-control").map_err(|error| format!("{error:#}"))
        })
        .clone()
        .map_err(anyhow::Error::msg)
}

/// `target/<profile>/<name>`, built from `package` first when running under cargo.
fn locate(name: &str, package: &str) -> anyhow::Result<PathBuf> {
    let exe = env::current_exe().context("locating the test executable")?;
    let profile_dir = exe
        .parent()
        .filter(|dir| dir.ends_with("deps"))
        .and_then(Path::parent)
        .with_context(|| format!("{} is not under target/<profile>/deps", exe.display()))?;
    let binary = profile_dir.join(name);
    // Under cargo (CARGO is set) always ask it to bring the binary up to date; run by
    // hand, build only when it is missing.
    if env::var_os("CARGO").is_some() || !binary.is_file() {
        build(profile_dir, name, package)?;
    }
    if !binary.is_file() {
        bail!("{} missing after building it", binary.display());
    }
    Ok(binary)
}

fn build(profile_dir: &Path, name: &str, package: &str) -> anyhow::Result<()> {
    let target_dir = profile_dir
        .parent()
        .context("the profile directory has no parent")?;
    let profile = profile_dir
        .file_name()
        .and_then(|name| name.to_str())
        .context("profile directory name is not UTF-8")?;
    // `debug` is the directory of the `dev` profile.
    let profile = if profile == "debug" { "dev" } else { profile };
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("the tests crate has no parent directory")?;
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .current_dir(workspace)
        .args(["build", "--quiet", "-p", package, "--bin", name])
        .arg("--profile")
        .arg(profile)
        .arg("--target-dir")
        .arg(target_dir)
        .output()
        .with_context(|| format!("running cargo build for {name}"))?;
    if !output.status.success() {
        bail!(
            "cargo build -p {package} --bin {name} failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}
