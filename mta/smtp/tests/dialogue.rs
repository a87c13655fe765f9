//! The dialogue table: client bytes and the reply codes a careful server gives, one
//! or more cases per line of `SMTP_CONFORMANCE.md` (named `cNN_...` after the line).
//! Every case runs fed whole, split at every byte boundary, and byte by byte; all
//! three must give the same replies, events and messages, and no message handed out
//! may hold a bare CR or LF.

mod driver;

use driver::{run, run_chunked, run_spilling, split_phase, Setup, Transcript};

const E: &str = "EHLO client.example\r\n";
const M: &str = "MAIL FROM:<sender@client.example>\r\n";
const R: &str = "RCPT TO:<user@example.org>\r\n";
const MSG: &str = "DATA\r\nSubject: t\r\n\r\nhello\r\n.\r\n";

struct Case {
    name: &'static str,
    setup: Setup,
    /// Client bytes; a TLS handshake happens between phases.
    phases: Vec<Vec<u8>>,
    codes: Vec<u16>,
    closed: bool,
    messages: usize,
    /// Reply lines that must appear verbatim.
    lines: Vec<&'static str>,
}

fn case(name: &'static str, setup: Setup, phases: &[&str], codes: &[u16]) -> Case {
    Case {
        name,
        setup,
        phases: phases.iter().map(|p| p.as_bytes().to_vec()).collect(),
        codes: codes.to_vec(),
        closed: false,
        messages: 0,
        lines: Vec::new(),
    }
}

impl Case {
    fn closed(mut self) -> Case {
        self.closed = true;
        self
    }

    fn messages(mut self, n: usize) -> Case {
        self.messages = n;
        self
    }

    fn line(mut self, line: &'static str) -> Case {
        self.lines.push(line);
        self
    }
}

fn cat(parts: &[&str]) -> String {
    parts.concat()
}

fn cases() -> Vec<Case> {
    let mut v = session_cases();
    v.extend(transaction_cases());
    v.extend(extension_cases());
    v.extend(smuggling_cases());
    v.push(hundred_recipients());
    v
}

/// Lines 1-11: greeting, sequence, syntax, limits on lines and paths.
fn session_cases() -> Vec<Case> {
    use Setup::*;
    vec![
        case("c01_greeting_quit", Mx, &["QUIT\r\n"], &[220, 221]).closed(),
        case("c01_nothing_after_quit", Mx, &["QUIT\r\nNOOP\r\n"], &[220, 221]).closed(),
        case("c02_ehlo", Mx, &[E], &[220, 250]),
        case("c02_ehlo_without_argument", Mx, &["EHLO\r\nEHLO \r\n"], &[220, 501, 501]),
        case("c02_helo", Mx, &[&cat(&["HELO client.example\r\n", M, R, MSG])], &[220, 250, 250, 250, 354, 250]).messages(1),
        case("c02_helo_has_no_extensions", Mx, &["HELO c.example\r\nMAIL FROM:<a@b.example> BODY=8BITMIME\r\n"], &[220, 250, 555]),
        case("c03_mail_before_ehlo", Mx, &[M], &[220, 503]),
        case("c03_rcpt_before_mail", Mx, &[&cat(&[E, R])], &[220, 250, 503]),
        case("c03_nested_mail", Mx, &[&cat(&[E, M, M])], &[220, 250, 250, 503]),
        case("c04_data_without_rcpt", Mx, &[&cat(&[E, M, "DATA\r\n"])], &[220, 250, 250, 503]),
        case("c04_data_without_mail", Mx, &[&cat(&[E, "DATA\r\n"])], &[220, 250, 503]),
        case("c05_unknown_command", Mx, &["FOO bar\r\n\r\n"], &[220, 500, 500]),
        case("c05_unimplemented", Mx, &["TURN\r\nEXPN staff\r\nETRN example.org\r\n"], &[220, 502, 502, 502]),
        case(
            "c06_bad_address_syntax",
            Mx,
            &[&cat(&[E, "MAIL FROM:<a@@b.example>\r\nMAIL FROM:sender@client.example\r\nMAIL FROM:<>\r\n",
                "RCPT TO:<user@>\r\nRCPT TO:<>\r\nRCPT TO:<a b@example.org>\r\n"])],
            &[220, 250, 501, 501, 250, 501, 501, 501],
        ),
        case(
            "c06_unknown_parameters",
            Mx,
            &[&cat(&[E, "MAIL FROM:<a@b.example> FOO=bar\r\nMAIL FROM:<a@b.example> AUTH=<>\r\n", M,
                "RCPT TO:<user@example.org> XTRA\r\nRCPT TO:<user@example.org> SIZE=1\r\n"])],
            &[220, 250, 555, 555, 250, 555, 555],
        ),
        case("c06_malformed_parameter", Mx, &[&cat(&[E, "MAIL FROM:<a@b.example> SIZE=\r\n"])], &[220, 250, 501]),
        case("c07_command_line_512_ok", Mx, &[&format!("NOOP {}\r\n", "x".repeat(505))], &[220, 250]),
        case("c07_command_line_513_too_long", Mx, &[&format!("NOOP {}\r\nNOOP\r\n", "x".repeat(506))], &[220, 500, 250]),
        case("c07_command_line_far_too_long", Mx, &[&format!("NOOP {}\r\nNOOP\r\n", "x".repeat(3000))], &[220, 500, 250]),
        case(
            "c07_data_line_too_long",
            Mx,
            &[&cat(&[E, M, R, "DATA\r\n", &"a".repeat(999), "\r\n.\r\nNOOP\r\n"])],
            &[220, 250, 250, 250, 354, 500, 250],
        ),
        case(
            "c07_data_line_1000_ok",
            Mx,
            &[&cat(&[E, M, R, "DATA\r\n", &"a".repeat(998), "\r\n.\r\n"])],
            &[220, 250, 250, 250, 354, 250],
        )
        .messages(1),
        case(
            "c07_path_too_long",
            Mx,
            &[&cat(&[E, "MAIL FROM:<", &"a".repeat(64), "@", &"abcdefgh.".repeat(21), "example>\r\n"])],
            &[220, 250, 501],
        ),
        case("c08_rset_clears", Mx, &[&cat(&[E, M, "RSET\r\n", R, "RSET x\r\n"])], &[220, 250, 250, 250, 503, 501]),
        case("c08_ehlo_resets", Mx, &[&cat(&[E, M, E, R])], &[220, 250, 250, 250, 503]),
        case("c09_noop_vrfy_help", Mx, &["NOOP\r\nNOOP x\r\nVRFY user\r\nHELP\r\n"], &[220, 250, 250, 252, 214]),
        case(
            "c10_null_sender_postmaster_source_route",
            Mx,
            &[&cat(&[E, "MAIL FROM:<>\r\nRCPT TO:<postmaster>\r\n",
                "RCPT TO:<@relay.example,@b.example:user@example.org>\r\n", MSG])],
            &[220, 250, 250, 250, 250, 354, 250],
        )
        .messages(1),
        case(
            "c11_case_insensitive_and_literals",
            Mx,
            &["ehlo [127.0.0.1]\r\nmail from:<a@b.example>\r\nrcpt to:<user@EXAMPLE.org>\r\nrset\r\nEhLo [IPv6:::1]\r\n"],
            &[220, 250, 250, 250, 250, 250],
        ),
        case(
            "c13_dot_stuffing",
            Mx,
            &[&cat(&[E, M, R, "DATA\r\n..x\r\n.\r\n"])],
            &[220, 250, 250, 250, 354, 250],
        )
        .messages(1),
    ]
}

/// Lines 13-20: content, loops, pipelining, STARTTLS.
fn transaction_cases() -> Vec<Case> {
    use Setup::*;
    vec![
        case(
            "c14_loop_detected",
            Mx,
            &[&cat(&[
                E,
                M,
                R,
                "DATA\r\n",
                &"Received: x\r\n".repeat(11),
                "\r\nb\r\n.\r\n",
            ])],
            &[220, 250, 250, 250, 354, 554],
        ),
        case(
            "c14_received_within_limit",
            Mx,
            &[&cat(&[
                E,
                M,
                R,
                "DATA\r\n",
                &"Received: x\r\n".repeat(10),
                "\r\nb\r\n.\r\n",
            ])],
            &[220, 250, 250, 250, 354, 250],
        )
        .messages(1),
        case(
            "c15_pipelining",
            Mx,
            &[&cat(&[
                E,
                M,
                R,
                "RCPT TO:<user@elsewhere.example>\r\n",
                MSG,
            ])],
            &[220, 250, 250, 250, 550, 354, 250],
        )
        .messages(1),
        case(
            "c15_every_rcpt_failed",
            Mx,
            &[&cat(&[
                E,
                M,
                "RCPT TO:<user@elsewhere.example>\r\nDATA\r\n",
            ])],
            &[220, 250, 250, 550, 554],
        ),
        case(
            "c15_trusted_client_relays",
            MxTrusted,
            &[&cat(&[E, M, "RCPT TO:<user@elsewhere.example>\r\n", MSG])],
            &[220, 250, 250, 250, 354, 250],
        )
        .messages(1),
        case(
            "c16_starttls_with_parameter",
            Mx,
            &[&cat(&[E, "STARTTLS now\r\n"])],
            &[220, 250, 501],
        ),
        case(
            "c17_plaintext_after_starttls_discarded",
            Mx,
            &[&cat(&[E, "STARTTLS\r\n", M, R]), M],
            &[220, 250, 220, 503],
        ),
        case(
            "c18_tls_forgets_ehlo",
            Mx,
            &[&cat(&[E, M, "STARTTLS\r\n"]), &cat(&[R, M, E, M, R, MSG])],
            &[220, 250, 250, 220, 503, 503, 250, 250, 250, 354, 250],
        )
        .messages(1),
        case(
            "c19_starttls_inside_tls",
            Mx,
            &[&cat(&[E, "STARTTLS\r\n"]), &cat(&[E, "STARTTLS\r\n"])],
            &[220, 250, 220, 250, 503],
        ),
        case(
            "c19_starttls_on_implicit_tls",
            Submissions,
            &[&cat(&[E, "STARTTLS\r\n"])],
            &[220, 250, 503],
        ),
        case(
            "c19_starttls_unavailable",
            MxNoTls,
            &[&cat(&[E, "STARTTLS\r\n"])],
            &[220, 250, 502],
        ),
        case(
            "c20_submission_requires_starttls",
            Submission,
            &[&cat(&[E, M, R, "STARTTLS\r\n"]), &cat(&[E, M, R, MSG])],
            &[220, 250, 530, 503, 220, 250, 250, 250, 354, 250],
        )
        .messages(1),
    ]
}

/// Lines 21-30: AUTH without a tenant policy (not offered; the AUTH table is
/// `auth_dialogue.rs`), SIZE, BODY, BDAT, SMTPUTF8, DSN, implicit TLS.
fn extension_cases() -> Vec<Case> {
    use Setup::*;
    vec![
        case("c21_auth_not_offered", Submissions, &[&cat(&[E, "AUTH PLAIN AHRlc3QAdGVzdA==\r\n"])], &[220, 250, 502]),
        case("c21_auth_before_ehlo", Mx, &["AUTH LOGIN\r\n"], &[220, 502]),
        case(
            "c23_submission_never_open_relay",
            Submission,
            &[&cat(&[E, "STARTTLS\r\n"]), &cat(&[E, M, "RCPT TO:<x@elsewhere.example>\r\n", R])],
            &[220, 250, 220, 250, 250, 550, 250],
        ),
        case(
            "c24_size_parameter",
            Mx,
            &[&cat(&[E, "MAIL FROM:<a@b.example> SIZE=10001\r\nMAIL FROM:<a@b.example> SIZE=abc\r\n",
                "MAIL FROM:<a@b.example> SIZE=99999999999999999999999\r\nMAIL FROM:<a@b.example> SIZE=10000\r\n"])],
            &[220, 250, 552, 501, 552, 250],
        ),
        case(
            "c24_data_over_limit",
            Mx,
            &[&cat(&[E, M, R, "DATA\r\n", &format!("{}\r\n", "y".repeat(98)).repeat(101), ".\r\nNOOP\r\n"])],
            &[220, 250, 250, 250, 354, 552, 250],
        ),
        case(
            "c25_body_parameter",
            Mx,
            &[&cat(&[E, "MAIL FROM:<a@b.example> BODY=8BITMIME\r\nRSET\r\nMAIL FROM:<a@b.example> body=7bit\r\nRSET\r\n",
                "MAIL FROM:<a@b.example> BODY=junk\r\nMAIL FROM:<a@b.example> BODY=7BIT BODY=7BIT\r\n"])],
            &[220, 250, 250, 250, 250, 250, 501, 501],
        ),
        case("c26_bdat_without_mail", Mx, &[&cat(&[E, "BDAT 6\r\nNOOP\r\nNOOP\r\n"])], &[220, 250, 503, 250]),
        case("c26_bdat_without_rcpt", Mx, &[&cat(&[E, M, "BDAT 3 LAST\r\nabc"])], &[220, 250, 250, 503]),
        case("c26_data_after_bdat", Mx, &[&cat(&[E, M, R, "BDAT 3\r\nabcDATA\r\nRCPT TO:<b@example.org>\r\n"])], &[220, 250, 250, 250, 250, 503, 503]),
        case(
            "c27_bdat_chunks",
            Mx,
            &[&cat(&[E, M, R, "BDAT 12\r\nSubject: x\r\nBDAT 8 LAST\r\n\r\nbody\r\n"])],
            &[220, 250, 250, 250, 250, 250],
        )
        .messages(1),
        case("c27_bdat_zero_last", Mx, &[&cat(&[E, M, R, "BDAT 5\r\nhellobdat 0 last\r\n"])], &[220, 250, 250, 250, 250, 250]).messages(1),
        case("c27_bdat_error_consumes_octets", Mx, &[&cat(&[E, "BDAT 6 LAST\r\nQUIT\r\nNOOP\r\n"])], &[220, 250, 503, 250]),
        case(
            "c27_bdat_rset_discards",
            Mx,
            &[&cat(&[E, M, R, "BDAT 3\r\nabcRSET\r\nBDAT 3 LAST\r\nxyz"])],
            &[220, 250, 250, 250, 250, 250, 503],
        ),
        case("c27_bdat_bad_trailer", Mx, &[&cat(&[E, M, R, "BDAT 3 FOO\r\nabcNOOP\r\n"])], &[220, 250, 250, 250, 501, 250]),
        case("c27_bdat_non_numeric_size", Mx, &[&cat(&[E, "BDAT abc\r\nNOOP\r\n"])], &[220, 250, 501, 421]).closed(),
        case(
            "c27_bdat_over_limit",
            Mx,
            &[&cat(&[E, M, R, "BDAT 10001 LAST\r\n", &"z".repeat(10_001), "NOOP\r\n"])],
            &[220, 250, 250, 250, 552, 250],
        ),
        case(
            "c28_smtputf8",
            Mx,
            &[&cat(&[E, "MAIL FROM:<用户@例子.测试> SMTPUTF8\r\nRCPT TO:<δοκιμή@example.org>\r\nRSET\r\n",
                "MAIL FROM:<用户@例子.测试>\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<δοκιμή@example.org>\r\n"])],
            &[220, 250, 250, 250, 250, 553, 250, 553],
        ),
        case(
            "c29_dsn_parameters",
            Mx,
            &[&cat(&[E, "MAIL FROM:<a@b.example> RET=HDRS ENVID=QQ314159\r\n",
                "RCPT TO:<user@example.org> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;user+40example.org\r\n",
                "RCPT TO:<u2@example.org> NOTIFY=NEVER,SUCCESS\r\nRCPT TO:<u3@example.org> ORCPT=rfc822\r\n",
                "RCPT TO:<u4@example.org> NOTIFY=NEVER NOTIFY=NEVER\r\nRSET\r\nMAIL FROM:<a@b.example> RET=FULL RET=FULL\r\n"])],
            &[220, 250, 250, 250, 501, 501, 501, 250, 501],
        ),
        case("c30_implicit_tls_session", Submissions, &[&cat(&[E, M, R, MSG])], &[220, 250, 250, 250, 354, 250]).messages(1),
        case("x_nul_and_binary_garbage", Mx, &["NO\0OP\r\n\u{7f}\r\n", "\r\nNOOP\r\n"], &[220, 500, 500, 500, 250]),
    ]
}

/// The end-of-data lookalikes of the SMTP smuggling research (SEC Consult 2023 and
/// the advisories that followed): bare CR and LF around the dot in every mix, and a
/// NUL next to it.
const SMUGGLING_ENDINGS: [(&str, &str); 12] = [
    ("lf_dot_lf", "\n.\n"),
    ("cr_dot_cr", "\r.\r"),
    ("crlf_dot_lf", "\r\n.\n"),
    ("lf_dot_crlf", "\n.\r\n"),
    ("cr_dot_crlf", "\r.\r\n"),
    ("cr_dot_lf", "\r.\n"),
    ("crlf_dot_cr", "\r\n.\r"),
    ("lf_dot_cr", "\n.\r"),
    ("crlf_dot_crcrlf", "\r\n.\r\r\n"),
    ("lf_dot_lf_crlf", "\n.\n\r\n"),
    ("crlf_nul_dot_crlf", "\r\n\0.\r\n"),
    ("crlf_dot_nul_crlf", "\r\n.\0\r\n"),
];

const BARE_REFUSED: &str = "550 5.6.0 Message contains a bare CR or LF; lines must end with CRLF";
const NUL_REFUSED: &str = "550 5.6.0 Message contains a NUL octet";

/// Line 13: none of the smuggling endings ends DATA, and what follows them stays
/// content of the one message, never commands. Each runs through DATA and BDAT, with
/// `bare_line_endings` at `normalize` (one message, CRLF only) and at `reject`
/// (`550 5.6.0` after the data); a NUL is refused either way.
fn smuggling_cases() -> Vec<Case> {
    let smuggled = "MAIL FROM:<evil@x.example>\r\nRCPT TO:<v@example.org>\r\nDATA\r\nevil\r\n";
    let mut v = Vec::new();
    for (name, end) in SMUGGLING_ENDINGS {
        let nul = end.contains('\0');
        let content = format!("Subject: s\r\n\r\nx{end}{smuggled}");
        let data = format!("DATA\r\n{content}.\r\nNOOP\r\n");
        let bdat = format!("BDAT {} LAST\r\n{content}NOOP\r\n", content.len());
        for (via, input, start) in [("data", data, 354), ("bdat", bdat, 0)] {
            for setup in [Setup::Mx, Setup::MxRejectBare] {
                let mode = if setup == Setup::Mx {
                    "normalize"
                } else {
                    "reject"
                };
                let name = leak(format!("c13_smuggle_{name}_{via}_{mode}"));
                let mut codes = vec![220, 250, 250, 250];
                if start != 0 {
                    codes.push(start);
                }
                let refused = nul || setup == Setup::MxRejectBare;
                codes.extend([if refused { 550 } else { 250 }, 250]);
                let c = case(name, setup, &[&cat(&[E, M, R, &input])], &codes);
                v.push(match (nul, refused) {
                    (true, _) => c.line(NUL_REFUSED),
                    (false, true) => c.line(BARE_REFUSED),
                    (false, false) => c.messages(1),
                });
            }
        }
    }
    v.extend(line_end_cases());
    v
}

/// Line 13: bare CR and LF in ordinary content, and NUL.
fn line_end_cases() -> Vec<Case> {
    use Setup::*;
    let bare = cat(&[
        E,
        M,
        R,
        "DATA\r\nSubject: t\n\nline\rline\r\n.\r\n",
        M,
        R,
        MSG,
    ]);
    let bdat_bare = cat(&[E, M, R, "BDAT 4\r\na\r\rbBDAT 2 LAST\r\n\n\n"]);
    let cr_lf_split = cat(&[E, M, R, "BDAT 2\r\na\rBDAT 1 LAST\r\n\n"]);
    vec![
        case(
            "c13_bare_lf_and_cr_normalized",
            Mx,
            &[&bare],
            &[220, 250, 250, 250, 354, 250, 250, 250, 354, 250],
        )
        .messages(2),
        case(
            "c13_bare_lf_and_cr_rejected",
            MxRejectBare,
            &[&bare],
            &[220, 250, 250, 250, 354, 550, 250, 250, 354, 250],
        )
        .messages(1)
        .line(BARE_REFUSED),
        case(
            "c13_bdat_bare_normalized",
            Mx,
            &[&bdat_bare],
            &[220, 250, 250, 250, 250, 250],
        )
        .messages(1),
        case(
            "c13_bdat_bare_rejected",
            MxRejectBare,
            &[&bdat_bare],
            &[220, 250, 250, 250, 250, 550],
        )
        .line(BARE_REFUSED),
        // A CR ending one chunk and an LF starting the next are one CRLF, not bare.
        case(
            "c13_bdat_crlf_across_chunks_is_no_bare_line_end",
            MxRejectBare,
            &[&cr_lf_split],
            &[220, 250, 250, 250, 250, 250],
        )
        .messages(1),
        case(
            "c13_crlf_only_passes_reject",
            MxRejectBare,
            &[&cat(&[E, M, R, MSG])],
            &[220, 250, 250, 250, 354, 250],
        )
        .messages(1),
        case(
            "c13_nul_in_data_refused",
            Mx,
            &[&cat(&[
                E,
                M,
                R,
                "DATA\r\nSubject: t\r\n\r\na\0b\r\n.\r\nNOOP\r\n",
            ])],
            &[220, 250, 250, 250, 354, 550, 250],
        )
        .line(NUL_REFUSED),
        case(
            "c13_nul_in_bdat_refused",
            Mx,
            &[&cat(&[E, M, R, "BDAT 3 LAST\r\na\0bRSET\r\n"])],
            &[220, 250, 250, 250, 550, 250],
        )
        .line(NUL_REFUSED),
    ]
}

/// Case names are `&'static str`; the generated ones live as long as the test.
fn leak(name: String) -> &'static str {
    Box::leak(name.into_boxed_str())
}

/// Line 12: 100 recipients are accepted, the 101st gets 452 (not 552).
fn hundred_recipients() -> Case {
    let mut s = cat(&[E, M]);
    let mut codes = vec![220, 250, 250];
    for i in 0..101 {
        s.push_str(&format!("RCPT TO:<u{i}@example.org>\r\n"));
        codes.push(if i < 100 { 250 } else { 452 });
    }
    s.push_str(MSG);
    codes.extend([354, 250]);
    case("c12_hundred_recipients_then_452", Setup::Mx, &[&s], &codes).messages(1)
}

fn check(c: &Case, t: &Transcript, how: &str) {
    assert_eq!(t.codes(), c.codes, "{} ({how}): codes", c.name);
    assert_eq!(t.closed, c.closed, "{} ({how}): closed", c.name);
    assert_eq!(t.messages.len(), c.messages, "{} ({how}): messages", c.name);
    for line in &c.lines {
        assert!(
            t.lines().any(|l| l == *line),
            "{} ({how}): no {line:?}",
            c.name
        );
    }
    for m in &t.messages {
        assert!(
            crlf_only(&m.body),
            "{} ({how}): bare CR or LF in {:?}",
            c.name,
            m.body
        );
    }
}

/// Every CR is followed by LF and every LF preceded by CR.
fn crlf_only(bytes: &[u8]) -> bool {
    bytes.iter().enumerate().all(|(i, &b)| match b {
        b'\r' => bytes.get(i + 1) == Some(&b'\n'),
        b'\n' => i > 0 && bytes[i - 1] == b'\r',
        _ => true,
    })
}

/// `t` passes the case's checks and has the events and messages of `reference`.
fn same_as_whole(c: &Case, t: &Transcript, reference: &Transcript, how: &str) {
    check(c, t, how);
    assert_eq!(t.events, reference.events, "{} ({how}): events", c.name);
    assert_eq!(
        t.comparable(),
        reference.comparable(),
        "{} ({how}): messages",
        c.name
    );
}

fn whole(c: &Case) -> Transcript {
    let phases: Vec<&[u8]> = c.phases.iter().map(|p| &p[..]).collect();
    run(c.setup, &phases)
}

#[test]
fn table_fed_whole() {
    for c in cases() {
        check(&c, &whole(&c), "whole");
    }
}

#[test]
fn table_split_at_every_byte_boundary() {
    for c in cases() {
        let reference = whole(&c);
        let bytes: Vec<&[u8]> = c.phases.iter().map(|p| &p[..]).collect();
        for (k, phase) in bytes.iter().enumerate() {
            for split in 1..phase.len() {
                let t = run_chunked(c.setup, &split_phase(&bytes, k, split));
                same_as_whole(&c, &t, &reference, &format!("phase {k} split at {split}"));
            }
        }
    }
}

#[test]
fn table_byte_by_byte() {
    for c in cases() {
        let reference = whole(&c);
        let phases: Vec<Vec<&[u8]>> = c.phases.iter().map(|p| p.chunks(1).collect()).collect();
        let t = run_chunked(c.setup, &phases);
        same_as_whole(&c, &t, &reference, "byte by byte");
    }
}

#[test]
fn table_with_content_handed_out_as_it_arrives() {
    for c in cases() {
        let reference = whole(&c);
        for at in [1, 7, 100] {
            let fed: [Vec<Vec<&[u8]>>; 2] = [
                c.phases.iter().map(|p| vec![&p[..]]).collect(),
                c.phases.iter().map(|p| p.chunks(3).collect()).collect(),
            ];
            for phases in &fed {
                let t = run_spilling(c.setup, phases, at);
                same_as_whole(&c, &t, &reference, &format!("spilling over {at}"));
            }
        }
    }
}

#[test]
fn table_names_cover_every_conformance_line() {
    let names: Vec<&str> = cases().iter().map(|c| c.name).collect();
    // Line 22 (AUTH exchanges) lives in tests/auth_dialogue.rs, which also covers 21
    // and 23 with tenants; 31 and 32 live in tests/session.rs.
    for line in 1..=30 {
        if line == 22 {
            continue;
        }
        let prefix = format!("c{line:02}_");
        assert!(
            names.iter().any(|n| n.starts_with(&prefix)),
            "no case for line {line}"
        );
    }
}
