//! CBOR layout of a frame: the envelope array and the per-type body maps.
//!
//! Encoding is canonical (shortest heads, definite lengths, map keys
//! ascending) so that the same message always yields the same bytes, the
//! same signature and the same message id. Decoding accepts that encoding
//! only ([`super::reader`]), rejects keys out of order or repeated, and
//! skips unknown keys: that is the room left for the spec's future
//! extensions.

use cbor4ii::core::enc::Encode;
use cbor4ii::core::types::{Array, Bytes, Map};
use cbor4ii::core::utils::BufWriter;

use super::message::*;
use super::reader::Reader;
use super::FrameError;

/// Body keys shared by every message type.
pub(crate) mod common_key {
    pub const TIMESTAMP_COUNTER: u64 = 2;
    pub const TO: u64 = 16;
    pub const SEQ: u64 = 17;
}

// ---------------------------------------------------------------- encoding

/// Writes CBOR items into a buffer. Writing into a `Vec` cannot fail, so the
/// writer's error type is uninhabited and the `Result`s are discarded.
pub(crate) struct Writer(BufWriter);

impl Writer {
    pub fn new() -> Writer {
        Writer(BufWriter::new(Vec::with_capacity(128)))
    }
    pub fn uint(&mut self, v: u64) {
        let _ = v.encode(&mut self.0);
    }
    pub fn bytes(&mut self, v: &[u8]) {
        let _ = Bytes(v).encode(&mut self.0);
    }
    pub fn bool(&mut self, v: bool) {
        let _ = v.encode(&mut self.0);
    }
    pub fn array(&mut self, len: usize) {
        let _ = Array::bounded(len, &mut self.0);
    }
    pub fn map(&mut self, len: usize) {
        let _ = Map::bounded(len, &mut self.0);
    }
    pub fn into_bytes(self) -> Vec<u8> {
        self.0.into_inner()
    }
}

/// Writes one body value.
type WriteValue = Box<dyn FnOnce(&mut Writer)>;

/// A body map being built: entries are collected, then written in key order.
struct BodyMap(Vec<(u64, WriteValue)>);

impl BodyMap {
    fn new() -> BodyMap {
        BodyMap(Vec::new())
    }
    fn put(&mut self, key: u64, write: impl FnOnce(&mut Writer) + 'static) {
        self.0.push((key, Box::new(write)));
    }
    fn write(mut self, w: &mut Writer) {
        self.0.sort_by_key(|(key, _)| *key);
        w.map(self.0.len());
        for (key, write) in self.0 {
            w.uint(key);
            write(w);
        }
    }
}

/// The signed part of a frame: `[version, type, device_id, body` (the
/// caller appends the signature as the array's fifth element).
pub(crate) fn encode_unsigned(env: &Envelope) -> Vec<u8> {
    let mut w = Writer::new();
    w.array(5);
    w.uint(env.version.to_wire() as u64);
    w.uint(env.message.message_type() as u64);
    w.bytes(&env.device_id);
    let mut body = BodyMap::new();
    if let Some(to) = env.to {
        body.put(common_key::TO, move |w| w.bytes(&to));
    }
    if let Some(seq) = env.seq {
        body.put(common_key::SEQ, move |w| w.uint(seq));
    }
    if let Some(counter) = env.message.timestamp_counter() {
        body.put(common_key::TIMESTAMP_COUNTER, move |w| {
            w.uint(counter.into())
        });
    }
    encode_body(&env.message, &mut body);
    body.write(&mut w);
    w.into_bytes()
}

fn encode_body(message: &Message, body: &mut BodyMap) {
    match message.clone() {
        Message::Heartbeat(hb) => {
            body.put(1, move |w| w.uint(hb.device_class.code() as u64));
            body.put(3, move |w| w.uint(hb.power_state as u64));
            body.put(4, move |w| w.uint(hb.ledger_height));
            body.put(5, move |w| w.bool(hb.sync_capable));
            body.put(6, move |w| w.uint(hb.capabilities.bits()));
        }
        Message::Transaction(tx) => {
            body.put(1, move |w| w.bytes(&tx.payload));
        }
        Message::LedgerSync(sync) => match sync {
            LedgerSync::Offer {
                ledger_height,
                head_hash,
                ..
            } => {
                body.put(1, |w| w.uint(0));
                body.put(3, move |w| w.uint(ledger_height));
                body.put(4, move |w| w.bytes(&head_hash));
            }
            LedgerSync::Request {
                from_height,
                max_entries,
                ..
            } => {
                body.put(1, |w| w.uint(1));
                body.put(5, move |w| w.uint(from_height));
                body.put(6, move |w| w.uint(max_entries));
            }
            LedgerSync::Entries {
                from_height,
                entries,
                ..
            } => {
                body.put(1, |w| w.uint(2));
                body.put(5, move |w| w.uint(from_height));
                body.put(7, move |w| {
                    w.array(entries.len());
                    entries.iter().for_each(|e| w.bytes(e));
                });
            }
        },
        Message::Ack(ack) => {
            body.put(1, move |w| {
                w.array(ack.acked.len());
                ack.acked.iter().for_each(|id| w.bytes(id));
            });
        }
        Message::Nack(nack) => {
            if !nack.missing_ids.is_empty() {
                let ids = nack.missing_ids;
                body.put(1, move |w| {
                    w.array(ids.len());
                    ids.iter().for_each(|id| w.bytes(id));
                });
            }
            if !nack.missing_ranges.is_empty() {
                let ranges = nack.missing_ranges;
                body.put(3, move |w| {
                    w.array(ranges.len());
                    for (from, to) in ranges {
                        w.array(2);
                        w.uint(from);
                        w.uint(to);
                    }
                });
            }
        }
        Message::Receipt(receipt) => {
            body.put(1, move |w| w.bytes(&receipt.receipt_for));
            body.put(3, move |w| w.uint(receipt.status as u64));
        }
    }
}

// ---------------------------------------------------------------- decoding

/// The envelope fields every version shares, decoded before the body.
pub(crate) struct RawEnvelope<'a> {
    pub version: ProtocolVersion,
    pub type_code: u64,
    pub device_id: DeviceId,
    /// Undecoded body bytes: one item, ending where the signature starts.
    /// Already checked against the encoding rules when the version is not
    /// supported; [`decode_body`] checks them for a supported one, so a
    /// valid frame's body is read once.
    pub body: &'a [u8],
}

/// Splits `unsigned` (the frame minus its trailing signature item) into the
/// envelope fields and the raw body.
pub(crate) fn decode_envelope(unsigned: &[u8]) -> Result<RawEnvelope<'_>, FrameError> {
    let mut r = Reader::new(unsigned);
    if r.array("frame")? != 5 {
        return Err(FrameError::Malformed(
            "frame: expected an array of 5 items".into(),
        ));
    }
    let version_byte = r.uint("protocol_version")?;
    let version = ProtocolVersion::from_wire(version_byte).ok_or_else(|| {
        FrameError::Malformed(format!(
            "protocol_version: {version_byte} does not fit a byte"
        ))
    })?;
    let type_code = r.uint("message_type")?;
    let device_id = r.fixed::<32>("device_id")?;
    let body = r.rest();
    if !version.is_supported() {
        // Another major version's body is not ours to interpret, but the
        // encoding rules hold for every version.
        r.skip("body")?;
        end_of_body(&r)?;
    }
    Ok(RawEnvelope {
        version,
        type_code,
        device_id,
        body,
    })
}

/// The body must be exactly one item, ending where the signature starts.
fn end_of_body(r: &Reader<'_>) -> Result<(), FrameError> {
    if r.rest().is_empty() {
        Ok(())
    } else {
        Err(FrameError::Malformed(
            "trailing bytes between the body and the signature".into(),
        ))
    }
}

/// Keys up to this one may have a meaning in version 1.x; larger keys are
/// always unknown (skipped).
const HIGHEST_KNOWN_KEY: u64 = common_key::SEQ;

/// The values of the body keys this version may know, by key, each one
/// undecoded item. Keys are strictly ascending on air (so a repeated key is
/// caught by the same comparison).
struct Fields<'a> {
    values: [Option<&'a [u8]>; HIGHEST_KNOWN_KEY as usize + 1],
}

impl<'a> Fields<'a> {
    fn read(body: &'a [u8]) -> Result<Fields<'a>, FrameError> {
        let mut r = Reader::new(body);
        let count = r.map("body")?;
        let mut values = [None; HIGHEST_KNOWN_KEY as usize + 1];
        let mut previous: Option<u64> = None;
        for _ in 0..count {
            let key = r.uint("body key")?;
            if let Some(previous) = previous.filter(|p| key <= *p) {
                return Err(FrameError::Malformed(if key == previous {
                    format!("body: key {key} appears twice")
                } else {
                    format!("body: key {key} follows key {previous}; keys must be ascending")
                }));
            }
            previous = Some(key);
            let start = r.rest();
            r.skip("body value")?;
            if let Some(slot) = usize::try_from(key).ok().and_then(|k| values.get_mut(k)) {
                *slot = Some(&start[..start.len() - r.rest().len()]);
            }
        }
        end_of_body(&r)?;
        Ok(Fields { values })
    }

    fn get(&self, key: u64) -> Option<Reader<'a>> {
        self.values[key as usize].map(Reader::new)
    }

    fn require(&self, key: u64, what: &'static str) -> Result<Reader<'a>, FrameError> {
        self.get(key)
            .ok_or_else(|| FrameError::Malformed(format!("{what} (key {key}) is missing")))
    }

    fn uint(&self, key: u64, what: &'static str) -> Result<u64, FrameError> {
        self.require(key, what)?.uint(what)
    }

    fn opt_uint(&self, key: u64, what: &'static str) -> Result<Option<u64>, FrameError> {
        self.get(key).map(|mut r| r.uint(what)).transpose()
    }

    /// Keys that belong to another kind of the same type are not unknown
    /// keys but a contradiction (docs/protocol.md §4.3).
    fn forbid(&self, keys: &[(u64, &str)], kind: &str) -> Result<(), FrameError> {
        match keys
            .iter()
            .find(|(key, _)| self.values[*key as usize].is_some())
        {
            Some((key, field)) => Err(FrameError::Malformed(format!(
                "ledger_sync {kind}: key {key} ({field}) belongs to another kind"
            ))),
            None => Ok(()),
        }
    }
}

fn u32_field(value: u64, what: &str) -> Result<u32, FrameError> {
    u32::try_from(value)
        .map_err(|_| FrameError::Malformed(format!("{what}: {value} does not fit 32 bits")))
}

fn id_list(mut r: Reader<'_>, what: &'static str) -> Result<Vec<MsgId>, FrameError> {
    let n = r.array(what)?;
    (0..n).map(|_| r.fixed::<16>(what)).collect()
}

/// An optional array whose absence means "none": the empty array is not
/// its canonical encoding, so it is malformed.
fn non_empty(n: usize, what: &str) -> Result<usize, FrameError> {
    if n == 0 {
        Err(FrameError::Malformed(format!(
            "{what}: an empty array is written by leaving the key out"
        )))
    } else {
        Ok(n)
    }
}

/// Decodes the body of a supported version into the envelope.
pub(crate) fn decode_body(raw: &RawEnvelope<'_>) -> Result<Envelope, FrameError> {
    let message_type = MessageType::from_code(raw.type_code).ok_or_else(|| {
        FrameError::Malformed(format!("message_type: unknown code {}", raw.type_code))
    })?;
    let f = Fields::read(raw.body)?;
    let to = f
        .get(common_key::TO)
        .map(|mut r| r.fixed::<32>("to"))
        .transpose()?;
    let seq = f.opt_uint(common_key::SEQ, "seq")?;
    let counter = f
        .opt_uint(common_key::TIMESTAMP_COUNTER, "timestamp_counter")?
        .map(|c| u32_field(c, "timestamp_counter"))
        .transpose()?;

    let message = match message_type {
        MessageType::Heartbeat => {
            let class = f.uint(1, "device_class")?;
            // Codes stay below 24 so they take one byte on air and the
            // worst-case heartbeat fits in 128 bytes.
            let class = u8::try_from(class)
                .ok()
                .filter(|c| *c < 24)
                .ok_or_else(|| {
                    FrameError::Malformed(format!("device_class: {class} is not a code 0..=23"))
                })?;
            let power = f.uint(3, "power_state")?;
            Message::Heartbeat(Heartbeat {
                device_class: DeviceClass::from_code(class),
                timestamp_counter: counter.ok_or_else(|| {
                    FrameError::Malformed("timestamp_counter (key 2) is missing".into())
                })?,
                power_state: PowerState::from_code(power).ok_or_else(|| {
                    FrameError::Malformed(format!("power_state: unknown code {power}"))
                })?,
                ledger_height: f.uint(4, "ledger_height")?,
                sync_capable: f.require(5, "sync_capable")?.bool("sync_capable")?,
                capabilities: Capabilities::from_bits(f.uint(6, "capabilities")?),
            })
        }
        MessageType::Transaction => Message::Transaction(Transaction {
            payload: f.require(1, "payload")?.bytes("payload")?.to_vec(),
            timestamp_counter: counter,
        }),
        MessageType::LedgerSync => {
            const HEIGHT: (u64, &str) = (3, "ledger_height");
            const HEAD: (u64, &str) = (4, "head_hash");
            const FROM: (u64, &str) = (5, "from_height");
            const MAX: (u64, &str) = (6, "max_entries");
            const ENTRIES: (u64, &str) = (7, "entries");
            let kind = f.uint(1, "kind")?;
            Message::LedgerSync(match kind {
                0 => {
                    f.forbid(&[FROM, MAX, ENTRIES], "offer")?;
                    LedgerSync::Offer {
                        ledger_height: f.uint(3, "ledger_height")?,
                        head_hash: f.require(4, "head_hash")?.fixed::<32>("head_hash")?,
                        timestamp_counter: counter,
                    }
                }
                1 => {
                    f.forbid(&[HEIGHT, HEAD, ENTRIES], "request")?;
                    LedgerSync::Request {
                        from_height: f.uint(5, "from_height")?,
                        max_entries: f.uint(6, "max_entries")?,
                        timestamp_counter: counter,
                    }
                }
                2 => {
                    f.forbid(&[HEIGHT, HEAD, MAX], "entries")?;
                    let mut r = f.require(7, "entries")?;
                    let n = r.array("entries")?;
                    let entries = (0..n)
                        .map(|_| r.bytes("entries").map(<[u8]>::to_vec))
                        .collect::<Result<_, _>>()?;
                    LedgerSync::Entries {
                        from_height: f.uint(5, "from_height")?,
                        entries,
                        timestamp_counter: counter,
                    }
                }
                other => {
                    return Err(FrameError::Malformed(format!(
                        "ledger_sync kind: unknown code {other}"
                    )))
                }
            })
        }
        MessageType::Ack => Message::Ack(Ack {
            acked: id_list(f.require(1, "acked")?, "acked")?,
            timestamp_counter: counter,
        }),
        MessageType::Nack => {
            let missing_ids = match f.get(1) {
                Some(r) => {
                    let ids = id_list(r, "missing_ids")?;
                    non_empty(ids.len(), "missing_ids")?;
                    ids
                }
                None => Vec::new(),
            };
            let mut missing_ranges = Vec::new();
            if let Some(mut r) = f.get(3) {
                for _ in 0..non_empty(r.array("missing_ranges")?, "missing_ranges")? {
                    if r.array("missing_ranges")? != 2 {
                        return Err(FrameError::Malformed(
                            "missing_ranges: each range is [from, to]".into(),
                        ));
                    }
                    let from = r.uint("missing_ranges")?;
                    let to = r.uint("missing_ranges")?;
                    if from > to {
                        return Err(FrameError::Malformed(format!(
                            "missing_ranges: {from} > {to}"
                        )));
                    }
                    missing_ranges.push((from, to));
                }
            }
            Message::Nack(Nack {
                missing_ids,
                missing_ranges,
                timestamp_counter: counter,
            })
        }
        MessageType::Receipt => {
            let status = f.uint(3, "status")?;
            Message::Receipt(Receipt {
                receipt_for: f.require(1, "receipt_for")?.fixed::<16>("receipt_for")?,
                status: ReceiptStatus::from_code(status).ok_or_else(|| {
                    FrameError::Malformed(format!("status: unknown code {status}"))
                })?,
                timestamp_counter: counter,
            })
        }
    };
    Ok(Envelope {
        version: raw.version,
        device_id: raw.device_id,
        to,
        seq,
        message,
    })
}
