//! The SMTP command parser alone: any line gives a command or the reply to send,
//! never a panic; a refused line gets a 5xx; an accepted path is at most 256 octets
//! and holds no control character (it ends up in the envelope, in `Received:`
//! headers and in logs).

#![no_main]

use libfuzzer_sys::fuzz_target;
use way2mail_smtp::path::MAX_PATH;
use way2mail_smtp::server::command::{parse, Command};

fuzz_target!(|line: &[u8]| {
    match parse(line) {
        Ok(Command::Mail { path, params } | Command::Rcpt { path, params }) => {
            let a = path.address;
            assert!(a.len() <= MAX_PATH, "a path of {} octets", a.len());
            assert!(!a.chars().any(char::is_control), "{a:?}");
            let _ = (path.domain(), path.is_utf8());
            // The parameters are parsed lazily, by the handlers.
            for param in params {
                if let Err(reply) = param {
                    assert_eq!(reply.class(), 5, "{reply}");
                }
            }
        }
        Ok(Command::Ehlo(name) | Command::Helo(name)) => {
            assert!(!name.chars().any(char::is_control), "{name:?}");
        }
        Ok(_) => {}
        Err(reply) => assert_eq!(reply.class(), 5, "{reply}"),
    }
});
