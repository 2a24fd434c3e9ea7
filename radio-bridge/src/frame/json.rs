//! The JSON form of a frame, using the heartbeat spec's field names exactly.
//!
//! Binary values are written as text: device ids, message ids and hashes in
//! lowercase hex, the signature and opaque payloads in standard base64 (the
//! spec's example says `"signature": "BASE64_SIGNATURE"`). The form is
//! lossless for everything this version defines, so JSON → frame → JSON
//! reproduces the input and JSON with a signature → frame reproduces the
//! original bytes.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde_json::{json, Map, Value};

use super::message::*;
use super::{Frame, FrameError};

/// The JSON form of a decoded frame (without `msg_id`/`verified`, which
/// describe the reception rather than the message).
pub fn to_json(frame: &Frame) -> Value {
    let mut v = envelope_to_json(&frame.envelope);
    v["signature"] = Value::String(BASE64.encode(frame.signature));
    v
}

/// The JSON form of an unsigned envelope.
pub fn envelope_to_json(env: &Envelope) -> Value {
    let mut v = json!({
        "message_type": env.message.message_type().name(),
        "device_id": hex::encode(env.device_id),
        "protocol_version": env.version.to_string(),
    });
    let obj = v.as_object_mut().expect("json! object literal");
    if let Some(to) = env.to {
        obj.insert("to".into(), hex::encode(to).into());
    }
    if let Some(seq) = env.seq {
        obj.insert("seq".into(), seq.into());
    }
    match &env.message {
        Message::Heartbeat(hb) => {
            obj.insert("device_class".into(), hb.device_class.name().into());
            obj.insert("power_state".into(), hb.power_state.name().into());
            obj.insert("ledger_height".into(), hb.ledger_height.into());
            obj.insert("sync_capable".into(), hb.sync_capable.into());
            let mut caps = json!({
                "supports_groups": hb.capabilities.supports_groups,
                "supports_trust_scores": hb.capabilities.supports_trust_scores,
                "supports_ai_assistant": hb.capabilities.supports_ai_assistant,
            });
            if hb.capabilities.unknown_bits != 0 {
                caps["unknown_bits"] = hb.capabilities.unknown_bits.into();
            }
            obj.insert("capabilities".into(), caps);
        }
        Message::Transaction(tx) => {
            obj.insert("payload".into(), BASE64.encode(&tx.payload).into());
        }
        Message::LedgerSync(sync) => match sync {
            LedgerSync::Offer {
                ledger_height,
                head_hash,
                ..
            } => {
                obj.insert("kind".into(), "offer".into());
                obj.insert("ledger_height".into(), (*ledger_height).into());
                obj.insert("head_hash".into(), hex::encode(head_hash).into());
            }
            LedgerSync::Request {
                from_height,
                max_entries,
                ..
            } => {
                obj.insert("kind".into(), "request".into());
                obj.insert("from_height".into(), (*from_height).into());
                obj.insert("max_entries".into(), (*max_entries).into());
            }
            LedgerSync::Entries {
                from_height,
                entries,
                ..
            } => {
                obj.insert("kind".into(), "entries".into());
                obj.insert("from_height".into(), (*from_height).into());
                let entries: Vec<Value> = entries.iter().map(|e| BASE64.encode(e).into()).collect();
                obj.insert("entries".into(), entries.into());
            }
        },
        Message::Ack(ack) => {
            obj.insert("acked".into(), ids_to_json(&ack.acked));
        }
        Message::Nack(nack) => {
            obj.insert("missing_ids".into(), ids_to_json(&nack.missing_ids));
            let ranges: Vec<Value> = nack
                .missing_ranges
                .iter()
                .map(|(from, to)| json!([from, to]))
                .collect();
            obj.insert("missing_ranges".into(), ranges.into());
        }
        Message::Receipt(r) => {
            obj.insert("receipt_for".into(), hex::encode(r.receipt_for).into());
            obj.insert("status".into(), r.status.name().into());
        }
    }
    if let Some(counter) = env.message.timestamp_counter() {
        obj.insert("timestamp_counter".into(), counter.into());
    }
    v
}

fn ids_to_json(ids: &[MsgId]) -> Value {
    ids.iter().map(hex::encode).collect::<Vec<_>>().into()
}

/// Parses JSON text into a value, refusing an object that names a member
/// twice: serde_json would keep the last one silently, and which of two
/// values gets signed must not be a guess.
pub fn parse_text(text: &str) -> Result<Value, FrameError> {
    serde_json::from_str::<Unique>(text)
        .map(|u| u.0)
        .map_err(|e| bad(&format!("not JSON, or not the JSON form: {e}")))
}

/// A JSON value whose objects have distinct member names.
struct Unique(Value);

impl<'de> serde::Deserialize<'de> for Unique {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Unique, D::Error> {
        d.deserialize_any(UniqueVisitor).map(Unique)
    }
}

struct UniqueVisitor;

impl<'de> serde::de::Visitor<'de> for UniqueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Unique(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut obj = Map::new();
        while let Some((key, Unique(value))) = map.next_entry::<String, Unique>()? {
            if obj.contains_key(&key) {
                return Err(serde::de::Error::custom(format!(
                    "field {key:?} appears twice"
                )));
            }
            obj.insert(key, value);
        }
        Ok(Value::Object(obj))
    }
}

/// A JSON form parsed back: the envelope, and the signature if it had one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedJson {
    pub envelope: Envelope,
    pub signature: Option<[u8; 64]>,
}

impl ParsedJson {
    /// The frame this JSON describes, when it carries a valid signature.
    pub fn into_frame(self) -> Result<Frame, FrameError> {
        match self.signature {
            Some(sig) => Frame::with_signature(self.envelope, sig),
            None => Err(FrameError::Malformed(
                "no signature: sign it with a key (seed-gateway encode --key)".into(),
            )),
        }
    }
}

/// Reads the JSON form. Unknown fields are an error (a misspelt field must
/// not be silently dropped from a signed message); `msg_id` and `verified`
/// are accepted and ignored so `decode` output can be fed back in.
pub fn from_json(value: &Value) -> Result<ParsedJson, FrameError> {
    let obj = value
        .as_object()
        .ok_or_else(|| bad("the JSON form must be an object"))?;
    let mut f = JsonFields::new(obj);
    f.ignore("msg_id");
    f.ignore("verified");

    let type_name = f.str("message_type")?;
    let message_type = MessageType::from_name(type_name)
        .ok_or_else(|| bad(&format!("message_type: unknown type {type_name:?}")))?;
    let device_id = f.hex_fixed::<32>("device_id")?;
    let version_text = f.opt_str("protocol_version")?.unwrap_or("1.0");
    let version = ProtocolVersion::parse(version_text)
        .filter(|v| v.is_supported())
        .ok_or_else(|| {
            bad(&format!(
                "protocol_version: {version_text:?} is not a version 1.x written like \"1.0\""
            ))
        })?;
    let to = f.opt("to").map(|_| f.hex_fixed::<32>("to")).transpose()?;
    let seq = f.opt("seq").map(|_| f.uint("seq")).transpose()?;
    let signature = f
        .opt("signature")
        .map(|_| {
            let bytes = f.base64("signature")?;
            <[u8; 64]>::try_from(bytes.as_slice()).map_err(|_| {
                bad(&format!(
                    "signature: expected 64 bytes, got {}",
                    bytes.len()
                ))
            })
        })
        .transpose()?;
    let counter = f
        .opt("timestamp_counter")
        .map(|_| f.u32("timestamp_counter"))
        .transpose()?;

    let message = match message_type {
        MessageType::Heartbeat => {
            let class_name = f.str("device_class")?;
            let caps = f.object("capabilities")?;
            let mut c = JsonFields::new(caps);
            let capabilities = Capabilities {
                supports_groups: c.bool("supports_groups")?,
                supports_trust_scores: c.bool("supports_trust_scores")?,
                supports_ai_assistant: c.bool("supports_ai_assistant")?,
                unknown_bits: c
                    .opt("unknown_bits")
                    .map(|_| c.uint("unknown_bits"))
                    .transpose()?
                    .map(unknown_bits)
                    .transpose()?
                    .unwrap_or(0),
            };
            c.finish("capabilities")?;
            let power = f.str("power_state")?;
            Message::Heartbeat(Heartbeat {
                device_class: DeviceClass::from_name(class_name)
                    .ok_or_else(|| bad(&format!("device_class: unknown class {class_name:?}")))?,
                timestamp_counter: counter.ok_or_else(|| bad("timestamp_counter is missing"))?,
                power_state: PowerState::from_name(power).ok_or_else(|| {
                    bad(&format!(
                        "power_state: {power:?} is not one of low_power, normal, charging"
                    ))
                })?,
                ledger_height: f.uint("ledger_height")?,
                sync_capable: f.bool("sync_capable")?,
                capabilities,
            })
        }
        MessageType::Transaction => Message::Transaction(Transaction {
            payload: f.base64("payload")?,
            timestamp_counter: counter,
        }),
        MessageType::LedgerSync => {
            let kind = f.str("kind")?;
            Message::LedgerSync(match kind {
                "offer" => LedgerSync::Offer {
                    ledger_height: f.uint("ledger_height")?,
                    head_hash: f.hex_fixed::<32>("head_hash")?,
                    timestamp_counter: counter,
                },
                "request" => LedgerSync::Request {
                    from_height: f.uint("from_height")?,
                    max_entries: f.uint("max_entries")?,
                    timestamp_counter: counter,
                },
                "entries" => LedgerSync::Entries {
                    from_height: f.uint("from_height")?,
                    entries: f
                        .array("entries")?
                        .iter()
                        .map(|e| decode_base64_value(e, "entries"))
                        .collect::<Result<_, _>>()?,
                    timestamp_counter: counter,
                },
                other => {
                    return Err(bad(&format!(
                        "kind: {other:?} is not one of offer, request, entries"
                    )))
                }
            })
        }
        MessageType::Ack => Message::Ack(Ack {
            acked: f.id_list("acked")?,
            timestamp_counter: counter,
        }),
        MessageType::Nack => Message::Nack(Nack {
            missing_ids: f
                .opt("missing_ids")
                .map(|_| f.id_list("missing_ids"))
                .transpose()?
                .unwrap_or_default(),
            missing_ranges: f
                .opt("missing_ranges")
                .map(|_| f.ranges("missing_ranges"))
                .transpose()?
                .unwrap_or_default(),
            timestamp_counter: counter,
        }),
        MessageType::Receipt => {
            let status = f.str("status")?;
            Message::Receipt(Receipt {
                receipt_for: f.hex_fixed::<16>("receipt_for")?,
                status: ReceiptStatus::from_name(status).ok_or_else(|| {
                    bad(&format!(
                        "status: {status:?} is not one of delivered, applied, rejected"
                    ))
                })?,
                timestamp_counter: counter,
            })
        }
    };
    f.finish("message")?;
    Ok(ParsedJson {
        envelope: Envelope {
            version,
            device_id,
            to,
            seq,
            message,
        },
        signature,
    })
}

/// `unknown_bits` holds only bits this version does not name, and is left
/// out rather than written as 0, so that every mask has one JSON form.
fn unknown_bits(bits: u64) -> Result<u64, FrameError> {
    if bits == 0 || bits & Capabilities::KNOWN != 0 {
        Err(bad(&format!(
            "capabilities.unknown_bits: {bits} must be non-zero and leave bits 0-2 (the named flags) clear"
        )))
    } else {
        Ok(bits)
    }
}

fn bad(reason: &str) -> FrameError {
    FrameError::Malformed(reason.to_string())
}

fn decode_base64_value(v: &Value, what: &str) -> Result<Vec<u8>, FrameError> {
    let text = v
        .as_str()
        .ok_or_else(|| bad(&format!("{what}: expected a base64 string")))?;
    BASE64
        .decode(text)
        .map_err(|e| bad(&format!("{what}: not valid base64 ({e})")))
}

/// Field access that remembers which fields were read, so leftovers can be
/// reported as unknown.
struct JsonFields<'a> {
    obj: &'a Map<String, Value>,
    used: Vec<&'static str>,
}

impl<'a> JsonFields<'a> {
    fn new(obj: &'a Map<String, Value>) -> JsonFields<'a> {
        JsonFields {
            obj,
            used: Vec::new(),
        }
    }

    fn ignore(&mut self, key: &'static str) {
        self.used.push(key);
    }

    fn opt(&mut self, key: &'static str) -> Option<&'a Value> {
        self.used.push(key);
        // null is not "absent": it is a value of the wrong type, reported
        // as such by the typed accessor.
        self.obj.get(key)
    }

    fn get(&mut self, key: &'static str) -> Result<&'a Value, FrameError> {
        self.opt(key)
            .ok_or_else(|| bad(&format!("{key} is missing")))
    }

    fn str(&mut self, key: &'static str) -> Result<&'a str, FrameError> {
        self.get(key)?
            .as_str()
            .ok_or_else(|| bad(&format!("{key}: expected a string")))
    }

    fn opt_str(&mut self, key: &'static str) -> Result<Option<&'a str>, FrameError> {
        self.opt(key)
            .map(|v| {
                v.as_str()
                    .ok_or_else(|| bad(&format!("{key}: expected a string")))
            })
            .transpose()
    }

    fn uint(&mut self, key: &'static str) -> Result<u64, FrameError> {
        self.get(key)?
            .as_u64()
            .ok_or_else(|| bad(&format!("{key}: expected a non-negative integer")))
    }

    fn u32(&mut self, key: &'static str) -> Result<u32, FrameError> {
        let v = self.uint(key)?;
        u32::try_from(v).map_err(|_| bad(&format!("{key}: {v} does not fit 32 bits")))
    }

    fn bool(&mut self, key: &'static str) -> Result<bool, FrameError> {
        self.get(key)?
            .as_bool()
            .ok_or_else(|| bad(&format!("{key}: expected true or false")))
    }

    fn object(&mut self, key: &'static str) -> Result<&'a Map<String, Value>, FrameError> {
        self.get(key)?
            .as_object()
            .ok_or_else(|| bad(&format!("{key}: expected an object")))
    }

    fn array(&mut self, key: &'static str) -> Result<&'a Vec<Value>, FrameError> {
        self.get(key)?
            .as_array()
            .ok_or_else(|| bad(&format!("{key}: expected an array")))
    }

    fn base64(&mut self, key: &'static str) -> Result<Vec<u8>, FrameError> {
        decode_base64_value(self.get(key)?, key)
    }

    fn hex_fixed<const N: usize>(&mut self, key: &'static str) -> Result<[u8; N], FrameError> {
        hex_value::<N>(self.get(key)?, key)
    }

    fn id_list(&mut self, key: &'static str) -> Result<Vec<MsgId>, FrameError> {
        self.array(key)?
            .iter()
            .map(|v| hex_value::<16>(v, key))
            .collect()
    }

    fn ranges(&mut self, key: &'static str) -> Result<Vec<(u64, u64)>, FrameError> {
        self.array(key)?
            .iter()
            .map(|v| match v.as_array().map(Vec::as_slice) {
                Some([from, to]) => match (from.as_u64(), to.as_u64()) {
                    (Some(from), Some(to)) if from <= to => Ok((from, to)),
                    _ => Err(bad(&format!(
                        "{key}: each range is [from, to] with from <= to"
                    ))),
                },
                _ => Err(bad(&format!("{key}: each range is [from, to]"))),
            })
            .collect()
    }

    /// Fails on any field that was never asked for.
    fn finish(self, what: &str) -> Result<(), FrameError> {
        match self.obj.keys().find(|k| !self.used.contains(&k.as_str())) {
            Some(unknown) => Err(bad(&format!("{what}: unknown field {unknown:?}"))),
            None => Ok(()),
        }
    }
}

fn hex_value<const N: usize>(v: &Value, key: &str) -> Result<[u8; N], FrameError> {
    let text = v
        .as_str()
        .ok_or_else(|| bad(&format!("{key}: expected a hex string")))?;
    if text.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(bad(&format!("{key}: hex digits must be lowercase")));
    }
    let bytes = hex::decode(text).map_err(|e| bad(&format!("{key}: not valid hex ({e})")))?;
    <[u8; N]>::try_from(bytes.as_slice()).map_err(|_| {
        bad(&format!(
            "{key}: expected {N} bytes ({} hex digits), got {}",
            N * 2,
            bytes.len()
        ))
    })
}
