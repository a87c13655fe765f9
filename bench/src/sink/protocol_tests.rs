//! Dialogue tables and scanner tests for the sink protocol.

use super::*;

const PLAIN: Settings<'static> = Settings {
    hostname: "sink.test",
    starttls: false,
};

/// Runs `lines` through one session; returns each reply's code and the last action.
fn dialogue(settings: &Settings<'_>, lines: &[&str]) -> (Vec<u16>, Action) {
    let mut state = State::default();
    let mut codes = Vec::new();
    let mut action = Action::Continue;
    for line in lines {
        let mut out = Vec::new();
        action = handle_line(&mut state, line.as_bytes(), settings, &mut out);
        let text = String::from_utf8(out).unwrap();
        if let Some(last) = text.split("\r\n").filter(|l| !l.is_empty()).last() {
            codes.push(last[..3].parse().unwrap());
        }
    }
    (codes, action)
}

#[test]
fn dialogue_table() {
    let table: &[(&[&str], &[u16], Action)] = &[
        (
            &["EHLO c", "MAIL FROM:<a@b>", "RCPT TO:<c@d>", "DATA"],
            &[250, 250, 250, 354],
            Action::Data,
        ),
        (
            &["helo c", "mail from:<>", "rcpt to:<c@d>", "data"],
            &[250, 250, 250, 354],
            Action::Data,
        ),
        (&["MAIL FROM:<a@b>"], &[503], Action::Continue),
        (&["EHLO"], &[501], Action::Continue),
        (&["EHLO c", "RCPT TO:<c@d>"], &[250, 503], Action::Continue),
        (
            &["EHLO c", "MAIL FROM:<a@b>", "MAIL FROM:<a@b>"],
            &[250, 250, 503],
            Action::Continue,
        ),
        (&["EHLO c", "MAIL FROM:a@b"], &[250, 501], Action::Continue),
        (
            &["EHLO c", "MAIL FROM:<a@b>", "RCPT <c@d>"],
            &[250, 250, 501],
            Action::Continue,
        ),
        (
            &["EHLO c", "MAIL FROM:<a@b>", "DATA"],
            &[250, 250, 554],
            Action::Continue,
        ),
        (
            &["EHLO c", "MAIL FROM:<a@b>", "RCPT TO:<c@d>", "DATA x"],
            &[250, 250, 250, 501],
            Action::Continue,
        ),
        (
            &["EHLO c", "MAIL FROM:<a@b>", "RSET", "MAIL FROM:<a@b>"],
            &[250, 250, 250, 250],
            Action::Continue,
        ),
        (
            &["NOOP", "VRFY x", "HELP", "BOGUS"],
            &[250, 252, 214, 500],
            Action::Continue,
        ),
        (&["STARTTLS"], &[502], Action::Continue),
        (&["QUIT"], &[221], Action::Close),
        (
            &[
                "EHLO c",
                "MAIL FROM:<a@b> BODY=8BITMIME SMTPUTF8",
                "RCPT TO:<c@d> NOTIFY=NEVER",
            ],
            &[250, 250, 250],
            Action::Continue,
        ),
    ];
    for (lines, codes, action) in table {
        assert_eq!(
            dialogue(&PLAIN, lines),
            (codes.to_vec(), *action),
            "{lines:?}"
        );
    }
}

#[test]
fn ehlo_advertises_extensions() {
    let mut out = Vec::new();
    handle_line(&mut State::default(), b"EHLO c", &PLAIN, &mut out);
    let text = String::from_utf8(out).unwrap();
    for ext in [
        "PIPELINING",
        "SIZE",
        "8BITMIME",
        "SMTPUTF8",
        "ENHANCEDSTATUSCODES",
        "CHUNKING",
        "DSN",
    ] {
        assert!(
            text.contains(&format!("250-{ext}")) || text.contains(&format!("250 {ext}")),
            "{ext}"
        );
    }
    assert!(!text.contains("STARTTLS"));
    assert!(text.starts_with("250-sink.test\r\n"));
    assert!(text.ends_with("250 DSN\r\n"));

    let tls = Settings {
        starttls: true,
        ..PLAIN
    };
    let mut state = State::default();
    let mut out = Vec::new();
    handle_line(&mut state, b"EHLO c", &tls, &mut out);
    assert!(String::from_utf8(out)
        .unwrap()
        .ends_with("250 STARTTLS\r\n"));
    assert_eq!(dialogue(&tls, &["STARTTLS"]), (vec![220], Action::StartTls));
    state.tls = true;
    let mut out = Vec::new();
    handle_line(&mut state, b"EHLO c", &tls, &mut out);
    assert!(
        !String::from_utf8(out).unwrap().contains("STARTTLS"),
        "not offered twice"
    );
}

#[test]
fn too_many_recipients() {
    let mut state = State::default();
    let mut out = Vec::new();
    handle_line(&mut state, b"EHLO c", &PLAIN, &mut out);
    handle_line(&mut state, b"MAIL FROM:<a@b>", &PLAIN, &mut out);
    for _ in 0..MAX_RECIPIENTS {
        handle_line(&mut state, b"RCPT TO:<c@d>", &PLAIN, &mut out);
    }
    out.clear();
    handle_line(&mut state, b"RCPT TO:<c@d>", &PLAIN, &mut out);
    assert!(out.starts_with(b"452 4.5.3"));
}

#[test]
fn bdat_parsing() {
    let mut state = State::default();
    let mut out = Vec::new();
    for line in ["EHLO c", "MAIL FROM:<a@b>", "RCPT TO:<c@d>"] {
        handle_line(&mut state, line.as_bytes(), &PLAIN, &mut out);
    }
    let bdat = |state: &mut State, line: &str| {
        handle_line(state, line.as_bytes(), &PLAIN, &mut Vec::new())
    };
    assert_eq!(
        bdat(&mut state, "BDAT 100"),
        Action::Bdat {
            size: 100,
            last: false,
            refusal: None
        }
    );
    assert_eq!(
        bdat(&mut state, "BDAT 0 last"),
        Action::Bdat {
            size: 0,
            last: true,
            refusal: None
        }
    );
    assert_eq!(
        bdat(&mut state, "DATA"),
        Action::Continue,
        "DATA refused during BDAT"
    );
    for bad in [
        "BDAT",
        "BDAT x",
        "BDAT -1",
        "BDAT 5 LASTX",
        "BDAT 5 LAST more",
    ] {
        assert_eq!(bdat(&mut state, bad), Action::Close, "{bad}");
    }
    let refused = bdat(&mut State::default(), "BDAT 7 LAST");
    assert!(matches!(
        refused,
        Action::Bdat {
            size: 7,
            refusal: Some(_),
            ..
        }
    ));
}

/// Scans `input` split into pieces at `cut`; returns where the terminator ended.
fn scan_split(input: &[u8], cut: usize) -> Option<usize> {
    let mut scanner = DotScanner::default();
    let (a, b) = input.split_at(cut);
    match scanner.scan(a) {
        Some(n) => Some(n),
        None => scanner.scan(b).map(|n| n + a.len()),
    }
}

#[test]
fn dot_scanner_finds_terminator_at_every_split() {
    let cases: &[(&[u8], Option<usize>)] = &[
        (b".\r\n", Some(3)),
        (b"hello\r\n.\r\nMAIL", Some(10)),
        (b"a\r\n..\r\nb\r\n.\r\n", Some(13)),
        (b"\r\r\n.\r\n", Some(6)),
        (b"x\r\n.\r\r\n.\r\n", Some(10)),
        // Smuggling attempts: bare LF or bare CR around the dot never terminate.
        (b"a\n.\nb\r\n", None),
        (b"a\n.\r\nb", None),
        (b"a\r\n.\nb", None),
        (b"a\r.\r\nb", None),
        (b"a\r\n. \r\n", None),
        (b"", None),
    ];
    for (input, expected) in cases {
        for cut in 0..=input.len() {
            assert_eq!(
                scan_split(input, cut),
                *expected,
                "{:?} cut {cut}",
                String::from_utf8_lossy(input)
            );
        }
    }
}

#[test]
fn dot_scanner_counts_stuffing() {
    let mut scanner = DotScanner::default();
    assert_eq!(scanner.scan(b"..a\r\nb.\r\n..\r\n"), None);
    assert_eq!(scanner.stuffing(), 2);
    assert_eq!(scanner.scan(b".\r\n"), Some(3));
    assert_eq!(scanner.stuffing(), 2, "terminator is not stuffing");
}

#[test]
fn outcomes_follow_rates() {
    let rates = Rates {
        tempfail: 0.2,
        permfail: 0.1,
        drop: 0.05,
    };
    let mut counts = [0u32; 4];
    for n in 0..100_000 {
        let i = match decide(1, n, rates) {
            SinkAnswer::Accept => 0,
            SinkAnswer::TempFail => 1,
            SinkAnswer::PermFail => 2,
            SinkAnswer::Drop => 3,
        };
        counts[i] += 1;
    }
    let near = |got: u32, want: f64| (f64::from(got) / 100_000.0 - want).abs() < 0.01;
    assert!(near(counts[0], 0.65) && near(counts[1], 0.2), "{counts:?}");
    assert!(near(counts[2], 0.1) && near(counts[3], 0.05), "{counts:?}");
    assert_eq!(decide(7, 42, rates), decide(7, 42, rates), "deterministic");
    let all_temp = Rates {
        tempfail: 1.0,
        ..Rates::default()
    };
    assert!((0..1000).all(|n| decide(3, n, all_temp) == SinkAnswer::TempFail));
    assert!((0..1000).all(|n| decide(3, n, Rates::default()) == SinkAnswer::Accept));
}
