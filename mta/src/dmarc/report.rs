//! One aggregate report's XML (RFC 7489 appendix C) → [`AggregateReport`], read as a
//! stream of quick-xml events with a stack of the open elements' names.
//!
//! Elements are matched by local name (a `dmarc:` prefix or the DMARCbis namespace
//! changes nothing) and by their place under `<feedback>`; elements and attributes
//! this file does not name are skipped, so that extensions and later schema
//! versions read. Text is kept only for the fields read, and at most [`MAX_TEXT`]
//! bytes of it: a field longer than that is an error rather than a cut value.

use std::net::IpAddr;

use quick_xml::events::Event;
use quick_xml::Reader;

use super::{ReportError, MAX_XML};

/// Open elements at once; reports nest five deep.
pub const MAX_DEPTH: usize = 32;
/// Bytes of one field's text (a domain is at most 253).
pub const MAX_TEXT: usize = 1024;
/// Records (`<record>`, one per source IP and outcome) in one report.
pub const MAX_RECORDS: usize = 100_000;
/// DKIM or SPF results in one record; reporters give one to three.
pub const MAX_AUTH_RESULTS: usize = 64;

/// A DMARC aggregate report: who sent it, for which days, the policy it saw
/// published, and what became of the mail from each source.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AggregateReport {
    /// `report_metadata/org_name`: the reporter (`google.com`, `Outlook.com`).
    pub org_name: String,
    /// `report_metadata/email`; empty when the reporter left it out (see `parse_xml`).
    pub email: String,
    /// `report_metadata/report_id`, unique per reporter.
    pub report_id: String,
    /// `report_metadata/date_range/begin`, Unix seconds.
    pub begin: u64,
    /// `report_metadata/date_range/end`, Unix seconds.
    pub end: u64,
    /// `policy_published/domain`, lower case.
    pub domain: String,
    /// The DMARC record the reporter found.
    pub policy: PublishedPolicy,
    /// The `<record>`s, in document order.
    pub records: Vec<Row>,
}

/// `policy_published`: the domain's DMARC record as the reporter read it. Values
/// are lower case.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PublishedPolicy {
    /// `p`: `none`, `quarantine` or `reject`.
    pub p: String,
    /// `sp`, the subdomain policy, when given.
    pub sp: Option<String>,
    /// `pct` (0–100), when given (DMARCbis drops it).
    pub pct: Option<u8>,
    /// `adkim`: `r` (relaxed) or `s` (strict), when given.
    pub adkim: Option<String>,
    /// `aspf`: `r` or `s`, when given.
    pub aspf: Option<String>,
}

/// One `<record>`: `count` messages from `source_ip` with one outcome.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Row {
    /// `row/source_ip`.
    pub source_ip: IpAddr,
    /// `row/count`: messages.
    pub count: u64,
    /// `row/policy_evaluated/disposition`: `none`, `quarantine` or `reject`.
    pub disposition: String,
    /// `row/policy_evaluated/dkim` is `pass`: DKIM passed *and* aligned.
    pub dkim_aligned: bool,
    /// `row/policy_evaluated/spf` is `pass`: SPF passed *and* aligned.
    pub spf_aligned: bool,
    /// `identifiers/header_from`, lower case.
    pub header_from: String,
    /// `auth_results/dkim`: (domain, result), whatever their alignment.
    pub dkim_results: Vec<(String, String)>,
    /// `auth_results/spf`: (domain, result).
    pub spf_results: Vec<(String, String)>,
}

/// Parses one report. `xml` is the decompressed document ([`super::archive::decode`]).
///
/// Every field the schema requires and [`AggregateReport`] holds must be there,
/// except `email`: it names no one the summary needs, and some reporters leave it
/// out. A document type declaration (and so any entity declaration) is refused:
/// reports never have one, and it is how entity-expansion bombs start. References
/// other than the five predefined entities and character references are errors.
pub fn parse_xml(xml: &[u8]) -> Result<AggregateReport, ReportError> {
    if xml.len() > MAX_XML {
        return Err(ReportError::TooLarge("XML document"));
    }
    let mut reader = Reader::from_reader(xml);
    let config = reader.config_mut();
    config.expand_empty_elements = true;
    config.check_end_names = true;

    let mut state = State::default();
    loop {
        let event = reader
            .read_event()
            .map_err(|e| ReportError::Malformed(cut(&e.to_string())))?;
        match event {
            Event::Start(start) => {
                let name = start.local_name().as_ref().to_owned();
                state.start(name)?;
            }
            Event::End(_) => state.end()?,
            // expand_empty_elements turns `<a/>` into Start and End.
            Event::Empty(_) => {}
            Event::Text(text) => state.text(&text.xml10_content()),
            Event::CData(data) => state.text(&data.xml10_content()),
            Event::GeneralRef(reference) => {
                let ch = reference
                    .resolve_char_ref()
                    .map_err(|e| ReportError::Malformed(cut(&e.to_string())))?;
                match ch {
                    Some(ch) => state.text(ch.encode_utf8(&mut [0; 4])),
                    None => {
                        let name = reference.xml10_content();
                        match quick_xml::escape::resolve_predefined_entity(&name) {
                            Some(value) => state.text(value),
                            None => return Err(ReportError::Entity),
                        }
                    }
                }
            }
            Event::DocType(_) => return Err(ReportError::Entity),
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            Event::Eof => break,
        }
    }
    state.finish()
}

/// What has been read so far.
#[derive(Default)]
struct State {
    /// Local names of the open elements, the root first.
    path: Vec<String>,
    /// Whether the root was `<feedback>` (`None`: no element yet).
    root_seen: bool,
    /// Text of the innermost open element, up to MAX_TEXT + 1 bytes.
    text: String,
    org_name: Option<String>,
    email: Option<String>,
    report_id: Option<String>,
    begin: Option<u64>,
    end: Option<u64>,
    domain: Option<String>,
    p: Option<String>,
    sp: Option<String>,
    pct: Option<u8>,
    adkim: Option<String>,
    aspf: Option<String>,
    records: Vec<Row>,
    record: Option<RecordBuilder>,
}

#[derive(Default)]
struct RecordBuilder {
    source_ip: Option<IpAddr>,
    count: Option<u64>,
    disposition: Option<String>,
    dkim: Option<String>,
    spf: Option<String>,
    header_from: Option<String>,
    dkim_results: Vec<(String, String)>,
    spf_results: Vec<(String, String)>,
    /// The `auth_results/dkim` or `/spf` being read: (domain, result).
    auth: (Option<String>, Option<String>),
}

impl State {
    fn start(&mut self, name: String) -> Result<(), ReportError> {
        if self.path.is_empty() {
            if self.root_seen || name != "feedback" {
                // A second root, or another document altogether.
                return Err(ReportError::NotAReport);
            }
            self.root_seen = true;
        }
        if self.path.len() >= MAX_DEPTH {
            return Err(ReportError::TooLarge("element nesting"));
        }
        if name.len() > MAX_TEXT {
            return Err(ReportError::TooLarge("element name"));
        }
        self.path.push(name);
        self.text.clear();
        let path: Vec<&str> = self.path.iter().map(String::as_str).collect();
        match path.as_slice() {
            ["feedback", "record"] => {
                if self.records.len() >= MAX_RECORDS {
                    return Err(ReportError::TooLarge("records"));
                }
                self.record = Some(RecordBuilder::default());
            }
            ["feedback", "record", "auth_results", "dkim" | "spf"] => {
                if let Some(record) = &mut self.record {
                    record.auth = (None, None);
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn text(&mut self, text: &str) {
        // One byte past the limit marks a field too long (checked when it is used).
        let room = (MAX_TEXT + 1).saturating_sub(self.text.len());
        if room == 0 {
            return;
        }
        let mut take = text.len().min(room);
        while !text.is_char_boundary(take) {
            take -= 1;
        }
        self.text.push_str(&text[..take]);
    }

    /// The text of the element being closed, trimmed.
    fn value(&self) -> Result<String, ReportError> {
        value_of(&self.text)
    }

    fn end(&mut self) -> Result<(), ReportError> {
        // Taken out for the match, so that what it calls may borrow `self`.
        let path = std::mem::take(&mut self.path);
        let result = self.end_at(&path);
        self.path = path;
        result?;
        self.path.pop();
        self.text.clear();
        Ok(())
    }

    /// The element at `path` (the open elements, it last) closes.
    fn end_at(&mut self, path: &[String]) -> Result<(), ReportError> {
        let path: Vec<&str> = path.iter().map(String::as_str).collect();
        match path.as_slice() {
            ["feedback", "report_metadata", field] => match *field {
                "org_name" => self.org_name = Some(self.value()?),
                "email" => self.email = Some(self.value()?),
                "report_id" => self.report_id = Some(self.value()?),
                _ => {}
            },
            ["feedback", "report_metadata", "date_range", field] => match *field {
                "begin" => self.begin = Some(number(&self.value()?, "date_range/begin")?),
                "end" => self.end = Some(number(&self.value()?, "date_range/end")?),
                _ => {}
            },
            ["feedback", "policy_published", field]
                if matches!(*field, "domain" | "p" | "sp" | "pct" | "adkim" | "aspf") =>
            {
                let value = self.value()?.to_ascii_lowercase();
                match *field {
                    "domain" => self.domain = Some(value),
                    "p" => self.p = Some(policy(value, "policy_published/p")?),
                    "sp" if !value.is_empty() => {
                        self.sp = Some(policy(value, "policy_published/sp")?)
                    }
                    "pct" if !value.is_empty() => {
                        let pct = number(&value, "policy_published/pct")?;
                        self.pct = Some(
                            u8::try_from(pct)
                                .ok()
                                .filter(|p| *p <= 100)
                                .ok_or_else(|| malformed("policy_published/pct", &value))?,
                        );
                    }
                    "adkim" if !value.is_empty() => self.adkim = Some(value),
                    "aspf" if !value.is_empty() => self.aspf = Some(value),
                    _ => {}
                }
            }
            ["feedback", "record", rest @ ..] => self.end_in_record(rest)?,
            _ => {}
        }
        Ok(())
    }

    /// An element closing inside `<record>`; `rest` is its path below `record`.
    fn end_in_record(&mut self, rest: &[&str]) -> Result<(), ReportError> {
        if rest.is_empty() {
            if let Some(record) = self.record.take() {
                self.records.push(record.finish()?);
            }
            return Ok(());
        }
        let text = &self.text;
        let value = || value_of(text);
        let Some(record) = &mut self.record else {
            return Ok(());
        };
        match rest {
            ["row", "source_ip"] => {
                let value = value()?;
                let ip = value
                    .parse::<IpAddr>()
                    .map_err(|_| malformed("row/source_ip", &value))?;
                record.source_ip = Some(ip);
            }
            ["row", "count"] => record.count = Some(number(&value()?, "row/count")?),
            ["row", "policy_evaluated", field @ ("disposition" | "dkim" | "spf")] => {
                let value = value()?.to_ascii_lowercase();
                match *field {
                    "disposition" => {
                        record.disposition = Some(policy(value, "policy_evaluated/disposition")?)
                    }
                    "dkim" => record.dkim = Some(value),
                    "spf" => record.spf = Some(value),
                    _ => {}
                }
            }
            ["identifiers", "header_from"] => {
                record.header_from = Some(value()?.to_ascii_lowercase());
            }
            ["auth_results", "dkim" | "spf", "domain"] => {
                record.auth.0 = Some(value()?.to_ascii_lowercase());
            }
            ["auth_results", "dkim" | "spf", "result"] => {
                record.auth.1 = Some(value()?.to_ascii_lowercase());
            }
            ["auth_results", kind @ ("dkim" | "spf")] => {
                let auth = std::mem::take(&mut record.auth);
                let results = if *kind == "dkim" {
                    &mut record.dkim_results
                } else {
                    &mut record.spf_results
                };
                if results.len() >= MAX_AUTH_RESULTS {
                    return Err(ReportError::TooLarge("auth_results in one record"));
                }
                // A result without a domain says nothing usable; the schema requires both.
                let domain = auth
                    .0
                    .ok_or(ReportError::Missing("auth_results/*/domain"))?;
                let result = auth
                    .1
                    .ok_or(ReportError::Missing("auth_results/*/result"))?;
                results.push((domain, result));
            }
            _ => {}
        }
        Ok(())
    }

    fn finish(self) -> Result<AggregateReport, ReportError> {
        if !self.root_seen {
            return Err(ReportError::NotAReport);
        }
        if !self.path.is_empty() {
            return Err(ReportError::Malformed(
                "the document ends inside an element".into(),
            ));
        }
        let begin = self.begin.ok_or(ReportError::Missing("date_range/begin"))?;
        let end = self.end.ok_or(ReportError::Missing("date_range/end"))?;
        if end < begin {
            return Err(ReportError::Malformed(format!(
                "date_range ends ({end}) before it begins ({begin})"
            )));
        }
        let domain = self
            .domain
            .filter(|d| !d.is_empty())
            .ok_or(ReportError::Missing("policy_published/domain"))?;
        Ok(AggregateReport {
            org_name: self
                .org_name
                .filter(|o| !o.is_empty())
                .ok_or(ReportError::Missing("report_metadata/org_name"))?,
            email: self.email.unwrap_or_default(),
            report_id: self
                .report_id
                .filter(|r| !r.is_empty())
                .ok_or(ReportError::Missing("report_metadata/report_id"))?,
            begin,
            end,
            domain,
            policy: PublishedPolicy {
                p: self.p.ok_or(ReportError::Missing("policy_published/p"))?,
                sp: self.sp,
                pct: self.pct,
                adkim: self.adkim,
                aspf: self.aspf,
            },
            records: self.records,
        })
    }
}

impl RecordBuilder {
    fn finish(self) -> Result<Row, ReportError> {
        let dkim = self
            .dkim
            .ok_or(ReportError::Missing("policy_evaluated/dkim"))?;
        let spf = self
            .spf
            .ok_or(ReportError::Missing("policy_evaluated/spf"))?;
        Ok(Row {
            source_ip: self
                .source_ip
                .ok_or(ReportError::Missing("row/source_ip"))?,
            count: self.count.ok_or(ReportError::Missing("row/count"))?,
            disposition: self
                .disposition
                .ok_or(ReportError::Missing("policy_evaluated/disposition"))?,
            dkim_aligned: dkim == "pass",
            spf_aligned: spf == "pass",
            header_from: self
                .header_from
                .ok_or(ReportError::Missing("identifiers/header_from"))?,
            dkim_results: self.dkim_results,
            spf_results: self.spf_results,
        })
    }
}

/// `text` (an element's), trimmed; an error past MAX_TEXT.
fn value_of(text: &str) -> Result<String, ReportError> {
    if text.len() > MAX_TEXT {
        return Err(ReportError::TooLarge("field text"));
    }
    Ok(text.trim().to_owned())
}

fn number(value: &str, field: &str) -> Result<u64, ReportError> {
    value.parse::<u64>().map_err(|_| malformed(field, value))
}

/// A policy or disposition: the schema's `DispositionType`.
fn policy(value: String, field: &str) -> Result<String, ReportError> {
    match value.as_str() {
        "none" | "quarantine" | "reject" => Ok(value),
        _ => Err(malformed(field, &value)),
    }
}

fn malformed(field: &str, value: &str) -> ReportError {
    ReportError::Malformed(format!("{field}: {:?} is not valid", cut(value)))
}

/// At most 64 characters of a hostile value, for an error message.
fn cut(value: &str) -> String {
    value.chars().take(64).collect()
}
