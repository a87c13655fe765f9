//! The feedback loop's per-message costs: making a VERP return path (done for every
//! tenant recipient delivered under `[bounces] domain`), verifying one (every
//! bounce taken), and parsing a bounce or a complaint report as receivers send them.
//! Short runs (sample size 20): trend numbers.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use way2mail_mta::feedback::{arf, dsn, verp};
use way2mail_seal::{Keyring, MasterKey};
use way2mail_smtp::MessageId;

const DOMAIN: &str = "bounces.example";

const BOUNCES: [(&str, &[u8]); 3] = [
    (
        "postfix_dsn",
        include_bytes!("../src/feedback/fixtures/postfix-failed.eml"),
    ),
    (
        "outlook_ndr",
        include_bytes!("../src/feedback/fixtures/outlook-ndr.eml"),
    ),
    (
        "qmail_heuristic",
        include_bytes!("../src/feedback/fixtures/qmail.eml"),
    ),
];

const COMPLAINT: &[u8] = include_bytes!("../src/feedback/fixtures/yahoo-arf.eml");

fn tokens(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let key_file = dir.path().join("spool.key");
    let master = MasterKey::load_or_create(&key_file).expect("master key");
    let keyring = Keyring::open(&dir.path().join("spool.keyring"), master).expect("keyring");
    let key = keyring.tenant("acme").expect("tenant key");
    let id = MessageId::generate();
    let address = verp::return_path(&key, &id, "customer@remote.example", DOMAIN);
    let mut group = c.benchmark_group("verp");
    group.sample_size(20);
    group.bench_function("return_path", |b| {
        b.iter(|| verp::return_path(&key, black_box(&id), "customer@remote.example", DOMAIN))
    });
    group.bench_function("verify", |b| {
        b.iter(|| verp::verify(&keyring, black_box(&address), DOMAIN))
    });
    group.finish();
}

fn reports(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse");
    group.sample_size(20);
    for (name, message) in BOUNCES {
        group.bench_with_input(BenchmarkId::from_parameter(name), message, |b, m| {
            b.iter(|| dsn::parse(black_box(m)))
        });
    }
    group.bench_function("yahoo_arf", |b| b.iter(|| arf::parse(black_box(COMPLAINT))));
    group.finish();
}

criterion_group!(benches, tokens, reports);
criterion_main!(benches);
