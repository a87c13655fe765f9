//! Human output: left-aligned columns under a header row, UTC RFC 3339 dates, and
//! the words of the few enums shown in more than one place.
//! Cells are cleaned of control characters so that a tenant's business name
//! cannot move the cursor or forge rows on the operator's terminal.

use std::fmt::Write as _;

use way2mail_wire::protocol::TenantStatus;

#[derive(Debug)]
pub struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&'static str]) -> Table {
        Table {
            header: header.to_vec(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows
            .push(cells.into_iter().map(|c| clean(&c)).collect());
    }

    /// The table as text, every line ending in `\n`; two spaces between columns,
    /// no trailing spaces.
    pub fn render(&self) -> String {
        let columns = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(columns) {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let header: Vec<String> = self.header.iter().map(|h| h.to_string()).collect();
        for row in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (i, width) in widths.iter().enumerate() {
                let cell = row.get(i).map(String::as_str).unwrap_or("");
                if i > 0 {
                    line.push_str("  ");
                }
                let _ = write!(line, "{cell:<width$}");
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `key: value` lines with the values aligned, for one record.
pub fn record(fields: &[(&str, String)]) -> String {
    let width = fields.iter().map(|(k, _)| k.len() + 1).max().unwrap_or(0);
    let mut out = String::new();
    for (key, value) in fields {
        let label = format!("{key}:");
        let _ = writeln!(out, "{label:<width$} {}", clean(value));
    }
    out
}

/// Replaces control characters (newlines, escapes) with `?`.
pub fn clean(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// `-` for none, for optional cells.
pub fn opt(value: Option<&str>) -> String {
    value.unwrap_or("-").to_string()
}

pub use way2mail_smtp::date::rfc3339;

/// A tenant's status as the protocol spells it.
pub fn status(s: TenantStatus) -> &'static str {
    match s {
        TenantStatus::Active => "active",
        TenantStatus::Suspended => "suspended",
        TenantStatus::Terminated => "terminated",
    }
}

pub fn opt_rfc3339(unix_secs: Option<u64>) -> String {
    unix_secs.map_or_else(|| "-".to_string(), rfc3339)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_without_trailing_space() {
        let mut t = Table::new(&["ID", "NAME", "X"]);
        t.row(vec!["1".into(), "acme".into(), "".into()]);
        t.row(vec!["200".into(), "b\nc".into(), "y".into()]);
        assert_eq!(
            t.render(),
            "ID   NAME  X\n\
             1    acme\n\
             200  b?c   y\n"
        );
    }

    #[test]
    fn records_align() {
        assert_eq!(
            record(&[("id", "a".into()), ("status", "active".into())]),
            "id:     a\nstatus: active\n"
        );
    }

    #[test]
    fn dates() {
        assert_eq!(opt_rfc3339(Some(0)), "1970-01-01T00:00:00Z");
        assert_eq!(opt_rfc3339(None), "-");
    }
}
