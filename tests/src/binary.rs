//! Finding the project's binaries (`way2mail-mta`, `way2mail-control`, `way2mail`,
//! `way2mail-bench`). A test in this crate cannot use `CARGO_BIN_EXE_*` of another
//! package, so the binaries are looked up in the target directory the test executable
//! itself was built into (`target/<profile>/deps/<test>` → `target/<profile>/<name>`).
//! When cargo runs the tests, every binary is (re)built once per test process so that a
//! daemon edited since the last build is never tested stale; cargo makes that a no-op
//! when it is up to date. All of them are built by ONE cargo command, and it is
//! `cargo build --workspace --tests --bins`: the same selection (the whole workspace,
//! dev-dependencies included) as `cargo test --workspace` and CI's
//! `cargo build --workspace --all-targets`, so cargo resolves the dependencies' features
//! exactly as they did and finds nothing to do. Building only the four packages would
//! resolve features differently and rebuild and relink half the tree a second time
//! (twice the disk, and minutes of linking under the tests).
//! `WAY2MAIL_MTA_BIN` overrides the lookup of the MTA daemon entirely.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{bail, Context};

/// The binaries the tests run.
const BINARIES: [&str; 4] = [
    "way2mail-mta",
    "way2mail-control",
    "way2mail",
    "way2mail-bench",
];

/// The path of the MTA daemon binary, built if needed. Computed once per test process;
/// every caller sees the same result (or the same error).
pub fn daemon_binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = env::var_os("WAY2MAIL_MTA_BIN") {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!("WAY2MAIL_MTA_BIN={} is not a file", path.display());
        }
        return Ok(path);
    }
    binary("way2mail-mta")
}

/// The `way2mail-control` daemon binary, built if needed.
pub fn control_binary() -> anyhow::Result<PathBuf> {
    binary("way2mail-control")
}

/// The `way2mail` operator CLI binary, built if needed.
pub fn cli_binary() -> anyhow::Result<PathBuf> {
    binary("way2mail")
}

/// The `way2mail-bench` load generator and sink, built if needed.
pub fn bench_binary() -> anyhow::Result<PathBuf> {
    binary("way2mail-bench")
}

/// `target/<profile>/<name>` once every binary is up to date.
fn binary(name: &str) -> anyhow::Result<PathBuf> {
    let dir = built_profile_dir()?;
    let binary = dir.join(name);
    if !binary.is_file() {
        bail!("{} missing after building it", binary.display());
    }
    Ok(binary)
}

/// The profile directory, after one build of all [`BINARIES`] per test process.
fn built_profile_dir() -> anyhow::Result<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| locate().map_err(|error| format!("{error:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

fn locate() -> anyhow::Result<PathBuf> {
    let exe = env::current_exe().context("locating the test executable")?;
    let profile_dir = exe
        .parent()
        .filter(|dir| dir.ends_with("deps"))
        .and_then(Path::parent)
        .with_context(|| format!("{} is not under target/<profile>/deps", exe.display()))?;
    // Under cargo (CARGO is set) always ask it to bring the binaries up to date; run by
    // hand, build only when one is missing.
    let missing = BINARIES
        .iter()
        .any(|name| !profile_dir.join(name).is_file());
    if env::var_os("CARGO").is_some() || missing {
        build(profile_dir)?;
    }
    Ok(profile_dir.to_path_buf())
}

fn build(profile_dir: &Path) -> anyhow::Result<()> {
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
    let mut command = Command::new(cargo);
    command
        .current_dir(workspace)
        .args(["build", "--quiet", "--workspace", "--tests", "--bins"]);
    let output = command
        .arg("--profile")
        .arg(profile)
        .arg("--target-dir")
        .arg(target_dir)
        .output()
        .context("running cargo build for the binaries")?;
    if !output.status.success() {
        bail!(
            "cargo build --workspace --tests --bins failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}
