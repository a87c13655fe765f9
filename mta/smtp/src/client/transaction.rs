//! One message on an established session: checks against what the peer can take,
//! then MAIL, RCPT and DATA or BDAT, and one result per recipient.
//!
//! With PIPELINING, MAIL, every RCPT and DATA go out in one write (RFC 2920); with
//! CHUNKING the BDAT waits for the RCPT replies, so that no content is sent when no
//! recipient was accepted. Without PIPELINING each command waits for its reply. The
//! replies are matched in order through the session's `Expect` queue either way.
//!
//! Results: a recipient refused at RCPT (or all of them, when MAIL is refused) keeps
//! that reply; the reply after the content decides for every accepted recipient. A
//! message this peer cannot take is not sent at all ([`Unsendable`]).

use std::fmt::Write as _;

use crate::{BodyType, Notify, Ret};

use crate::reply::Reply;

use super::{
    body, ClientSession, Content, DeliveryResult, Disposition, Expect, Interruption,
    OutboundMessage, RecipientResult, Unsendable,
};

/// Longest forward- or reverse-path we put on a command line; RFC 5321 allows 256.
const MAX_PATH: usize = 1000;
/// Longest ENVID/ORCPT passed on (RFC 3461: 100 and 500 characters, xtext-encoded).
const MAX_DSN_PARAM: usize = 600;

/// The message in flight and what is known of its recipients so far.
#[derive(Debug)]
pub(super) struct Transaction {
    message: OutboundMessage,
    /// The content's size as written: CRLF line ends only (see `body`).
    size: usize,
    results: Vec<Option<Disposition>>,
    /// Recipients given to RCPT, in order.
    rcpts: Vec<usize>,
    /// Without PIPELINING: how many of `rcpts` have been sent.
    sent: usize,
    accepted: Vec<usize>,
    mail_ok: bool,
    pipelined: bool,
    chunking: bool,
}

/// What a reply handler leaves to do.
enum Step {
    Continue,
    Finish,
    Protocol(&'static str),
}

impl Transaction {
    /// Every recipient with the same disposition.
    pub(super) fn all(message: &OutboundMessage, disposition: &Disposition) -> DeliveryResult {
        DeliveryResult {
            recipients: (0..message.recipients.len())
                .map(|index| RecipientResult {
                    index,
                    disposition: disposition.clone(),
                })
                .collect(),
            dsn_supported: false,
        }
    }

    /// Gives every recipient without a result this one.
    fn decide_rest(&mut self, disposition: &Disposition) {
        for result in self.results.iter_mut().filter(|r| r.is_none()) {
            *result = Some(disposition.clone());
        }
    }

    /// Gives every accepted recipient the reply to the content (or to DATA).
    fn decide_accepted(&mut self, reply: &Reply) {
        for &i in &self.accepted {
            self.results[i] = Some(Disposition::of_reply(reply));
        }
    }

    fn into_result(self, dsn_supported: bool) -> DeliveryResult {
        let recipients = self
            .results
            .into_iter()
            .enumerate()
            .map(|(index, result)| RecipientResult {
                index,
                // Every path to `finish` decides all recipients; this is a safety net.
                disposition: result.unwrap_or(Disposition::Interrupted(Interruption::Undecided)),
            })
            .collect();
        DeliveryResult {
            recipients,
            dsn_supported,
        }
    }
}

impl ClientSession {
    pub(super) fn start_transaction(&mut self, message: OutboundMessage) {
        let size = match &message.body {
            Content::Whole(b) => body::bdat_size(b),
            Content::Streamed(c) => c.size,
        };
        if let Some(why) = self.unsendable(&message, size) {
            let result = Transaction::all(&message, &Disposition::Unsendable(why));
            return self.done(DeliveryResult {
                dsn_supported: self.extensions.dsn,
                ..result
            });
        }
        let mut results = vec![None; message.recipients.len()];
        let mut rcpts = Vec::new();
        for (i, rcpt) in message.recipients.iter().enumerate() {
            if valid_path(&rcpt.address) {
                rcpts.push(i);
            } else {
                results[i] = Some(Disposition::Unsendable(Unsendable::BadRecipient));
            }
        }
        let mut tx = Transaction {
            message,
            size,
            results,
            rcpts,
            sent: 0,
            accepted: Vec::new(),
            mail_ok: false,
            pipelined: self.extensions.pipelining,
            chunking: self.extensions.chunking,
        };
        if tx.rcpts.is_empty() {
            return self.finish(tx);
        }
        self.command(&self.mail_command(&tx.message, tx.size), Expect::Mail);
        if tx.pipelined {
            for &i in &tx.rcpts {
                self.command(&self.rcpt_command(&tx.message, i), Expect::Rcpt(i));
            }
            tx.sent = tx.rcpts.len();
            if !tx.chunking {
                self.command("DATA", Expect::Data);
            }
        }
        self.tx = Some(tx);
    }

    /// Why the whole message cannot go to this peer before anything is sent: it is
    /// over the peer's SIZE, needs an extension the peer lacks, or has a sender we
    /// will not write.
    fn unsendable(&self, message: &OutboundMessage, size: usize) -> Option<Unsendable> {
        let ext = &self.extensions;
        if let Some(limit) = ext.size_limit().filter(|&limit| size as u64 > limit) {
            return Some(Unsendable::TooBig { size, limit });
        }
        if needs_smtputf8(message) && !ext.smtputf8 {
            return Some(Unsendable::NeedsSmtputf8);
        }
        if message.body_type == BodyType::EightBitMime
            && !ext.eightbitmime
            && !match &message.body {
                Content::Whole(b) => body::is_seven_bit(b),
                Content::Streamed(c) => c.seven_bit,
            }
        {
            return Some(Unsendable::NeedsEightBitMime);
        }
        if !valid_path(&message.sender) {
            return Some(Unsendable::BadSender);
        }
        None
    }

    fn mail_command(&self, message: &OutboundMessage, size: usize) -> String {
        let ext = &self.extensions;
        let mut line = format!("MAIL FROM:<{}>", message.sender);
        // Writing to a String cannot fail; the results are ignored for that reason.
        if ext.size.is_some() {
            let _ = write!(line, " SIZE={size}");
        }
        if message.body_type == BodyType::EightBitMime && ext.eightbitmime {
            line.push_str(" BODY=8BITMIME");
        }
        if needs_smtputf8(message) {
            line.push_str(" SMTPUTF8");
        }
        if ext.dsn {
            match message.ret {
                Some(Ret::Full) => line.push_str(" RET=FULL"),
                Some(Ret::Headers) => line.push_str(" RET=HDRS"),
                None => {}
            }
            if let Some(envid) = message.envid.as_deref().filter(|v| valid_dsn_param(v)) {
                let _ = write!(line, " ENVID={envid}");
            }
        }
        line
    }

    fn rcpt_command(&self, message: &OutboundMessage, index: usize) -> String {
        let rcpt = &message.recipients[index];
        let mut line = format!("RCPT TO:<{}>", rcpt.address);
        if self.extensions.dsn {
            if let Some(notify) = notify_value(&rcpt.notify) {
                line.push_str(" NOTIFY=");
                line.push_str(&notify);
            }
            if let Some(orcpt) = rcpt.orcpt.as_deref().filter(|v| valid_dsn_param(v)) {
                line.push_str(" ORCPT=");
                line.push_str(orcpt);
            }
        }
        line
    }

    /// Any reply to MAIL, RCPT, DATA or the content.
    pub(super) fn on_transaction_reply(&mut self, expect: Expect, reply: Reply) {
        let Some(mut tx) = self.tx.take() else {
            return self.fail_protocol("reply to a transaction that is not running");
        };
        let step = match expect {
            Expect::Mail => self.on_mail(&mut tx, &reply),
            Expect::Rcpt(i) => self.on_rcpt(&mut tx, i, &reply),
            Expect::Data => self.on_data(&mut tx, &reply),
            Expect::DataEnd | Expect::BdatEnd => self.on_end(&mut tx, expect, &reply),
            // The peer's verdict on an empty message nobody will receive.
            Expect::DotOnly => Step::Finish,
            _ => Step::Protocol("reply out of order"),
        };
        match step {
            Step::Continue => self.tx = Some(tx),
            Step::Finish => self.finish(tx),
            Step::Protocol(reason) => {
                self.tx = Some(tx);
                self.fail_protocol(reason);
            }
        }
    }

    /// Hands the results out; the session is ready again once any RSET is answered.
    fn finish(&mut self, tx: Transaction) {
        let result = tx.into_result(self.extensions.dsn);
        self.done(result);
    }

    /// The session ends with a message in flight: undecided recipients get `why`.
    pub(super) fn abort_transaction(&mut self, why: Interruption) {
        self.streaming = None;
        if let Some(mut tx) = self.tx.take() {
            tx.decide_rest(&Disposition::Interrupted(why));
            self.finish(tx);
        }
    }

    fn on_mail(&mut self, tx: &mut Transaction, reply: &Reply) -> Step {
        match reply.class() {
            2 => {
                tx.mail_ok = true;
                if tx.pipelined {
                    Step::Continue
                } else {
                    self.next_rcpt(tx)
                }
            }
            4 | 5 => {
                tx.decide_rest(&Disposition::Refused(reply.clone()));
                // Pipelined RCPT and DATA replies are still to come and are skipped.
                if tx.pipelined {
                    Step::Continue
                } else {
                    Step::Finish
                }
            }
            _ => Step::Protocol("unexpected reply to MAIL"),
        }
    }

    fn on_rcpt(&mut self, tx: &mut Transaction, index: usize, reply: &Reply) -> Step {
        if tx.results[index].is_none() {
            match reply.class() {
                2 => tx.accepted.push(index),
                4 | 5 => tx.results[index] = Some(Disposition::Refused(reply.clone())),
                _ => return Step::Protocol("unexpected reply to RCPT"),
            }
        }
        if !tx.pipelined {
            self.next_rcpt(tx)
        } else if tx.chunking && !matches!(self.expect.front(), Some(Expect::Rcpt(_))) {
            self.after_rcpts(tx)
        } else {
            Step::Continue
        }
    }

    /// Without PIPELINING: the next RCPT, or what follows the last one.
    fn next_rcpt(&mut self, tx: &mut Transaction) -> Step {
        match tx.rcpts.get(tx.sent) {
            Some(&i) => {
                tx.sent += 1;
                self.command(&self.rcpt_command(&tx.message, i), Expect::Rcpt(i));
                Step::Continue
            }
            None => self.after_rcpts(tx),
        }
    }

    /// Every RCPT answered and DATA not sent yet: the content, or RSET when nobody
    /// was accepted.
    fn after_rcpts(&mut self, tx: &mut Transaction) -> Step {
        if tx.accepted.is_empty() {
            if tx.mail_ok {
                self.command("RSET", Expect::Rset);
            }
            return Step::Finish;
        }
        if tx.chunking {
            self.command(&format!("BDAT {} LAST", tx.size), Expect::BdatEnd);
            match &tx.message.body {
                Content::Whole(b) => body::write_bdat(b, &mut self.output),
                Content::Streamed(_) => self.streaming = Some(body::Encoder::bdat()),
            }
        } else {
            self.command("DATA", Expect::Data);
        }
        Step::Continue
    }

    fn on_data(&mut self, tx: &mut Transaction, reply: &Reply) -> Step {
        match reply.class() {
            3 if tx.accepted.is_empty() => {
                // RFC 2920 §3.1: DATA accepted with no recipient: send an empty
                // message rather than the content.
                self.output.extend_from_slice(b".\r\n");
                self.expect.push_back(Expect::DotOnly);
                Step::Continue
            }
            3 => {
                match &tx.message.body {
                    Content::Whole(b) => body::write_data(b, &mut self.output),
                    Content::Streamed(_) => self.streaming = Some(body::Encoder::data()),
                }
                self.expect.push_back(Expect::DataEnd);
                Step::Continue
            }
            4 | 5 => {
                tx.decide_accepted(reply);
                if tx.mail_ok {
                    self.command("RSET", Expect::Rset);
                }
                Step::Finish
            }
            _ => Step::Protocol("unexpected reply to DATA"),
        }
    }

    fn on_end(&mut self, tx: &mut Transaction, expect: Expect, reply: &Reply) -> Step {
        match reply.class() {
            2 | 4 | 5 => {
                tx.decide_accepted(reply);
                // RFC 3030 §3: after a refused BDAT the transaction is reset.
                if reply.class() != 2 && expect == Expect::BdatEnd {
                    self.command("RSET", Expect::Rset);
                }
                Step::Finish
            }
            _ => Step::Protocol("unexpected reply after the message content"),
        }
    }
}

/// The flag, or an address that cannot be written in ASCII.
fn needs_smtputf8(message: &OutboundMessage) -> bool {
    message.smtputf8
        || !message.sender.is_ascii()
        || message.recipients.iter().any(|r| !r.address.is_ascii())
}

/// No control characters: a path must never end or split the command line.
fn valid_path(path: &str) -> bool {
    path.len() <= MAX_PATH && !path.chars().any(char::is_control)
}

/// xtext and its UTF-8 form: no spaces, no control characters.
fn valid_dsn_param(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= MAX_DSN_PARAM
        && !value.chars().any(|c| c.is_control() || c.is_whitespace())
}

fn notify_value(notify: &Notify) -> Option<String> {
    if notify.never {
        return Some("NEVER".to_string());
    }
    let words = [
        (notify.success, "SUCCESS"),
        (notify.failure, "FAILURE"),
        (notify.delay, "DELAY"),
    ];
    let list: Vec<&str> = words.iter().filter(|w| w.0).map(|w| w.1).collect();
    (!list.is_empty()).then(|| list.join(","))
}
