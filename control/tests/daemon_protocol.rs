//! The daemon's socket server against hostile and careless clients: the real
//! binary, raw JSON lines over its socket. Every bad input gets a clear error to
//! that client while the daemon keeps serving the others.

mod daemon_harness;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use daemon_harness::{error_code, exists, message, Daemon};
use rustix::process::Signal;

const HELLO: &str = r#"{"v":1,"id":1,"op":"hello"}"#;

fn assert_hello(response: &serde_json::Value, id: u64) {
    assert_eq!(response["ok"], true, "{response}");
    assert_eq!(response["id"], id, "{response}");
    assert_eq!(response["result"]["kind"], "hello", "{response}");
}

#[test]
fn bad_lines_get_errors_and_the_connection_goes_on() {
    let daemon = Daemon::start("");
    let mut c = daemon.connect();

    let r = c.call(r#"{"v":2,"id":5,"op":"hello"}"#);
    assert_eq!(error_code(&r, 5), "unsupported_version");
    assert!(message(&r).contains("speaks version 1"), "{r}");

    let r = c.call(r#"{"v":"1","id":6,"op":"hello"}"#);
    assert_eq!(error_code(&r, 6), "unsupported_version");

    let r = c.call(r#"{"id":7,"op":"hello"}"#);
    assert_eq!(error_code(&r, 7), "unsupported_version");

    let r = c.call(r#"{"v":1,"id":8,"op":"#);
    assert_eq!(error_code(&r, 0), "bad_request");
    assert!(message(&r).starts_with("malformed JSON: "), "{r}");

    let r = c.call("\u{1}\u{2}not json at all");
    assert_eq!(error_code(&r, 0), "bad_request");

    let r = c.call("[1,2,3]");
    assert_eq!(error_code(&r, 0), "bad_request");
    assert!(message(&r).contains("JSON object"), "{r}");

    let r = c.call(r#"{"v":1,"id":9,"op":"tenant.nope","args":{}}"#);
    assert_eq!(error_code(&r, 9), "unknown_op");
    assert!(message(&r).contains("tenant.nope"), "{r}");

    let r = c.call(r#"{"v":1,"id":10,"op":7}"#);
    assert_eq!(error_code(&r, 10), "bad_request");

    let r = c.call(r#"{"v":1,"id":11}"#);
    assert_eq!(error_code(&r, 11), "bad_request");
    assert!(message(&r).contains("op"), "{r}");

    // Wrong types: serde's message names what was expected.
    let r = c.call(r#"{"v":1,"id":12,"op":"tenant.show","args":{"tenant":5}}"#);
    assert_eq!(error_code(&r, 12), "bad_request");
    assert!(message(&r).contains("invalid type"), "{r}");

    let r = c.call(r#"{"v":1,"id":13,"op":"tenant.show","args":{}}"#);
    assert_eq!(error_code(&r, 13), "bad_request");
    assert!(message(&r).contains("tenant"), "{r}");

    let r = c.call(r#"{"v":1,"id":"x","op":"hello"}"#);
    assert_eq!(error_code(&r, 0), "bad_request");

    // After all that, the same connection still serves, CRLF and blank lines too.
    c.send(b"\r\n\n");
    let r = c.call(&HELLO.replace("\"id\":1", "\"id\":14").replace('}', "}\r"));
    assert_hello(&r, 14);

    // Pipelined requests are answered in order.
    c.send(
        format!(
            "{}\n{}\n",
            HELLO.replace("\"id\":1", "\"id\":21"),
            HELLO.replace("\"id\":1", "\"id\":22")
        )
        .as_bytes(),
    );
    assert_hello(&c.recv().expect("first"), 21);
    assert_hello(&c.recv().expect("second"), 22);
}

#[test]
fn oversized_request_closes_only_that_connection() {
    let daemon = Daemon::start("");
    let mut other = daemon.connect();
    assert_hello(&other.call(HELLO), 1);

    let mut big = daemon.connect();
    let mut line = br#"{"v":1,"id":3,"op":"hello","pad":""#.to_vec();
    line.resize(200 * 1024, b'a');
    line.extend_from_slice(b"\"}\n");
    // The daemon stops reading at the limit, so the rest may not fit anywhere.
    let mut writer = big.writer.try_clone().expect("clone");
    let pusher = std::thread::spawn(move || {
        let _ = writer.write_all(&line);
    });
    let r = big.recv().expect("an error line before the close");
    assert_eq!(error_code(&r, 0), "request_too_large");
    assert!(big.closed(), "connection should be closed");
    pusher.join().expect("pusher");

    // The daemon serves the existing client and a new one.
    assert_hello(&other.call(HELLO), 1);
    assert_hello(&daemon.connect().call(HELLO), 1);
    assert!(
        daemon.log().contains("request too large"),
        "{}",
        daemon.log()
    );
}

#[test]
fn a_silent_peer_is_closed_while_others_are_served() {
    let daemon = Daemon::start("idle_timeout_secs = 1");
    let started = Instant::now();
    let mut silent = daemon.connect();
    // One that starts a line and never finishes it is no better.
    let mut trickler = daemon.connect();
    trickler.send(br#"{"v":1,"#);

    // A client that keeps talking is served throughout and never cut off, though
    // its connection lives longer than the idle timeout.
    let mut busy = daemon.connect();
    let talker = std::thread::spawn(move || {
        let until = Instant::now() + Duration::from_millis(2500);
        while Instant::now() < until {
            assert_hello(&busy.call(HELLO), 1);
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    assert!(silent.closed(), "silent peer closed");
    assert!(trickler.closed(), "trickling peer closed");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900),
        "closed too early: {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(5),
        "closed too late: {waited:?}"
    );
    talker.join().expect("the talking client was served");
    assert!(daemon.log().contains("idle timeout"), "{}", daemon.log());
}

/// A connection that got a slot: connects until a hello is answered, since a
/// slot frees only once the daemon has noticed an earlier client's close.
fn connect_served(daemon: &Daemon) -> daemon_harness::Conn {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut conn = daemon.connect();
        // Refused connections may be closed before the request is even written.
        let _ = conn.writer.write_all(format!("{HELLO}\n").as_bytes());
        let r = conn.recv().expect("a line");
        if r["ok"] == true {
            return conn;
        }
        assert!(Instant::now() < deadline, "no slot: {r}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn connections_over_the_limit_get_one_error_line() {
    let daemon = Daemon::start("max_connections = 2");
    let a = connect_served(&daemon);
    let mut b = connect_served(&daemon);
    let mut c = daemon.connect();
    let r = c.recv().expect("an error line");
    assert_eq!(error_code(&r, 0), "busy");
    assert!(message(&r).contains("too many connections"), "{r}");
    assert!(c.closed());
    drop(a);
    let _d = connect_served(&daemon);
    assert_hello(&b.call(HELLO), 1);
    assert!(daemon.log().contains("too many connections"));
}

/// `n` connections made as `uid`: only this helper's thread changes identity (Linux
/// keeps credentials per thread, and `SO_PEERCRED` records the connecting one's), so
/// the test process stays root. The thread keeps gid 0, which the socket's group
/// permissions let in.
fn connect_as(socket: &std::path::Path, uid: u32, n: usize) -> Vec<daemon_harness::Conn> {
    let socket = socket.to_owned();
    let streams = std::thread::spawn(move || {
        rustix::thread::set_thread_uid(rustix::process::Uid::from_raw(uid)).expect("setuid");
        (0..n)
            .map(|_| std::os::unix::net::UnixStream::connect(&socket).expect("connect"))
            .collect::<Vec<_>>()
    })
    .join()
    .expect("the connecting thread");
    streams
        .into_iter()
        .map(|stream| {
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
            daemon_harness::Conn {
                reader: std::io::BufReader::new(stream.try_clone().expect("clone")),
                writer: stream,
            }
        })
        .collect()
}

/// Five local users each try to hold eight of the sixteen connections: each gets
/// at most its share (a quarter), together at most the fourteen not reserved, and
/// the service uid (the test's own, as the MTA's would be) is still served, twice.
#[test]
fn a_local_flood_does_not_lock_out_the_service_uids() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: connecting as other uids needs root (CI runs as root)");
        return;
    }
    let daemon = Daemon::start("max_connections = 16");
    // The start's probe connection holds a slot until the daemon sees it closed:
    // wait for that, so the flood meets an empty socket.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !daemon.log().contains("connection closed") {
        assert!(
            Instant::now() < deadline,
            "probe never closed:\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The slot is given back just after the line is logged.
    std::thread::sleep(Duration::from_millis(100));
    // Let other uids reach the socket through the group, as in production.
    std::fs::set_permissions(daemon.dir.path(), std::fs::Permissions::from_mode(0o750))
        .expect("chmod");
    let mut flood = Vec::new();
    for user in 0..5 {
        flood.extend(connect_as(&daemon.socket, 60_001 + user, 8));
    }
    let mut mta = daemon.connect();
    assert_hello(&mta.call(HELLO), 1);
    let r = mta.call(r#"{"v":1,"id":2,"op":"snapshot.get","args":{}}"#);
    assert_eq!(r["ok"], true, "{r}");
    assert_hello(&daemon.connect().call(HELLO), 1);

    // What the flood got: 4 + 4 + 4 + 2 + 0 served, every other one a busy line.
    let mut served = 0;
    let mut per_uid = 0;
    let mut total = 0;
    for conn in &mut flood {
        // A refused connection may be closed before the request is written.
        let _ = conn.writer.write_all(format!("{HELLO}\n").as_bytes());
        let r = conn.recv().expect("a line");
        if r["ok"] == true {
            served += 1;
            continue;
        }
        assert_eq!(error_code(&r, 0), "busy");
        let text = message(&r);
        if text.contains("from your user (the limit is 4)") {
            per_uid += 1;
        } else {
            assert!(text.contains("(the limit is 14)"), "{r}");
            total += 1;
        }
    }
    assert_eq!((served, per_uid, total), (14, 12, 14));
    let log = daemon.log();
    assert!(log.contains("too many connections from your user"), "{log}");
    assert!(log.contains("uid=60005"), "{log}");
}

#[test]
fn socket_mode_and_graceful_stop() {
    let mut daemon = Daemon::start("socket_mode = \"0640\"");
    let mode = std::fs::metadata(&daemon.socket)
        .expect("socket")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o640);
    let parent = daemon.socket.parent().expect("parent");
    assert_eq!(
        std::fs::metadata(parent).expect("dir").permissions().mode() & 0o777,
        0o750
    );
    // An idle client does not hold up the stop (idle timeout is 60 s here).
    let mut idle = daemon.connect();
    assert_hello(&idle.call(HELLO), 1);
    let started = Instant::now();
    let status = daemon.signal_and_wait(Signal::TERM);
    assert!(status.success(), "{status}\n{}", daemon.log());
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(idle.closed());
    assert!(!exists(&daemon.socket), "socket file removed");
    assert!(daemon.log().contains("way2mail-control stopped"));

    // SIGINT too; and a fresh start after a clean stop.
    daemon.restart();
    let status = daemon.signal_and_wait(Signal::INT);
    assert!(status.success(), "{status}");
}

#[test]
fn stale_socket_is_replaced_and_a_live_daemon_is_not() {
    let mut daemon = Daemon::start("");
    // A second daemon on the same socket refuses to start.
    let out = std::process::Command::new(daemon_harness::DAEMON)
        .arg("--config")
        .arg(&daemon.config)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("already listening"), "{stderr}");
    assert_hello(&daemon.connect().call(HELLO), 1);

    // SIGKILL leaves the socket file behind; the next start removes it.
    let status = daemon.signal_and_wait(Signal::KILL);
    assert!(!status.success());
    assert!(exists(&daemon.socket), "stale socket left behind");
    daemon.restart();
    assert_hello(&daemon.connect().call(HELLO), 1);
}

#[test]
fn check_validates_and_names_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |text: &str| {
        let path = dir.path().join("c.toml");
        std::fs::write(&path, text).expect("write");
        std::process::Command::new(daemon_harness::DAEMON)
            .arg("--config")
            .arg(&path)
            .arg("--check")
            .output()
            .expect("run")
    };
    let ok = run("max_connections = 8\n[tenant_defaults]\nmessages_per_hour = 5\n");
    assert_eq!(ok.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&ok.stdout).trim(),
        "configuration OK"
    );
    for (text, key) in [
        ("idle_timeout = 5", "idle_timeout"),
        ("socket_mode = \"0777\"", "socket_mode"),
        (
            "[tenant_defaults]\nmessages_per_day = \"many\"",
            "tenant_defaults.messages_per_day",
        ),
        ("[log]\nformat = \"yaml\"", "log.format"),
    ] {
        let out = run(text);
        assert_eq!(out.status.code(), Some(1), "{text}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(key), "{text}: {stderr}");
    }
    // No file at all: the dev defaults are valid.
    let out = std::process::Command::new(daemon_harness::DAEMON)
        .arg("--check")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0));
}
