//! SMTP AUTH (SASL PLAIN and LOGIN) through the server protocol, on the listeners
//! where it is offered: the session invariants hold, a password never reaches
//! `Debug` output, and only the scripted credentials ever authenticate (checked on
//! every message the session accepts).
//!
//! Input: a setup byte, a cut-seed byte, then what the client sends after `EHLO`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use way2mail_fuzz::cuts::cut;
use way2mail_fuzz::listener::Setup;
use way2mail_fuzz::session::run;

fuzz_target!(|data: &[u8]| {
    let [setup, seed, exchange @ ..] = data else {
        return;
    };
    let setup = Setup::AUTH[usize::from(*setup) % Setup::AUTH.len()];
    let mut dialogue = b"EHLO client.example\r\n".to_vec();
    dialogue.extend_from_slice(exchange);
    run(setup, &cut(&dialogue, *seed));
});
