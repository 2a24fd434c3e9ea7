//! The Seed frame: a CBOR envelope signed with ed25519.
//!
//! ```text
//! frame = [ protocol_version, message_type, device_id, body, signature ]   (CBOR array of 5)
//! signed bytes = "seed-frame" 0x00 || frame without its final signature item
//! msg_id = SHA-256(signed bytes)[0..16]
//! ```
//!
//! The signature is always the last 66 bytes of a frame (`0x58 0x40` + 64
//! bytes), so a receiver can cut it off and verify before it decodes any
//! body, and can verify frames of a protocol version it does not otherwise
//! understand. The domain prefix keeps a Seed frame signature from being
//! valid in any other protocol that shares the device key; version and type
//! are inside the signed bytes, so neither can be swapped after signing.
//! docs/protocol.md is the normative description; this module follows it.

mod batch;
mod cbor;
pub mod json;
mod message;
mod reader;

pub use message::*;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

/// Prefix of every signed message (domain separation).
pub const SIGNING_DOMAIN: &[u8] = b"seed-frame\0";

/// Largest frame accepted after reassembly. A radio packet is at most 255
/// bytes; anything larger arrives in fragments.
pub const MAX_FRAME_LEN: usize = 16 * 1024;

/// Byte length of the trailing signature item: `0x58 0x40` + 64 bytes.
const SIGNATURE_ITEM_LEN: usize = 66;

/// Why a frame was not accepted. Each variant is one receive outcome with its
/// own counter ([`FrameError::outcome`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("malformed frame: {0}")]
    Malformed(String),
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    Oversize { len: usize, max: usize },
    #[error("unsupported protocol version {version} from device {device}")]
    UnsupportedVersion {
        version: ProtocolVersion,
        /// Hex device id, for the log line the spec asks for.
        device: String,
        /// Whether the signature over the unknown-version frame verified,
        /// so a neighbor entry may be trusted to say "outdated".
        signature_ok: bool,
    },
    #[error("invalid signature from device {device}")]
    BadSignature { device: String },
}

impl FrameError {
    /// Stable counter name for metrics and logs.
    pub fn outcome(&self) -> &'static str {
        match self {
            FrameError::Malformed(_) => "malformed",
            FrameError::Oversize { .. } => "oversize",
            FrameError::UnsupportedVersion { .. } => "unsupported_version",
            FrameError::BadSignature { .. } => "bad_signature",
        }
    }
}

/// A decoded frame together with the exact bytes it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub envelope: Envelope,
    pub signature: [u8; 64],
    /// The frame as transmitted; what is stored and forwarded, so a frame
    /// from a newer device keeps fields this gateway does not know.
    pub bytes: Vec<u8>,
    pub msg_id: MsgId,
}

/// Devices' public keys, decompressed. Decompressing a key (a field
/// inversion) is about a quarter of a frame's verification cost, and a
/// gateway hears the same few devices over and over: a key is decompressed
/// once, not once per frame. Bounded: when full it starts again empty.
#[derive(Debug, Default)]
pub struct KeyCache {
    keys: std::collections::HashMap<DeviceId, VerifyingKey>,
}

impl KeyCache {
    /// Keys kept at most (about 200 bytes each).
    pub const CAPACITY: usize = 4096;

    /// The key of `device`, or `None` if its id is not a valid point.
    fn get(&mut self, device: &DeviceId) -> Option<VerifyingKey> {
        if let Some(key) = self.keys.get(device) {
            return Some(*key);
        }
        let key = VerifyingKey::from_bytes(device).ok()?;
        if self.keys.len() >= Self::CAPACITY {
            self.keys.clear();
        }
        self.keys.insert(*device, key);
        Some(key)
    }
}

impl Frame {
    /// Decodes and verifies a frame: the receive rules of docs/protocol.md
    /// §7, in their order. Every check that only reads the bytes comes
    /// before the signature (the one expensive step), so junk is rejected
    /// cheaply and a frame that is both malformed and badly signed is
    /// counted as malformed. Never panics, whatever the input.
    pub fn decode(bytes: &[u8]) -> Result<Frame, FrameError> {
        let (unsigned, signature) = split_signature(bytes)?;
        let raw = cbor::decode_envelope(unsigned)?;
        if !raw.version.is_supported() {
            return Err(unsupported(&raw, unsigned, &signature));
        }
        let envelope = cbor::decode_body(&raw)?;
        if !verify(&raw.device_id, unsigned, &signature) {
            return Err(bad_signature(&raw.device_id));
        }
        Ok(Frame {
            envelope,
            signature,
            bytes: bytes.to_vec(),
            msg_id: msg_id(unsigned),
        })
    }

    /// Decodes and verifies many frames at once, using ed25519 batch
    /// verification (`batch.rs`; about twice as fast per frame). Results are in input
    /// order and equal what [`Frame::decode`] gives for each: only frames
    /// that passed every cheaper check join the batch, and when a batch
    /// fails its frames are verified one by one to find the culprits.
    pub fn decode_batch(packets: &[&[u8]]) -> Vec<Result<Frame, FrameError>> {
        Frame::decode_batch_with(packets, &mut KeyCache::default())
    }

    /// [`Frame::decode_batch`], keeping the devices' decompressed public
    /// keys in `keys` from one batch to the next.
    pub fn decode_batch_with(
        packets: &[&[u8]],
        keys: &mut KeyCache,
    ) -> Vec<Result<Frame, FrameError>> {
        struct Parsed<'a> {
            unsigned: &'a [u8],
            signature: [u8; 64],
            key: VerifyingKey,
            device_id: DeviceId,
            envelope: Envelope,
        }
        let parsed: Vec<Result<Parsed<'_>, FrameError>> = packets
            .iter()
            .map(|bytes| {
                let (unsigned, signature) = split_signature(bytes)?;
                let raw = cbor::decode_envelope(unsigned)?;
                if !raw.version.is_supported() {
                    return Err(unsupported(&raw, unsigned, &signature));
                }
                let envelope = cbor::decode_body(&raw)?;
                let key = keys
                    .get(&raw.device_id)
                    .ok_or_else(|| bad_signature(&raw.device_id))?;
                Ok(Parsed {
                    unsigned,
                    signature,
                    key,
                    device_id: raw.device_id,
                    envelope,
                })
            })
            .collect();
        let candidates: Vec<batch::Signed<'_>> = parsed
            .iter()
            .filter_map(|p| p.as_ref().ok())
            .map(|p| batch::Signed {
                key: &p.key,
                message: [SIGNING_DOMAIN, p.unsigned],
                signature: &p.signature,
            })
            .collect();
        let all_valid =
            candidates.iter().all(|c| !c.key.is_weak()) && batch::verify_all(&candidates);
        parsed
            .into_iter()
            .zip(packets)
            .map(|(p, bytes)| {
                let p = p?;
                if !all_valid && !verify(&p.device_id, p.unsigned, &p.signature) {
                    return Err(bad_signature(&p.device_id));
                }
                Ok(Frame {
                    envelope: p.envelope,
                    signature: p.signature,
                    bytes: bytes.to_vec(),
                    msg_id: msg_id(p.unsigned),
                })
            })
            .collect()
    }

    /// Encodes and signs. The key must belong to `envelope.device_id`.
    pub fn sign(envelope: Envelope, key: &SigningKey) -> Result<Frame, FrameError> {
        if key.verifying_key().to_bytes() != envelope.device_id {
            return Err(FrameError::Malformed(
                "device_id is not the public key of the signing key".into(),
            ));
        }
        let unsigned = cbor::encode_unsigned(&envelope);
        let signature = key.sign(&signed_bytes(&unsigned)).to_bytes();
        Ok(Self::assemble(envelope, unsigned, signature))
    }

    /// Re-assembles a frame from an envelope and a signature made elsewhere
    /// (the JSON form carries both), checking that the signature verifies.
    pub fn with_signature(envelope: Envelope, signature: [u8; 64]) -> Result<Frame, FrameError> {
        let unsigned = cbor::encode_unsigned(&envelope);
        if !verify(&envelope.device_id, &unsigned, &signature) {
            return Err(FrameError::BadSignature {
                device: hex::encode(envelope.device_id),
            });
        }
        Ok(Self::assemble(envelope, unsigned, signature))
    }

    fn assemble(envelope: Envelope, unsigned: Vec<u8>, signature: [u8; 64]) -> Frame {
        let msg_id = msg_id(&unsigned);
        let mut bytes = unsigned;
        bytes.extend_from_slice(&[0x58, 0x40]);
        bytes.extend_from_slice(&signature);
        Frame {
            envelope,
            signature,
            bytes,
            msg_id,
        }
    }

    pub fn message_type(&self) -> MessageType {
        self.envelope.message.message_type()
    }
}

/// A frame of another major version: logged, and its signature checked
/// only so the neighbor table can trust the "outdated" mark.
fn unsupported(raw: &cbor::RawEnvelope<'_>, unsigned: &[u8], signature: &[u8; 64]) -> FrameError {
    FrameError::UnsupportedVersion {
        version: raw.version,
        device: hex::encode(raw.device_id),
        signature_ok: verify(&raw.device_id, unsigned, signature),
    }
}

fn bad_signature(device_id: &DeviceId) -> FrameError {
    FrameError::BadSignature {
        device: hex::encode(device_id),
    }
}

/// Splits a frame into its signed prefix and its signature, checking the
/// size limit and the fixed shape of the signature item.
fn split_signature(bytes: &[u8]) -> Result<(&[u8], [u8; 64]), FrameError> {
    if bytes.len() > MAX_FRAME_LEN {
        return Err(FrameError::Oversize {
            len: bytes.len(),
            max: MAX_FRAME_LEN,
        });
    }
    // Smallest possible frame: array header, version, type, 34-byte id,
    // empty map, signature item.
    if bytes.len() < 1 + 1 + 1 + 34 + 1 + SIGNATURE_ITEM_LEN {
        return Err(FrameError::Malformed(format!(
            "truncated: {} bytes is shorter than any frame",
            bytes.len()
        )));
    }
    let (unsigned, sig_item) = bytes.split_at(bytes.len() - SIGNATURE_ITEM_LEN);
    if sig_item[..2] != [0x58, 0x40] {
        return Err(FrameError::Malformed(
            "truncated or corrupt: the frame does not end in a 64-byte signature".into(),
        ));
    }
    let mut signature = [0u8; 64];
    signature.copy_from_slice(&sig_item[2..]);
    Ok((unsigned, signature))
}

fn signed_bytes(unsigned: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(SIGNING_DOMAIN.len() + unsigned.len());
    m.extend_from_slice(SIGNING_DOMAIN);
    m.extend_from_slice(unsigned);
    m
}

fn msg_id(unsigned: &[u8]) -> MsgId {
    let digest = Sha256::new()
        .chain_update(SIGNING_DOMAIN)
        .chain_update(unsigned)
        .finalize();
    let mut id = [0u8; 16];
    id.copy_from_slice(&digest[..16]);
    id
}

/// Strict verification: rejects small-order keys and non-canonical
/// signatures, so one message cannot have two valid signatures.
fn verify(device_id: &DeviceId, unsigned: &[u8], signature: &[u8; 64]) -> bool {
    let Ok(key) = VerifyingKey::from_bytes(device_id) else {
        return false;
    };
    key.verify_strict(&signed_bytes(unsigned), &Signature::from_bytes(signature))
        .is_ok()
}

#[cfg(test)]
mod tests;
