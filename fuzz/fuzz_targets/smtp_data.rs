//! The DATA and BDAT receivers: arbitrary message content after a valid
//! transaction, cut at arbitrary points. Besides the session invariants and
//! chunking independence, the content can never end the transaction early: with
//! DATA only `<CRLF>.<CRLF>` ends it (no smuggled second message, no command run
//! from the content), and BDAT content is never read as commands, so the replies
//! are exactly one per command and chunk.
//!
//! Input: a mode byte (DATA or BDAT), a cut-seed byte, then the content.

#![no_main]

use libfuzzer_sys::fuzz_target;
use way2mail_fuzz::cuts::{cut, sizes};
use way2mail_fuzz::listener::Setup;
use way2mail_fuzz::session::{find, run};

const TRANSACTION: &[u8] =
    b"EHLO client.example\r\nMAIL FROM:<a@client.example>\r\nRCPT TO:<user@example.org>\r\n";
const END: &[u8] = b"\r\n.\r\n";
const QUIT: &[u8] = b"QUIT\r\n";

fuzz_target!(|data: &[u8]| {
    let [mode, seed, content @ ..] = data else {
        return;
    };
    let mut dialogue = TRANSACTION.to_vec();
    let expected_replies = if mode & 1 == 0 {
        dialogue.extend_from_slice(b"DATA\r\n");
        dialogue.extend_from_slice(content);
        dialogue.extend_from_slice(END);
        // Where the data ends: the content starts a line, and the appended
        // terminator is the first unless the content holds one.
        let mut stream = b"\r\n".to_vec();
        stream.extend_from_slice(content);
        stream.extend_from_slice(END);
        let first = find(&stream, END);
        // 220, EHLO, MAIL, RCPT, 354, the verdict on the message, 221.
        (first == Some(content.len() + 2)).then_some(7)
    } else {
        let chunks = sizes(content.len(), seed.rotate_left(3));
        let mut at = 0;
        for (i, n) in chunks.iter().enumerate() {
            let last = if i + 1 == chunks.len() { " LAST" } else { "" };
            dialogue.extend_from_slice(format!("BDAT {n}{last}\r\n").as_bytes());
            dialogue.extend_from_slice(&content[at..at + n]);
            at += n;
        }
        if chunks.is_empty() {
            dialogue.extend_from_slice(b"BDAT 0 LAST\r\n");
        }
        Some(4 + chunks.len().max(1) + 1)
    };
    dialogue.extend_from_slice(QUIT);

    let split = run(Setup::Mx, &cut(&dialogue, *seed));
    let whole = run(Setup::Mx, &[&dialogue]);
    if !split.starttls && !whole.starttls {
        assert_eq!(split, whole, "the chunking changed the dialogue");
    }
    if let Some(n) = expected_replies {
        if !whole.codes.contains(&421) {
            assert_eq!(
                whole.codes.len(),
                n,
                "content was read as commands: {:?}",
                whole.codes
            );
            assert_eq!(whole.codes.last(), Some(&221));
            assert!(
                whole.messages.len() <= 1,
                "one transaction gave two messages"
            );
        }
    }
});
