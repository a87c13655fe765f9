//! Enqueue + wait-for-durability of 5 KB messages: one waiter at a time (every
//! message pays a whole flush) versus 50 threads waiting at once (group commit
//! shares flushes). The spool lives in a temporary directory; set
//! `WAY2MAIL_BENCH_DIR` to put it on the disk you want to measure.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use way2mail_queue::{CommitStats, Spool};
use way2mail_smtp::{BodyType, Envelope, MessageId, Notify, Origin, Recipient};

const BODY_LEN: usize = 5 * 1024;
const WAITERS: usize = 50;

fn envelope() -> Envelope {
    Envelope {
        sender: "bench@example.org".into(),
        recipients: vec![Recipient {
            address: "sink@example.net".into(),
            notify: Notify::default(),
            orcpt: None,
            ..Recipient::default()
        }],
        body_type: BodyType::SevenBit,
        smtputf8: false,
        ret: None,
        envid: None,
        origin: Origin {
            client_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            helo: "bench".into(),
            listener: "mx".into(),
            tls: None,
            auth: None,
            tenant: None,
        },
        received_at_ms: 0,
        attempts: 0,
        next_attempt_ms: None,
        delay_notified: false,
        tags: Vec::new(),
        metadata: Default::default(),
        scan: None,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("current-thread runtime")
}

/// One message, enqueued and awaited.
fn commit_one(spool: &Spool, rt: &tokio::runtime::Runtime, env: &Envelope, body: &[u8]) {
    let durable = spool
        .enqueue(MessageId::generate(), env, body)
        .expect("enqueue");
    rt.block_on(durable.wait()).expect("durable");
}

fn bench(c: &mut Criterion) {
    let dir = match std::env::var_os("WAY2MAIL_BENCH_DIR") {
        Some(base) => tempfile::tempdir_in(base),
        None => tempfile::tempdir(),
    }
    .expect("tempdir");
    let spool = Spool::open(
        dir.path(),
        way2mail_seal::Keyring::ephemeral().expect("key"),
    )
    .expect("open");
    let env = envelope();
    let body = vec![b'x'; BODY_LEN];

    let mut group = c.benchmark_group("spool_commit_5k");
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(3));

    group.throughput(Throughput::Elements(1));
    let rt = runtime();
    group.bench_function("single_waiter", |b| {
        b.iter(|| commit_one(&spool, &rt, &env, &body))
    });
    let single = spool.stats();
    report("single waiter", single, CommitStats::default());

    // Each iteration is one message per thread; the threads live for the whole
    // sample so that thread start-up is not measured.
    group.throughput(Throughput::Elements(WAITERS as u64));
    group.bench_function("50_concurrent_waiters", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            std::thread::scope(|s| {
                for _ in 0..WAITERS {
                    s.spawn(|| {
                        let rt = runtime();
                        for _ in 0..iters {
                            commit_one(&spool, &rt, &env, &body);
                        }
                    });
                }
            });
            start.elapsed()
        })
    });
    group.finish();
    report("50 concurrent waiters", spool.stats(), single);
}

fn report(phase: &str, now: CommitStats, before: CommitStats) {
    let commits = now.commits - before.commits;
    let flushes = now.flushes - before.flushes;
    eprintln!(
        "{phase}: {commits} messages in {flushes} flushes ({:.1} per flush)",
        commits as f64 / flushes.max(1) as f64
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
