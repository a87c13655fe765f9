//! Property tests: hostile input never panics, output stays proportional to input,
//! and any chunking of a dialogue gives the same replies and messages.

mod driver;

use driver::{run_chunked, Setup};
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
        prop_assert_eq!(whole.codes(), split.codes());
        prop_assert_eq!(&whole.events, &split.events);
        prop_assert_eq!(whole.comparable(), split.comparable());
        prop_assert_eq!(&whole.tenant_queued, &split.tenant_queued);
        prop_assert!(whole.output.len() <= 1024 + 64 * input.len());
    }
}
