//! DKIM signing cost per message: both keys (rsa-sha256 2048-bit + ed25519-sha256, what
//! tenant mail gets), and each key alone, for a 4 KB and a 1 MB message. Keys are made
//! once with aws-lc-rs, as control makes them. Short runs (sample size 10): trend numbers.

use std::hint::black_box;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::Ed25519KeyPair;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use way2mail_mta::signing::{sign_message, Key};
use way2mail_wire::protocol::DkimAlgorithm;

/// PKCS#8 DER of one RSA-2048 and one Ed25519 key.
fn key_material() -> (Vec<u8>, Vec<u8>) {
    let rsa = KeyPair::generate(KeySize::Rsa2048).expect("rsa key");
    let rsa = rsa.as_der().expect("pkcs8").as_ref().to_vec();
    let ed = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).expect("ed25519 key");
    (rsa, ed.as_ref().to_vec())
}

fn rsa(der: &[u8]) -> Key {
    Key::from_pkcs8("bench-rsa", DkimAlgorithm::RsaSha256, der).expect("rsa key loads")
}

fn ed(der: &[u8]) -> Key {
    Key::from_pkcs8("bench-ed", DkimAlgorithm::Ed25519Sha256, der).expect("ed25519 key loads")
}

fn message(size: usize) -> Vec<u8> {
    let mut m = b"Received: from client.example ([192.0.2.10]) by mx.example.org\r\n\
        From: News <news@acme.example>\r\nTo: you@example.net\r\nSubject: Monthly news\r\n\
        Date: Sun, 29 Nov 2026 12:00:00 +0000\r\nMessage-ID: <bench@acme.example>\r\n\
        MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        .to_vec();
    let line = b"The quick brown fox jumps over the lazy dog, again and again and again.\r\n";
    while m.len() < size {
        m.extend_from_slice(line);
    }
    m
}

fn signing(c: &mut Criterion) {
    let (rsa_der, ed_der) = key_material();
    let sets: [(&str, Vec<Key>); 3] = [
        ("rsa+ed25519", vec![rsa(&rsa_der), ed(&ed_der)]),
        ("rsa", vec![rsa(&rsa_der)]),
        ("ed25519", vec![ed(&ed_der)]),
    ];
    let mut group = c.benchmark_group("dkim_sign");
    group.sample_size(10);
    for size in [4 * 1024, 1024 * 1024] {
        let body = message(size);
        group.throughput(Throughput::Bytes(body.len() as u64));
        for (name, keys) in &sets {
            group.bench_with_input(BenchmarkId::new(*name, size), &body, |b, body| {
                b.iter(|| {
                    let signed =
                        sign_message(body.clone(), "acme.example", keys, None).expect("signs");
                    black_box(signed)
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, signing);
criterion_main!(benches);
