//! The AUTH dialogue table (RFC 4954, PLAIN RFC 4616, LOGIN) and the tenant rules of
//! an authenticated submission session: client bytes, the reply codes, the reply
//! lines that must appear verbatim, the events, and how often the tenant policy heard
//! of a queued message. Cases are named `cNN_...` after the line of
//! `SMTP_CONFORMANCE.md` they answer (21-23), `t_...` for tenant rules and `x_...`
//! for the rest. Like `dialogue.rs`, every case runs fed whole, split at every byte
//! boundary, and byte by byte; all three must agree. The driver answers credentials
//! with the verdicts scripted in `driver::verdict` and checks at every
//! `Event::Authenticate` that the password is in no `Debug` output.

mod driver;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use driver::{run, run_chunked, split_phase, Setup, Transcript, HOST};

const E: &str = "EHLO client.example\r\n";
const TLS: &str = "STARTTLS\r\n";
const M: &str = "MAIL FROM:<user@acme.example>\r\n";
const R: &str = "RCPT TO:<user@example.org>\r\n";
const MSG: &str = "DATA\r\nSubject: t\r\n\r\nhello\r\n.\r\n";

fn b64(s: &str) -> String {
    STANDARD.encode(s)
}

/// `AUTH PLAIN` with an initial response for `user`/`pass`.
fn plain(user: &str, pass: &str) -> String {
    format!("AUTH PLAIN {}\r\n", b64(&format!("\0{user}\0{pass}")))
}

fn alice() -> String {
    plain("alice", driver::PASSWORD)
}

struct Case {
    name: &'static str,
    setup: Setup,
    /// Client bytes; a TLS handshake happens between phases.
    phases: Vec<String>,
    codes: Vec<u16>,
    /// Reply lines that must appear, exactly.
    lines: Vec<String>,
    /// The events when they matter (otherwise only compared across chunkings).
    events: Option<Vec<&'static str>>,
    closed: bool,
    messages: usize,
    /// `TenantPolicy::message_queued` calls.
    queued: usize,
}

fn case(name: &'static str, setup: Setup, phases: &[&str], codes: &[u16]) -> Case {
    Case {
        name,
        setup,
        phases: phases.iter().map(|p| p.to_string()).collect(),
        codes: codes.to_vec(),
        lines: Vec::new(),
        events: None,
        closed: false,
        messages: 0,
        queued: 0,
    }
}

impl Case {
    fn line(mut self, l: &str) -> Case {
        self.lines.push(l.to_string());
        self
    }

    fn events(mut self, e: &[&'static str]) -> Case {
        self.events = Some(e.to_vec());
        self
    }

    fn closed(mut self) -> Case {
        self.closed = true;
        self
    }

    /// Messages accepted, each also counted by the tenant policy.
    fn queued(mut self, n: usize) -> Case {
        self.messages = n;
        self.queued = n;
        self
    }

    fn messages(mut self, n: usize) -> Case {
        self.messages = n;
        self
    }
}

fn cat(parts: &[&str]) -> String {
    parts.concat()
}

fn cases() -> Vec<Case> {
    let mut v = sequence_cases();
    v.extend(exchange_cases());
    v.extend(verdict_cases());
    v.extend(tenant_cases());
    v.extend(line_length_cases());
    v
}

/// Line 21 and 23: when AUTH may start.
fn sequence_cases() -> Vec<Case> {
    use Setup::*;
    let a = alice();
    vec![
        case("c21_auth_before_ehlo", AuthSubmissions, &[&a], &[220, 503]).events(&[]),
        case(
            "c21_auth_after_helo",
            AuthSubmissions,
            &[&cat(&["HELO c.example\r\n", &a])],
            &[220, 250, 503],
        ),
        case(
            "c21_unknown_mechanism_and_syntax",
            AuthSubmissions,
            &[&cat(&[
                E,
                "AUTH CRAM-MD5\r\nAUTH\r\nAUTH PLAIN a b\r\nauth plain\r\n*\r\n",
            ])],
            &[220, 250, 504, 501, 501, 334, 501],
        )
        .line("504 5.5.4 Unrecognized authentication mechanism"),
        case(
            "c21_auth_in_transaction",
            AuthTrusted,
            &[&cat(&[E, M, &a, "RSET\r\n", &a])],
            &[220, 250, 250, 503, 250, 235],
        )
        .events(&["authenticate Plain alice"]),
        case(
            "c21_second_auth",
            AuthSubmissions,
            &[&cat(&[E, &a, &a, "AUTH LOGIN\r\n"])],
            &[220, 250, 235, 503, 503],
        )
        .line("503 5.5.1 Already authenticated")
        .events(&["authenticate Plain alice"]),
        case(
            "c23_auth_needs_tls_on_submission",
            AuthSubmission,
            &[&cat(&[E, &a, TLS]), &cat(&[E, &a, M, R, MSG])],
            &[220, 250, 538, 220, 250, 235, 250, 250, 354, 250],
        )
        .line("538 5.7.11 Encryption required for requested authentication mechanism")
        .queued(1),
        case(
            "c23_auth_never_on_mx",
            AuthMx,
            &[&cat(&[E, &a, TLS]), &cat(&[E, &a])],
            &[220, 250, 502, 220, 250, 502],
        )
        .line("502 5.5.1 Command not implemented")
        .events(&["starttls"]),
        case(
            "c23_auth_without_tenants",
            Submissions,
            &[&cat(&[E, &a])],
            &[220, 250, 502],
        ),
        case(
            "c23_mail_without_auth",
            AuthSubmissions,
            &[&cat(&[E, M, R])],
            &[220, 250, 530, 503],
        )
        .line("530 5.7.0 Authentication required"),
        case(
            "c23_mail_without_auth_after_starttls",
            AuthSubmission,
            &[&cat(&[E, M, TLS]), &cat(&[E, M])],
            &[220, 250, 530, 220, 250, 530],
        )
        .line("530 5.7.0 Must issue a STARTTLS command first")
        .line("530 5.7.0 Authentication required"),
        case(
            "c23_trusted_network_needs_no_auth",
            AuthTrusted,
            &[&cat(&[
                E,
                "MAIL FROM:<any@where.example>\r\nRCPT TO:<x@elsewhere.example>\r\n",
                MSG,
            ])],
            &[220, 250, 250, 250, 354, 250],
        )
        .messages(1),
        case(
            "x_starttls_after_auth_refused",
            AuthSubmission,
            &[&cat(&[E, TLS]), &cat(&[E, &a, TLS, M])],
            &[220, 250, 220, 250, 235, 503, 250],
        ),
        case(
            "x_rset_and_ehlo_keep_auth",
            AuthSubmissions,
            &[&cat(&[E, &a, M, "RSET\r\n", M, E, M, R, MSG])],
            &[220, 250, 235, 250, 250, 250, 250, 250, 250, 354, 250],
        )
        .queued(1),
    ]
}

/// Line 22: the PLAIN and LOGIN exchanges.
fn exchange_cases() -> Vec<Case> {
    use Setup::*;
    let p = b64(&format!("\0alice\0{}", driver::PASSWORD));
    let user = format!("{}\r\n", b64("alice"));
    let pass = format!("{}\r\n", b64(driver::PASSWORD));
    let raw = |message: &str| format!("AUTH PLAIN {}\r\n", b64(message));
    let bad = [
        "AUTH PLAIN !!!!\r\nAUTH PLAIN\r\nnot base64\r\nAUTH LOGIN\r\nYWxpY2U\r\n",
        "AUTH PLAIN ",
        p.trim_end_matches('='),
        "\r\n",
    ];
    vec![
        case(
            "c22_plain_initial_response",
            AuthSubmissions,
            &[&cat(&[E, &alice()])],
            &[220, 250, 235],
        )
        .line("235 2.7.0 Authentication successful")
        .events(&["authenticate Plain alice"]),
        case(
            "c22_plain_after_empty_challenge",
            AuthSubmissions,
            &[&cat(&[E, "AUTH PLAIN\r\n", &p, "\r\n"])],
            &[220, 250, 334, 235],
        )
        .line("334 "),
        case(
            "c22_plain_authzid_equal",
            AuthSubmissions,
            &[&cat(&[E, &raw("alice\0alice\0secret")])],
            &[220, 250, 235],
        ),
        case(
            "c22_plain_authzid_mismatch",
            AuthSubmissions,
            &[&cat(&[E, &raw("bob\0alice\0secret")])],
            &[220, 250, 535],
        )
        .events(&[]),
        case(
            "c22_plain_empty_initial_response",
            AuthSubmissions,
            &[&cat(&[E, "AUTH PLAIN =\r\n"])],
            &[220, 250, 501],
        ),
        case(
            "c22_login",
            AuthSubmissions,
            &[&cat(&[E, "AUTH LOGIN\r\n", &user, &pass])],
            &[220, 250, 334, 334, 235],
        )
        .line("334 VXNlcm5hbWU6")
        .line("334 UGFzc3dvcmQ6")
        .events(&["authenticate Login alice"]),
        case(
            "c22_login_initial_response",
            AuthSubmissions,
            &[&cat(&[E, "auth login ", &user, &pass])],
            &[220, 250, 334, 235],
        )
        .events(&["authenticate Login alice"]),
        case(
            "c22_cancel_plain",
            AuthSubmissions,
            &[&cat(&[E, "AUTH PLAIN\r\n*\r\nNOOP\r\n"])],
            &[220, 250, 334, 501, 250],
        )
        .line("501 5.0.0 Authentication canceled")
        .events(&[]),
        case(
            "c22_cancel_login",
            AuthSubmissions,
            &[&cat(&[
                E,
                "AUTH LOGIN\r\n*\r\nAUTH LOGIN\r\n",
                &user,
                "*\r\n",
                &alice(),
            ])],
            &[220, 250, 334, 501, 334, 334, 501, 235],
        ),
        case(
            "c22_bad_base64",
            AuthSubmissions,
            &[&cat(&[E, &bad.concat()])],
            &[220, 250, 501, 334, 501, 334, 501, 501],
        )
        .line("501 5.5.2 Malformed authentication response")
        .events(&[]),
        case(
            "c22_plain_wrong_structure",
            AuthSubmissions,
            &[&cat(&[E, &raw("alice\0secret")])],
            &[220, 250, 501],
        ),
        case(
            "c22_empty_credentials_not_asked",
            AuthSubmissions,
            &[&cat(&[
                E,
                &plain("alice", ""),
                &plain("", "secret"),
                "AUTH LOGIN =\r\n",
                &pass,
            ])],
            &[220, 250, 535, 535, 334, 535],
        )
        .events(&[]),
    ]
}

/// Line 22: every verdict, and pipelined input waiting for it.
fn verdict_cases() -> Vec<Case> {
    use Setup::*;
    vec![
        case(
            "c22_wrong_password",
            AuthSubmissions,
            &[&cat(&[E, &plain("alice", "wrong-pass"), M])],
            &[220, 250, 535, 530],
        )
        .line("535 5.7.8 Authentication credentials invalid")
        .events(&["authenticate Plain alice"]),
        case(
            "c22_tenant_disabled",
            AuthSubmissions,
            &[&cat(&[E, &plain("bob", driver::PASSWORD), M])],
            &[220, 250, 535, 530],
        )
        .line("535 5.7.8 Account disabled: the tenant is suspended or terminated"),
        case(
            "c22_locked_out",
            AuthSubmissions,
            &[&cat(&[E, &plain("locked", "any-pass"), "NOOP\r\n"])],
            &[220, 250, 421],
        )
        .line(&format!(
            "421 4.7.0 {HOST} Too many authentication failures, try again later"
        ))
        .events(&["authenticate Plain locked", "close"])
        .closed(),
        case(
            "c22_unavailable",
            AuthSubmissions,
            &[&cat(&[E, &plain("down", "any-pass"), &alice()])],
            &[220, 250, 454, 235],
        )
        .line("454 4.7.0 Temporary authentication failure"),
        case(
            "x_pipelined_mail_after_auth_plain",
            AuthSubmissions,
            &[&cat(&[E, &alice(), M, R, MSG, "QUIT\r\n"])],
            &[220, 250, 235, 250, 250, 354, 250, 221],
        )
        .events(&[
            "authenticate Plain alice",
            "message from <user@acme.example>",
            "close",
        ])
        .closed()
        .queued(1),
        case(
            "x_failed_auth_counts_as_error",
            AuthStrict,
            &[&cat(&[
                E,
                &plain("alice", "no1"),
                "AUTH FOO\r\n",
                &plain("alice", "no2"),
                &plain("alice", "no3"),
                &plain("alice", "no4"),
                &alice(),
            ])],
            &[220, 250, 535, 504, 535, 535, 535, 421],
        )
        .events(&[
            "authenticate Plain alice",
            "authenticate Plain alice",
            "tarpit 5ms",
            "authenticate Plain alice",
            "tarpit 5ms",
            "authenticate Plain alice",
            "tarpit 5ms",
            "close",
        ])
        .closed(),
    ]
}

/// Tenant rules for an authenticated session.
fn tenant_cases() -> Vec<Case> {
    use Setup::*;
    let a = alice();
    let rcpts: String = (1..=4)
        .map(|i| format!("RCPT TO:<u{i}@example.org>\r\n"))
        .collect();
    vec![
        case(
            "t_sender_checked",
            AuthSubmissions,
            &[&cat(&[
                E,
                &a,
                "MAIL FROM:<user@other.example>\r\nMAIL FROM:<>\r\n",
                M,
            ])],
            &[220, 250, 235, 553, 553, 250],
        )
        .line("553 5.7.1 Sender address not owned by tenant"),
        case(
            "t_recipients_checked",
            AuthSubmissions,
            &[&cat(&[E, &a, M, &rcpts, MSG])],
            &[220, 250, 235, 250, 250, 250, 250, 452, 354, 250],
        )
        .line("452 4.5.3 Tenant limit: 3 recipients per message")
        .queued(1),
        // The suppressed recipient is refused, the rest of the transaction goes on
        // and only the others are queued.
        case(
            "t_suppressed_recipient_refused",
            AuthSubmissions,
            &[&cat(&[
                E,
                &a,
                M,
                "RCPT TO:<Unsubscribed@Example.ORG>\r\n",
                R,
                MSG,
            ])],
            &[220, 250, 235, 250, 550, 250, 354, 250],
        )
        .line(
            "550 5.7.1 Recipient <Unsubscribed@Example.ORG> is on this account's suppression list",
        )
        .queued(1),
        // Without AUTH no tenant's list applies.
        case(
            "t_suppression_is_per_tenant_session",
            AuthTrusted,
            &[&cat(&[E, M, "RCPT TO:<unsubscribed@example.org>\r\n", MSG])],
            &[220, 250, 250, 250, 354, 250],
        )
        .messages(1),
        case(
            "t_authenticated_may_relay",
            AuthSubmissions,
            &[&cat(&[E, &a, M, "RCPT TO:<x@elsewhere.example>\r\n", MSG])],
            &[220, 250, 235, 250, 250, 354, 250],
        )
        .queued(1),
        case(
            "t_unauthenticated_trusted_not_counted",
            AuthTrusted,
            &[&cat(&[E, M, R, MSG])],
            &[220, 250, 250, 250, 354, 250],
        )
        .messages(1),
        case(
            "t_each_queued_message_counted_once",
            AuthSubmissions,
            &[&cat(&[
                E,
                &a,
                M,
                R,
                MSG,
                M,
                R,
                "BDAT 5 LAST\r\nhello",
                M,
                R,
                "DATA\r\n",
                &"Received: x\r\n".repeat(11),
                "\r\nb\r\n.\r\n",
            ])],
            &[
                220, 250, 235, 250, 250, 354, 250, 250, 250, 250, 250, 250, 354, 554,
            ],
        )
        .queued(2),
    ]
}

/// RFC 4954 §4: AUTH lines up to 12288 octets where AUTH exists, never more.
fn line_length_cases() -> Vec<Case> {
    use Setup::*;
    // `\0alice\0` and 9197 octets of password are 12272 octets of base64; with the
    // verb, three trailing spaces (ignored) and CRLF the line is exactly 12288 octets.
    let exact = plain("alice", &"p".repeat(9197)).replace("\r\n", "   \r\n");
    assert_eq!(exact.len(), 12288);
    let too_long = exact.replace("   \r\n", "    \r\n");
    let long_response = format!("{}\r\n", b64(&"p".repeat(9000)));
    vec![
        case(
            "x_long_auth_line_accepted",
            AuthSubmissions,
            &[&cat(&[E, &exact])],
            &[220, 250, 535],
        )
        .events(&["authenticate Plain alice"]),
        case(
            "x_auth_line_over_12288",
            AuthSubmissions,
            &[&cat(&[E, &too_long, "NOOP\r\n"])],
            &[220, 250, 500, 250],
        )
        .events(&[]),
        case(
            "x_long_login_response",
            AuthSubmissions,
            &[&cat(&[E, "AUTH LOGIN YWxpY2U=\r\n", &long_response])],
            &[220, 250, 334, 535],
        ),
        case(
            "x_login_response_over_12288",
            AuthSubmissions,
            &[&cat(&[
                E,
                "AUTH LOGIN YWxpY2U=\r\n",
                &b64(&"p".repeat(9300)),
                "\r\nNOOP\r\n",
            ])],
            &[220, 250, 334, 500, 250],
        )
        .line("500 5.5.6 Authentication Exchange line is too long")
        .events(&[]),
        case(
            "x_long_auth_line_on_mx_refused",
            AuthMx,
            &[&cat(&[E, &plain("alice", &"p".repeat(400))])],
            &[220, 250, 500],
        ),
    ]
}

fn check(c: &Case, t: &Transcript, how: &str) {
    assert_eq!(t.codes(), c.codes, "{} ({how}): codes", c.name);
    assert_eq!(t.closed, c.closed, "{} ({how}): closed", c.name);
    assert_eq!(t.messages.len(), c.messages, "{} ({how}): messages", c.name);
    assert_eq!(
        t.tenant_queued.len(),
        c.queued,
        "{} ({how}): message_queued calls",
        c.name
    );
    for l in &c.lines {
        assert!(
            t.lines().any(|got| got == l),
            "{} ({how}): no line {l:?} in {:?}",
            c.name,
            t.lines().collect::<Vec<_>>()
        );
    }
    if let Some(events) = &c.events {
        assert_eq!(&t.events, events, "{} ({how}): events", c.name);
    }
}

fn whole(c: &Case) -> Transcript {
    let phases: Vec<&[u8]> = c.phases.iter().map(|p| p.as_bytes()).collect();
    run(c.setup, &phases)
}

fn same(c: &Case, t: &Transcript, reference: &Transcript, how: &str) {
    check(c, t, how);
    assert_eq!(t.events, reference.events, "{} ({how}): events", c.name);
    assert_eq!(
        t.comparable(),
        reference.comparable(),
        "{} ({how}): messages",
        c.name
    );
    assert_eq!(
        t.tenant_queued, reference.tenant_queued,
        "{} ({how}): grants",
        c.name
    );
}

#[test]
fn auth_table_fed_whole() {
    for c in cases() {
        check(&c, &whole(&c), "whole");
    }
}

#[test]
fn auth_table_split_at_every_byte_boundary() {
    for c in cases() {
        let reference = whole(&c);
        let bytes: Vec<&[u8]> = c.phases.iter().map(|p| p.as_bytes()).collect();
        for (k, phase) in bytes.iter().enumerate() {
            // Long lines: every 7th boundary (and the ends) keeps the run short.
            let step = if phase.len() > 4000 { 7 } else { 1 };
            for split in (1..phase.len()).filter(|s| s % step == 0 || *s + 3 >= phase.len()) {
                let t = run_chunked(c.setup, &split_phase(&bytes, k, split));
                same(&c, &t, &reference, &format!("phase {k} split at {split}"));
            }
        }
    }
}

#[test]
fn auth_table_byte_by_byte() {
    for c in cases() {
        let reference = whole(&c);
        let phases: Vec<Vec<&[u8]>> = c
            .phases
            .iter()
            .map(|p| p.as_bytes().chunks(1).collect())
            .collect();
        let t = run_chunked(c.setup, &phases);
        same(&c, &t, &reference, "byte by byte");
    }
}

#[test]
fn auth_table_covers_lines_21_to_23() {
    let names: Vec<&str> = cases().iter().map(|c| c.name).collect();
    for line in 21..=23 {
        let prefix = format!("c{line}_");
        assert!(
            names.iter().any(|n| n.starts_with(&prefix)),
            "no case for line {line}"
        );
    }
    let mut sorted = names.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), names.len(), "case names are unique");
}
