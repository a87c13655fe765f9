//! The peer's EHLO answer as [`Extensions`]: the first line names the peer, every
//! other line is a keyword with optional parameters (RFC 5321 §4.1.1.1). Keywords
//! are case-insensitive; unknown ones are ignored.

/// The service extensions the peer advertised that delivery uses. All false after a
/// HELO fallback, and reset by STARTTLS until the new EHLO answer (RFC 3207 §4.2).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extensions {
    pub pipelining: bool,
    /// `SIZE` (RFC 1870): `Some(0)` when advertised without a fixed limit.
    pub size: Option<u64>,
    pub eightbitmime: bool,
    pub smtputf8: bool,
    pub chunking: bool,
    pub dsn: bool,
    pub starttls: bool,
    pub enhanced_status_codes: bool,
    /// `AUTH` mechanisms we can use (RFC 4954): PLAIN and LOGIN.
    pub auth_plain: bool,
    pub auth_login: bool,
}

impl Extensions {
    /// Reads the lines of a 250 answer to EHLO (the first is the greeting line).
    pub(super) fn from_ehlo(lines: &[String]) -> Extensions {
        let mut ext = Extensions::default();
        for line in lines.iter().skip(1) {
            let mut words = line.split_ascii_whitespace();
            let Some(keyword) = words.next() else {
                continue;
            };
            match keyword.to_ascii_uppercase().as_str() {
                "PIPELINING" => ext.pipelining = true,
                // An unreadable limit is treated as none rather than as a refusal.
                "SIZE" => ext.size = Some(words.next().and_then(|n| n.parse().ok()).unwrap_or(0)),
                "8BITMIME" => ext.eightbitmime = true,
                "SMTPUTF8" => ext.smtputf8 = true,
                "CHUNKING" => ext.chunking = true,
                "DSN" => ext.dsn = true,
                "STARTTLS" => ext.starttls = true,
                "ENHANCEDSTATUSCODES" => ext.enhanced_status_codes = true,
                "AUTH" => ext.add_auth(words),
                // Old peers wrote `AUTH=PLAIN LOGIN`.
                k if k.starts_with("AUTH=") => {
                    ext.add_auth(k["AUTH=".len()..].split(' ').chain(words));
                }
                _ => {}
            }
        }
        ext
    }

    fn add_auth<'a>(&mut self, mechanisms: impl Iterator<Item = &'a str>) {
        for m in mechanisms {
            match m.to_ascii_uppercase().as_str() {
                "PLAIN" => self.auth_plain = true,
                "LOGIN" => self.auth_login = true,
                _ => {}
            }
        }
    }

    /// The peer's fixed size limit, if it has one.
    pub(super) fn size_limit(&self) -> Option<u64> {
        self.size.filter(|&n| n > 0)
    }
}

#[cfg(test)]
mod auth_tests {
    use super::*;

    #[test]
    fn legacy_auth_equals_form() {
        let ext = Extensions::from_ehlo(&["x".into(), "AUTH=PLAIN LOGIN".into()]);
        assert!(ext.auth_plain && ext.auth_login);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &[&str]) -> Vec<String> {
        text.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn keywords() {
        let ext = Extensions::from_ehlo(&lines(&[
            "mx.example.net hello",
            "pipelining",
            "SIZE 1000",
            "8BITMIME",
            "SMTPUTF8",
            "CHUNKING",
            "DSN",
            "STARTTLS",
            "ENHANCEDSTATUSCODES",
            "AUTH CRAM-MD5 login XOAUTH2",
            "X-UNKNOWN stuff",
            "",
        ]));
        assert_eq!(
            ext,
            Extensions {
                pipelining: true,
                size: Some(1000),
                eightbitmime: true,
                smtputf8: true,
                chunking: true,
                dsn: true,
                auth_plain: false,
                auth_login: true,
                starttls: true,
                enhanced_status_codes: true,
            }
        );
        assert_eq!(ext.size_limit(), Some(1000));
    }

    #[test]
    fn first_line_is_not_a_keyword_and_size_without_limit() {
        let ext = Extensions::from_ehlo(&lines(&["PIPELINING", "SIZE", "DSN x"]));
        assert!(!ext.pipelining);
        assert!(ext.dsn);
        assert_eq!(ext.size, Some(0));
        assert_eq!(ext.size_limit(), None);
        let ext = Extensions::from_ehlo(&lines(&["x", "SIZE lots"]));
        assert_eq!(ext.size, Some(0));
    }
}
