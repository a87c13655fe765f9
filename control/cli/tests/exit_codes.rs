//! The `way2mail` CLI's exit codes without a daemon: 3 unreachable, 2 usage.
//! (The CLI against a real daemon: `tests/tests/cli_workflow.rs`.)

const CLI: &str = env!("CARGO_BIN_EXE_way2mail");

#[test]
fn exit_codes_for_usage_and_unreachable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("nothing.sock");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(CLI)
            .args(args)
            .env("WAY2MAIL_SOCKET", &socket)
            .env("WAY2MAIL_TOKEN_FILE", dir.path().join("token"))
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stderr) = run(&["tenant", "list"]);
    assert_eq!(code, Some(3), "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "error: cannot reach way2mail-control at {}",
            socket.display()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("is the daemon running?"), "{stderr}");
    // --socket wins over the environment.
    let (code, stderr) = run(&["--socket", "/nonexistent/x.sock", "whoami"]);
    assert_eq!(code, Some(3));
    assert!(stderr.contains("/nonexistent/x.sock"), "{stderr}");

    let (code, _) = run(&["credential", "add", "acme"]);
    assert_eq!(code, Some(2), "--smtp or --api is required");
    let (code, _) = run(&["credential", "add", "acme", "--smtp", "u", "--api"]);
    assert_eq!(code, Some(2), "--smtp and --api exclude each other");
    let (code, _) = run(&["operator", "add", "x", "--role", "king"]);
    assert_eq!(code, Some(2));
    let (code, _) = run(&["frobnicate"]);
    assert_eq!(code, Some(2));
    let (code, _) = run(&["webhook", "add", "acme", "https://hooks.acme.example"]);
    assert_eq!(code, Some(2), "--events is required");
    let (code, stderr) = run(&[
        "webhook",
        "add",
        "acme",
        "https://hooks.acme.example",
        "--events",
        "delivered,opened",
    ]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("unsubscribed"),
        "names the events: {stderr}"
    );
    // Without a terminal or --password-stdin there is nobody to ask.
    // (Only checkable where the test itself has no controlling terminal, as in CI.)
    if std::fs::File::open("/dev/tty").is_err() {
        let (code, stderr) = run(&["login", "--name", "admin", "--totp", "123456"]);
        assert_eq!(code, Some(2), "{stderr}");
        assert!(stderr.contains("--password-stdin"), "{stderr}");
        let (code, stderr) = run(&["tenant", "terminate", "acme"]);
        assert_eq!(code, Some(2), "{stderr}");
        assert!(stderr.contains("--yes"), "{stderr}");
    }
}
