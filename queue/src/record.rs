//! The plaintext inside sealed records. A body record holds the message bytes as
//! received. An envelope record holds JSON `{"v":1,"body_len":N,"envelope":{...}}`:
//! the body length lets `list` report sizes without opening bodies and lets recovery
//! notice a body that does not belong to its envelope; `v` leaves room to evolve.
//! A body delivery streams (longer than [`WHOLE_BODY_MAX`]) also has its `shape`
//! there ([`BodyShape`]), so that sending it needs no pass over it first; records
//! written before it have none.
//! A delivery log record holds JSON `{"v":1,"record":{...}}`. Idempotency records and
//! webhook outbox entries hold their fields flattened beside the version,
//! `{"v":1,...}` ([`seal_flat`], [`open_flat`]).

use serde::{Deserialize, Serialize};
use way2mail_smtp::client::{ContentScan, StreamedContent};

use way2mail_seal::record as seal;
use way2mail_seal::{DataKey, Keyring};

use crate::{keys, DeliveryRecord, Envelope, Error};

const VERSION: u32 = 1;

#[derive(Serialize)]
struct EnvelopeRecordRef<'a> {
    v: u32,
    body_len: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    shape: Option<BodyShape>,
    envelope: &'a Envelope,
}

#[derive(Deserialize)]
struct EnvelopeRecord {
    v: u32,
    body_len: u64,
    #[serde(default)]
    shape: Option<BodyShape>,
    envelope: Envelope,
}

/// Bodies up to this size are read whole by delivery; longer ones are streamed from
/// the spool a chunk at a time, and have their [`BodyShape`] recorded.
pub const WHOLE_BODY_MAX: u64 = 64 * 1024;

/// A body as it goes to a next hop, learnt while it is written: its size once every
/// line ends in CRLF (what BDAT and SIZE announce) and whether any octet is over 127
/// (it then needs 8BITMIME). Recorded for bodies delivery streams, so that the
/// connection knows both before the first chunk is read. The spool's own type (not
/// the SMTP client's) so that the stored form does not follow the client's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BodyShape {
    pub size: u64,
    pub eight_bit: bool,
}

impl From<StreamedContent> for BodyShape {
    fn from(c: StreamedContent) -> BodyShape {
        BodyShape {
            size: c.size as u64,
            eight_bit: !c.seven_bit,
        }
    }
}

impl From<BodyShape> for StreamedContent {
    fn from(s: BodyShape) -> StreamedContent {
        StreamedContent {
            size: usize::try_from(s.size).unwrap_or(usize::MAX),
            seven_bit: !s.eight_bit,
        }
    }
}

/// The shape to record for a body of `len` bytes that `scan` saw whole: none for a
/// body delivery reads whole.
pub(crate) fn shape_if_streamed(len: u64, scan: ContentScan) -> Option<BodyShape> {
    (len > WHOLE_BODY_MAX).then(|| scan.finish().into())
}

/// The shape to record for a body written whole; a short one is not scanned.
pub(crate) fn shape_of(body: &[u8]) -> Option<BodyShape> {
    (body.len() as u64 > WHOLE_BODY_MAX).then(|| {
        let mut scan = ContentScan::default();
        scan.push(body);
        scan.finish().into()
    })
}

#[derive(Serialize)]
struct LogRecordRef<'a> {
    v: u32,
    record: &'a DeliveryRecord,
}

#[derive(Deserialize)]
struct LogRecord {
    v: u32,
    record: DeliveryRecord,
}

fn encode<T: Serialize>(key: &[u8], value: &T) -> Result<Vec<u8>, Error> {
    // Serializing plain data structures into a Vec cannot fail; map it anyway
    // rather than assert it.
    serde_json::to_vec(value).map_err(|e| Error::Corrupt {
        key: keys::describe(key),
        reason: format!("cannot encode record: {e}"),
    })
}

/// A record whose fields stand beside its version.
#[derive(Serialize, Deserialize)]
struct Flat<T> {
    v: u32,
    #[serde(flatten)]
    record: T,
}

/// Seals `record` as `{"v":1,...}` under `key`; `what` names the kind in errors.
pub(crate) fn seal_flat<T: Serialize>(
    data_key: &DataKey,
    key: &[u8],
    record: &T,
    what: &str,
) -> Result<Vec<u8>, Error> {
    let json = serde_json::to_vec(&Flat { v: VERSION, record })
        .map_err(|e| corrupt(key, format!("{what} does not encode: {e}")))?;
    Ok(seal::seal(data_key, key, json)?)
}

/// Opens a record [`seal_flat`] wrote under `key`; `what` names the kind in errors.
pub(crate) fn open_flat<T: serde::de::DeserializeOwned>(
    keyring: &Keyring,
    key: &[u8],
    value: &[u8],
    what: &str,
) -> Result<T, Error> {
    let json = keyring.open_record(key, value)?;
    let stored: Flat<T> = serde_json::from_slice(&json)
        .map_err(|e| corrupt(key, format!("{what} does not parse: {e}")))?;
    if stored.v != VERSION {
        return Err(corrupt(key, format!("unknown {what} version {}", stored.v)));
    }
    Ok(stored.record)
}

fn corrupt(key: &[u8], reason: String) -> Error {
    Error::Corrupt {
        key: keys::describe(key),
        reason,
    }
}

/// Seals an envelope record to be stored under `key`.
pub(crate) fn seal_envelope(
    data_key: &DataKey,
    key: &[u8],
    envelope: &Envelope,
    body_len: u64,
    shape: Option<BodyShape>,
) -> Result<Vec<u8>, Error> {
    let json = encode(
        key,
        &EnvelopeRecordRef {
            v: VERSION,
            body_len,
            shape,
            envelope,
        },
    )?;
    Ok(seal::seal(data_key, key, json)?)
}

/// Seals a delivery log record to be stored under `key`.
pub(crate) fn seal_log(
    data_key: &DataKey,
    key: &[u8],
    record: &DeliveryRecord,
) -> Result<Vec<u8>, Error> {
    let json = encode(key, &LogRecordRef { v: VERSION, record })?;
    Ok(seal::seal(data_key, key, json)?)
}

/// Parses a delivery log record's plaintext.
pub(crate) fn parse_log(key: &[u8], json: &[u8]) -> Result<DeliveryRecord, Error> {
    let record: LogRecord = serde_json::from_slice(json)
        .map_err(|e| corrupt(key, format!("delivery record does not parse: {e}")))?;
    if record.v != VERSION {
        return Err(corrupt(
            key,
            format!("unknown delivery record version {}", record.v),
        ));
    }
    Ok(record.record)
}

/// Opens a delivery log record stored under `key`.
pub(crate) fn open_log(
    keyring: &Keyring,
    key: &[u8],
    value: &[u8],
) -> Result<DeliveryRecord, Error> {
    let json = keyring.open_record(key, value)?;
    parse_log(key, &json)
}

/// Parses an envelope record's plaintext: the envelope and its body length.
pub(crate) fn parse_envelope(key: &[u8], json: &[u8]) -> Result<(Envelope, u64), Error> {
    parse_envelope_shaped(key, json).map(|(e, len, _)| (e, len))
}

/// [`parse_envelope`], with the body's shape when the record has one.
fn parse_envelope_shaped(
    key: &[u8],
    json: &[u8],
) -> Result<(Envelope, u64, Option<BodyShape>), Error> {
    let record: EnvelopeRecord = serde_json::from_slice(json)
        .map_err(|e| corrupt(key, format!("envelope does not parse: {e}")))?;
    if record.v != VERSION {
        return Err(corrupt(
            key,
            format!("unknown envelope record version {}", record.v),
        ));
    }
    Ok((record.envelope, record.body_len, record.shape))
}

/// Opens an envelope record stored under `key`: the envelope and its body length.
pub(crate) fn open_envelope(
    keyring: &Keyring,
    key: &[u8],
    value: &[u8],
) -> Result<(Envelope, u64), Error> {
    let json = keyring.open_record(key, value)?;
    parse_envelope(key, &json)
}

/// [`open_envelope`], with the body's shape when the record has one.
pub(crate) fn open_envelope_shaped(
    keyring: &Keyring,
    key: &[u8],
    value: &[u8],
) -> Result<(Envelope, u64, Option<BodyShape>), Error> {
    let json = keyring.open_record(key, value)?;
    parse_envelope_shaped(key, &json)
}

/// Opens a body record stored under `key`.
pub(crate) fn open_body(keyring: &Keyring, key: &[u8], value: &[u8]) -> Result<Vec<u8>, Error> {
    Ok(keyring.open_record(key, value)?)
}

/// A delivery log record's plaintext, for tests that write records by hand.
#[cfg(test)]
pub(crate) fn log_plaintext(record: &DeliveryRecord) -> Result<Vec<u8>, Error> {
    encode(b"test", &LogRecordRef { v: VERSION, record })
}
