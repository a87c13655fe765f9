use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use super::*;

/// Nobody is ever old enough to be displaced: the caps as they were before displacing.
const NEVER: Displacing = Displacing {
    min_age: Duration::from_secs(1_000_000),
    below_rate: 500,
};

const TEN_SECONDS_AT_500: Displacing = Displacing {
    min_age: Duration::from_secs(10),
    below_rate: 500,
};

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

#[test]
fn caps_total_and_per_ip_and_releases() {
    let l = ConnectionLimiter::new(3, 2);
    let a = ip("10.0.0.1");
    let b = ip("10.0.0.2");
    let s1 = l.try_acquire(a, NEVER).unwrap();
    let _s2 = l.try_acquire(a, NEVER).unwrap();
    assert_eq!(l.try_acquire(a, NEVER).err(), Some(Refusal::PerIp));
    let _s3 = l.try_acquire(b, NEVER).unwrap();
    assert_eq!(l.try_acquire(b, NEVER).err(), Some(Refusal::Total));
    drop(s1);
    assert_eq!(l.active(), 2);
    let _s4 = l.try_acquire(a, NEVER).unwrap();
    let mapped = ip("::ffff:10.0.0.2");
    assert_eq!(l.try_acquire(mapped, NEVER).err(), Some(Refusal::Total));
}

#[test]
fn refusals_hold_nothing() {
    let l = ConnectionLimiter::new(2, 1);
    let a = ip("10.0.0.1");
    let _held = l.try_acquire(a, NEVER).unwrap();
    for _ in 0..10 {
        assert_eq!(l.try_acquire(a, NEVER).err(), Some(Refusal::PerIp));
    }
    assert_eq!((l.active(), l.active_from(a)), (1, 1));
}

#[test]
fn a_panicking_session_gives_its_places_back() {
    let l = ConnectionLimiter::new(10, 10);
    let live = LiveSessions::default();
    let a = ip("10.0.0.1");
    let unwound = catch_unwind(AssertUnwindSafe(|| {
        let _slot = l.try_acquire(a, NEVER).unwrap();
        let _live = live.enter();
        assert_eq!((l.active(), l.active_from(a), live.count()), (1, 1, 1));
        panic!("a session bug");
    }));
    assert!(unwound.is_err());
    assert_eq!((l.active(), l.active_from(a), live.count()), (0, 0, 0));
}

#[test]
fn at_the_cap_the_slowest_old_connection_makes_room() {
    let l = ConnectionLimiter::new(3, 10);
    let t0 = Instant::now();
    let d = TEN_SECONDS_AT_500;
    let busy = l.acquire_at(ip("10.0.0.1"), d, t0).unwrap();
    let trickler = l.acquire_at(ip("10.0.0.2"), d, t0).unwrap();
    let idle = l.acquire_at(ip("10.0.0.3"), d, t0).unwrap();
    busy.activity.received(100_000);
    trickler.activity.received(30);
    // Too young to be displaced: the newcomer is refused, and the next one too
    // without a scan (a scan would find the same).
    assert_eq!(
        l.acquire_at(ip("10.0.1.1"), d, t0 + Duration::from_secs(5))
            .err(),
        Some(Refusal::Total)
    );
    // Twenty seconds on: the idle one (0 B/s) goes before the trickler (1.5 B/s).
    let t = t0 + Duration::from_secs(20);
    let first = l.acquire_at(ip("10.0.1.1"), d, t).unwrap();
    assert!(idle.activity.displaced.load(Ordering::Acquire));
    assert!(!trickler.activity.displaced.load(Ordering::Acquire));
    assert_eq!(l.active(), 4);
    // Once the displaced session has ended, the next newcomer displaces the trickler.
    drop(idle);
    let second = l.acquire_at(ip("10.0.1.2"), d, t).unwrap();
    assert!(trickler.activity.displaced.load(Ordering::Acquire));
    drop(trickler);
    // The busy connection (5 kB/s) is never a candidate; the fresh ones not yet.
    assert_eq!(
        l.acquire_at(ip("10.0.1.3"), d, t).err(),
        Some(Refusal::Total)
    );
    assert!(!busy.activity.displaced.load(Ordering::Acquire));
    assert_eq!(l.active(), 3);
    drop((busy, first, second));
    assert_eq!(l.active(), 0);
}

#[test]
fn a_displaced_session_wakes_even_if_it_was_not_waiting() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let l = ConnectionLimiter::new(1, 1);
    let t0 = Instant::now();
    let old = l
        .acquire_at(ip("10.0.0.1"), TEN_SECONDS_AT_500, t0)
        .unwrap();
    let _new = l
        .acquire_at(
            ip("10.0.0.2"),
            TEN_SECONDS_AT_500,
            t0 + Duration::from_secs(11),
        )
        .unwrap();
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(5), old.activity.displaced())
            .await
            .expect("the displaced session is told");
    });
}

#[test]
fn at_the_per_ip_cap_only_that_ips_connections_are_candidates() {
    let l = ConnectionLimiter::new(100, 2);
    let t0 = Instant::now();
    let d = TEN_SECONDS_AT_500;
    let other = l.acquire_at(ip("10.0.0.9"), d, t0).unwrap();
    let a1 = l.acquire_at(ip("10.0.0.1"), d, t0).unwrap();
    let a2 = l.acquire_at(ip("10.0.0.1"), d, t0).unwrap();
    a1.activity.received(1_000_000);
    a2.activity.received(1_000_000);
    let t = t0 + Duration::from_secs(60);
    // Both of its own are busy: refused, and the idle stranger is left alone.
    assert_eq!(
        l.acquire_at(ip("10.0.0.1"), d, t).err(),
        Some(Refusal::PerIp)
    );
    assert!(!other.activity.displaced.load(Ordering::Acquire));
    let b1 = l.acquire_at(ip("10.0.0.2"), d, t0).unwrap();
    let _b2 = l.acquire_at(ip("10.0.0.2"), d, t0).unwrap();
    b1.activity.received(10);
    let _b3 = l.acquire_at(ip("10.0.0.2"), d, t).unwrap();
    assert_eq!(l.active_from(ip("10.0.0.2")), 2);
    assert!(!other.activity.displaced.load(Ordering::Acquire));
}

#[test]
fn displaced_connections_cannot_take_us_far_past_the_cap() {
    let l = ConnectionLimiter::new(16, 16);
    let t0 = Instant::now();
    let d = TEN_SECONDS_AT_500;
    let held: Vec<_> = (0..16)
        .map(|_| l.acquire_at(ip("10.0.0.1"), d, t0).unwrap())
        .collect();
    let t = t0 + Duration::from_secs(11);
    // Headroom is 16/16 + 1 = 2 sessions still closing; the third newcomer waits.
    let _n1 = l.acquire_at(ip("10.0.0.2"), d, t).unwrap();
    let _n2 = l.acquire_at(ip("10.0.0.3"), d, t).unwrap();
    assert_eq!(
        l.acquire_at(ip("10.0.0.4"), d, t).err(),
        Some(Refusal::Total)
    );
    assert_eq!(l.active(), 18);
    drop(held);
    assert_eq!(l.active(), 2);
}

#[test]
fn shutdown_waits_for_the_last_live_session() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        let live = LiveSessions::default();
        let (one, two) = (live.enter(), live.enter());
        tokio::task::spawn_local(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            drop(one);
            tokio::time::sleep(Duration::from_millis(20)).await;
            drop(two);
        });
        tokio::time::timeout(Duration::from_secs(5), live.idle())
            .await
            .expect("idle once both sessions ended");
        assert_eq!(live.count(), 0);
    });
}
