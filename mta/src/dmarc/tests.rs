//! Reports as reporters send them (zip or gzip, base64 in multipart/mixed), and
//! hostile input. The XML is written after RFC 7489 appendix C's schema in the shape
//! Google's and Microsoft's reports have (paraphrase: from memory of the format, not
//! a copied report); addresses are documentation values.

use std::io::Write;
use std::net::IpAddr;

use base64::Engine;

use super::*;

/// Google-style: zip, `google.com!domain!begin!end.xml`, four records.
const GOOGLE: &str = r#"<?xml version="1.0" encoding="UTF-8" ?>
<feedback>
  <report_metadata>
    <org_name>google.com</org_name>
    <email>noreply-dmarc-support@google.com</email>
    <extra_contact_info>https://support.google.com/a/answer/2466580</extra_contact_info>
    <report_id>12345678901234567890</report_id>
    <date_range>
      <begin>1700006400</begin>
      <end>1700092799</end>
    </date_range>
  </report_metadata>
  <policy_published>
    <domain>Example.COM</domain>
    <adkim>r</adkim>
    <aspf>r</aspf>
    <p>none</p>
    <sp>none</sp>
    <pct>100</pct>
    <np>none</np>
  </policy_published>
  <record>
    <row>
      <source_ip>192.0.2.10</source_ip>
      <count>120</count>
      <policy_evaluated>
        <disposition>none</disposition>
        <dkim>pass</dkim>
        <spf>pass</spf>
      </policy_evaluated>
    </row>
    <identifiers>
      <header_from>example.com</header_from>
    </identifiers>
    <auth_results>
      <dkim>
        <domain>example.com</domain>
        <result>pass</result>
        <selector>s1</selector>
      </dkim>
      <spf>
        <domain>bounces.example.com</domain>
        <result>pass</result>
      </spf>
    </auth_results>
  </record>
  <record>
    <row>
      <source_ip>2001:db8::25</source_ip>
      <count>30</count>
      <policy_evaluated>
        <disposition>none</disposition>
        <dkim>pass</dkim>
        <spf>fail</spf>
      </policy_evaluated>
    </row>
    <identifiers>
      <header_from>example.com</header_from>
    </identifiers>
    <auth_results>
      <dkim>
        <domain>example.com</domain>
        <result>pass</result>
        <selector>s1</selector>
      </dkim>
      <dkim>
        <domain>esp.example.net</domain>
        <result>pass</result>
        <selector>esp</selector>
      </dkim>
      <spf>
        <domain>esp.example.net</domain>
        <result>pass</result>
      </spf>
    </auth_results>
  </record>
  <record>
    <row>
      <source_ip>198.51.100.7</source_ip>
      <count>8</count>
      <policy_evaluated>
        <disposition>none</disposition>
        <dkim>fail</dkim>
        <spf>fail</spf>
        <reason><type>forwarded</type><comment/></reason>
      </policy_evaluated>
    </row>
    <identifiers>
      <header_from>example.com</header_from>
    </identifiers>
    <auth_results>
      <spf>
        <domain>forwarder.example.org</domain>
        <result>softfail</result>
      </spf>
    </auth_results>
  </record>
  <record>
    <row>
      <source_ip>203.0.113.99</source_ip>
      <count>2</count>
      <policy_evaluated>
        <disposition>none</disposition>
        <dkim>fail</dkim>
        <spf>pass</spf>
      </policy_evaluated>
    </row>
    <identifiers>
      <header_from>example.com</header_from>
    </identifiers>
    <auth_results>
      <dkim>
        <domain>example.com</domain>
        <result>fail</result>
        <selector>s1</selector>
      </dkim>
      <spf>
        <domain>example.com</domain>
        <result>pass</result>
      </spf>
    </auth_results>
  </record>
</feedback>
"#;

/// Microsoft-style: gzip, the DMARCbis-era namespace and `xmlns:xs`, an
/// envelope_to, and a quarantined row.
const MICROSOFT: &str = r#"<?xml version="1.0"?>
<feedback xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <version>1.0</version>
  <report_metadata>
    <org_name>Enterprise Outlook</org_name>
    <email>dmarcreport@microsoft.com</email>
    <report_id>9f2c0a8e4b7d4c1e8a3b5d6e7f809a1b</report_id>
    <date_range>
      <begin>1700006400</begin>
      <end>1700092800</end>
    </date_range>
  </report_metadata>
  <policy_published>
    <domain>example.com</domain>
    <adkim>r</adkim>
    <aspf>r</aspf>
    <p>quarantine</p>
    <sp>quarantine</sp>
    <pct>100</pct>
    <fo>0</fo>
  </policy_published>
  <record>
    <row>
      <source_ip>192.0.2.10</source_ip>
      <count>40</count>
      <policy_evaluated>
        <disposition>none</disposition>
        <dkim>pass</dkim>
        <spf>pass</spf>
      </policy_evaluated>
    </row>
    <identifiers>
      <envelope_to>example.org</envelope_to>
      <envelope_from>bounces.example.com</envelope_from>
      <header_from>example.com</header_from>
    </identifiers>
    <auth_results>
      <dkim>
        <domain>example.com</domain>
        <selector>s1</selector>
        <result>pass</result>
      </dkim>
      <spf>
        <domain>bounces.example.com</domain>
        <scope>mfrom</scope>
        <result>pass</result>
      </spf>
    </auth_results>
  </record>
  <record>
    <row>
      <source_ip>198.51.100.66</source_ip>
      <count>10</count>
      <policy_evaluated>
        <disposition>quarantine</disposition>
        <dkim>fail</dkim>
        <spf>fail</spf>
      </policy_evaluated>
    </row>
    <identifiers>
      <envelope_to>example.org</envelope_to>
      <envelope_from>spoof.example</envelope_from>
      <header_from>example.com</header_from>
    </identifiers>
    <auth_results>
      <spf>
        <domain>spoof.example</domain>
        <scope>mfrom</scope>
        <result>none</result>
      </spf>
    </auth_results>
  </record>
</feedback>
"#;

fn zip_of(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, bytes) in members {
        writer.start_file(*name, options).expect("start member");
        writer.write_all(bytes).expect("write member");
    }
    writer.finish().expect("finish zip").into_inner()
}

fn gzip_of(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).expect("gzip");
    encoder.finish().expect("gzip finish")
}

/// A report message as reporters send it: a text part, then the attachment in
/// base64 lines of 76.
fn message_with(content_type: &str, filename: &str, attachment: &[u8]) -> Vec<u8> {
    let encoded = base64::engine::general_purpose::STANDARD.encode(attachment);
    let mut body = String::new();
    for line in encoded.as_bytes().chunks(76) {
        body.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        body.push_str("\r\n");
    }
    format!(
        "From: noreply-dmarc-support@google.com\r\n\
         To: dmarc-rua@example.com\r\n\
         Subject: Report domain: example.com Submitter: google.com Report-ID: <12345678901234567890>\r\n\
         Date: Thu, 16 Nov 2023 02:00:00 -0800\r\n\
         Message-ID: <12345678901234567890@google.com>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"000000000000abcdef\"\r\n\
         \r\n\
         --000000000000abcdef\r\n\
         Content-Type: text/plain; charset=\"UTF-8\"; format=flowed; delsp=yes\r\n\
         \r\n\
         This is an aggregate report from google.com.\r\n\
         \r\n\
         --000000000000abcdef\r\n\
         Content-Type: {content_type}; name=\"{filename}\"\r\n\
         Content-Disposition: attachment; filename=\"{filename}\"\r\n\
         Content-Transfer-Encoding: base64\r\n\
         \r\n\
         {body}\
         --000000000000abcdef--\r\n"
    )
    .into_bytes()
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test IP")
}

#[test]
fn google_zip_in_mime_parses() {
    let zip = zip_of(&[(
        "google.com!example.com!1700006400!1700092799.xml",
        GOOGLE.as_bytes(),
    )]);
    let message = message_with(
        "application/zip",
        "google.com!example.com!1700006400!1700092799.zip",
        &zip,
    );
    let reports = reports_in_message(&message).expect("report");
    assert_eq!(reports.len(), 1);
    let report = &reports[0];
    assert_eq!(report.org_name, "google.com");
    assert_eq!(report.email, "noreply-dmarc-support@google.com");
    assert_eq!(report.report_id, "12345678901234567890");
    assert_eq!((report.begin, report.end), (1_700_006_400, 1_700_092_799));
    assert_eq!(report.domain, "example.com");
    assert_eq!(
        report.policy,
        PublishedPolicy {
            p: "none".into(),
            sp: Some("none".into()),
            pct: Some(100),
            adkim: Some("r".into()),
            aspf: Some("r".into()),
        }
    );
    assert_eq!(report.records.len(), 4);
    let second = &report.records[1];
    assert_eq!(second.source_ip, ip("2001:db8::25"));
    assert_eq!(second.count, 30);
    assert!(second.dkim_aligned && !second.spf_aligned);
    assert_eq!(
        second.dkim_results,
        vec![
            ("example.com".to_owned(), "pass".to_owned()),
            ("esp.example.net".to_owned(), "pass".to_owned())
        ]
    );
    assert_eq!(
        second.spf_results,
        vec![("esp.example.net".to_owned(), "pass".to_owned())]
    );
    let third = &report.records[2];
    assert!(!third.dkim_aligned && !third.spf_aligned);
    assert!(third.dkim_results.is_empty());
    assert_eq!(third.header_from, "example.com");
    assert_eq!(third.disposition, "none");
}

#[test]
fn microsoft_gzip_in_mime_parses() {
    let gz = gzip_of(MICROSOFT.as_bytes());
    let name = "enterprise.protection.outlook.com!example.com!1700006400!1700092800.xml.gz";
    let message = message_with("application/gzip", name, &gz);
    let reports = reports_in_message(&message).expect("report");
    assert_eq!(reports.len(), 1);
    let report = &reports[0];
    assert_eq!(report.org_name, "Enterprise Outlook");
    assert_eq!(report.policy.p, "quarantine");
    assert_eq!(report.records.len(), 2);
    assert_eq!(report.records[1].disposition, "quarantine");
    assert_eq!(report.records[1].source_ip, ip("198.51.100.66"));

    // The same attachment with a generic type is recognized by its name.
    let message = message_with("application/octet-stream", name, &gz);
    assert_eq!(reports_in_message(&message).expect("by name"), reports);
}

#[test]
fn decode_by_type_and_name() {
    let xml = GOOGLE.as_bytes();
    assert_eq!(
        decode(xml, "text/xml; charset=utf-8", None).expect("xml"),
        xml
    );
    assert_eq!(
        decode(&gzip_of(xml), "application/x-gzip", None).expect("gz"),
        xml
    );
    assert_eq!(
        decode(
            &zip_of(&[("r.xml", xml)]),
            "application/octet-stream",
            Some("R.ZIP")
        )
        .expect("zip by name"),
        xml
    );
    assert_eq!(
        decode(xml, "application/octet-stream", Some("report.xml")).expect("xml by name"),
        xml
    );
    assert_eq!(
        decode(xml, "application/octet-stream", Some("report.pdf")),
        Err(ReportError::NotAReport)
    );
    assert_eq!(
        decode(xml, "image/png", Some("r.xml")),
        Err(ReportError::NotAReport)
    );
    // Type and content disagree: a clear error, no panic.
    assert!(matches!(
        decode(xml, "application/zip", None),
        Err(ReportError::Archive(_))
    ));
    assert!(matches!(
        decode(xml, "application/gzip", None),
        Err(ReportError::Archive(_))
    ));
}

#[test]
fn plain_xml_attachment_and_single_part_message() {
    let message = format!(
        "From: dmarc@example.net\r\nTo: rua@example.com\r\nSubject: report\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/xml\r\n\r\n{GOOGLE}"
    );
    let reports = reports_in_message(message.as_bytes()).expect("report");
    assert_eq!(reports[0].records.len(), 4);
}

#[test]
fn not_a_report() {
    let message = b"From: a@example.com\r\nTo: b@example.com\r\nSubject: hi\r\n\r\nhello\r\n";
    assert_eq!(reports_in_message(message), Err(ReportError::NotAReport));
    assert_eq!(reports_in_message(b""), Err(ReportError::NotAReport));
    let pdf = message_with("application/pdf", "invoice.pdf", b"%PDF-1.4");
    assert_eq!(reports_in_message(&pdf), Err(ReportError::NotAReport));
    // XML, but not a report.
    assert_eq!(
        parse_xml(b"<?xml version=\"1.0\"?><html><body/></html>"),
        Err(ReportError::NotAReport)
    );
    assert_eq!(parse_xml(b""), Err(ReportError::NotAReport));
}

#[test]
fn malformed_xml() {
    let cut = &GOOGLE.as_bytes()[..GOOGLE.len() / 2];
    assert!(matches!(parse_xml(cut), Err(ReportError::Malformed(_))));
    let crossed = GOOGLE.replace("</org_name>", "</email>");
    assert!(matches!(
        parse_xml(crossed.as_bytes()),
        Err(ReportError::Malformed(_))
    ));
    let bad_ip = GOOGLE.replace("192.0.2.10", "192.0.2.300");
    assert!(matches!(
        parse_xml(bad_ip.as_bytes()),
        Err(ReportError::Malformed(m)) if m.contains("source_ip")
    ));
    let bad_count = GOOGLE.replace("<count>120</count>", "<count>-1</count>");
    assert!(matches!(
        parse_xml(bad_count.as_bytes()),
        Err(ReportError::Malformed(m)) if m.contains("count")
    ));
    let bad_disposition = GOOGLE.replace("<disposition>none", "<disposition>maybe");
    assert!(matches!(
        parse_xml(bad_disposition.as_bytes()),
        Err(ReportError::Malformed(_))
    ));
    let backwards = GOOGLE.replace("<end>1700092799", "<end>1");
    assert!(matches!(
        parse_xml(backwards.as_bytes()),
        Err(ReportError::Malformed(_))
    ));
    assert!(matches!(
        parse_xml(&[0xff, 0xfe, b'<', 0, b'a', 0]),
        Err(ReportError::Malformed(_) | ReportError::NotAReport)
    ));
}

#[test]
fn missing_fields_are_named() {
    let cases = [
        (
            "<org_name>google.com</org_name>",
            "report_metadata/org_name",
        ),
        (
            "<report_id>12345678901234567890</report_id>",
            "report_metadata/report_id",
        ),
        ("<begin>1700006400</begin>", "date_range/begin"),
        ("<domain>Example.COM</domain>", "policy_published/domain"),
        ("<p>none</p>", "policy_published/p"),
        ("<source_ip>192.0.2.10</source_ip>", "row/source_ip"),
        ("<count>120</count>", "row/count"),
    ];
    for (remove, named) in cases {
        let xml = GOOGLE.replacen(remove, "", 1);
        assert_eq!(
            parse_xml(xml.as_bytes()),
            Err(ReportError::Missing(named)),
            "{named}"
        );
    }
    let no_header_from = GOOGLE.replacen("<header_from>example.com</header_from>", "", 1);
    assert_eq!(
        parse_xml(no_header_from.as_bytes()),
        Err(ReportError::Missing("identifiers/header_from"))
    );
    // An empty email is kept empty; a missing one too.
    let no_email = GOOGLE.replace("<email>noreply-dmarc-support@google.com</email>", "");
    assert_eq!(parse_xml(no_email.as_bytes()).expect("no email").email, "");
}

#[test]
fn entities_are_refused() {
    let laughs = r#"<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<feedback><report_metadata><org_name>&lol9;</org_name></report_metadata></feedback>"#;
    assert_eq!(parse_xml(laughs.as_bytes()), Err(ReportError::Entity));
    let external =
        r#"<?xml version="1.0"?><!DOCTYPE feedback SYSTEM "http://example.com/x.dtd"><feedback/>"#;
    assert_eq!(parse_xml(external.as_bytes()), Err(ReportError::Entity));
    // An undeclared entity is an error, not an empty string.
    let undeclared = GOOGLE.replace(">google.com<", ">&xxe;<");
    assert_eq!(parse_xml(undeclared.as_bytes()), Err(ReportError::Entity));
    // The predefined ones and character references read as text.
    let escaped = GOOGLE.replace(">google.com<", ">a&amp;b &#x41;&#66;&lt;<");
    assert_eq!(
        parse_xml(escaped.as_bytes()).expect("escaped").org_name,
        "a&b AB<"
    );
}

#[test]
fn oversized_input_is_refused() {
    let huge = vec![b' '; MAX_XML + 1];
    assert_eq!(parse_xml(&huge), Err(ReportError::TooLarge("XML document")));
    let big_attachment = vec![b' '; MAX_ATTACHMENT + 1];
    assert_eq!(
        decode(&big_attachment, "text/xml", None),
        Err(ReportError::TooLarge("attachment"))
    );
    let long_text = GOOGLE.replace(">google.com<", &format!(">{}<", "x".repeat(5000)));
    assert_eq!(
        parse_xml(long_text.as_bytes()),
        Err(ReportError::TooLarge("field text"))
    );
    // Long text in an element that is not read is skipped.
    let long_ignored = GOOGLE.replace(
        "https://support.google.com/a/answer/2466580",
        &"y".repeat(5000),
    );
    assert!(parse_xml(long_ignored.as_bytes()).is_ok());
    let deep = format!(
        "<feedback>{}{}</feedback>",
        "<x>".repeat(100),
        "</x>".repeat(100)
    );
    assert_eq!(
        parse_xml(deep.as_bytes()),
        Err(ReportError::TooLarge("element nesting"))
    );
}

#[test]
fn zip_bomb_is_refused() {
    let zeros = vec![0u8; 30 * 1024 * 1024];
    let bomb = zip_of(&[("report.xml", &zeros)]);
    assert!(bomb.len() < MAX_ATTACHMENT, "compressed: {}", bomb.len());
    assert_eq!(
        decode(&bomb, "application/zip", None),
        Err(ReportError::TooLarge("XML document"))
    );

    // The declared size can lie: with the size fields patched to a small value,
    // inflating still stops at the cap.
    let lying = patch_zip_sizes(&bomb, 1000);
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(&lying)).expect("zip");
    assert_eq!(archive.by_index(0).expect("member").size(), 1000);
    drop(archive);
    assert_eq!(
        decode(&lying, "application/zip", None),
        Err(ReportError::TooLarge("XML document"))
    );

    let gz_bomb = gzip_of(&zeros);
    assert_eq!(
        decode(&gz_bomb, "application/gzip", None),
        Err(ReportError::TooLarge("XML document"))
    );
}

/// `zip` with the uncompressed-size fields (local header and central directory)
/// set to `size`, for a single-member archive without ZIP64 extras.
fn patch_zip_sizes(zip: &[u8], size: u32) -> Vec<u8> {
    let mut out = zip.to_vec();
    let find = |sig: &[u8; 4], out: &[u8]| out.windows(4).position(|w| w == sig);
    if let Some(local) = find(b"PK\x03\x04", &out) {
        out[local + 22..local + 26].copy_from_slice(&size.to_le_bytes());
    }
    if let Some(central) = find(b"PK\x01\x02", &out) {
        out[central + 24..central + 28].copy_from_slice(&size.to_le_bytes());
    }
    out
}

#[test]
fn zip_with_two_reports_or_none_is_refused() {
    let two = zip_of(&[
        ("a.xml", GOOGLE.as_bytes()),
        ("b.xml", MICROSOFT.as_bytes()),
    ]);
    assert!(matches!(
        decode(&two, "application/zip", None),
        Err(ReportError::Archive(m)) if m.contains("more than one")
    ));
    let none = zip_of(&[("readme.txt", b"hello")]);
    assert!(matches!(
        decode(&none, "application/zip", None),
        Err(ReportError::Archive(m)) if m.contains("no .xml")
    ));
    // Other members beside the one report are ignored.
    let one = zip_of(&[("readme.txt", b"hello"), ("a.XML", GOOGLE.as_bytes())]);
    assert_eq!(
        decode(&one, "application/zip", None).expect("one xml"),
        GOOGLE.as_bytes()
    );
}

#[test]
fn bad_attachment_fails_the_message() {
    let message = message_with("application/zip", "report.zip", b"not a zip at all");
    assert!(matches!(
        reports_in_message(&message),
        Err(ReportError::Archive(_))
    ));
}

fn row(ip: &str, count: u64, dkim: bool, spf: bool, disposition: &str) -> Row {
    Row {
        source_ip: self::ip(ip),
        count,
        disposition: disposition.into(),
        dkim_aligned: dkim,
        spf_aligned: spf,
        header_from: "example.com".into(),
        dkim_results: Vec::new(),
        spf_results: Vec::new(),
    }
}

fn report(org: &str, id: &str, domain: &str, end: u64, records: Vec<Row>) -> AggregateReport {
    AggregateReport {
        org_name: org.into(),
        email: String::new(),
        report_id: id.into(),
        begin: end.saturating_sub(86_400),
        end,
        domain: domain.into(),
        policy: PublishedPolicy {
            p: "none".into(),
            sp: None,
            pct: None,
            adkim: None,
            aspf: None,
        },
        records,
    }
}

#[test]
fn summary_with_known_numbers() {
    let day = 1_700_092_800;
    let reports = vec![
        report(
            "google.com",
            "g1",
            "example.com",
            day,
            vec![
                row("192.0.2.10", 100, true, true, "none"),
                row("2001:db8::25", 30, true, false, "none"),
                row("198.51.100.7", 10, false, false, "none"),
            ],
        ),
        // A resend of g1: not counted twice.
        report(
            "google.com",
            "g1",
            "example.com",
            day,
            vec![row("192.0.2.10", 100, true, true, "none")],
        ),
        report(
            "Enterprise Outlook",
            "m1",
            "example.com",
            day,
            vec![
                row("192.0.2.10", 40, false, true, "none"),
                row("198.51.100.7", 20, false, false, "quarantine"),
            ],
        ),
        // Too old.
        report(
            "google.com",
            "old",
            "example.com",
            day - 10 * 86_400,
            vec![row("192.0.2.10", 1000, false, false, "none")],
        ),
        // Another domain.
        report(
            "google.com",
            "g2",
            "example.org",
            day,
            vec![row("192.0.2.99", 5, false, false, "reject")],
        ),
    ];
    let summary = summarize(&reports, day - 86_400);
    assert_eq!(summary.domain, "example.com");
    assert_eq!(summary.reports, 2);
    assert_eq!(summary.duplicate_reports, 1);
    assert_eq!(summary.other_domain_reports, 1);
    assert_eq!(summary.messages, 200);
    assert_eq!(summary.passing, 170);
    assert!((summary.would_fail_reject_share - 0.15).abs() < 1e-9);
    assert_eq!(
        summary.reporters,
        vec![
            Reporter {
                org_name: "google.com".into(),
                reports: 1,
                messages: 140
            },
            Reporter {
                org_name: "Enterprise Outlook".into(),
                reports: 1,
                messages: 60
            },
        ]
    );
    assert_eq!(summary.sources.len(), 3);
    assert_eq!(summary.sources[0].ip, ip("192.0.2.10"));
    assert_eq!(
        summary.sources[0].stats,
        SourceStats {
            messages: 140,
            dkim_aligned: 100,
            spf_aligned: 140,
            passing: 140,
            none: 140,
            quarantine: 0,
            reject: 0
        }
    );
    // A tie at 30 messages: by address, IPv4 first.
    assert_eq!(summary.sources[2].ip, ip("2001:db8::25"));
    assert_eq!(summary.sources[2].stats.messages, 30);
    assert_eq!(summary.sources[1].ip, ip("198.51.100.7"));
    assert_eq!(
        summary.sources[1].stats,
        SourceStats {
            messages: 30,
            dkim_aligned: 0,
            spf_aligned: 0,
            passing: 0,
            none: 10,
            quarantine: 20,
            reject: 0
        }
    );
    assert_eq!(summary.other_sources, OtherSources::default());

    let empty = summarize(&[], 0);
    assert_eq!(empty.messages, 0);
    assert_eq!(empty.would_fail_reject_share, 0.0);
}

#[test]
fn summary_bounds_sources() {
    let rows: Vec<Row> = (0..150u32)
        .map(|i| {
            let ip = std::net::Ipv4Addr::from(0xC000_0200 + i).to_string();
            row(&ip, u64::from(i) + 1, true, false, "none")
        })
        .collect();
    let summary = summarize(&[report("r", "1", "example.com", 10, rows)], 0);
    assert_eq!(summary.sources.len(), MAX_SOURCES_FOR_TEST);
    assert_eq!(summary.sources[0].stats.messages, 150);
    assert_eq!(summary.other_sources.ips, 50);
    // The 50 smallest: 1 + … + 50.
    assert_eq!(summary.other_sources.stats.messages, 1275);
    assert_eq!(summary.messages, 150 * 151 / 2);
}

const MAX_SOURCES_FOR_TEST: usize = summary::MAX_SOURCES;

#[test]
fn full_record_count_reads() {
    // Many records parse in one pass; the cap is far above what MAX_XML allows.
    let record = GOOGLE
        .split("<record>")
        .nth(1)
        .and_then(|r| r.split("</record>").next())
        .expect("a record");
    let mut xml = GOOGLE.split("<record>").next().expect("head").to_owned();
    for _ in 0..10_000 {
        xml.push_str("<record>");
        xml.push_str(record);
        xml.push_str("</record>");
    }
    xml.push_str("</feedback>");
    let report = parse_xml(xml.as_bytes()).expect("10,000 records");
    assert_eq!(report.records.len(), 10_000);
}
