//! Next-hop resolution against a real (stub) DNS server on loopback: MX order, implicit
//! MX, null MX, failures, the resolver's cache, and configured routes.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use way2mail_mta::outbound::mx::{DnsSettings, MxResolver, NextHop, ResolveError};
use way2mail_mta::outbound::route::{Route, Routes};
use way2mail_smtp::client::TlsPolicy;
use way2mail_tests::{Record, RecordType, StubDns};

const PORT: u16 = 2525;

fn v4(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(192, 0, 2, last)
}

fn resolver(dns: &StubDns, timeout: Duration, attempts: usize) -> MxResolver {
    let settings = DnsSettings {
        nameservers: vec![dns.addr()],
        timeout,
        attempts,
    };
    MxResolver::new(&settings).expect("resolver with explicit nameservers")
}

fn quick(dns: &StubDns) -> MxResolver {
    resolver(dns, Duration::from_millis(500), 2)
}

async fn hops(r: &MxResolver, domain: &str) -> Result<Vec<NextHop>, ResolveError> {
    r.next_hops(domain, PORT, &Routes::default()).await
}

fn hosts(hops: &[NextHop]) -> Vec<&str> {
    hops.iter().map(|h| h.host.as_str()).collect()
}

#[tokio::test]
async fn mx_order_is_by_preference_and_random_inside_one() {
    let dns = StubDns::start(vec![
        Record::mx("example.test", 20, "mx-c.example.test"),
        Record::mx("example.test", 10, "mx-a.example.test"),
        Record::mx("example.test", 10, "mx-b.example.test"),
        Record::a("mx-a.example.test", v4(1)),
        Record::a("mx-b.example.test", v4(2)),
        Record::a("mx-c.example.test", v4(3)),
    ])
    .unwrap();
    let r = quick(&dns);
    let mut firsts = HashSet::new();
    for _ in 0..60 {
        let found = hops(&r, "Example.TEST.").await.unwrap();
        let names = hosts(&found);
        assert_eq!(names.len(), 3, "{names:?}");
        assert_eq!(
            names[2], "mx-c.example.test",
            "lower priority last: {names:?}"
        );
        let mut top: Vec<&str> = names[..2].to_vec();
        top.sort_unstable();
        assert_eq!(top, ["mx-a.example.test", "mx-b.example.test"]);
        firsts.insert(names[0].to_string());
        let prefs: Vec<u16> = found.iter().map(|h| h.preference).collect();
        assert_eq!(prefs, [10, 10, 20]);
        assert!(found
            .iter()
            .all(|h| h.port == PORT && h.tls == TlsPolicy::Opportunistic));
        let c = &found[2];
        assert_eq!(c.addrs, [IpAddr::V4(v4(3))]);
    }
    assert_eq!(
        firsts.len(),
        2,
        "both equal-preference hosts came first at some point"
    );
}

#[tokio::test]
async fn no_mx_falls_back_to_the_domains_own_addresses() {
    let v6: Ipv6Addr = "2001:db8::25".parse().unwrap();
    let dns = StubDns::start(vec![
        Record::a("plain.test", v4(9)),
        Record::aaaa("plain.test", v6),
        Record::aaaa("six.test", v6),
    ])
    .unwrap();
    let r = quick(&dns);
    let found = hops(&r, "plain.test").await.unwrap();
    assert_eq!(hosts(&found), ["plain.test"]);
    assert_eq!(
        found[0].addrs,
        [IpAddr::V4(v4(9)), IpAddr::V6(v6)],
        "IPv4 first"
    );
    assert_eq!((found[0].port, found[0].preference), (PORT, 0));
    assert_eq!(dns.queries("plain.test", RecordType::Mx), 1);

    let found = hops(&r, "six.test").await.unwrap();
    assert_eq!(found[0].addrs, [IpAddr::V6(v6)]);
}

#[tokio::test]
async fn mx_hosts_with_only_aaaa_or_behind_a_cname_are_used() {
    let v6: Ipv6Addr = "2001:db8::1".parse().unwrap();
    let dns = StubDns::start(vec![
        Record::mx("mixed.test", 10, "v6.mixed.test"),
        Record::mx("mixed.test", 20, "alias.mixed.test"),
        Record::aaaa("v6.mixed.test", v6),
        Record::cname("alias.mixed.test", "real.mixed.test"),
        Record::a("real.mixed.test", v4(7)),
    ])
    .unwrap();
    let found = hops(&quick(&dns), "mixed.test").await.unwrap();
    assert_eq!(hosts(&found), ["v6.mixed.test", "alias.mixed.test"]);
    assert_eq!(found[0].addrs, [IpAddr::V6(v6)]);
    assert_eq!(found[1].addrs, [IpAddr::V4(v4(7))]);
}

#[tokio::test]
async fn hosts_without_addresses_are_dropped_and_none_left_is_no_address() {
    let dns = StubDns::start(vec![
        Record::mx("some.test", 10, "gone.some.test"),
        Record::mx("some.test", 20, "ok.some.test"),
        Record::a("ok.some.test", v4(4)),
        Record::mx("none.test", 10, "gone.none.test"),
        Record::mx("none.test", 20, "empty.none.test"),
        Record::txt("empty.none.test", "exists, but has no address"),
        // A name with neither MX nor A/AAAA: implicit MX finds nothing.
        Record::txt("bare.test", "v=spf1 -all"),
    ])
    .unwrap();
    let r = quick(&dns);
    assert_eq!(
        hosts(&hops(&r, "some.test").await.unwrap()),
        ["ok.some.test"]
    );
    for domain in ["none.test", "bare.test"] {
        let err = hops(&r, domain).await.unwrap_err();
        assert_eq!(
            err,
            ResolveError::NoAddress {
                domain: domain.into()
            }
        );
        assert!(err.is_permanent());
    }
}

#[tokio::test]
async fn null_mx_and_nxdomain_are_permanent() {
    let dns = StubDns::start(vec![
        Record::mx("nomail.test", 0, "."),
        Record::a("nomail.test", v4(5)),
    ])
    .unwrap();
    let r = quick(&dns);
    let err = hops(&r, "nomail.test").await.unwrap_err();
    assert_eq!(
        err,
        ResolveError::NullMx {
            domain: "nomail.test".into()
        }
    );
    assert!(err.is_permanent());
    assert_eq!(err.enhanced_code().to_string(), "5.1.10");
    assert_eq!(
        dns.queries("nomail.test", RecordType::A),
        0,
        "no A fallback"
    );

    let err = hops(&r, "missing.test").await.unwrap_err();
    assert_eq!(
        err,
        ResolveError::NoSuchDomain {
            domain: "missing.test".into()
        }
    );
    assert!(err.is_permanent());
    assert_eq!(err.enhanced_code().to_string(), "5.1.2");
}

#[tokio::test]
async fn servfail_is_temporary() {
    let dns = StubDns::start(vec![
        Record::servfail("broken.test"),
        Record::mx("half.test", 10, "broken.test"),
    ])
    .unwrap();
    let r = quick(&dns);
    for domain in ["broken.test", "half.test"] {
        let err = hops(&r, domain).await.unwrap_err();
        assert!(
            matches!(err, ResolveError::Temporary { .. }),
            "{domain}: {err:?}"
        );
        assert!(!err.is_permanent());
        assert_eq!(err.enhanced_code().to_string(), "4.4.3");
    }
}

#[tokio::test]
async fn a_silent_nameserver_is_temporary_within_timeout_times_attempts() {
    let dns = StubDns::start(vec![Record::no_answer("silent.test")]).unwrap();
    let timeout = Duration::from_millis(300);
    let r = resolver(&dns, timeout, 2);
    let started = Instant::now();
    let err = hops(&r, "silent.test").await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(matches!(err, ResolveError::Temporary { .. }), "{err:?}");
    assert!(elapsed >= timeout, "gave up after {elapsed:?}");
    assert!(
        elapsed < timeout * 2 + Duration::from_millis(1500),
        "took {elapsed:?}"
    );
    assert_eq!(
        dns.queries("silent.test", RecordType::Mx),
        2,
        "one try per attempt"
    );
}

#[tokio::test]
async fn answers_are_cached_for_their_ttl() {
    let dns = StubDns::start(vec![
        Record::mx("cached.test", 10, "mx.cached.test").ttl(1),
        Record::a("mx.cached.test", v4(6)).ttl(1),
        Record::nxdomain("gone.test").ttl(1),
    ])
    .unwrap();
    let r = quick(&dns);
    let mx = || dns.queries("cached.test", RecordType::Mx);
    let a = || dns.queries("mx.cached.test", RecordType::A);
    let nx = || dns.queries("gone.test", RecordType::Mx);

    hops(&r, "cached.test").await.unwrap();
    hops(&r, "gone.test").await.unwrap_err();
    assert_eq!((mx(), a(), nx()), (1, 1, 1));

    hops(&r, "cached.test").await.unwrap();
    let err = hops(&r, "gone.test").await.unwrap_err();
    assert!(
        matches!(err, ResolveError::NoSuchDomain { .. }),
        "cached negative: {err:?}"
    );
    assert_eq!(
        (mx(), a(), nx()),
        (1, 1, 1),
        "within the TTL nothing is asked again"
    );

    tokio::time::sleep(Duration::from_millis(1300)).await;
    hops(&r, "cached.test").await.unwrap();
    hops(&r, "gone.test").await.unwrap_err();
    assert_eq!(
        (mx(), a(), nx()),
        (2, 2, 2),
        "after the TTL everything is asked again"
    );
}

#[tokio::test]
async fn large_answers_come_over_tcp() {
    let many: Vec<Record> = (1..=60).map(|i| Record::a("big.test", v4(i))).collect();
    let dns = StubDns::start(many).unwrap();
    let found = hops(&quick(&dns), "big.test").await.unwrap();
    assert_eq!(
        found[0].addrs.len(),
        60,
        "the truncated UDP answer was retried over TCP"
    );
    assert!(dns.queries("big.test", RecordType::A) >= 2);
}

fn routes() -> Routes {
    Routes::new(vec![
        Route::parse("*", "[192.0.2.100]:2601", "none", None).expect("valid route"),
        Route::parse("partner.test", "relay.partner.test:587", "required", None)
            .expect("valid route"),
        Route::parse("v6.test", "[2001:db8::99]:2602", "opportunistic", None).expect("valid route"),
    ])
}

#[tokio::test]
async fn ip_routes_skip_dns_and_exact_beats_wildcard() {
    let dns = StubDns::start(vec![Record::mx("anything.test", 10, "mx.anything.test")]).unwrap();
    let r = quick(&dns);
    let routes = routes();
    let found = r.next_hops("anything.test", PORT, &routes).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].addrs, [IpAddr::V4(Ipv4Addr::new(192, 0, 2, 100))]);
    assert_eq!((found[0].port, found[0].tls), (2601, TlsPolicy::None));
    assert_eq!(found[0].host, "192.0.2.100");

    let found = r.next_hops("V6.test", PORT, &routes).await.unwrap();
    assert_eq!(found[0].addrs, ["2001:db8::99".parse::<IpAddr>().unwrap()]);
    assert_eq!(
        (found[0].port, found[0].tls),
        (2602, TlsPolicy::Opportunistic)
    );
    assert_eq!(dns.total_queries(), 0, "an [IP] route asks no DNS");
}

#[tokio::test]
async fn route_host_names_are_resolved_by_address_only() {
    let dns = StubDns::start(vec![
        Record::a("relay.partner.test", v4(50)),
        Record::mx("relay.partner.test", 10, "elsewhere.test"),
        Record::mx("partner.test", 10, "mx.partner.test"),
    ])
    .unwrap();
    let r = quick(&dns);
    let found = r.next_hops("partner.test", PORT, &routes()).await.unwrap();
    assert_eq!(hosts(&found), ["relay.partner.test"]);
    assert_eq!(found[0].addrs, [IpAddr::V4(v4(50))]);
    assert_eq!((found[0].port, found[0].tls), (587, TlsPolicy::Required));
    assert_eq!(dns.queries("relay.partner.test", RecordType::A), 1);
    assert_eq!(dns.queries("relay.partner.test", RecordType::Mx), 0);
    assert_eq!(dns.queries("partner.test", RecordType::Mx), 0);

    // A route host that does not resolve is the operator's problem: retry, not bounce.
    let broken = Routes::new(vec![Route::parse(
        "partner.test",
        "nowhere.partner.test:25",
        "none",
        None,
    )
    .unwrap()]);
    let err = r
        .next_hops("partner.test", PORT, &broken)
        .await
        .unwrap_err();
    assert!(matches!(err, ResolveError::Temporary { .. }), "{err:?}");
    assert!(err.to_string().contains("nowhere.partner.test"), "{err}");
}
