//! Checks the test vectors of docs/protocol.md against the codec, so the
//! normative document and the code cannot drift apart.

use std::collections::HashSet;

use radio_bridge::frame::json::{from_json, to_json};
use radio_bridge::frame::Frame;
use radio_bridge::identity::Identity;

struct Vector {
    name: String,
    expect: String,
    key: Option<String>,
    frame: Vec<u8>,
    json: Option<serde_json::Value>,
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
        let field = |name: &str| {
            body.lines()
                .find_map(|l| l.strip_prefix(&format!("{name}: ")))
                .map(str::to_string)
        };
        out.push(Vector {
            name: field("name").expect("vector has a name"),
            expect: field("expect").expect("vector has an expect"),
            key: field("key"),
            frame: parse_frame(&field("frame").expect("vector has a frame")),
            json: field("json").map(|j| serde_json::from_str(&j).expect("vector json parses")),
        });
    }
    out
}

#[test]
fn document_has_every_kind_of_vector() {
    let kinds: HashSet<String> = vectors().into_iter().map(|v| v.expect).collect();
    for kind in [
        "valid",
        "duplicate",
        "bad_signature",
        "malformed",
        "unsupported_version",
        "oversize",
    ] {
        assert!(
            kinds.contains(kind),
            "docs/protocol.md lacks a {kind} vector"
        );
    }
}

#[test]
fn vectors_decode_as_documented() {
    let mut seen = HashSet::new();
    for v in vectors() {
        let result = Frame::decode(&v.frame);
        match v.expect.as_str() {
            "valid" | "duplicate" => {
                let frame = result.unwrap_or_else(|e| panic!("{}: {e}", v.name));
                let first_time = seen.insert(frame.msg_id);
                assert_eq!(
                    first_time,
                    v.expect == "valid",
                    "{}: de-dup outcome",
                    v.name
                );
                if let Some(json) = &v.json {
                    assert_eq!(&to_json(&frame), json, "{}: JSON form", v.name);
                    let again = from_json(json).unwrap().into_frame().unwrap();
                    assert_eq!(again.bytes, v.frame, "{}: JSON → frame", v.name);
                }
                if let Some(key) = &v.key {
                    let seed: [u8; 32] = hex::decode(key).unwrap().try_into().unwrap();
                    let id = Identity::from_seed(seed);
                    assert_eq!(id.device_id(), frame.envelope.device_id, "{}: key", v.name);
                    let resigned = Frame::sign(frame.envelope.clone(), id.signing_key()).unwrap();
                    assert_eq!(
                        resigned.bytes, v.frame,
                        "{}: signing is deterministic",
                        v.name
                    );
                }
            }
            outcome => {
                let err = result
                    .err()
                    .unwrap_or_else(|| panic!("{} was accepted", v.name));
                assert_eq!(err.outcome(), outcome, "{}: {err}", v.name);
            }
        }
    }
}
