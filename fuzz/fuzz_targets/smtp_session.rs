//! Whole SMTP server sessions from arbitrary client bytes, cut at arbitrary points,
//! under every listener setup: the invariants of `way2mail_fuzz::session` hold, and
//! the replies and messages do not depend on where the input was cut.
//!
//! Input: a setup byte, a cut-seed byte, then the client's bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use way2mail_fuzz::cuts::cut;
use way2mail_fuzz::listener::Setup;
use way2mail_fuzz::session::run;

fuzz_target!(|data: &[u8]| {
    let [setup, seed, dialogue @ ..] = data else {
        return;
    };
    let setup = Setup::ALL[usize::from(*setup) % Setup::ALL.len()];
    let split = run(setup, &cut(dialogue, *seed));
    let whole = run(setup, &[dialogue]);
    if !split.starttls && !whole.starttls {
        assert_eq!(split, whole, "the chunking changed the dialogue");
    }
});
