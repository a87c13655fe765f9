//! The control plane from an operator's shell: the real `way2mail-control` daemon and
//! the real `way2mail` CLI over its Unix socket. Every role runs every command (each
//! allowed or refused with a clear error, every refusal in the audit log); TOTP codes
//! are computed from the secrets the daemon handed out (right, wrong, outside the
//! window, replayed); the audit chain is tampered with in the store itself (an entry
//! changed, one removed, two swapped) and `audit verify` must name each break.

use std::collections::BTreeSet;

use anyhow::{ensure, Context};
use serde_json::Value;
use way2mail_control::audit::AuditLog;
use way2mail_control::store::Store;
use way2mail_tests::control::{json_str, totp_now, CliOutput, Control, Operator};

/// One CLI command of the matrix: its wire operation, and how to run it as the role
/// under test (`prepare` runs as admin first and may create what the command acts on).
struct Case {
    op: &'static str,
    /// Given a fresh suffix, the admin sets up targets and returns the command's args.
    args: fn(&Control, &Operator, &str) -> anyhow::Result<Vec<String>>,
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

fn add_tenant(control: &Control, admin: &Operator, id: &str) -> anyhow::Result<()> {
    control
        .run_as(
            admin,
            &[
                "tenant",
                "add",
                id,
                "--business-name",
                "Matrix Ltd",
                "--contact",
                "ops@matrix.example",
            ],
        )?
        .ok()
        .map(|_| ())
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            op: "tenant.add",
            args: |_, _, s| {
                Ok(strings(&[
                    "tenant",
                    "add",
                    &format!("new-{s}"),
                    "--business-name",
                    "New Ltd",
                    "--contact",
                    "a@new.example",
                ]))
            },
        },
        Case {
            op: "tenant.list",
            args: |_, _, _| Ok(strings(&["tenant", "list"])),
        },
        Case {
            op: "tenant.show",
            args: |c, a, s| {
                add_tenant(c, a, &format!("show-{s}"))?;
                Ok(strings(&["tenant", "show", &format!("show-{s}")]))
            },
        },
        Case {
            op: "tenant.update",
            args: |c, a, s| {
                add_tenant(c, a, &format!("upd-{s}"))?;
                Ok(strings(&[
                    "tenant",
                    "update",
                    &format!("upd-{s}"),
                    "--contact",
                    "new@matrix.example",
                ]))
            },
        },
        Case {
            op: "tenant.suspend",
            args: |c, a, s| {
                add_tenant(c, a, &format!("sus-{s}"))?;
                Ok(strings(&["tenant", "suspend", &format!("sus-{s}")]))
            },
        },
        Case {
            op: "tenant.resume",
            args: |c, a, s| {
                add_tenant(c, a, &format!("res-{s}"))?;
                c.run_as(a, &["tenant", "suspend", &format!("res-{s}")])?
                    .ok()?;
                Ok(strings(&["tenant", "resume", &format!("res-{s}")]))
            },
        },
        Case {
            op: "tenant.terminate",
            args: |c, a, s| {
                add_tenant(c, a, &format!("term-{s}"))?;
                Ok(strings(&[
                    "tenant",
                    "terminate",
                    &format!("term-{s}"),
                    "--yes",
                ]))
            },
        },
        Case {
            op: "domain.add",
            args: |c, a, s| {
                add_tenant(c, a, &format!("dom-{s}"))?;
                Ok(strings(&[
                    "domain",
                    "add",
                    &format!("dom-{s}"),
                    &format!("{s}.dom.example"),
                ]))
            },
        },
        Case {
            op: "domain.list",
            args: |_, _, _| Ok(strings(&["domain", "list"])),
        },
        Case {
            op: "domain.remove",
            args: |c, a, s| {
                let t = format!("rmd-{s}");
                let d = format!("{s}.rmd.example");
                add_tenant(c, a, &t)?;
                c.run_as(a, &["domain", "add", &t, &d])?.ok()?;
                Ok(strings(&["domain", "remove", &t, &d]))
            },
        },
        Case {
            op: "credential.add",
            args: |c, a, s| {
                add_tenant(c, a, &format!("cra-{s}"))?;
                Ok(strings(&[
                    "credential",
                    "add",
                    &format!("cra-{s}"),
                    "--smtp",
                    &format!("user-{s}@cra.example"),
                ]))
            },
        },
        Case {
            op: "credential.list",
            args: |_, _, _| Ok(strings(&["credential", "list"])),
        },
        Case {
            op: "credential.revoke",
            args: |c, a, s| {
                let t = format!("crr-{s}");
                add_tenant(c, a, &t)?;
                let out = c
                    .run_as(a, &["--json", "credential", "add", &t, "--api"])?
                    .ok()?
                    .json()?;
                let id = out
                    .pointer("/credential/id")
                    .and_then(Value::as_str)
                    .context("credential id")?
                    .to_string();
                Ok(strings(&["credential", "revoke", &id]))
            },
        },
        Case {
            op: "operator.add",
            args: |_, _, s| {
                Ok(strings(&[
                    "operator",
                    "add",
                    &format!("new-op-{s}"),
                    "--role",
                    "support",
                ]))
            },
        },
        Case {
            op: "operator.list",
            args: |_, _, _| Ok(strings(&["operator", "list"])),
        },
        Case {
            op: "operator.role",
            args: |c, a, s| {
                let name = format!("role-op-{s}");
                c.run_as(a, &["operator", "add", &name, "--role", "support"])?
                    .ok()?;
                Ok(strings(&["operator", "role", &name, "auditor"]))
            },
        },
        Case {
            op: "operator.remove",
            args: |c, a, s| {
                let name = format!("rm-op-{s}");
                c.run_as(a, &["operator", "add", &name, "--role", "support"])?
                    .ok()?;
                Ok(strings(&["operator", "remove", &name]))
            },
        },
        Case {
            op: "audit.list",
            args: |_, _, _| Ok(strings(&["audit", "list"])),
        },
        Case {
            op: "audit.verify",
            args: |_, _, _| Ok(strings(&["audit", "verify"])),
        },
    ]
}

/// Least privilege, as the issue and docs/control-protocol.md state it.
fn allowed(role: &str, op: &str) -> bool {
    match role {
        "admin" => true,
        "operator" => ["tenant.", "domain.", "credential."]
            .iter()
            .any(|p| op.starts_with(p)),
        "support" => matches!(op, "tenant.list" | "tenant.show" | "domain.list"),
        "auditor" => op.starts_with("audit."),
        _ => false,
    }
}

fn refusal_is_clear(out: &CliOutput) -> bool {
    let text = out.stderr.to_lowercase();
    !out.status.success()
        && ["forbidden", "not allowed", "may not", "permission", "role"]
            .iter()
            .any(|w| text.contains(w))
}

#[test]
fn every_role_against_every_command() -> anyhow::Result<()> {
    let control = Control::start()?;
    let admin = control.bootstrap_admin("root-admin")?;
    let operators = [
        control.add_operator(&admin, "alice-admin", "admin")?,
        control.add_operator(&admin, "oscar-operator", "operator")?,
        control.add_operator(&admin, "sam-support", "support")?,
        control.add_operator(&admin, "audrey-auditor", "auditor")?,
    ];
    let mut refused = BTreeSet::new();
    for (i, op) in operators.iter().enumerate() {
        for (j, case) in cases().iter().enumerate() {
            let suffix = format!("{i}x{j}");
            let mut args = (case.args)(&control, &admin, &suffix)?;
            // Support must always say why it looks at client data.
            if op.role == "support" {
                args.splice(0..0, strings(&["--reason", "ticket 4711"]));
            }
            let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
            let out = control.run_as(op, &arg_refs)?;
            if allowed(&op.role, case.op) {
                ensure!(
                    out.status.success(),
                    "{} ({}) should be allowed {}: {}{}",
                    op.name,
                    op.role,
                    case.op,
                    out.stdout,
                    out.stderr
                );
            } else {
                ensure!(
                    refusal_is_clear(&out),
                    "{} ({}) should be refused {} with a clear error, got {}: {}{}",
                    op.name,
                    op.role,
                    case.op,
                    out.status,
                    out.stdout,
                    out.stderr
                );
                refused.insert((format!("operator:{}", op.name), case.op.to_string()));
            }
        }
    }

    // Support without a reason is refused even for what its role may read.
    let support = &operators[2];
    let out = control.run_as(support, &["tenant", "list"])?;
    ensure!(
        !out.status.success() && out.stderr.to_lowercase().contains("reason"),
        "support without --reason: {}{}",
        out.stdout,
        out.stderr
    );
    refused.insert((format!("operator:{}", support.name), "tenant.list".into()));

    // Root without a token bootstraps and does nothing else; bootstrap happens once.
    let out = control.cli(None, &["tenant", "list"], None)?;
    ensure!(!out.status.success(), "tokenless root listed tenants");
    let out = control.cli(
        None,
        &["bootstrap", "--name", "second", "--password-stdin"],
        Some("another-long-password\n"),
    )?;
    ensure!(!out.status.success(), "a second bootstrap succeeded");

    // Every refused attempt is in the audit log, as denied, with who and what.
    let auditor = &operators[3];
    let entries = control
        .run_as(auditor, &["--json", "audit", "list", "--limit", "10000"])?
        .ok()?
        .json()?;
    let entries = entries
        .get("entries")
        .and_then(Value::as_array)
        .context("audit entries")?;
    let denied: BTreeSet<(String, String)> = entries
        .iter()
        .filter(|e| e.get("outcome").and_then(Value::as_str) == Some("denied"))
        .filter_map(|e| Some((json_str(e, "actor").ok()?, json_str(e, "action").ok()?)))
        .collect();
    let missing: Vec<_> = refused.difference(&denied).collect();
    ensure!(
        missing.is_empty(),
        "refused attempts missing from the audit log: {missing:?}"
    );
    // The reason support gave is recorded with its reads.
    ensure!(
        entries.iter().any(|e| {
            e.get("actor").and_then(Value::as_str) == Some("operator:sam-support")
                && e.get("outcome").and_then(Value::as_str) == Some("ok")
                && e.get("reason").and_then(Value::as_str) == Some("ticket 4711")
        }),
        "support's reads are not audited with their reason"
    );
    control
        .run_as(auditor, &["audit", "verify"])?
        .ok()
        .context("the untouched chain verifies")?;
    Ok(())
}

#[test]
fn totp_right_wrong_outside_window_and_replay() -> anyhow::Result<()> {
    let control = Control::start()?;
    let admin = control.bootstrap_admin("admin")?;
    let out = control
        .run_as(
            &admin,
            &["--json", "operator", "add", "olga", "--role", "operator"],
        )?
        .ok()?
        .json()?;
    let olga = Operator {
        name: "olga".into(),
        role: "operator".into(),
        password: json_str(&out, "password")?,
        totp_secret: json_str(&out, "totp_secret")?,
        token_file: control.dir().join("token-olga"),
    };
    ensure!(
        json_str(&out, "totp_uri")?.starts_with("otpauth://totp/"),
        "no otpauth URI"
    );

    // A wrong code, and right codes from ten and five minutes ago: all refused.
    let right = totp_now(&olga.totp_secret, 0)?;
    let wrong = format!("{:06}", (right.parse::<u32>()? + 1) % 1_000_000);
    for code in [
        wrong,
        totp_now(&olga.totp_secret, -600)?,
        totp_now(&olga.totp_secret, -300)?,
        totp_now(&olga.totp_secret, 300)?,
    ] {
        let out = control.login_with_code(&olga, &code)?;
        ensure!(!out.status.success(), "login with code {code} succeeded");
        ensure!(!olga.token_file.exists(), "a failed login wrote a token");
    }
    // The wrong password with the right code fails too.
    let mut bad = olga.clone();
    bad.password.push('x');
    ensure!(!control.login_with_code(&bad, &right)?.status.success());

    // The right code works once; the same code again is a replay.
    control.login_with_code(&olga, &right)?.ok()?;
    control.run_as(&olga, &["tenant", "list"])?.ok()?;
    let out = control.login_with_code(&olga, &right)?;
    ensure!(!out.status.success(), "a TOTP code was accepted twice");

    // Logout ends the session on the daemon, not only in the token file.
    let token = std::fs::read_to_string(&olga.token_file)?;
    control.run_as(&olga, &["logout"])?.ok()?;
    let out = control.cli(None, &["--token", token.trim(), "tenant", "list"], None)?;
    ensure!(!out.status.success(), "a logged-out token still works");

    // Every login attempt is audited, none with a secret in it.
    let entries = control
        .run_as(&admin, &["--json", "audit", "list", "--limit", "1000"])?
        .ok()?;
    let logins = entries.stdout.matches("\"login\"").count();
    ensure!(logins >= 7, "expected every login audited, found {logins}");
    let secrets: [&str; 4] = [&olga.password, &olga.totp_secret, &right, token.trim()];
    for secret in secrets {
        ensure!(
            !entries.stdout.contains(secret),
            "a secret appears in the audit log"
        );
        ensure!(
            !control.log().contains(secret),
            "a secret in the daemon log"
        );
    }
    Ok(())
}

/// What a tamperer does to the stopped daemon's store.
#[derive(Debug, Clone, Copy)]
enum Tamper {
    /// Re-seal one entry with changed content, as an insider holding the key would.
    ChangeWithKey,
    /// Flip a byte of one sealed entry, as someone without the key would.
    ChangeWithoutKey,
    Remove,
    /// Swap the contents of two entries, re-sealed under each other's keys.
    Reorder,
}

fn tampered_chain_is_detected(tamper: Tamper) -> anyhow::Result<()> {
    let mut control = Control::start()?;
    let admin = control.bootstrap_admin("admin")?;
    for i in 0..4 {
        add_tenant(&control, &admin, &format!("t{i}"))?;
    }
    control.run_as(&admin, &["audit", "verify"])?.ok()?;
    control.stop()?;

    {
        let store = Store::open(&control.store_files())?;
        let raw = store.audit_raw()?;
        ensure!(
            raw.len() >= 6,
            "expected several audit entries, got {}",
            raw.len()
        );
        let (a, b) = (raw[2].0, raw[3].0);
        match tamper {
            Tamper::ChangeWithKey => {
                let mut entry = AuditLog::open_entry(&store, a, &raw[2].1)?;
                entry.tenant = Some("someone-else".into());
                store.audit_put_raw(a, &AuditLog::seal_entry_at(&store, a, &entry)?)?;
            }
            Tamper::ChangeWithoutKey => {
                let mut bytes = raw[2].1.clone();
                let last = bytes.len() - 1;
                bytes[last] ^= 0x40;
                store.audit_put_raw(a, &bytes)?;
            }
            Tamper::Remove => store.audit_remove_raw(a)?,
            Tamper::Reorder => {
                // Each entry's content moves to the other's slot, sealed properly
                // for that slot: only the chain can tell.
                let first = AuditLog::open_entry(&store, a, &raw[2].1)?;
                let second = AuditLog::open_entry(&store, b, &raw[3].1)?;
                store.audit_put_raw(a, &AuditLog::seal_entry_at(&store, a, &second)?)?;
                store.audit_put_raw(b, &AuditLog::seal_entry_at(&store, b, &first)?)?;
            }
        }
    }

    control.restart()?;
    let out = control.run_as(&admin, &["audit", "verify"])?;
    ensure!(
        !out.status.success(),
        "{tamper:?}: audit verify passed on a tampered chain: {}",
        out.stdout
    );
    ensure!(
        !(out.stdout.trim().is_empty() && out.stderr.trim().is_empty()),
        "{tamper:?}: verify failed without saying why"
    );
    let report = control
        .run_as(&admin, &["--json", "audit", "verify"])?
        .json()?;
    let problems = report
        .get("problems")
        .and_then(Value::as_array)
        .context("problems")?;
    ensure!(!problems.is_empty(), "{tamper:?}: no problem reported");
    let kinds: Vec<&str> = problems
        .iter()
        .filter_map(|p| p.get("kind").and_then(Value::as_str))
        .collect();
    let expected = match tamper {
        Tamper::ChangeWithKey => "changed",
        Tamper::ChangeWithoutKey => "unreadable",
        Tamper::Remove => "removed",
        Tamper::Reorder => "reordered",
    };
    ensure!(
        kinds.contains(&expected),
        "{tamper:?}: expected a `{expected}` problem, got {problems:?}"
    );
    Ok(())
}

#[test]
fn audit_verify_catches_a_changed_entry() -> anyhow::Result<()> {
    tampered_chain_is_detected(Tamper::ChangeWithKey)
}

#[test]
fn audit_verify_catches_a_changed_entry_without_the_key() -> anyhow::Result<()> {
    tampered_chain_is_detected(Tamper::ChangeWithoutKey)
}

#[test]
fn audit_verify_catches_a_removed_entry() -> anyhow::Result<()> {
    tampered_chain_is_detected(Tamper::Remove)
}

#[test]
fn audit_verify_catches_two_reordered_entries() -> anyhow::Result<()> {
    tampered_chain_is_detected(Tamper::Reorder)
}
