//! Child processes with a deadline: every command a test runs (`--check`, `spool list`,
//! python3) is bounded, so a hung child fails the test instead of hanging the suite.
//! Output goes to temp files rather than pipes, so a chatty child can never block on a
//! full pipe while the test is polling it.

use std::fs::File;
use std::io::{Read, Seek};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// Runs `command` to completion within `timeout`, killing it (and failing) past that.
pub fn run_bounded(command: &mut Command, timeout: Duration) -> anyhow::Result<Output> {
    let mut stdout = tempfile::tempfile().context("temp file for stdout")?;
    let mut stderr = tempfile::tempfile().context("temp file for stderr")?;
    let mut child = command
        .stdin(Stdio::null())
        .stdout(stdout.try_clone()?)
        .stderr(stderr.try_clone()?)
        .spawn()
        .with_context(|| format!("starting {command:?}"))?;
    let status = match wait_timeout(&mut child, timeout)? {
        Some(status) => status,
        None => {
            // Best effort: the child may exit on its own between the check and the kill.
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "{command:?} did not finish within {timeout:?}; stderr:\n{}",
                read_all(&mut stderr)?
            );
        }
    };
    Ok(Output {
        status,
        stdout: read_all(&mut stdout)?.into_bytes(),
        stderr: read_all(&mut stderr)?.into_bytes(),
    })
}

/// Waits up to `timeout` for `child` to exit; `None` when it is still running.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> anyhow::Result<Option<ExitStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().context("polling a child process")? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn read_all(file: &mut File) -> anyhow::Result<String> {
    file.rewind()?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}
