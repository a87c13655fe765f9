//! What is stored: the exact body bytes (Received header first, then the content
//! unstuffed, every bare CR or LF turned into CRLF, otherwise untouched) and the
//! envelope handed out with it.

mod driver;

use driver::{run, Accepted, Setup, HOST, UNTRUSTED};
use way2mail_smtp::{BodyType, Ret};

const E: &str = "EHLO client.example\r\n";
const M: &str = "MAIL FROM:<sender@client.example>\r\n";
const R: &str = "RCPT TO:<user@example.org>\r\n";

fn one_message(setup: Setup, phases: &[&str]) -> Accepted {
    let phases: Vec<&[u8]> = phases.iter().map(|p| p.as_bytes()).collect();
    let t = run(setup, &phases);
    assert_eq!(
        t.messages.len(),
        1,
        "replies: {:?}",
        String::from_utf8_lossy(&t.output)
    );
    t.messages[0].clone()
}

#[test]
fn c13_body_is_unstuffed_exactly() {
    let m = one_message(
        Setup::Mx,
        &[&[
            E,
            M,
            R,
            "DATA\r\nSubject: t\r\n\r\n..x\r\n...y\r\n.z\r\nplain\r\n.\r\n",
        ]
        .concat()],
    );
    assert_eq!(
        m.content(),
        b"Subject: t\r\n\r\n.x\r\n..y\r\nz\r\nplain\r\n"
    );
}

#[test]
fn c13_bare_cr_and_lf_become_crlf_and_smuggled_text_stays_content() {
    let m = one_message(
        Setup::Mx,
        &[&[
            E,
            M,
            R,
            "DATA\r\na\nb\rc\r\n.\nMAIL FROM:<e@x.example>\n.\r\n\r.\r\nend\r\n.\r\n",
        ]
        .concat()],
    );
    // Every `.` line after a bare line end is content: its dot is stuffing, removed.
    assert_eq!(
        m.content(),
        b"a\r\nb\r\nc\r\n\r\nMAIL FROM:<e@x.example>\r\n\r\n\r\n\r\nend\r\n"
    );
}

#[test]
fn c13_bare_lf_lines_are_unstuffed_like_crlf_lines() {
    let m = one_message(
        Setup::Mx,
        &[&[
            E,
            M,
            R,
            "DATA\r\nSubject: t\n\n..x\n...y\n.z\nplain\n\r\n.\r\n",
        ]
        .concat()],
    );
    assert_eq!(
        m.content(),
        b"Subject: t\r\n\r\n.x\r\n..y\r\nz\r\nplain\r\n\r\n"
    );
}

#[test]
fn c13_bdat_bare_line_ends_become_crlf_across_chunks() {
    // A CR ending one chunk and the LF starting the next are one CRLF; a CR ending
    // the last chunk was bare.
    let m = one_message(
        Setup::Mx,
        &[&[
            E,
            M,
            R,
            "BDAT 10\r\nA: 1\nB: 2\rBDAT 7\r\n\n\nbody\rBDAT 2 LAST\r\n.\r",
        ]
        .concat()],
    );
    assert_eq!(m.content(), b"A: 1\r\nB: 2\r\n\r\nbody\r\n.\r\n");
}

#[test]
fn c13_handed_out_content_never_has_a_bare_cr_or_lf() {
    let endings = [
        "\n.\n", "\r.\r", "\r\n.\n", "\n.\r\n", "\r.\r\n", "\r.\n", "\n.\r", "\r\n.\r",
    ];
    for end in endings {
        let data = format!("DATA\r\nx{end}MAIL FROM:<evil@x.example>\r\n.\r\n");
        let m = one_message(Setup::Mx, &[&[E, M, R, &data].concat()]);
        assert!(crlf_only(&m.body), "{end:?}: {:?}", m.body);
        assert!(driver::find(m.content(), b"MAIL FROM:<evil@x.example>\r\n").is_some());
        let bdat = format!("x{end}MAIL FROM:<evil@x.example>\r\n");
        let chunk = format!("BDAT {} LAST\r\n{bdat}", bdat.len());
        let m = one_message(Setup::Mx, &[&[E, M, R, &chunk].concat()]);
        assert!(crlf_only(&m.body), "BDAT {end:?}: {:?}", m.body);
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

#[test]
fn c14_received_header_comes_first() {
    let m = one_message(
        Setup::Mx,
        &[&[E, M, R, "DATA\r\nSubject: t\r\n\r\nhi\r\n.\r\n"].concat()],
    );
    let h = m.received();
    let prefix = format!(
        "Received: from client.example ([{UNTRUSTED}])\r\n\tby {HOST} (Way2Mail) with ESMTP id "
    );
    assert!(h.starts_with(&prefix), "{h:?}");
    let rest = &h[prefix.len()..];
    let (id, rest) = rest.split_at(26);
    assert!(id.bytes().all(|b| b.is_ascii_alphanumeric()), "{id}");
    assert!(
        rest.starts_with("\r\n\tfor <user@example.org>; "),
        "{rest:?}"
    );
    // `Www, D Mon YYYY HH:MM:SS +0000`
    let date = rest
        .trim_start_matches("\r\n\tfor <user@example.org>; ")
        .trim_end_matches("\r\n");
    let words: Vec<&str> = date.split(' ').collect();
    assert_eq!(words.len(), 6, "{date}");
    assert!(words[0].ends_with(','));
    assert_eq!(words[5], "+0000");
    assert_eq!(words[4].len(), 8);
    assert_eq!(m.content(), b"Subject: t\r\n\r\nhi\r\n");
}

#[test]
fn c14_protocol_keyword_follows_helo_tls_and_utf8() {
    let body = "DATA\r\nx\r\n.\r\n";
    let helo = one_message(
        Setup::Mx,
        &[&["HELO client.example\r\n", M, R, body].concat()],
    );
    assert!(
        helo.received().contains(" with SMTP id "),
        "{}",
        helo.received()
    );
    let tls = one_message(
        Setup::Mx,
        &[&[E, "STARTTLS\r\n"].concat(), &[E, M, R, body].concat()],
    );
    assert!(
        tls.received().contains(" with ESMTPS id "),
        "{}",
        tls.received()
    );
    let implicit = one_message(Setup::Submissions, &[&[E, M, R, body].concat()]);
    assert!(implicit.received().contains(" with ESMTPS id "));
    let utf8 = one_message(
        Setup::Mx,
        &[&[E, "MAIL FROM:<a@b.example> SMTPUTF8\r\n", R, body].concat()],
    );
    assert!(
        utf8.received().contains(" with UTF8SMTP id "),
        "{}",
        utf8.received()
    );
}

#[test]
fn c14_no_for_clause_with_several_recipients() {
    let m = one_message(
        Setup::Mx,
        &[&[E, M, R, "RCPT TO:<other@example.org>\r\nDATA\r\nx\r\n.\r\n"].concat()],
    );
    assert!(!m.received().contains("for <"), "{}", m.received());
    assert!(m.received().contains(" id ") && m.received().contains("; "));
}

#[test]
fn c10_envelope_of_null_sender_postmaster_and_source_route() {
    let m = one_message(
        Setup::Mx,
        &[&[E, "MAIL FROM:<>\r\nRCPT TO:<Postmaster>\r\nRCPT TO:<@a.example,@b.example:user@example.org>\r\nDATA\r\nx\r\n.\r\n"].concat()],
    );
    let e = &m.envelope;
    assert_eq!(e.sender, "");
    let rcpts: Vec<&str> = e.recipients.iter().map(|r| r.address.as_str()).collect();
    assert_eq!(rcpts, ["Postmaster", "user@example.org"]);
}

#[test]
fn envelope_records_origin() {
    let m = one_message(
        Setup::Mx,
        &[
            &[E, "STARTTLS\r\n"].concat(),
            &[E, M, R, "DATA\r\nx\r\n.\r\n"].concat(),
        ],
    );
    let o = &m.envelope.origin;
    assert_eq!(o.client_ip.to_string(), UNTRUSTED);
    assert_eq!(o.helo, "client.example");
    assert_eq!(o.listener, "mx");
    assert_eq!(o.tls.as_deref(), Some("TLSv1.3 test"));
    assert_eq!(o.auth, None);
    assert!(m.envelope.received_at_ms > 1_600_000_000_000);
    let plain = one_message(
        Setup::MxTrusted,
        &[&[E, M, R, "DATA\r\nx\r\n.\r\n"].concat()],
    );
    assert_eq!(plain.envelope.origin.tls, None);
    let sub = one_message(
        Setup::Submissions,
        &[&[E, M, R, "DATA\r\nx\r\n.\r\n"].concat()],
    );
    assert_eq!(sub.envelope.origin.listener, "submissions");
    assert!(
        sub.envelope.origin.tls.is_some(),
        "implicit TLS is recorded"
    );
}

#[test]
fn c29_dsn_and_body_parameters_are_kept() {
    let m = one_message(
        Setup::Mx,
        &[&[
            E,
            "MAIL FROM:<a@b.example> RET=HDRS ENVID=QQ+2B314159 BODY=8BITMIME SIZE=100 SMTPUTF8\r\n",
            "RCPT TO:<user@example.org> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;user+40example.org\r\n",
            "RCPT TO:<u2@example.org> NOTIFY=NEVER\r\nRCPT TO:<u3@example.org>\r\n",
            "DATA\r\nx\r\n.\r\n",
        ]
        .concat()],
    );
    let e = &m.envelope;
    assert_eq!(e.ret, Some(Ret::Headers));
    assert_eq!(e.envid.as_deref(), Some("QQ+2B314159"));
    assert_eq!(e.body_type, BodyType::EightBitMime);
    assert!(e.smtputf8);
    let r = &e.recipients;
    assert!(r[0].notify.success && r[0].notify.delay && !r[0].notify.failure && !r[0].notify.never);
    assert_eq!(r[0].orcpt.as_deref(), Some("rfc822;user+40example.org"));
    assert!(r[1].notify.never);
    assert!(r[2].notify.is_unspecified());
    assert_eq!(r[2].orcpt, None);
}

#[test]
fn c27_bdat_content_is_stored_as_sent() {
    let m = one_message(
        Setup::Mx,
        &[&[
            E,
            M,
            R,
            "BDAT 14\r\nSubject: x\r\n\r\nBDAT 11 LAST\r\n..a\r\n.\r\nb\r\n",
        ]
        .concat()],
    );
    assert_eq!(m.content(), b"Subject: x\r\n\r\n..a\r\n.\r\nb\r\n");
}

#[test]
fn c14_bdat_loop_detection() {
    let headers = "Received: x\r\n".repeat(11);
    let msg = format!("{headers}\r\nbody\r\n");
    let t = run(
        Setup::Mx,
        &[[E, M, R, &format!("BDAT {} LAST\r\n{msg}", msg.len())]
            .concat()
            .as_bytes()],
    );
    assert_eq!(t.codes(), [220, 250, 250, 250, 554]);
}

#[test]
fn message_after_message_in_one_session() {
    let one = [M, R, "DATA\r\nfirst\r\n.\r\n"].concat();
    let two = [
        "MAIL FROM:<b@client.example>\r\n",
        R,
        "BDAT 6 LAST\r\nsecond",
    ]
    .concat();
    let t = run(
        Setup::Mx,
        &[[E, &one, &two, "QUIT\r\n"].concat().as_bytes()],
    );
    assert_eq!(
        t.codes(),
        [220, 250, 250, 250, 354, 250, 250, 250, 250, 221]
    );
    assert_eq!(t.messages.len(), 2);
    assert_eq!(t.messages[0].content(), b"first\r\n");
    assert_eq!(t.messages[1].content(), b"second");
    assert_eq!(t.messages[1].envelope.sender, "b@client.example");
    let queued: Vec<&str> = t.lines().filter(|l| l.ends_with(" queued")).collect();
    assert_eq!(queued.len(), 2);
    assert!(
        queued
            .iter()
            .all(|l| l.starts_with("250 2.0.0 ") && l.len() == 10 + 26 + 7),
        "{queued:?}"
    );
}
