//! Checks the test vectors of docs/protocol.md against the codec, so the
//! normative document and the code cannot drift apart.

use std::collections::HashSet;

use radio_bridge::frame::json::{from_json, to_json};
use radio_bridge::frame::Frame;
use radio_bridge::identity::Identity;
use radio_bridge::packets::decode_packets;

struct Vector {
    name: String,
    expect: String,
    key: Option<String>,
    frame: Option<Vec<u8>>,
    /// Radio packets (fragments) that make up the vector, in order.
    packets: Vec<Vec<u8>>,
    json: Option<serde_json::Value>,
    /// False for frames with unknown keys, which the JSON form leaves out.
    reencodes: bool,
}

/// `00*16385` style repetition, or plain hex.
fn parse_frame(text: &str) -> Vec<u8> {
    match text.split_once('*') {
        Some((byte, count)) => {
            vec![hex::decode(byte).unwrap()[0]; count.parse().unwrap()]
        }
        None => hex::decode(text).unwrap(),
    }
}

fn vectors() -> Vec<Vector> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/protocol.md"))
        .expect("docs/protocol.md is readable");
    let mut out = Vec::new();
    for block in doc.split("```vector\n").skip(1) {
        let body = block.split("```").next().unwrap();
        let fields = |name: &str| -> Vec<String> {
            body.lines()
                .filter_map(|l| l.strip_prefix(&format!("{name}: ")))
                .map(str::to_string)
                .collect()
        };
        let field = |name: &str| fields(name).into_iter().next();
        let v = Vector {
            name: field("name").expect("vector has a name"),
            expect: field("expect").expect("vector has an expect"),
            key: field("key"),
            frame: field("frame").map(|f| parse_frame(&f)),
            packets: fields("packet")
                .iter()
                .map(|p| hex::decode(p).unwrap())
                .collect(),
            json: field("json").map(|j| serde_json::from_str(&j).expect("vector json parses")),
            reencodes: field("reencodes").as_deref() != Some("no"),
        };
        assert!(
            v.frame.is_some() || !v.packets.is_empty(),
            "{}: neither frame nor packets",
            v.name
        );
        out.push(v);
    }
    out
}

#[test]
fn document_has_every_kind_of_vector() {
    let vectors = vectors();
    let kinds: HashSet<&str> = vectors.iter().map(|v| v.expect.as_str()).collect();
    for kind in [
        "valid",
        "duplicate",
        "bad_signature",
        "malformed",
        "unsupported_version",
        "oversize",
        "incomplete",
    ] {
        assert!(
            kinds.contains(kind),
            "docs/protocol.md lacks a {kind} vector"
        );
    }
    assert!(
        vectors.iter().filter(|v| !v.packets.is_empty()).count() >= 4,
        "docs/protocol.md lacks fragment vectors"
    );
}

/// The valid vector's frame: from its packets when it has them (which
/// must reassemble to `frame`), else `frame` itself.
fn received(v: &Vector) -> Result<Frame, String> {
    if v.packets.is_empty() {
        return Frame::decode(v.frame.as_ref().unwrap()).map_err(|e| e.outcome().to_string());
    }
    let mut results = decode_packets(v.packets.iter().map(Vec::as_slice));
    assert_eq!(results.len(), 1, "{}: one outcome from its packets", v.name);
    results.remove(0).map_err(|e| e.outcome().to_string())
}

#[test]
fn vectors_decode_as_documented() {
    let mut seen = HashSet::new();
    for v in vectors() {
        let result = received(&v);
        match v.expect.as_str() {
            "valid" | "duplicate" => {
                let frame = result.unwrap_or_else(|e| panic!("{}: {e}", v.name));
                if let Some(bytes) = &v.frame {
                    assert_eq!(&frame.bytes, bytes, "{}: the frame", v.name);
                }
                let first_time = seen.insert(frame.msg_id);
                // Fragmented vectors carry the same frame twice (in order,
                // out of order); a repeated frame is a de-dup only outside them.
                if v.packets.is_empty() {
                    assert_eq!(
                        first_time,
                        v.expect == "valid",
                        "{}: de-dup outcome",
                        v.name
                    );
                }
                if let Some(json) = &v.json {
                    assert_eq!(&to_json(&frame), json, "{}: JSON form", v.name);
                    // Without the unknown key the signature no longer fits.
                    match from_json(json).unwrap().into_frame() {
                        Ok(again) => {
                            assert_eq!(again.bytes, frame.bytes, "{}: JSON → frame", v.name)
                        }
                        Err(e) => assert!(!v.reencodes, "{}: JSON → frame: {e}", v.name),
                    }
                }
                if let Some(key) = &v.key {
                    let seed: [u8; 32] = hex::decode(key).unwrap().try_into().unwrap();
                    let id = Identity::from_seed(seed);
                    assert_eq!(id.device_id(), frame.envelope.device_id, "{}: key", v.name);
                    let resigned = Frame::sign(frame.envelope.clone(), id.signing_key()).unwrap();
                    assert_eq!(
                        resigned.bytes == frame.bytes,
                        v.reencodes,
                        "{}: signing is deterministic",
                        v.name
                    );
                }
            }
            outcome => {
                let err = result
                    .err()
                    .unwrap_or_else(|| panic!("{} was accepted", v.name));
                assert_eq!(err, outcome, "{}", v.name);
            }
        }
    }
}

#[test]
fn batch_decoding_agrees_with_the_vectors() {
    // The gateway decodes in batches (one signature check for many frames);
    // mixing every whole-frame vector in one batch must not change any
    // outcome, however many of them are bad.
    let vectors: Vec<Vector> = vectors()
        .into_iter()
        .filter(|v| v.packets.is_empty())
        .collect();
    let frames: Vec<&[u8]> = vectors
        .iter()
        .map(|v| v.frame.as_deref().unwrap())
        .collect();
    for (v, result) in vectors.iter().zip(Frame::decode_batch(&frames)) {
        let outcome = match result {
            Ok(_) if v.expect == "duplicate" => "duplicate",
            Ok(_) => "valid",
            Err(e) => e.outcome(),
        };
        assert_eq!(outcome, v.expect, "{}", v.name);
    }
}
