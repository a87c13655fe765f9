//! Property tests for the header work done on every message before it is spooled:
//! hostile message bytes never panic the signing and inbound-check helpers, stripping
//! only ever removes whole header fields, and what is stripped is gone.

use proptest::prelude::*;
use way2mail_mta::{signing, verification};

const OUR_ID: &str = "mx.way2mail.test";

/// Header-ish pieces: fields we care about, folds, bare CR/LF, garbage, a body.
fn piece() -> impl Strategy<Value = Vec<u8>> {
    let fixed: Vec<&'static [u8]> = vec![
        b"From: a@x.example\r\n",
        b"from: <b@evil.example>, c@x.example\r\n",
        b"FROM:\r\n",
        b"Authentication-Results: mx.way2mail.test; spf=pass\r\n",
        b"authentication-results:MX.WAY2MAIL.TEST.;dkim=pass\r\n",
        b"Authentication-Results: mx.way2mail.test.evil; dmarc=pass\r\n",
        b"X-Way2Mail-Quarantine: dmarc=fail\r\n",
        b"BIMI-Selector: v=BIMI1; s=x\r\n",
        b"Subject: hi\r\n",
        b" folded continuation\r\n",
        b"\tfolded\r\n",
        b"No-Colon-Line\r\n",
        b": empty name\r\n",
        b"\r\n",
        b"\n",
        b"\r",
        b"body line\r\n",
    ];
    prop_oneof![
        3 => prop::sample::select(fixed).prop_map(|p| p.to_vec()),
        1 => prop::collection::vec(any::<u8>(), 0..40),
    ]
}

fn message() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(piece(), 0..24).prop_map(|pieces| pieces.concat())
}

/// Whether `small` can be made from `big` by deleting bytes (order kept).
fn is_subsequence(small: &[u8], big: &[u8]) -> bool {
    let mut it = big.iter();
    small.iter().all(|b| it.any(|c| c == b))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn helpers_never_panic(m in message()) {
        let _ = signing::fields(&m);
        let _ = signing::headers_to_sign(&m);
        let _ = signing::from_domain(&m);
        let _ = signing::with_bimi_selector(&m, "default");
        let _ = verification::ambiguous_author(&m);
    }

    #[test]
    fn stripping_removes_only_and_all_of_our_results(m in message()) {
        let mut stripped = m.clone();
        let removed = verification::strip_forged_results(&mut stripped, OUR_ID);
        prop_assert!(stripped.len() <= m.len());
        prop_assert!(is_subsequence(&stripped, &m));
        if removed == 0 {
            prop_assert_eq!(&stripped, &m);
        }
        // Idempotent: nothing of ours is left to strip.
        let mut again = stripped.clone();
        prop_assert_eq!(verification::strip_forged_results(&mut again, OUR_ID), 0);
        prop_assert_eq!(again, stripped);
    }

    #[test]
    fn bimi_selector_is_the_first_field_and_only_one(m in message()) {
        if let Ok(out) = signing::with_bimi_selector(&m, "brand") {
            prop_assert!(out.starts_with(b"BIMI-Selector: v=BIMI1; s=brand\r\n"));
            let (fields, _) = signing::fields(&out);
            let n = fields.iter().filter(|f| f.is(&out, "BIMI-Selector")).count();
            prop_assert_eq!(n, 1);
        }
    }
}
