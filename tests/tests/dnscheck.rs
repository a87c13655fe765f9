//! `domain.verify`'s DNS side against a real (stub) DNS server over UDP and TCP:
//! `way2mail_control::dnscheck::verify` with every record right, each one missing or
//! wrong, SPF evaluated through includes and `a` terms, lookups that fail, DMARC
//! policies, BIMI and its prerequisites, and keys that are not required.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use way2mail_control::dkim;
use way2mail_control::dnscheck::{check_budget, verify};
use way2mail_control::publish;
use way2mail_control::service::SendingSettings;
use way2mail_daemon::dns::DnsSettings;
use way2mail_tests::{Record, RecordType, StubDns};
use way2mail_wire::protocol::{
    BimiInfo, CheckStatus, DkimAlgorithm, DkimKeyInfo, DkimKeyState, DomainInfo,
    DomainVerification, RecordCheck, RecordPurpose,
};

const DOMAIN: &str = "shop.example";
const DMARC: &str = "_dmarc.shop.example";
const IP: &str = "192.0.2.10";
const LOGO: &str = "https://shop.example/brand/logo.svg";
const VMC: &str = "https://shop.example/brand/vmc.pem";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// A fresh RSA + Ed25519 pair in `state`, under selectors not in `existing`.
fn pair(existing: &[DkimKeyInfo], state: DkimKeyState) -> Vec<DkimKeyInfo> {
    let [rsa, ed] = dkim::generate_pair(DOMAIN, existing, now(), state).expect("key pair");
    vec![rsa.info, ed.info]
}

fn domain(keys: Vec<DkimKeyInfo>, bimi: Option<BimiInfo>) -> DomainInfo {
    DomainInfo {
        domain: DOMAIN.into(),
        tenant: "shop".into(),
        created_at: now(),
        dkim: keys,
        verified_at: None,
        send_unverified: false,
        bimi,
    }
}

fn sending() -> SendingSettings {
    SendingSettings {
        ips: vec![IP.parse().expect("ip")],
        spf_include: None,
        dmarc_rua: None,
    }
}

fn bimi(vmc: bool) -> Option<BimiInfo> {
    Some(BimiInfo {
        selector: "default".into(),
        logo_url: LOGO.into(),
        vmc_url: vmc.then(|| VMC.to_string()),
    })
}

fn key_name(key: &DkimKeyInfo) -> String {
    format!("{}._domainkey.{DOMAIN}", key.selector)
}

/// `v=DKIM1; k=…; p=…` written out here, not by the code under test.
fn key_record(key: &DkimKeyInfo) -> String {
    let k = match key.algorithm {
        DkimAlgorithm::RsaSha256 => "rsa",
        DkimAlgorithm::Ed25519Sha256 => "ed25519",
    };
    format!("v=DKIM1; k={k}; p={}", key.public_key)
}

/// The TXT records of a domain with everything right: our address in SPF, every key,
/// an enforcing DMARC policy.
fn good_zone(info: &DomainInfo) -> Vec<(String, String)> {
    let mut zone = vec![
        (DOMAIN.to_string(), format!("v=spf1 ip4:{IP} ~all")),
        (
            DOMAIN.to_string(),
            "google-site-verification=abc123".to_string(),
        ),
        (
            DMARC.to_string(),
            "v=DMARC1; p=reject; rua=mailto:d@shop.example".to_string(),
        ),
    ];
    for key in &info.dkim {
        zone.push((key_name(key), key_record(key)));
    }
    zone
}

/// `zone` with every TXT record at `name` replaced by `values`.
fn with(mut zone: Vec<(String, String)>, name: &str, values: &[&str]) -> Vec<(String, String)> {
    zone.retain(|(n, _)| n != name);
    zone.extend(values.iter().map(|v| (name.to_string(), v.to_string())));
    zone
}

fn serve(zone: &[(String, String)], extra: Vec<Record>) -> StubDns {
    let mut records: Vec<Record> = zone.iter().map(|(n, v)| Record::txt(n, v)).collect();
    // The domain has an address, so a missing SPF record is NODATA, not NXDOMAIN.
    records.push(Record::a(DOMAIN, Ipv4Addr::new(192, 0, 2, 80)));
    records.extend(extra);
    StubDns::start(records).expect("stub DNS")
}

fn settings(stub: &StubDns) -> DnsSettings {
    DnsSettings {
        nameservers: vec![stub.addr()],
        timeout: Duration::from_millis(400),
        attempts: 1,
    }
}

fn run(stub: &StubDns, info: &DomainInfo, sending: &SendingSettings) -> DomainVerification {
    verify(&settings(stub), info, sending)
}

fn find<'a>(v: &'a DomainVerification, purpose: RecordPurpose, name: &str) -> &'a RecordCheck {
    let matches: Vec<&RecordCheck> = v
        .checks
        .iter()
        .filter(|c| c.purpose == purpose && c.name == name)
        .collect();
    assert_eq!(matches.len(), 1, "one {purpose:?} check at {name}: {v:#?}");
    matches[0]
}

fn status(v: &DomainVerification, purpose: RecordPurpose, name: &str) -> CheckStatus {
    find(v, purpose, name).status
}

/// Every check but those named is ok.
fn others_ok(v: &DomainVerification, except: &[&str]) {
    for c in &v.checks {
        if !except.contains(&c.name.as_str()) {
            assert_eq!(c.status, CheckStatus::Ok, "{c:#?}");
        }
    }
}

fn is_sentence(detail: &str) {
    assert!(!detail.is_empty() && detail.ends_with('.'), "{detail:?}");
    assert!(!detail.contains('\n'), "{detail:?}");
}

#[test]
fn everything_right_is_verified() {
    let info = domain(pair(&[], DkimKeyState::Active), None);
    let zone = good_zone(&info);
    let stub = serve(&zone, Vec::new());
    let before = now();
    let v = run(&stub, &info, &sending());
    assert!(v.verified, "{v:#?}");
    assert_eq!(v.domain, DOMAIN);
    assert!(
        v.checked_at >= before && v.checked_at <= now(),
        "{}",
        v.checked_at
    );
    let kinds: Vec<(RecordPurpose, bool)> =
        v.checks.iter().map(|c| (c.purpose, c.required)).collect();
    assert_eq!(
        kinds,
        [
            (RecordPurpose::Spf, true),
            (RecordPurpose::Dkim, true),
            (RecordPurpose::Dkim, true),
            (RecordPurpose::Dmarc, true)
        ]
    );
    others_ok(&v, &[]);
    for c in &v.checks {
        is_sentence(&c.detail);
    }

    let spf = find(&v, RecordPurpose::Spf, DOMAIN);
    // Only the SPF record, not the other TXT record at the name.
    assert_eq!(spf.found, [format!("v=spf1 ip4:{IP} ~all")]);
    assert!(spf.detail.contains(IP), "{}", spf.detail);
    assert_eq!(spf.expected.as_deref(), Some("v=spf1 ip4:192.0.2.10 ~all"));

    for key in &info.dkim {
        let c = find(&v, RecordPurpose::Dkim, &key_name(key));
        // The RSA record is longer than one TXT string (and than a UDP answer): found
        // holds it joined, as receivers read it.
        assert_eq!(c.found, [key_record(key)]);
        assert_eq!(c.expected.as_deref(), Some(key_record(key).as_str()));
        assert!(c.detail.contains("active"), "{}", c.detail);
    }
    assert!(stub.queries(&key_name(&info.dkim[0]), RecordType::Txt) >= 1);

    let dmarc = find(&v, RecordPurpose::Dmarc, DMARC);
    assert_eq!(
        dmarc.found,
        ["v=DMARC1; p=reject; rua=mailto:d@shop.example"]
    );
    assert!(dmarc.detail.contains("p=reject"), "{}", dmarc.detail);
}

/// What `domain dns` tells the tenant to publish verifies, keys of every state and BIMI
/// included (the BIMI logo then waits for an enforcing DMARC policy).
#[test]
fn the_published_records_verify() {
    let mut keys = pair(&[], DkimKeyState::Retired);
    let active = pair(&keys, DkimKeyState::Active);
    keys.extend(active);
    let pending = pair(&keys, DkimKeyState::Pending);
    keys.extend(pending);
    let info = domain(keys, bimi(true));
    let sending = SendingSettings {
        ips: vec![IP.parse().expect("ip"), "2001:db8::10".parse().expect("ip")],
        spf_include: None,
        dmarc_rua: Some("mailto:dmarc@way2mail.example".into()),
    };
    let zone: Vec<(String, String)> = publish::records(&info, &sending)
        .into_iter()
        .map(|r| (r.name, r.value))
        .collect();
    assert_eq!(zone.len(), 1 + 6 + 1 + 1);
    let stub = serve(&zone, Vec::new());
    let v = run(&stub, &info, &sending);
    assert!(v.verified, "{v:#?}");
    others_ok(&v, &[DMARC]);
    let spf = find(&v, RecordPurpose::Spf, DOMAIN);
    assert!(spf.detail.contains("2001:db8::10"), "{}", spf.detail);
    for key in &info.dkim {
        let c = find(&v, RecordPurpose::Dkim, &key_name(key));
        assert_eq!(c.status, CheckStatus::Ok, "{c:#?}");
        assert_eq!(c.required, key.state == DkimKeyState::Active, "{c:#?}");
    }
    assert_eq!(status(&v, RecordPurpose::Dmarc, DMARC), CheckStatus::Ok);
    let dmarc = find(&v, RecordPurpose::Dmarc, DMARC);
    assert!(dmarc.detail.contains("p=none"), "{}", dmarc.detail);
    assert!(
        dmarc.detail.contains("does not protect"),
        "{}",
        dmarc.detail
    );
    assert_eq!(
        status(&v, RecordPurpose::Bimi, "default._bimi.shop.example"),
        CheckStatus::Ok
    );
    let prerequisites = find(&v, RecordPurpose::Bimi, DMARC);
    assert_eq!(
        prerequisites.status,
        CheckStatus::Wrong,
        "{prerequisites:#?}"
    );
    assert!(!prerequisites.required);
}

#[test]
fn each_missing_record_is_missing_and_not_verified() {
    let info = domain(pair(&[], DkimKeyState::Active), None);
    let zone = good_zone(&info);
    let names = [
        DOMAIN.to_string(),
        key_name(&info.dkim[0]),
        key_name(&info.dkim[1]),
        DMARC.to_string(),
    ];
    for name in &names {
        // The SPF record goes, the other TXT record at the domain stays.
        let mut cut = zone.clone();
        cut.retain(|(n, v)| n != name || v.starts_with("google"));
        let stub = serve(&cut, Vec::new());
        let v = run(&stub, &info, &sending());
        assert!(!v.verified, "{name}: {v:#?}");
        let missing: Vec<&RecordCheck> = v
            .checks
            .iter()
            .filter(|c| c.status != CheckStatus::Ok)
            .collect();
        assert_eq!(missing.len(), 1, "{name}: {v:#?}");
        assert_eq!(missing[0].name, *name);
        assert_eq!(missing[0].status, CheckStatus::Missing, "{:#?}", missing[0]);
        assert!(missing[0].required);
        assert!(missing[0].found.is_empty(), "{:#?}", missing[0]);
        is_sentence(&missing[0].detail);
        if name == DOMAIN {
            assert!(
                missing[0].detail.contains("1 other TXT record"),
                "{}",
                missing[0].detail
            );
        } else {
            assert!(
                missing[0].detail.contains("does not exist"),
                "{}",
                missing[0].detail
            );
        }
    }
}

#[test]
fn a_wrong_dkim_key_is_wrong() {
    let info = domain(pair(&[], DkimKeyState::Active), None);
    let (rsa, ed) = (&info.dkim[0], &info.dkim[1]);
    let other = pair(&info.dkim, DkimKeyState::Active);
    let zone = good_zone(&info);

    // Another RSA key under our selector.
    let stub = serve(
        &with(zone.clone(), &key_name(rsa), &[&key_record(&other[0])]),
        Vec::new(),
    );
    let v = run(&stub, &info, &sending());
    assert!(!v.verified);
    let c = find(&v, RecordPurpose::Dkim, &key_name(rsa));
    assert_eq!(c.status, CheckStatus::Wrong, "{c:#?}");
    assert!(c.detail.contains("another public key"), "{}", c.detail);
    assert_eq!(c.found, [key_record(&other[0])]);
    others_ok(&v, &[&key_name(rsa)]);

    // Our Ed25519 key, but said to be RSA.
    let mislabelled = format!("v=DKIM1; k=rsa; p={}", ed.public_key);
    let stub = serve(
        &with(zone.clone(), &key_name(ed), &[&mislabelled]),
        Vec::new(),
    );
    let v = run(&stub, &info, &sending());
    let c = find(&v, RecordPurpose::Dkim, &key_name(ed));
    assert_eq!(c.status, CheckStatus::Wrong, "{c:#?}");
    assert!(
        c.detail.contains("k=rsa") && c.detail.contains("ed25519"),
        "{}",
        c.detail
    );

    // Our key with whitespace inside p= (as zone files often split it) is right.
    let (head, tail) = rsa.public_key.split_at(100);
    let spaced = format!("v=DKIM1; k=rsa; p={head} {tail}");
    let stub = serve(&with(zone.clone(), &key_name(rsa), &[&spaced]), Vec::new());
    let v = run(&stub, &info, &sending());
    assert!(v.verified, "{v:#?}");

    // Revoked, another key, not DKIM, unparsable, unusable for our signatures, and two
    // records at one selector.
    let sha1_only = format!("{}; h=sha1", key_record(rsa));
    let not_email = format!("{}; s=other", key_record(rsa));
    for (values, words) in [
        (vec!["v=DKIM1; k=rsa; p="], "revokes"),
        (vec!["v=DKIM1; k=rsa; p=bm90IGEga2V5"], "another public key"),
        (vec!["v=spf1 -all"], "not a DKIM key record"),
        (vec!["v=DKIM1; k=rsa; p"], "does not parse"),
        (vec![sha1_only.as_str()], "h=sha1"),
        (vec![not_email.as_str()], "s=other"),
    ] {
        let stub = serve(&with(zone.clone(), &key_name(rsa), &values), Vec::new());
        let v = run(&stub, &info, &sending());
        let c = find(&v, RecordPurpose::Dkim, &key_name(rsa));
        assert_eq!(c.status, CheckStatus::Wrong, "{values:?}: {c:#?}");
        assert!(c.detail.contains(words), "{values:?}: {}", c.detail);
        assert!(!v.verified);
    }
    let right = key_record(rsa);
    let stub = serve(
        &with(zone, &key_name(rsa), &[&right, &key_record(&other[0])]),
        Vec::new(),
    );
    let v = run(&stub, &info, &sending());
    let c = find(&v, RecordPurpose::Dkim, &key_name(rsa));
    assert_eq!(c.status, CheckStatus::Wrong, "{c:#?}");
    assert_eq!(c.found.len(), 2);
    assert!(c.detail.contains("2 TXT records"), "{}", c.detail);
}

#[test]
fn spf_that_does_not_authorise_us_is_wrong() {
    let info = domain(pair(&[], DkimKeyState::Active), None);
    let zone = good_zone(&info);
    for (record, result) in [
        ("v=spf1 ip4:198.51.100.1 -all", "fail"),
        ("v=spf1 ip4:198.51.100.1 ~all", "softfail"),
        ("v=spf1 ip4:198.51.100.1 ?all", "neutral"),
        ("v=spf1 ip4:198.51.100.1", "neutral"),
        ("v=spf1 -ip4:192.0.2.10 +all", "fail"),
        ("v=spf1 include:nowhere.example -all", "permerror"),
    ] {
        let stub = serve(&with(zone.clone(), DOMAIN, &[record]), Vec::new());
        let v = run(&stub, &info, &sending());
        assert!(!v.verified, "{record}");
        let c = find(&v, RecordPurpose::Spf, DOMAIN);
        assert_eq!(c.status, CheckStatus::Wrong, "{record}: {c:#?}");
        assert!(
            c.detail
                .contains(&format!("{IP} gets {result} instead of pass")),
            "{record}: {}",
            c.detail
        );
        assert_eq!(c.found, [record]);
        others_ok(&v, &[DOMAIN]);
    }

    // A record that does not parse.
    for record in [
        "v=spf1 ip4:192.0.2.10 redirect=a.example redirect=b.example",
        "v=spf1 include -all",
    ] {
        let stub = serve(&with(zone.clone(), DOMAIN, &[record]), Vec::new());
        let v = run(&stub, &info, &sending());
        let c = find(&v, RecordPurpose::Spf, DOMAIN);
        assert_eq!(c.status, CheckStatus::Wrong, "{record}: {c:#?}");
        assert!(
            c.detail.contains("does not parse"),
            "{record}: {}",
            c.detail
        );
    }
}

#[test]
fn spf_is_evaluated_through_includes_and_a_terms() {
    let info = domain(pair(&[], DkimKeyState::Active), None);
    let zone = with(
        good_zone(&info),
        DOMAIN,
        &["v=spf1 mx include:_spf.platform.example -all"],
    );
    let zone = with(
        zone,
        "_spf.platform.example",
        &["v=spf1 include:_ips.platform.example a:out6.platform.example -all"],
    );
    let zone = with(
        zone,
        "_ips.platform.example",
        &["v=spf1 ip4:192.0.2.0/28 -all"],
    );
    let extra = vec![
        Record::mx(DOMAIN, 10, "mx.shop.example"),
        Record::a("mx.shop.example", Ipv4Addr::new(203, 0, 113, 5)),
        Record::aaaa("out6.platform.example", "2001:db8::25".parse().expect("v6")),
    ];
    let stub = serve(&zone, extra.clone());
    let sending = SendingSettings {
        ips: vec![IP.parse().expect("ip"), "2001:db8::25".parse().expect("ip")],
        ..SendingSettings::default()
    };
    let v = run(&stub, &info, &sending);
    assert!(v.verified, "{v:#?}");
    assert!(stub.queries("_ips.platform.example", RecordType::Txt) >= 1);
    assert!(stub.queries("out6.platform.example", RecordType::Aaaa) >= 1);

    // An address that only the mx term covers passes too; one nothing covers does not.
    let sending = SendingSettings {
        ips: vec![
            "203.0.113.5".parse().expect("ip"),
            "192.0.2.99".parse().expect("ip"),
        ],
        ..SendingSettings::default()
    };
    let v = run(&stub, &info, &sending);
    assert!(!v.verified);
    let c = find(&v, RecordPurpose::Spf, DOMAIN);
    assert_eq!(c.status, CheckStatus::Wrong, "{c:#?}");
    assert!(c.detail.contains("192.0.2.99 gets fail"), "{}", c.detail);
    assert!(!c.detail.contains("203.0.113.5"), "{}", c.detail);

    // Only an include configured: the record must include it.
    let include_only = SendingSettings {
        spf_include: Some("_spf.platform.example".into()),
        ..SendingSettings::default()
    };
    let v = run(&stub, &info, &include_only);
    assert!(v.verified, "{v:#?}");
    let c = find(&v, RecordPurpose::Spf, DOMAIN);
    assert_eq!(
        c.expected.as_deref(),
        Some("v=spf1 include:_spf.platform.example ~all")
    );
    let other = SendingSettings {
        spf_include: Some("_spf.elsewhere.example".into()),
        ..SendingSettings::default()
    };
    let v = run(&stub, &info, &other);
    assert!(!v.verified);
    let c = find(&v, RecordPurpose::Spf, DOMAIN);
    assert_eq!(c.status, CheckStatus::Wrong, "{c:#?}");
    assert!(
        c.detail.contains("include:_spf.elsewhere.example"),
        "{}",
        c.detail
    );
}

#[test]
fn two_spf_records_are_wrong() {
    let info = domain(pair(&[], DkimKeyState::Active), None);
    let zone = with(
        good_zone(&info),
        DOMAIN,
        &[
            &format!("v=spf1 ip4:{IP} -all"),
            "v=spf1 include:_spf.other.example ~all",
        ],
    );
    let stub = serve(&zone, Vec::new());
    let v = run(&stub, &info, &sending());
    assert!(!v.verified);
    let c = find(&v, RecordPurpose::Spf, DOMAIN);
    assert_eq!(c.status, CheckStatus::Wrong, "{c:#?}");
    assert_eq!(c.found.len(), 2);
    assert!(
        c.detail.contains("2 SPF records") && c.detail.contains("permerror"),
        "{}",
        c.detail
    );
}

#[test]
fn failed_lookups_are_errors_not_missing() {
    let info = domain(pair(&[], DkimKeyState::Active), None);
    let zone = good_zone(&info);

    // SERVFAIL for the DMARC name and one selector.
    let cut: Vec<(String, String)> = zone
        .iter()
        .filter(|(n, _)| n != DMARC && *n != key_name(&info.dkim[1]))
        .cloned()
        .collect();
    let stub = serve(
        &cut,
        vec![
            Record::servfail(DMARC),
            Record::servfail(&key_name(&info.dkim[1])),
        ],
    );
    let v = run(&stub, &info, &sending());
    assert!(!v.verified);
    for name in [DMARC.to_string(), key_name(&info.dkim[1])] {
        let c = v.checks.iter().find(|c| c.name == name).expect("check");
        assert_eq!(c.status, CheckStatus::Error, "{c:#?}");
        assert!(c.detail.contains("SERVFAIL"), "{}", c.detail);
        is_sentence(&c.detail);
    }
    others_ok(&v, &[DMARC, &key_name(&info.dkim[1])]);

    // SERVFAIL inside the SPF include chain: temperror, an error.
    let zone2 = with(
        zone.clone(),
        DOMAIN,
        &["v=spf1 include:_spf.broken.example -all"],
    );
    let stub = serve(&zone2, vec![Record::servfail("_spf.broken.example")]);
    let v = run(&stub, &info, &sending());
    let c = find(&v, RecordPurpose::Spf, DOMAIN);
    assert_eq!(c.status, CheckStatus::Error, "{c:#?}");
    assert!(c.detail.contains("temperror"), "{}", c.detail);

    // No answer at all for the domain: a timeout, bounded in time.
    let cut: Vec<(String, String)> = zone.iter().filter(|(n, _)| n != DOMAIN).cloned().collect();
    let mut records: Vec<Record> = cut.iter().map(|(n, v)| Record::txt(n, v)).collect();
    records.push(Record::no_answer(DOMAIN));
    let stub = StubDns::start(records).expect("stub");
    let started = Instant::now();
    let v = run(&stub, &info, &sending());
    let took = started.elapsed();
    assert!(
        took < check_budget(&settings(&stub)) + Duration::from_secs(2),
        "{took:?}"
    );
    let c = find(&v, RecordPurpose::Spf, DOMAIN);
    assert_eq!(c.status, CheckStatus::Error, "{c:#?}");
    assert!(!v.verified);
    assert!(stub.queries(DOMAIN, RecordType::Txt) >= 1);

    // Nobody listening at all: every check is an error.
    let closed = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let dead = DnsSettings {
        nameservers: vec![closed.local_addr().expect("addr")],
        timeout: Duration::from_millis(300),
        attempts: 1,
    };
    drop(closed);
    let v = verify(&dead, &info, &sending());
    assert!(!v.verified);
    assert_eq!(v.checks.len(), 4);
    for c in &v.checks {
        assert_eq!(c.status, CheckStatus::Error, "{c:#?}");
    }
}

#[test]
fn dmarc_policies() {
    let info = domain(pair(&[], DkimKeyState::Active), None);
    let zone = good_zone(&info);
    for (record, status, words) in [
        ("v=DMARC1; p=none", CheckStatus::Ok, "p=none"),
        ("v=DMARC1; p=quarantine; pct=50", CheckStatus::Ok, "pct=50"),
        (
            "v=DMARC1; p=reject; adkim=s; aspf=s",
            CheckStatus::Ok,
            "p=reject",
        ),
        ("v=DMARC1; p=bogus", CheckStatus::Wrong, "does not parse"),
        ("v=DMARC1; p=reject; pct=500", CheckStatus::Wrong, "pct=500"),
    ] {
        let stub = serve(&with(zone.clone(), DMARC, &[record]), Vec::new());
        let v = run(&stub, &info, &sending());
        let c = find(&v, RecordPurpose::Dmarc, DMARC);
        assert_eq!(c.status, status, "{record}: {c:#?}");
        assert!(c.detail.contains(words), "{record}: {}", c.detail);
        assert_eq!(v.verified, status == CheckStatus::Ok, "{record}");
    }
    let stub = serve(
        &with(
            zone.clone(),
            DMARC,
            &["v=DMARC1; p=none", "v=DMARC1; p=reject"],
        ),
        Vec::new(),
    );
    let v = run(&stub, &info, &sending());
    let c = find(&v, RecordPurpose::Dmarc, DMARC);
    assert_eq!(c.status, CheckStatus::Wrong, "{c:#?}");
    assert!(c.detail.contains("2 DMARC records"), "{}", c.detail);
    assert!(!v.verified);

    // Something else at _dmarc, but no DMARC record: missing.
    let stub = serve(&with(zone, DMARC, &["hello"]), Vec::new());
    let v = run(&stub, &info, &sending());
    let c = find(&v, RecordPurpose::Dmarc, DMARC);
    assert_eq!(c.status, CheckStatus::Missing, "{c:#?}");
    assert!(c.found.is_empty());
    assert!(!v.verified);
}

#[test]
fn bimi_record_and_its_prerequisites() {
    let keys = pair(&[], DkimKeyState::Active);
    let bimi_name = "default._bimi.shop.example";
    let record = format!("v=BIMI1; l={LOGO}; a={VMC}");

    // Right, with an enforcing policy.
    let info = domain(keys.clone(), bimi(true));
    let zone = with(good_zone(&info), bimi_name, &[&record]);
    let stub = serve(&zone, Vec::new());
    let v = run(&stub, &info, &sending());
    assert!(v.verified, "{v:#?}");
    others_ok(&v, &[]);
    let c = find(&v, RecordPurpose::Bimi, bimi_name);
    assert!(!c.required);
    assert_eq!(c.found, std::slice::from_ref(&record));
    let pre = find(&v, RecordPurpose::Bimi, DMARC);
    assert!(pre.detail.contains("met"), "{}", pre.detail);

    // Wrong logo, missing certificate, missing record: wrong or missing, and the
    // domain still verified (BIMI is optional).
    for (values, status, words) in [
        (
            vec![format!("v=BIMI1; l=https://shop.example/old.svg; a={VMC}")],
            CheckStatus::Wrong,
            "l=https://shop.example/old.svg",
        ),
        (
            vec![format!("v=BIMI1; l={LOGO}; a=;")],
            CheckStatus::Wrong,
            "no a=",
        ),
        (
            vec![format!(
                "v=BIMI1; l={LOGO}; a=https://other.example/vmc.pem"
            )],
            CheckStatus::Wrong,
            "a=https://other.example/vmc.pem",
        ),
        (
            vec![record.clone(), record.clone().replace("brand", "b")],
            CheckStatus::Wrong,
            "2 BIMI records",
        ),
        (vec![], CheckStatus::Missing, "no BIMI record"),
    ] {
        let values: Vec<&str> = values.iter().map(String::as_str).collect();
        let stub = serve(&with(zone.clone(), bimi_name, &values), Vec::new());
        let v = run(&stub, &info, &sending());
        let c = find(&v, RecordPurpose::Bimi, bimi_name);
        assert_eq!(c.status, status, "{values:?}: {c:#?}");
        assert!(c.detail.contains(words), "{values:?}: {}", c.detail);
        assert!(v.verified, "{values:?}");
    }

    // Without a certificate set, any a= is fine.
    let no_vmc = domain(keys.clone(), bimi(false));
    let stub = serve(
        &with(
            good_zone(&no_vmc),
            bimi_name,
            &[&format!("v=BIMI1; l={LOGO}; a=;")],
        ),
        Vec::new(),
    );
    let v = run(&stub, &no_vmc, &sending());
    assert_eq!(status(&v, RecordPurpose::Bimi, bimi_name), CheckStatus::Ok);

    // Prerequisites: a policy that does not enforce, or no active key published.
    for (dmarc, words) in [
        ("v=DMARC1; p=none", "p=none"),
        ("v=DMARC1; p=quarantine; pct=20", "pct=20"),
    ] {
        let stub = serve(&with(zone.clone(), DMARC, &[dmarc]), Vec::new());
        let v = run(&stub, &info, &sending());
        assert_eq!(status(&v, RecordPurpose::Bimi, bimi_name), CheckStatus::Ok);
        let pre = find(&v, RecordPurpose::Bimi, DMARC);
        assert_eq!(pre.status, CheckStatus::Wrong, "{pre:#?}");
        assert!(!pre.required);
        assert!(pre.detail.contains(words), "{}", pre.detail);
        assert_eq!(pre.found, [dmarc]);
        assert!(v.verified, "the domain itself is fine");
    }
    let unpublished: Vec<(String, String)> = zone
        .iter()
        .filter(|(n, _)| !n.contains("._domainkey."))
        .cloned()
        .collect();
    let stub = serve(&unpublished, Vec::new());
    let v = run(&stub, &info, &sending());
    let pre = find(&v, RecordPurpose::Bimi, DMARC);
    assert_eq!(pre.status, CheckStatus::Wrong, "{pre:#?}");
    assert!(pre.detail.contains("DKIM"), "{}", pre.detail);
    assert!(!v.verified, "the active keys are missing");
}

#[test]
fn keys_that_do_not_sign_are_not_required() {
    let active = pair(&[], DkimKeyState::Active);
    let pending = pair(&active, DkimKeyState::Pending);
    let mut keys = active.clone();
    keys.extend(pending.clone());
    let info = domain(keys, None);
    // Only the active pair is published.
    let zone: Vec<(String, String)> = good_zone(&info)
        .into_iter()
        .filter(|(n, _)| !pending.iter().any(|k| key_name(k) == *n))
        .collect();
    let stub = serve(&zone, Vec::new());
    let v = run(&stub, &info, &sending());
    assert!(v.verified, "{v:#?}");
    for key in &pending {
        let c = find(&v, RecordPurpose::Dkim, &key_name(key));
        assert_eq!(c.status, CheckStatus::Missing, "{c:#?}");
        assert!(!c.required);
        assert!(c.detail.contains("pending"), "{}", c.detail);
    }
    for key in &active {
        let c = find(&v, RecordPurpose::Dkim, &key_name(key));
        assert_eq!(c.status, CheckStatus::Ok);
        assert!(c.required);
    }
}

#[test]
fn spf_without_sending_settings_is_optional() {
    let info = domain(pair(&[], DkimKeyState::Active), None);
    let zone: Vec<(String, String)> = good_zone(&info)
        .into_iter()
        .filter(|(n, v)| !(n == DOMAIN && v.starts_with("v=spf1")))
        .collect();
    let stub = serve(&zone, Vec::new());
    let v = run(&stub, &info, &SendingSettings::default());
    assert!(v.verified, "{v:#?}");
    let c = find(&v, RecordPurpose::Spf, DOMAIN);
    assert_eq!(c.status, CheckStatus::Missing);
    assert!(!c.required);
    assert!(c.expected.is_none());
    assert!(c.detail.contains("[sending]"), "{}", c.detail);

    // With one published, it is parsed and reported but not evaluated.
    let stub = serve(&good_zone(&info), Vec::new());
    let v = run(&stub, &info, &SendingSettings::default());
    let c = find(&v, RecordPurpose::Spf, DOMAIN);
    assert_eq!(c.status, CheckStatus::Ok, "{c:#?}");
    assert!(!c.required);
    assert!(c.detail.contains("[sending]"), "{}", c.detail);
}

/// A selector delegated by CNAME to a name the key record really lives at (as DNS
/// providers and delegated setups do) is followed.
#[test]
fn dkim_through_a_cname() {
    let info = domain(pair(&[], DkimKeyState::Active), None);
    let rsa = &info.dkim[0];
    let target = "rsa-key.keys.provider.example";
    let zone: Vec<(String, String)> = with(good_zone(&info), &key_name(rsa), &[]);
    let zone = with(zone, target, &[&key_record(rsa)]);
    let stub = serve(&zone, vec![Record::cname(&key_name(rsa), target)]);
    let v = run(&stub, &info, &sending());
    assert!(v.verified, "{v:#?}");
    assert_eq!(
        find(&v, RecordPurpose::Dkim, &key_name(rsa)).found,
        [key_record(rsa)]
    );
}

/// Called from inside a tokio runtime (as an async caller might), it still answers.
#[tokio::test]
async fn works_inside_a_runtime() {
    let info = domain(pair(&[], DkimKeyState::Active), None);
    let stub = serve(&good_zone(&info), Vec::new());
    let v = run(&stub, &info, &sending());
    assert!(v.verified, "{v:#?}");
}
