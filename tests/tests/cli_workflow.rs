//! The `way2mail` CLI against the real daemon: bootstrap as root, login with a
//! TOTP code, tenant/domain/credential/operator/audit commands and the token file.
//! (Exit codes without a daemon: `control/cli/tests/exit_codes.rs`.)

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use way2mail_tests::control::Control;

/// One operator's CLI against one daemon: its token file is kept between commands.
struct Daemon {
    control: Control,
}

#[derive(Debug)]
struct Output {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Daemon {
    fn start(extra: &str) -> Daemon {
        Daemon {
            control: Control::start_with(extra).expect("start way2mail-control"),
        }
    }

    fn token_file(&self) -> PathBuf {
        self.control.dir().join("cli/token")
    }

    fn cli(&self, args: &[&str], stdin: &str) -> Output {
        let out = self
            .control
            .cli(Some(&self.token_file()), args, Some(stdin))
            .expect("run way2mail");
        Output {
            code: out.status.code().unwrap_or(-1),
            stdout: out.stdout,
            stderr: out.stderr,
        }
    }
}

const PASSWORD: &str = "correct horse battery staple";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

fn ok(out: &Output) -> &str {
    assert_eq!(out.code, 0, "{out:#?}");
    &out.stdout
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_str(ok(out)).unwrap_or_else(|e| panic!("{e}: {out:#?}"))
}

/// Bootstraps `admin` and logs in; returns the TOTP secret.
fn bootstrap_and_login(daemon: &Daemon) -> String {
    let created = json(&daemon.cli(
        &["--json", "bootstrap", "--name", "admin", "--password-stdin"],
        &format!("{PASSWORD}\n"),
    ));
    assert_eq!(created["kind"], "operator_created");
    let secret = created["totp_secret"].as_str().expect("secret").to_string();
    assert!(created["totp_uri"]
        .as_str()
        .expect("uri")
        .starts_with("otpauth://totp/"));
    let code = way2mail_control::totp::code(&secret, now()).expect("code");
    let out = daemon.cli(
        &[
            "login",
            "--name",
            "admin",
            "--password-stdin",
            "--totp",
            &code,
        ],
        &format!("{PASSWORD}\n"),
    );
    assert!(ok(&out).contains("logged in as admin (admin)"), "{out:#?}");
    secret
}

#[test]
fn operator_workflow() {
    let daemon = Daemon::start("");

    // Human bootstrap output shows the TOTP secret with the shown-once note, never
    // the password the operator chose; a second bootstrap is refused.
    let out = daemon.cli(
        &["bootstrap", "--name", "root2", "--password-stdin"],
        "short\n",
    );
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(out.stderr.starts_with("error: "), "{out:#?}");
    bootstrap_and_login(&daemon);
    let out = daemon.cli(
        &["bootstrap", "--name", "again", "--password-stdin"],
        &format!("{PASSWORD}\n"),
    );
    assert_eq!(out.code, 1, "{out:#?}");

    let token = daemon.token_file();
    let mode = std::fs::metadata(&token)
        .expect("token file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let dir_mode = std::fs::metadata(token.parent().expect("dir"))
        .expect("dir")
        .permissions()
        .mode();
    assert_eq!(dir_mode & 0o777, 0o700);

    let out = daemon.cli(&["whoami"], "");
    assert!(ok(&out).contains("operator:admin"), "{out:#?}");

    // Tenants.
    let out = daemon.cli(
        &[
            "tenant",
            "add",
            "acme",
            "--business-name",
            "Acme Corp",
            "--contact",
            "ops@acme.example",
            "--messages-per-hour",
            "50",
        ],
        "",
    );
    let text = ok(&out);
    assert!(text.contains("Acme Corp"), "{text}");
    assert!(text.contains("messages/hour:"), "{text}");
    let shown = json(&daemon.cli(&["--json", "tenant", "show", "acme"], ""));
    assert_eq!(shown["kind"], "tenant");
    assert_eq!(shown["limits"]["messages_per_hour"], 50);
    assert_eq!(shown["status"], "active");
    let out = daemon.cli(&["tenant", "list"], "");
    let text = ok(&out);
    let header = text.lines().next().expect("header");
    assert!(header.starts_with("TENANT  STATUS"), "{text}");
    assert!(text.lines().any(|l| l.starts_with("acme ")), "{text}");
    assert!(text.contains("Z"), "dates in RFC 3339 UTC: {text}");
    let out = daemon.cli(
        &["tenant", "update", "acme", "--contact", "new@acme.example"],
        "",
    );
    let text = ok(&out);
    assert!(text.starts_with("tenant acme updated\n"), "{text}");
    assert!(text.contains("new@acme.example"), "{text}");
    let out = daemon.cli(&["tenant", "update", "acme"], "");
    assert_eq!(out.code, 2, "nothing to update is a usage error: {out:#?}");
    let out = daemon.cli(&["tenant", "suspend", "acme"], "");
    assert!(ok(&out).starts_with("tenant acme suspended\n"), "{out:#?}");
    let shown = json(&daemon.cli(&["--json", "tenant", "show", "acme"], ""));
    assert_eq!(shown["status"], "suspended");
    let out = daemon.cli(&["tenant", "resume", "acme"], "");
    assert!(ok(&out).starts_with("tenant acme resumed\n"), "{out:#?}");

    // Domains and credentials.
    ok(&daemon.cli(&["domain", "add", "acme", "acme.example"], ""));
    let out = daemon.cli(&["domain", "list", "--tenant", "acme"], "");
    assert!(ok(&out).contains("acme.example"), "{out:#?}");
    let out = daemon.cli(
        &["credential", "add", "acme", "--smtp", "mailer@acme.example"],
        "",
    );
    let text = ok(&out);
    assert!(text.contains("shown only this once"), "{text}");
    assert!(text.contains("password:"), "{text}");
    let created = json(&daemon.cli(&["--json", "credential", "add", "acme", "--api"], ""));
    assert_eq!(created["kind"], "credential_created");
    let id = created["credential"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    assert!(!created["secret"].as_str().expect("secret").is_empty());
    ok(&daemon.cli(&["credential", "revoke", &id], ""));
    let out = daemon.cli(&["credential", "list", "--tenant", "acme"], "");
    let text = ok(&out);
    assert!(text.starts_with("ID "), "{text}");
    assert!(!text.contains(created["secret"].as_str().expect("secret")));

    // Operators.
    let out = daemon.cli(&["operator", "add", "sam", "--role", "support"], "");
    let text = ok(&out);
    assert!(text.contains("TOTP secret:"), "{text}");
    assert!(text.contains("shown only this once"), "{text}");
    ok(&daemon.cli(&["operator", "role", "sam", "auditor"], ""));
    let out = daemon.cli(&["operator", "list"], "");
    assert!(ok(&out)
        .lines()
        .any(|l| l.starts_with("sam ") && l.contains("auditor")));
    ok(&daemon.cli(&["operator", "remove", "sam"], ""));

    // Terminate needs --yes without a terminal.
    let out = daemon.cli(&["tenant", "terminate", "acme", "--yes"], "");
    assert!(ok(&out).starts_with("tenant acme terminated"), "{out:#?}");

    // Audit: the list shows what happened; the chain verifies.
    let out = daemon.cli(&["audit", "list", "--tenant", "acme"], "");
    let text = ok(&out);
    assert!(text.starts_with("SEQ "), "{text}");
    assert!(text.contains("tenant.add"), "{text}");
    let out = daemon.cli(&["audit", "verify"], "");
    assert!(ok(&out).contains("intact"), "{out:#?}");

    // Refused requests exit 1 with `error:`.
    let out = daemon.cli(&["tenant", "show", "nosuch"], "");
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(out.stderr.starts_with("error: "), "{out:#?}");

    // Logout removes the token file; then commands need a login again.
    assert!(ok(&daemon.cli(&["logout"], "")).starts_with("logged out"));
    assert!(!token.exists());
    let out = daemon.cli(&["tenant", "list"], "");
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(
        out.stderr.contains("way2mail login"),
        "hint to log in: {out:#?}"
    );
}
