//! Bounce classification cost per failure with the built-in rules: replies as the
//! big receivers word them (matched early, in the middle, or by the status fallback
//! at the end), our own reasons (no reply code), a non-ASCII reply, and a reply no
//! rule matches (every rule tried). Short runs (sample size 20): trend numbers.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use way2mail_mta::bounces::Rules;

const REPLIES: [(&str, &str); 7] = [
    (
        "gmail_unknown_user",
        "550-5.1.1 The email account that you tried to reach does not exist. Please try\n\
         550-5.1.1 double-checking the recipient's email address for typos or\n\
         550 5.1.1 unnecessary spaces. https://support.google.com/mail/?p=NoSuchUser",
    ),
    (
        "microsoft_blocklist",
        "550 5.7.1 Service unavailable, Client host [203.0.113.7] blocked using Spamhaus. \
         To request removal from this list see https://www.spamhaus.org/query/ip/203.0.113.7 \
         (AS3130). [BN8NAM11FT066.eop-nam11.prod.protection.outlook.com]",
    ),
    (
        "postfix_mailbox_full",
        "552 5.2.2 <bob@example.net>: Recipient address rejected: Mailbox full",
    ),
    ("status_fallback", "550 5.1.10 recipient rejected"),
    (
        "own_reason",
        "connecting to mx.example.net[198.51.100.4]:25: Connection refused (os error 111)",
    ),
    (
        "non_ascii",
        "550 5.7.1 Nachricht abgelehnt: Absender ungültig, Verbindungsaufbau über \
         Zeitüberschreitung — bitte später erneut versuchen",
    ),
    (
        "nothing_matches",
        "554 something happened that no rule knows about",
    ),
];

fn classify(c: &mut Criterion) {
    let rules = Rules::built_in();
    let mut group = c.benchmark_group("classify");
    group.sample_size(20);
    for (name, reply) in REPLIES {
        group.bench_with_input(BenchmarkId::from_parameter(name), reply, |b, reply| {
            b.iter(|| rules.classify(Some(black_box(reply))))
        });
    }
    group.finish();
}

criterion_group!(benches, classify);
criterion_main!(benches);
