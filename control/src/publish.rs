//! The DNS records a tenant domain publishes so that receivers accept the platform's
//! mail from it: `domain.dns` shows them, `domain.verify` (dnscheck.rs) looks for
//! them.
//!
//! ```text
//!   DOMAIN                          TXT  v=spf1 ip4:… ip6:… include:… ~all     ([sending])
//!   SELECTOR._domainkey.DOMAIN      TXT  v=DKIM1; k=rsa; p=…                   (each pending,
//!   SELECTOR._domainkey.DOMAIN      TXT  v=DKIM1; k=ed25519; p=…                active, retired key)
//!   _dmarc.DOMAIN                   TXT  v=DMARC1; p=none; adkim=r; aspf=r[; rua=…]
//!   SELECTOR._bimi.DOMAIN           TXT  v=BIMI1; l=LOGO; a=VMC                (when BIMI is set)
//! ```
//!
//! Values are whole strings here; a TXT record holds strings of at most 255 bytes
//! each, so a long value (an RSA key) is published as several strings that receivers
//! join ([`split_txt`]).

use crate::dkim;
use crate::settings::SendingSettings;
use way2mail_wire::protocol::{DkimKeyState, DnsRecord, DomainInfo, RecordPurpose};

/// Longest string inside one TXT record (RFC 1035 character-string).
pub const TXT_STRING_MAX: usize = 255;

/// The first line of the first record's note when `[sending]` names neither
/// addresses nor an include, so that no SPF record is suggested.
pub const NO_SPF_NOTE: &str =
    "no SPF record suggested: way2mail-control has no [sending] ips or spf_include configured.";

/// The records `domain` should publish, in order: SPF (when `[sending]` has addresses
/// or an include), one DKIM record per pending, active or retired key, DMARC, and
/// BIMI when set. Without SPF the first record's note starts with [`NO_SPF_NOTE`]
/// as a line of its own.
pub fn records(domain: &DomainInfo, sending: &SendingSettings) -> Vec<DnsRecord> {
    let name = domain.domain.as_str();
    let mut out = Vec::new();
    let spf = spf_value(sending);
    if let Some(value) = &spf {
        out.push(record(
            RecordPurpose::Spf,
            name.to_owned(),
            value.clone(),
            "SPF: authorises the platform's servers; a domain has one SPF record, so merge \
             these terms into an existing one"
                .into(),
        ));
    }
    for key in &domain.dkim {
        let state = match key.state {
            DkimKeyState::Active => "active: signs the domain's mail",
            DkimKeyState::Pending => "pending: publish before activating",
            DkimKeyState::Retired => {
                "retired: keep until retired with domain retire-dkim, for mail signed before"
            }
        };
        out.push(record(
            RecordPurpose::Dkim,
            dkim::record_name(&key.selector, name),
            dkim::record_value(key),
            format!(
                "DKIM selector {} ({}, {state})",
                key.selector,
                key.algorithm.as_str()
            ),
        ));
    }
    out.push(record(
        RecordPurpose::Dmarc,
        dmarc_name(name),
        dmarc_value(sending),
        "DMARC: a starting policy that only monitors (p=none); keep an existing DMARC record, \
         and move to p=quarantine or p=reject once reports show all mail aligned"
            .into(),
    ));
    if let Some(bimi) = &domain.bimi {
        out.push(record(
            RecordPurpose::Bimi,
            bimi_name(&bimi.selector, name),
            bimi_value(&bimi.logo_url, bimi.vmc_url.as_deref()),
            format!(
                "BIMI selector {}: shown only under a DMARC policy of p=quarantine or p=reject",
                bimi.selector
            ),
        ));
    }
    if spf.is_none() {
        // A line of its own: the first record's note follows on the next line.
        if let Some(first) = out.first_mut() {
            first.note = format!("{NO_SPF_NOTE}\n{}", first.note);
        }
    }
    out
}

fn record(purpose: RecordPurpose, name: String, value: String, note: String) -> DnsRecord {
    DnsRecord {
        purpose,
        name,
        rtype: "TXT".into(),
        value,
        note,
    }
}

/// Where a domain's DMARC record lives: `_dmarc.DOMAIN`.
pub fn dmarc_name(domain: &str) -> String {
    format!("_dmarc.{domain}")
}

/// Where a domain's BIMI record for `selector` lives: `SELECTOR._bimi.DOMAIN`.
pub fn bimi_name(selector: &str, domain: &str) -> String {
    format!("{selector}._bimi.{domain}")
}

/// `v=spf1 ip4:… ip6:… include:… ~all`, or `None` when `[sending]` names neither
/// addresses nor an include.
pub fn spf_value(sending: &SendingSettings) -> Option<String> {
    if sending.ips.is_empty() && sending.spf_include.is_none() {
        return None;
    }
    let mut value = String::from("v=spf1");
    for ip in &sending.ips {
        let term = match ip {
            std::net::IpAddr::V4(v4) => format!(" ip4:{v4}"),
            std::net::IpAddr::V6(v6) => format!(" ip6:{v6}"),
        };
        value.push_str(&term);
    }
    if let Some(include) = &sending.spf_include {
        value.push_str(" include:");
        value.push_str(include);
    }
    value.push_str(" ~all");
    Some(value)
}

/// `v=DMARC1; p=none; adkim=r; aspf=r`, with `; rua=…` when `[sending] dmarc_rua` is set.
pub fn dmarc_value(sending: &SendingSettings) -> String {
    let mut value = String::from("v=DMARC1; p=none; adkim=r; aspf=r");
    if let Some(rua) = &sending.dmarc_rua {
        value.push_str("; rua=");
        value.push_str(rua);
    }
    value
}

/// `v=BIMI1; l=LOGO; a=VMC`, with an empty `a=;` when there is no certificate.
pub fn bimi_value(logo_url: &str, vmc_url: Option<&str>) -> String {
    match vmc_url {
        Some(vmc) => format!("v=BIMI1; l={logo_url}; a={vmc}"),
        None => format!("v=BIMI1; l={logo_url}; a=;"),
    }
}

/// `value` cut into strings of at most 255 bytes (never inside a UTF-8 character),
/// as a TXT record carries it; receivers join them without a separator.
pub fn split_txt(value: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut rest = value;
    while rest.len() > TXT_STRING_MAX {
        let mut cut = TXT_STRING_MAX;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (head, tail) = rest.split_at(cut);
        parts.push(head);
        rest = tail;
    }
    if !rest.is_empty() || parts.is_empty() {
        parts.push(rest);
    }
    parts
}

#[cfg(test)]
mod tests {
    use mail_auth::common::parse::TxtRecordParser;
    use mail_auth::common::verify::DomainKey;
    use mail_auth::dmarc::{Alignment, Dmarc, Policy};
    use mail_auth::spf::{Mechanism, Qualifier, Spf};

    use super::*;
    use way2mail_wire::protocol::{BimiInfo, DkimKeyInfo};

    const NOW: u64 = 1_795_953_600;

    fn domain(states: &[DkimKeyState], bimi: Option<BimiInfo>) -> DomainInfo {
        let mut keys: Vec<DkimKeyInfo> = Vec::new();
        for state in states {
            let [rsa, ed] =
                dkim::generate_pair("shop.example", &keys, NOW, *state).expect("generate");
            keys.push(rsa.info);
            keys.push(ed.info);
        }
        DomainInfo {
            domain: "shop.example".into(),
            tenant: "shop".into(),
            created_at: NOW,
            dkim: keys,
            verified_at: None,
            send_unverified: false,
            bimi,
        }
    }

    fn full_sending() -> SendingSettings {
        SendingSettings {
            ips: vec![
                "192.0.2.25".parse().expect("ip"),
                "2001:db8::25".parse().expect("ip"),
            ],
            spf_include: Some("_spf.way2mail.example".into()),
            dmarc_rua: Some("mailto:dmarc@way2mail.example".into()),
        }
    }

    fn bimi_check(value: &str) -> Result<Vec<(String, String)>, String> {
        let mut tags = Vec::new();
        for part in value.split(';') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let (tag, val) = part.split_once('=').ok_or(format!("no '=' in {part:?}"))?;
            tags.push((tag.trim().to_owned(), val.trim().to_owned()));
        }
        if tags.first().map(|(t, v)| (t.as_str(), v.as_str())) != Some(("v", "BIMI1")) {
            return Err("v=BIMI1 must come first".into());
        }
        for (tag, val) in &tags {
            match tag.as_str() {
                "v" => {}
                "l" if val.starts_with("https://") => {}
                "a" if val.is_empty() || val.starts_with("https://") => {}
                _ => return Err(format!("bad tag {tag}={val}")),
            }
        }
        if !tags.iter().any(|(t, _)| t == "l") {
            return Err("no l=".into());
        }
        Ok(tags)
    }

    #[test]
    fn every_value_parses() {
        let info = domain(
            &[
                DkimKeyState::Retired,
                DkimKeyState::Active,
                DkimKeyState::Pending,
            ],
            Some(BimiInfo {
                selector: "default".into(),
                logo_url: "https://shop.example/logo.svg".into(),
                vmc_url: Some("https://shop.example/vmc.pem".into()),
            }),
        );
        let records = records(&info, &full_sending());
        let purposes: Vec<RecordPurpose> = records.iter().map(|r| r.purpose).collect();
        let dkim = RecordPurpose::Dkim;
        assert_eq!(
            purposes,
            [
                RecordPurpose::Spf,
                dkim,
                dkim,
                dkim,
                dkim,
                dkim,
                dkim,
                RecordPurpose::Dmarc,
                RecordPurpose::Bimi
            ]
        );
        for r in &records {
            assert_eq!(r.rtype, "TXT");
            match r.purpose {
                RecordPurpose::Spf => {
                    assert_eq!(r.name, "shop.example");
                    assert_eq!(
                        r.value,
                        "v=spf1 ip4:192.0.2.25 ip6:2001:db8::25 include:_spf.way2mail.example ~all"
                    );
                    let spf = Spf::parse(r.value.as_bytes()).expect("SPF parses");
                    let mechanisms: Vec<&Mechanism> =
                        spf.directives.iter().map(|d| &d.mechanism).collect();
                    assert!(matches!(
                        mechanisms[..],
                        [
                            Mechanism::Ip4 { .. },
                            Mechanism::Ip6 { .. },
                            Mechanism::Include { .. },
                            Mechanism::All
                        ]
                    ));
                    assert_eq!(spf.directives[3].qualifier, Qualifier::SoftFail);
                }
                RecordPurpose::Dkim => {
                    DomainKey::parse(r.value.as_bytes()).expect("DKIM parses");
                    let key = info
                        .dkim
                        .iter()
                        .find(|k| r.name == format!("{}._domainkey.shop.example", k.selector))
                        .expect("one record per key");
                    assert!(r.value.ends_with(&key.public_key));
                    assert!(r.note.contains(&key.selector));
                    let expect = match key.state {
                        DkimKeyState::Active => "active",
                        DkimKeyState::Pending => "pending: publish before activating",
                        DkimKeyState::Retired => {
                            "retired: keep until retired with domain retire-dkim"
                        }
                    };
                    assert!(r.note.contains(expect), "{}", r.note);
                }
                RecordPurpose::Dmarc => {
                    assert_eq!(r.name, "_dmarc.shop.example");
                    let dmarc = Dmarc::parse(r.value.as_bytes()).expect("DMARC parses");
                    assert_eq!(dmarc.p, Policy::None);
                    assert_eq!(dmarc.adkim, Alignment::Relaxed);
                    assert_eq!(dmarc.aspf, Alignment::Relaxed);
                    assert_eq!(dmarc.rua.len(), 1);
                    assert_eq!(dmarc.rua[0].uri, "dmarc@way2mail.example");
                }
                RecordPurpose::Bimi => {
                    assert_eq!(r.name, "default._bimi.shop.example");
                    let tags = bimi_check(&r.value).expect("BIMI parses");
                    assert_eq!(
                        tags[1],
                        ("l".to_string(), "https://shop.example/logo.svg".to_string())
                    );
                    assert_eq!(
                        tags[2],
                        ("a".to_string(), "https://shop.example/vmc.pem".to_string())
                    );
                }
            }
        }
    }

    #[test]
    fn minimal_settings_and_no_vmc() {
        let info = domain(
            &[DkimKeyState::Active],
            Some(BimiInfo {
                selector: "brand".into(),
                logo_url: "https://cdn.example/l.svg".into(),
                vmc_url: None,
            }),
        );
        let records = records(&info, &SendingSettings::default());
        assert!(records.iter().all(|r| r.purpose != RecordPurpose::Spf));
        // The SPF note is a line of its own, before the first record's own note.
        let lines: Vec<&str> = records[0].note.lines().collect();
        assert_eq!(lines.len(), 2, "{:?}", records[0].note);
        assert_eq!(lines[0], NO_SPF_NOTE);
        assert!(lines[0].starts_with("no SPF record suggested"));
        assert!(lines[1].starts_with("DKIM selector "), "{}", lines[1]);
        assert_eq!(
            records.iter().filter(|r| r.note.contains("no SPF")).count(),
            1
        );
        let dmarc = records
            .iter()
            .find(|r| r.purpose == RecordPurpose::Dmarc)
            .expect("dmarc");
        assert_eq!(dmarc.value, "v=DMARC1; p=none; adkim=r; aspf=r");
        let parsed = Dmarc::parse(dmarc.value.as_bytes()).expect("parses");
        assert!(parsed.rua.is_empty());
        let bimi = records
            .iter()
            .find(|r| r.purpose == RecordPurpose::Bimi)
            .expect("bimi");
        assert_eq!(bimi.name, "brand._bimi.shop.example");
        assert_eq!(bimi.value, "v=BIMI1; l=https://cdn.example/l.svg; a=;");
        let tags = bimi_check(&bimi.value).expect("parses");
        assert_eq!(tags[2], ("a".to_string(), String::new()));

        // Only an include, only addresses.
        let only_include = SendingSettings {
            spf_include: Some("_spf.example.net".into()),
            ..SendingSettings::default()
        };
        let spf = spf_value(&only_include).expect("spf");
        assert_eq!(spf, "v=spf1 include:_spf.example.net ~all");
        Spf::parse(spf.as_bytes()).expect("parses");
        let only_ip = SendingSettings {
            ips: vec!["198.51.100.7".parse().expect("ip")],
            ..SendingSettings::default()
        };
        let spf = spf_value(&only_ip).expect("spf");
        assert_eq!(spf, "v=spf1 ip4:198.51.100.7 ~all");
        Spf::parse(spf.as_bytes()).expect("parses");
    }

    #[test]
    fn domains_without_keys_still_get_dmarc() {
        let info = domain(&[], None);
        let records = records(&info, &full_sending());
        let purposes: Vec<RecordPurpose> = records.iter().map(|r| r.purpose).collect();
        assert_eq!(purposes, [RecordPurpose::Spf, RecordPurpose::Dmarc]);
    }

    #[test]
    fn long_values_split_into_txt_strings() {
        let info = domain(&[DkimKeyState::Active], None);
        let rsa = dkim::record_value(&info.dkim[0]);
        assert!(
            rsa.len() > TXT_STRING_MAX,
            "an RSA-2048 record needs two strings"
        );
        let parts = split_txt(&rsa);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].len(), TXT_STRING_MAX);
        assert_eq!(parts.concat(), rsa);
        assert_eq!(split_txt("short"), ["short"]);
        assert_eq!(split_txt(""), [""]);
        let exact = "x".repeat(TXT_STRING_MAX);
        assert_eq!(split_txt(&exact), [exact.as_str()]);
        // Never inside a character.
        let wide = "é".repeat(200);
        let parts = split_txt(&wide);
        assert!(parts.iter().all(|p| p.len() <= TXT_STRING_MAX));
        assert_eq!(parts.concat(), wide);
    }
}
