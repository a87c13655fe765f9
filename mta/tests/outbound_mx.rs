//! Next-hop resolution through the public API, with real sockets but no stub server
//! (that lives in the tests crate, which depends on this one; see
//! tests/tests/mx_resolution.rs for the full DNS behaviour).

use std::net::{IpAddr, UdpSocket};
use std::time::{Duration, Instant};

use way2mail_mta::outbound::mx::{DnsSettings, MxResolver, ResolveError};
use way2mail_mta::outbound::route::{Route, RouteHost, Routes};
use way2mail_smtp::client::TlsPolicy;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime")
}

/// A nameserver that receives queries and never answers.
fn black_hole() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").expect("a loopback UDP socket")
}

#[test]
fn defaults_are_short() {
    let settings = DnsSettings::default();
    assert!(settings.nameservers.is_empty());
    assert_eq!(settings.timeout, Duration::from_secs(2));
    assert_eq!(settings.attempts, 2);
}

#[test]
fn silent_nameserver_is_a_temporary_failure_in_bounded_time() {
    let hole = black_hole();
    let settings = DnsSettings {
        nameservers: vec![hole.local_addr().unwrap()],
        timeout: Duration::from_millis(200),
        attempts: 2,
    };
    let rt = runtime();
    let started = Instant::now();
    let result = rt.block_on(async {
        let resolver = MxResolver::new(&settings).unwrap();
        resolver
            .next_hops("example.test", 25, &Routes::default())
            .await
    });
    let elapsed = started.elapsed();
    let err = result.unwrap_err();
    assert!(matches!(err, ResolveError::Temporary { .. }), "{err:?}");
    assert!(!err.is_permanent());
    assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");

    // The queries really went out: two tries of the MX query.
    hole.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut buf = [0u8; 512];
    let mut received = 0;
    while hole.recv_from(&mut buf).is_ok() {
        received += 1;
    }
    assert_eq!(received, 2, "one datagram per attempt");
}

#[test]
fn routes_and_unusable_names_need_no_dns() {
    let hole = black_hole();
    let settings = DnsSettings {
        nameservers: vec![hole.local_addr().unwrap()],
        timeout: Duration::from_millis(200),
        attempts: 1,
    };
    let routes = Routes::new(vec![Route::parse(
        "example.net",
        "[192.0.2.25]:2525",
        "required",
        None,
    )
    .unwrap()]);
    let rt = runtime();
    let (routed, literal) = rt.block_on(async {
        let resolver = MxResolver::new(&settings).unwrap();
        (
            resolver.next_hops("EXAMPLE.net", 25, &routes).await,
            resolver.next_hops("[192.0.2.1]", 25, &routes).await,
        )
    });
    let hop = &routed.unwrap()[0];
    assert_eq!(hop.addrs, ["192.0.2.25".parse::<IpAddr>().unwrap()]);
    assert_eq!((hop.port, hop.tls), (2525, TlsPolicy::Required));
    assert_eq!(
        literal.unwrap_err(),
        ResolveError::NoSuchDomain {
            domain: "[192.0.2.1]".into()
        }
    );
    hole.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 512];
    assert!(hole.recv_from(&mut buf).is_err(), "no query was sent");
    assert!(matches!(
        routes.find("example.net").unwrap().host,
        RouteHost::Ip(_)
    ));
}
