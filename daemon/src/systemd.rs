//! The systemd readiness protocol (sd_notify(3)) without libsystemd or a crate (the
//! `sd-notify` crate, 0.4 and 0.5, connects to `$NOTIFY_SOCKET` as a path only and so
//! misses the abstract names sd_notify(3) allows): one datagram of
//! `KEY=VALUE` lines to the Unix socket named by `$NOTIFY_SOCKET`, a path or an
//! abstract name written `@name`. Both daemons use it (`Type=notify` units): `READY=1`
//! once they serve, `STOPPING=1` when a graceful stop begins, `STATUS=` for
//! `systemctl status`. Outside systemd the variable is unset and every call is a no-op,
//! so the dev defaults and the tests run unchanged.
//!
//! With `NotifyAccess=main` systemd accepts the datagram only from the main PID; any
//! thread of the daemon qualifies (the kernel reports the thread group's PID).

use std::ffi::OsStr;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// The environment variable systemd sets for `Type=notify` services.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// Tells the service manager the daemon is serving (`READY=1`); logs a failure.
pub fn ready() {
    report(notify("READY=1"), "READY=1");
}

/// Tells the service manager a graceful stop has begun (`STOPPING=1`); logs a failure.
pub fn stopping() {
    report(notify("STOPPING=1"), "STOPPING=1");
}

/// A one-line status for `systemctl status` (`STATUS=...`); logs a failure.
pub fn status(text: &str) {
    // A newline would start another assignment in the datagram (e.g. a forged READY=1).
    let line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    report(notify(&format!("STATUS={line}")), "STATUS");
}

/// Sends `state` (newline-separated `KEY=VALUE` assignments) to `$NOTIFY_SOCKET`.
/// `Ok(false)` when the variable is unset or empty (not started by systemd),
/// `Ok(true)` when the datagram was sent.
pub fn notify(state: &str) -> io::Result<bool> {
    match std::env::var_os(NOTIFY_SOCKET) {
        Some(socket) => notify_to(&socket, state),
        None => Ok(false),
    }
}

/// [`notify`] with the socket given: `/absolute/path` or `@abstract-name`.
pub fn notify_to(socket: &OsStr, state: &str) -> io::Result<bool> {
    if socket.is_empty() {
        return Ok(false);
    }
    let address = parse_address(socket)?;
    let sock = UnixDatagram::unbound()?;
    let sent = sock.send_to_addr(state.as_bytes(), &address)?;
    if sent != state.len() {
        // Datagrams are all or nothing; a short count means something odd in between.
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            format!("sent {sent} of {} bytes", state.len()),
        ));
    }
    Ok(true)
}

fn parse_address(socket: &OsStr) -> io::Result<SocketAddr> {
    let bytes = socket.as_bytes();
    match bytes.first() {
        Some(b'@') => SocketAddr::from_abstract_name(&bytes[1..]),
        Some(b'/') => SocketAddr::from_pathname(socket),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{NOTIFY_SOCKET}={} is neither an absolute path nor an @abstract name",
                socket.to_string_lossy()
            ),
        )),
    }
}

fn report(result: io::Result<bool>, what: &str) {
    if let Err(e) = result {
        tracing::warn!(error = %e, "sd_notify {what} to ${NOTIFY_SOCKET} failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;
    use std::time::Duration;

    fn receiver(sock: &UnixDatagram) -> String {
        sock.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("set_read_timeout");
        let mut buf = [0u8; 512];
        let n = sock.recv(&mut buf).expect("a datagram within 5 s");
        String::from_utf8(buf[..n].to_vec()).expect("utf-8 datagram")
    }

    #[test]
    fn path_socket_receives_ready() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify.sock");
        let sock = UnixDatagram::bind(&path).expect("bind");
        assert!(notify_to(path.as_os_str(), "READY=1").expect("send"));
        assert_eq!(receiver(&sock), "READY=1");
        assert!(notify_to(path.as_os_str(), "STOPPING=1").expect("send"));
        assert_eq!(receiver(&sock), "STOPPING=1");
    }

    #[test]
    fn abstract_socket_receives_ready() {
        let name = format!("way2mail-sd-notify-test-{}", std::process::id());
        let address = SocketAddr::from_abstract_name(name.as_bytes()).expect("abstract name");
        let sock = UnixDatagram::bind_addr(&address).expect("bind abstract");
        let env = format!("@{name}");
        assert!(notify_to(OsStr::new(&env), "READY=1").expect("send"));
        assert_eq!(receiver(&sock), "READY=1");
    }

    #[test]
    fn empty_is_a_no_op_and_relative_is_refused() {
        assert!(!notify_to(OsStr::new(""), "READY=1").expect("empty is fine"));
        let err = notify_to(OsStr::new("relative/notify.sock"), "READY=1")
            .expect_err("relative path must be refused");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn missing_socket_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nobody-listens.sock");
        assert!(notify_to(path.as_os_str(), "READY=1").is_err());
    }

    /// The public functions read `$NOTIFY_SOCKET`; setting it in this process would race
    /// with other test threads reading the environment, so a child copy of this test
    /// binary runs [`child_sends_ready_status_stopping`] with the variable set.
    #[test]
    fn environment_variable_is_followed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify.sock");
        let sock = UnixDatagram::bind(&path).expect("bind");
        let exe = std::env::current_exe().expect("test binary path");
        let output = Command::new(exe)
            .args([
                "--exact",
                "systemd::tests::child_sends_ready_status_stopping",
                "--ignored",
                "--test-threads=1",
            ])
            .env(NOTIFY_SOCKET, &path)
            .output()
            .expect("running the child test");
        assert!(
            output.status.success(),
            "child failed: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        assert_eq!(receiver(&sock), "READY=1");
        assert_eq!(receiver(&sock), "STATUS=serving two lines");
        assert_eq!(receiver(&sock), "STOPPING=1");
    }

    #[test]
    #[ignore = "run by environment_variable_is_followed with NOTIFY_SOCKET set"]
    fn child_sends_ready_status_stopping() {
        // Run alone (`--ignored`) it has nothing to talk to; the parent test is the check.
        if std::env::var_os(NOTIFY_SOCKET).is_none() {
            return;
        }
        ready();
        status("serving\ntwo lines");
        stopping();
    }
}
