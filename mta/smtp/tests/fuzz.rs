//! Property tests: hostile input never panics, output stays proportional to input,
//! any chunking of a dialogue gives the same replies and messages, and no message
//! handed out ever holds a bare CR or LF.

mod driver;

use driver::{run_chunked, Setup, Transcript};
use proptest::prelude::*;

/// Pieces that reach every state: commands, content, terminators, garbage.
fn piece() -> impl Strategy<Value = Vec<u8>> {
    let fixed: Vec<&'static [u8]> = vec![
        b"EHLO client.example\r\n",
        b"HELO c.example\r\n",
        b"MAIL FROM:<a@b.example>\r\n",
        b"MAIL FROM:<> SIZE=100 BODY=8BITMIME RET=FULL ENVID=x SMTPUTF8\r\n",
        b"RCPT TO:<user@example.org> NOTIFY=SUCCESS ORCPT=rfc822;u@x\r\n",
        b"RCPT TO:<user@elsewhere.example>\r\n",
        b"DATA\r\n",
        b"BDAT 5\r\n",
        b"BDAT 3 LAST\r\n",
        b"BDAT 0 LAST\r\n",
        b"RSET\r\n",
        b"NOOP\r\n",
        b"STARTTLS\r\n",
        // alice / secret, then pieces of the AUTH exchanges.
        b"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n",
        b"AUTH PLAIN\r\n",
        b"AUTH LOGIN\r\n",
        b"YWxpY2U=\r\n",
        b"c2VjcmV0\r\n",
        b"*\r\n",
        b"MAIL FROM:<a@acme.example>\r\n",
        b"\r\n.\r\n",
        b".\r\n",
        b"..x\r\n",
        b"\n.\n",
        b"\r.\r",
        b"\r.\n",
        b"\n.\r\n",
        b"\r\n.\n",
        b"\r.\r\n",
        b"\r",
        b"\n",
        b"\0",
        b".",
        b"Received: x\r\n",
        b"\r\n",
    ];
    prop_oneof![
        4 => proptest::sample::select(fixed).prop_map(|b| b.to_vec()),
        1 => proptest::collection::vec(any::<u8>(), 0..40),
        1 => (1usize..1200).prop_map(|n| vec![b'a'; n]),
    ]
}

fn dialogue() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(piece(), 0..40).prop_map(|v| v.concat())
}

/// Every CR is followed by LF and every LF preceded by CR.
fn crlf_only(bytes: &[u8]) -> bool {
    bytes.iter().enumerate().all(|(i, &b)| match b {
        b'\r' => bytes.get(i + 1) == Some(&b'\n'),
        b'\n' => i > 0 && bytes[i - 1] == b'\r',
        _ => true,
    })
}

fn all_crlf_only(t: &Transcript) -> bool {
    t.messages.iter().all(|m| crlf_only(&m.body))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic_and_output_is_bounded(
        bytes in proptest::collection::vec(any::<u8>(), 0..4096),
        cut in 1usize..512,
        setup in proptest::sample::select(vec![Setup::Mx, Setup::AuthSubmissions]),
    ) {
        let chunks: Vec<&[u8]> = bytes.chunks(cut).collect();
        let t = run_chunked(setup, &[chunks]);
        prop_assert!(t.output.len() <= 1024 + 64 * bytes.len(), "{} octets out for {} in", t.output.len(), bytes.len());
    }

    #[test]
    fn chunking_never_changes_the_dialogue(
        input in dialogue(),
        cuts in proptest::collection::vec(any::<usize>(), 0..6),
        setup in proptest::sample::select(vec![Setup::MxTrusted, Setup::AuthSubmissions, Setup::AuthSubmission]),
    ) {
        let whole = run_chunked(setup, &[vec![&input[..]]]);
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
        points.sort_unstable();
        points.dedup();
        let mut chunks = Vec::new();
        let mut last = 0;
        for p in points {
            chunks.push(&input[last..p]);
            last = p;
        }
        chunks.push(&input[last..]);
        let split = run_chunked(setup, &[chunks]);
        prop_assert!(all_crlf_only(&whole) && all_crlf_only(&split));
        prop_assert_eq!(whole.codes(), split.codes());
        prop_assert_eq!(&whole.events, &split.events);
        prop_assert_eq!(whole.comparable(), split.comparable());
        prop_assert_eq!(&whole.tenant_queued, &split.tenant_queued);
        prop_assert!(whole.output.len() <= 1024 + 64 * input.len());
    }

    /// A transaction open, then anything: whatever is handed out has CRLF line ends
    /// only, with `bare_line_endings` at either setting, whatever the chunking.
    #[test]
    fn handed_out_content_never_has_a_bare_cr_or_lf(
        content in proptest::collection::vec(
            prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'.'), Just(0u8), any::<u8>()],
            0..600,
        ),
        bdat in any::<bool>(),
        cut in 1usize..64,
        setup in proptest::sample::select(vec![Setup::Mx, Setup::MxRejectBare]),
    ) {
        let mut input = b"EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u@example.org>\r\n".to_vec();
        if bdat {
            input.extend_from_slice(format!("BDAT {} LAST\r\n", content.len()).as_bytes());
        } else {
            input.extend_from_slice(b"DATA\r\n");
        }
        input.extend_from_slice(&content);
        input.extend_from_slice(b"\r\n.\r\n");
        let t = run_chunked(setup, &[input.chunks(cut).collect()]);
        prop_assert!(all_crlf_only(&t));
        if bdat {
            let clean = !content.contains(&0) && (setup == Setup::Mx || crlf_only(&content));
            prop_assert_eq!(t.messages.len(), usize::from(clean && content.len() <= 10_000));
        }
    }
}
