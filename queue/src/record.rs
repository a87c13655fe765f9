//! The plaintext inside sealed records. A body record holds the message bytes as
//! received. An envelope record holds JSON `{"v":1,"body_len":N,"envelope":{...}}`:
//! the body length lets `list` report sizes without opening bodies and lets recovery
//! notice a body that does not belong to its envelope; `v` leaves room to evolve.
//! A delivery log record holds JSON `{"v":1,"record":{...}}`.

use aws_lc_rs::aead::LessSafeKey;
use serde::{Deserialize, Serialize};

use crate::{keys, seal, DeliveryRecord, Envelope, Error};

const VERSION: u32 = 1;

#[derive(Serialize)]
struct EnvelopeRecordRef<'a> {
    v: u32,
    body_len: u64,
    envelope: &'a Envelope,
}

#[derive(Deserialize)]
struct EnvelopeRecord {
    v: u32,
    body_len: u64,
    envelope: Envelope,
}

/// Seals an envelope record to be stored under `key`.
pub(crate) fn seal_envelope(
    aead: &LessSafeKey,
    key: &[u8],
    envelope: &Envelope,
    body_len: u64,
) -> Result<Vec<u8>, Error> {
    let record = EnvelopeRecordRef {
        v: VERSION,
        body_len,
        envelope,
    };
    seal_json(aead, key, &record)
}

fn seal_json<T: Serialize>(aead: &LessSafeKey, key: &[u8], value: &T) -> Result<Vec<u8>, Error> {
    // Serializing plain data structures into a Vec cannot fail; map it anyway
    // rather than assert it.
    let json = serde_json::to_vec(value).map_err(|e| Error::Corrupt {
        key: keys::describe(key),
        reason: format!("cannot encode record: {e}"),
    })?;
    seal::seal(aead, key, json)
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

/// Seals a delivery log record to be stored under `key`.
pub(crate) fn seal_log(
    aead: &LessSafeKey,
    key: &[u8],
    record: &DeliveryRecord,
) -> Result<Vec<u8>, Error> {
    seal_json(aead, key, &LogRecordRef { v: VERSION, record })
}

/// Opens a delivery log record stored under `key`.
pub(crate) fn open_log(
    aead: &LessSafeKey,
    key: &[u8],
    value: &[u8],
) -> Result<DeliveryRecord, Error> {
    let json = seal::open(aead, key, value.to_vec())?;
    let corrupt = |reason: String| Error::Corrupt {
        key: keys::describe(key),
        reason,
    };
    let record: LogRecord = serde_json::from_slice(&json)
        .map_err(|e| corrupt(format!("delivery record does not parse: {e}")))?;
    if record.v != VERSION {
        return Err(corrupt(format!(
            "unknown delivery record version {}",
            record.v
        )));
    }
    Ok(record.record)
}

/// Opens an envelope record stored under `key`: the envelope and its body length.
pub(crate) fn open_envelope(
    aead: &LessSafeKey,
    key: &[u8],
    value: &[u8],
) -> Result<(Envelope, u64), Error> {
    let json = seal::open(aead, key, value.to_vec())?;
    let corrupt = |reason: String| Error::Corrupt {
        key: keys::describe(key),
        reason,
    };
    let record: EnvelopeRecord = serde_json::from_slice(&json)
        .map_err(|e| corrupt(format!("envelope does not parse: {e}")))?;
    if record.v != VERSION {
        return Err(corrupt(format!(
            "unknown envelope record version {}",
            record.v
        )));
    }
    Ok((record.envelope, record.body_len))
}

/// Opens a body record stored under `key`.
pub(crate) fn open_body(aead: &LessSafeKey, key: &[u8], value: &[u8]) -> Result<Vec<u8>, Error> {
    seal::open(aead, key, value.to_vec())
}
