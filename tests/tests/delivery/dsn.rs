//! Delivery status notifications as the capture sink receives them, parsed back with
//! mail-parser: multipart/report, its three parts, and the fields of the
//! message/delivery-status part per message and per recipient.

use anyhow::{bail, ensure, Context, Result};
use mail_parser::{MessageParser, MimeHeaders, PartType};
use way2mail_tests::Received;

use super::rig::SENDER;

/// A parsed delivery status notification.
pub struct Dsn {
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    /// The message/delivery-status part, continuation lines unfolded.
    pub status: String,
    /// Content type and raw contents of the third part.
    pub returned: (String, String),
}

impl Dsn {
    pub fn parse(m: &Received) -> Result<Dsn> {
        let msg = MessageParser::default()
            .parse(&m.data)
            .context("DSN does not parse")?;
        let ct = msg.content_type().context("DSN without Content-Type")?;
        ensure!(
            ct.ctype().eq_ignore_ascii_case("multipart")
                && ct
                    .subtype()
                    .is_some_and(|s| s.eq_ignore_ascii_case("report"))
                && ct.attribute("report-type") == Some("delivery-status"),
            "not a delivery report: {ct:?}"
        );
        let PartType::Multipart(ids) = &msg.parts[0].body else {
            bail!("root is not multipart");
        };
        ensure!(ids.len() == 3, "expected 3 parts, got {}", ids.len());
        let part = |i: usize| -> Result<(String, String)> {
            let p = &msg.parts[ids[i] as usize];
            let ct = p.content_type().context("part without Content-Type")?;
            let name = format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or(""));
            let raw = &msg.raw_message[p.offset_body as usize..p.offset_end as usize];
            Ok((
                name.to_ascii_lowercase(),
                String::from_utf8_lossy(raw).into(),
            ))
        };
        let (first, _) = part(0)?;
        ensure!(first == "text/plain", "first part is {first}");
        let (second, status) = part(1)?;
        ensure!(
            second == "message/delivery-status",
            "second part is {second}"
        );
        Ok(Dsn {
            mail_from: m.mail_from.clone(),
            rcpt_to: m.rcpt_to.clone(),
            status: status.replace("\r\n ", " ").replace("\r\n\t", " "),
            returned: part(2)?,
        })
    }

    /// The value of `name` in the per-recipient block for `rcpt` (or the per-message
    /// block for `None`).
    pub fn field(&self, rcpt: Option<&str>, name: &str) -> Option<String> {
        let blocks: Vec<&str> = self.status.split("\r\n\r\n").collect();
        let block = match rcpt {
            None => blocks.first()?,
            Some(r) => blocks.iter().find(|b| {
                b.to_ascii_lowercase()
                    .contains(&format!("final-recipient: rfc822;{r}"))
                    || b.to_ascii_lowercase()
                        .contains(&format!("final-recipient: rfc822; {r}"))
            })?,
        };
        block.lines().find_map(|l| {
            let (key, value) = l.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then(|| value.trim().to_string())
        })
    }

    /// A failure notice from <> to the sender for `rcpt`; `status` None leaves the
    /// Status field unchecked.
    pub fn check_failed(&self, rcpt: &str, status: Option<&str>) -> Result<()> {
        ensure!(
            self.mail_from.is_empty(),
            "DSN not from <>: {}",
            self.mail_from
        );
        ensure!(self.rcpt_to == [SENDER], "DSN to {:?}", self.rcpt_to);
        let f = |name| self.field(Some(rcpt), name).unwrap_or_default();
        ensure!(f("Action") == "failed", "{}", self.status);
        if let Some(status) = status {
            ensure!(f("Status") == status, "{}", self.status);
        }
        let reporting = self.field(None, "Reporting-MTA").unwrap_or_default();
        ensure!(reporting == "dns; mx.way2mail.test", "{}", self.status);
        ensure!(
            self.field(None, "Arrival-Date").is_some(),
            "{}",
            self.status
        );
        Ok(())
    }
}

pub fn dsn_for<'a>(dsns: &'a [Dsn], needle: &str) -> Result<&'a Dsn> {
    dsns.iter()
        .find(|d| d.returned.1.contains(needle))
        .with_context(|| format!("no DSN returns {needle:?}"))
}
