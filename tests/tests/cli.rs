//! The `seed-gateway` command line, black-box: the real binary, real files,
//! the test vectors of `docs/protocol.md` (the normative document, so the
//! CLI and the spec cannot drift apart).

use base64::Engine as _;
use seed_e2e::gateway::run_cli;
use serde_json::Value;

/// One ```vector block of docs/protocol.md.
struct Vector {
    name: String,
    expect: String,
    /// Hex seed of the signing key.
    key: Option<String>,
    /// Hex; `00*16385` repetitions expanded. Absent for fragment vectors
    /// whose packets make no frame.
    frame_hex: Option<String>,
    /// Hex radio packets (fragments), received in this order.
    packets: Vec<String>,
    /// The `json:` line exactly as written in the document.
    json_text: Option<String>,
    json: Option<Value>,
    reencodes: bool,
}

fn vectors() -> Vec<Vector> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/protocol.md"))
        .expect("docs/protocol.md is readable");
    let vectors: Vec<Vector> = doc
        .split("```vector\n")
        .skip(1)
        .map(|block| {
            let body = block.split("```").next().unwrap_or_default();
            let fields = |name: &str| -> Vec<String> {
                body.lines()
                    .filter_map(|l| l.strip_prefix(&format!("{name}: ")))
                    .map(str::to_string)
                    .collect()
            };
            let field = |name: &str| fields(name).into_iter().next();
            let frame_hex = field("frame").map(|frame| match frame.split_once('*') {
                Some((byte, count)) => byte.repeat(count.parse().expect("repeat count")),
                None => frame,
            });
            let json_text = field("json");
            Vector {
                name: field("name").expect("vector has a name"),
                expect: field("expect").expect("vector has an expect"),
                key: field("key"),
                frame_hex,
                packets: fields("packet"),
                json: json_text
                    .as_deref()
                    .map(|j| serde_json::from_str(j).expect("vector json")),
                json_text,
                reencodes: field("reencodes").as_deref() != Some("no"),
            }
        })
        .collect();
    assert!(vectors.len() >= 30, "docs/protocol.md has too few vectors");
    vectors
}

/// Vectors that are one whole frame (not fragments).
fn whole_frames() -> Vec<(Vector, String)> {
    vectors()
        .into_iter()
        .filter(|v| v.packets.is_empty())
        .map(|v| {
            let hex = v.frame_hex.clone().expect("a frame");
            (v, hex)
        })
        .collect()
}

fn is_hex_id(s: &str, len: usize) -> bool {
    s.len() == len
        && s.chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
}

/// Checks a successful `decode` output against a vector.
fn check_decoded(v: &Vector, stdout: &str) {
    let out: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("{}: decode output is not JSON ({e}): {stdout}", v.name));
    assert_eq!(out["verified"], true, "{}: {out}", v.name);
    let msg_id = out["msg_id"].as_str().unwrap_or_default();
    assert!(is_hex_id(msg_id, 32), "{}: msg_id {msg_id:?}", v.name);
    for key in ["message_type", "device_id", "protocol_version", "signature"] {
        assert!(out.get(key).is_some(), "{}: no `{key}` in {out}", v.name);
    }
    // The layout is normative (§5): compact, keys sorted at every level.
    assert_eq!(
        stdout.trim_end_matches('\n'),
        serde_json::to_string(&out).expect("serializes"),
        "{}: decode output layout",
        v.name
    );
    if let (Some(json), Some(text)) = (&v.json, &v.json_text) {
        assert_eq!(
            text,
            &serde_json::to_string(json).expect("serializes"),
            "{}: the document's json line is not in the normative layout",
            v.name
        );
        let fields = json.as_object().expect("vector json is an object");
        for (key, want) in fields {
            assert_eq!(&out[key], want, "{}: field `{key}`", v.name);
        }
        let extra: Vec<&String> = out
            .as_object()
            .expect("decode prints an object")
            .keys()
            .filter(|k| !fields.contains_key(*k) && *k != "msg_id" && *k != "verified")
            .collect();
        assert!(
            extra.is_empty(),
            "{}: fields not in the spec: {extra:?}",
            v.name
        );
    }
}

#[test]
fn decode_accepts_every_valid_vector() {
    let mut checked = 0;
    for (v, frame_hex) in whole_frames()
        .iter()
        .filter(|(v, _)| v.expect == "valid" || v.expect == "duplicate")
    {
        let (ok, stdout, stderr) = run_cli(&["decode", frame_hex], None);
        assert!(ok, "{}: decode failed: {stderr}", v.name);
        check_decoded(v, &stdout);
        // `--hex` is the default spelled out, and stdin works as well.
        let (ok, again, stderr) = run_cli(&["decode", "--hex"], Some(frame_hex.as_bytes()));
        assert!(ok, "{}: decode --hex from stdin failed: {stderr}", v.name);
        assert_eq!(again, stdout, "{}: stdin and argument disagree", v.name);
        checked += 1;
    }
    assert!(checked >= 14, "only {checked} valid vectors");
}

#[test]
fn decode_reads_base64() {
    let (v, frame_hex) = whole_frames()
        .into_iter()
        .find(|(v, _)| v.expect == "valid" && v.json.is_some())
        .expect("a valid vector with JSON");
    let bytes = hex::decode(&frame_hex).expect("vector hex");
    let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
    let (ok, stdout, stderr) = run_cli(&["decode", "--base64", &b64], None);
    assert!(ok, "decode --base64 failed: {stderr}");
    check_decoded(&v, &stdout);
    let (ok, _, stderr) = run_cli(&["decode", "--base64"], Some(b64.as_bytes()));
    assert!(ok, "decode --base64 from stdin failed: {stderr}");
    // Base64 that is not base64 is an input error, named as such.
    let (ok, _, stderr) = run_cli(&["decode", "--base64", "not*base64"], None);
    assert!(!ok);
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr:?}");
    assert!(stderr.contains("base64"), "{stderr}");
}

#[test]
fn decode_rejects_every_invalid_vector_with_one_line() {
    let mut outcomes = std::collections::BTreeSet::new();
    for (v, frame_hex) in whole_frames()
        .iter()
        .filter(|(v, _)| v.expect != "valid" && v.expect != "duplicate")
    {
        // The oversize frame (32 KiB of hex) goes through stdin, like a pipe.
        let (ok, stdout, stderr) = if v.expect == "oversize" {
            run_cli(&["decode"], Some(frame_hex.as_bytes()))
        } else {
            run_cli(&["decode", frame_hex], None)
        };
        assert!(
            !ok,
            "{}: decode accepted an invalid frame: {stdout}",
            v.name
        );
        assert!(stdout.is_empty(), "{}: stdout {stdout:?}", v.name);
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{}: one line on stderr: {stderr:?}", v.name);
        assert!(
            lines[0].contains(&format!("({})", v.expect)),
            "{}: stderr should name `{}`: {}",
            v.name,
            v.expect,
            lines[0]
        );
        outcomes.insert(v.expect.clone());
    }
    for outcome in [
        "bad_signature",
        "malformed",
        "unsupported_version",
        "oversize",
    ] {
        assert!(outcomes.contains(outcome), "no {outcome} vector checked");
    }
}

#[test]
fn decode_reassembles_the_fragment_vectors() {
    let fragmented: Vec<Vector> = vectors()
        .into_iter()
        .filter(|v| !v.packets.is_empty())
        .collect();
    assert!(fragmented.len() >= 4, "too few fragment vectors");
    for v in &fragmented {
        let lines = v.packets.join("\n") + "\n";
        let (ok, stdout, stderr) = run_cli(&["decode"], Some(lines.as_bytes()));
        let args: Vec<&str> = std::iter::once("decode")
            .chain(v.packets.iter().map(String::as_str))
            .collect();
        let from_args = run_cli(&args, None);
        assert_eq!(
            (ok, &stdout, &stderr),
            (from_args.0, &from_args.1, &from_args.2),
            "{}: arguments and stdin lines disagree",
            v.name
        );
        if v.expect == "valid" {
            assert!(ok, "{}: {stderr}", v.name);
            assert_eq!(stdout.lines().count(), 1, "{}: one frame: {stdout}", v.name);
            check_decoded(v, &stdout);
        } else {
            assert!(!ok, "{}: accepted: {stdout}", v.name);
            assert!(stdout.is_empty(), "{}: stdout {stdout:?}", v.name);
            assert_eq!(stderr.lines().count(), 1, "{}: {stderr:?}", v.name);
            assert!(
                stderr.contains(&format!("({})", v.expect)),
                "{}: stderr should name `{}`: {stderr}",
                v.name,
                v.expect
            );
        }
    }
}

#[test]
fn decode_prints_one_line_per_frame_of_many() {
    let frames: Vec<(Vector, String)> = whole_frames()
        .into_iter()
        .filter(|(v, _)| v.expect == "valid")
        .collect();
    let input: String = frames.iter().map(|(_, hex)| format!("{hex}\n\n")).collect();
    let (ok, stdout, stderr) = run_cli(&["decode"], Some(input.as_bytes()));
    assert!(ok, "decode of many frames failed: {stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), frames.len(), "one line per frame: {stdout}");
    for ((v, _), line) in frames.iter().zip(lines) {
        check_decoded(v, line);
    }
    // One bad packet among good ones: the good ones still print, the bad
    // one gets its line on stderr, and the exit status says so.
    let bad = whole_frames()
        .into_iter()
        .find(|(v, _)| v.expect == "bad_signature")
        .expect("a bad_signature vector");
    let input = format!("{}\n{}\n", frames[0].1, bad.1);
    let (ok, stdout, stderr) = run_cli(&["decode"], Some(input.as_bytes()));
    assert!(!ok);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(stderr.contains("(bad_signature)"), "{stderr}");
}

#[test]
fn encode_reproduces_every_valid_vector_from_its_json_and_key_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut checked = 0;
    for v in vectors()
        .iter()
        .filter(|v| v.expect == "valid" && v.reencodes)
    {
        let (Some(seed), Some(json), Some(frame_hex)) = (&v.key, &v.json, &v.frame_hex) else {
            continue;
        };
        // The key file format of §2: 64 hex digits and a newline.
        let key = dir.path().join(format!("{}.key", v.name));
        std::fs::write(&key, format!("{seed}\n")).expect("key file written");
        let key_arg = key.to_str().expect("utf-8 path");
        let (ok, stdout, stderr) = run_cli(
            &["encode", "--key", key_arg],
            Some(json.to_string().as_bytes()),
        );
        assert!(ok, "{}: encode failed: {stderr}", v.name);
        assert_eq!(stdout.trim(), frame_hex, "{}: encode", v.name);
        // device_id may be left out: the key supplies it.
        let mut without_id = json.clone();
        without_id
            .as_object_mut()
            .expect("object")
            .remove("device_id");
        let (ok, stdout, stderr) = run_cli(
            &["encode", "--key", key_arg],
            Some(without_id.to_string().as_bytes()),
        );
        assert!(ok, "{}: encode without device_id failed: {stderr}", v.name);
        assert_eq!(
            stdout.trim(),
            frame_hex,
            "{}: encode without device_id",
            v.name
        );
        checked += 1;
    }
    assert!(checked >= 14, "only {checked} vectors re-encoded");
}

#[test]
fn encode_explains_a_device_id_that_is_not_the_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let key = dir.path().join("device.key");
    let key_arg = key.to_str().expect("utf-8 path");
    let (ok, stdout, stderr) = run_cli(&["keygen", "--out", key_arg], None);
    assert!(ok, "keygen failed: {stderr}");
    let own = stdout.trim().to_string();
    // As in the heartbeat specification's example.
    let input = serde_json::json!({
        "message_type": "receipt",
        "device_id": "NODE_A",
        "receipt_for": "22222222222222222222222222222222",
        "status": "applied",
    })
    .to_string();
    let (ok, stdout, stderr) = run_cli(&["encode", "--key", key_arg], Some(input.as_bytes()));
    assert!(!ok, "encode signed for NODE_A: {stdout}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
    for want in ["NODE_A", "public key", "64 hex digits", own.as_str()] {
        assert!(
            stderr.contains(want),
            "the error should say {want:?}: {stderr}"
        );
    }
    // A field named twice: which value would be signed is not a guess.
    let twice = r#"{"message_type":"receipt","receipt_for":"22222222222222222222222222222222","status":"applied","status":"rejected"}"#;
    let (ok, stdout, stderr) = run_cli(&["encode", "--key", key_arg], Some(twice.as_bytes()));
    assert!(!ok, "encode took a field named twice: {stdout}");
    assert!(stderr.contains("\"status\" appears twice"), "{stderr}");
}

#[test]
fn keygen_prints_the_id_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().expect("temp dir");
    let key = dir.path().join("device.key");
    let key_arg = key.to_str().expect("utf-8 path");
    let (ok, stdout, stderr) = run_cli(&["keygen", "--out", key_arg], None);
    assert!(ok, "keygen failed: {stderr}");
    let id = stdout.trim();
    assert!(is_hex_id(id, 64), "keygen printed {stdout:?}");
    let written = std::fs::read(&key).expect("key file written");

    let (ok, stdout, stderr) = run_cli(&["keygen", "--out", key_arg], None);
    assert!(!ok, "keygen overwrote an existing key: {stdout}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
    assert!(
        stderr.contains(key_arg),
        "the error should name the file: {stderr}"
    );
    assert_eq!(
        std::fs::read(&key).expect("key file"),
        written,
        "the existing key must be left untouched"
    );
}

#[test]
fn encode_signs_a_heartbeat_that_decode_verifies() {
    let dir = tempfile::tempdir().expect("temp dir");
    let key = dir.path().join("device.key");
    let key_arg = key.to_str().expect("utf-8 path");
    let (ok, stdout, stderr) = run_cli(&["keygen", "--out", key_arg], None);
    assert!(ok, "keygen failed: {stderr}");
    let device_id = stdout.trim().to_string();

    let heartbeat = serde_json::json!({
        "message_type": "heartbeat",
        "protocol_version": "1.0",
        "device_id": device_id,
        "device_class": "seed_device",
        "timestamp_counter": 4242,
        "power_state": "charging",
        "ledger_height": 17,
        "sync_capable": true,
        "capabilities": {
            "supports_groups": true,
            "supports_trust_scores": false,
            "supports_ai_assistant": false
        }
    });
    let input = heartbeat.to_string();
    let (ok, frame_hex, stderr) = run_cli(&["encode", "--key", key_arg], Some(input.as_bytes()));
    assert!(ok, "encode failed: {stderr}");
    let frame_hex = frame_hex.trim();
    assert!(
        hex::decode(frame_hex).is_ok(),
        "encode printed {frame_hex:?}"
    );

    let (ok, decoded, stderr) = run_cli(&["decode", frame_hex], None);
    assert!(ok, "decode of an encoded frame failed: {stderr}");
    let decoded: Value = serde_json::from_str(decoded.trim()).expect("decode JSON");
    assert_eq!(decoded["verified"], true);
    for (key, want) in heartbeat.as_object().expect("object") {
        assert_eq!(&decoded[key], want, "field `{key}` after encode → decode");
    }

    // Base64 output decodes to the same frame (signing is deterministic).
    let (ok, b64, stderr) = run_cli(
        &["encode", "--key", key_arg, "--base64"],
        Some(input.as_bytes()),
    );
    assert!(ok, "encode --base64 failed: {stderr}");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .expect("encode --base64 prints base64");
    assert_eq!(hex::encode(bytes), frame_hex);

    // A key that is not the device's own cannot sign for it.
    let other = dir.path().join("other.key");
    let other_arg = other.to_str().expect("utf-8 path");
    assert!(run_cli(&["keygen", "--out", other_arg], None).0);
    let (ok, stdout, stderr) = run_cli(&["encode", "--key", other_arg], Some(input.as_bytes()));
    assert!(!ok, "encode signed for another device: {stdout}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
    assert!(stderr.contains("device_id"), "{stderr}");
}

/// Writes `text` as a config file and runs `check-config` on it.
fn check_config(dir: &std::path::Path, name: &str, text: &str) -> (bool, String, String) {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("config written");
    run_cli(&["check-config", path.to_str().expect("utf-8 path")], None)
}

#[test]
fn check_config_names_the_key_and_the_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let good = "[gateway]\ndata_dir = \"/tmp/seed\"\n\n[mqtt]\nurl = \"mqtt://127.0.0.1:1883\"\n\n\
                [[link]]\nname = \"rnode0\"\ntype = \"rnode\"\nport = \"/dev/ttyACM0\"\n\n\
                [storage]\nquota_mb = 64\n";
    let (ok, stdout, stderr) = check_config(dir.path(), "good.toml", good);
    assert!(ok, "a good config was rejected: {stderr}");
    assert!(stdout.contains("ok"), "{stdout}");

    let cases = [
        (
            "unknown key",
            "[gateway]\ndata_dir = \"/tmp/seed\"\n\n[mqtt]\nurl = \"mqtt://127.0.0.1:1883\"\npasword = \"x\"\n",
            "mqtt.pasword",
            ":6:",
        ),
        (
            "wrong type",
            "[gateway]\ndata_dir = \"/tmp/seed\"\n\n[storage]\nquota_mb = \"lots\"\n",
            "storage.quota_mb",
            ":5:",
        ),
        (
            "bad url",
            "[gateway]\ndata_dir = \"/tmp/seed\"\n[mqtt]\nurl = \"http://broker.example:1883\"\n",
            "mqtt.url",
            ":4:",
        ),
    ];
    for (what, text, key, line) in cases {
        let (ok, stdout, stderr) = check_config(dir.path(), "bad.toml", text);
        assert!(!ok, "{what}: accepted: {stdout}");
        assert!(
            stderr.contains(key),
            "{what}: the error should name `{key}`: {stderr}"
        );
        assert!(
            stderr.contains(&format!("bad.toml{line}")),
            "{what}: the error should name line {line}: {stderr}"
        );
    }

    let (ok, _, stderr) = run_cli(&["check-config", "/nonexistent/seed.toml"], None);
    assert!(!ok);
    assert!(stderr.contains("/nonexistent/seed.toml"), "{stderr}");
}

#[test]
fn every_subcommand_has_help() {
    let (ok, top, stderr) = run_cli(&["--help"], None);
    assert!(ok, "--help failed: {stderr}");
    for sub in [
        "run",
        "demo",
        "decode",
        "encode",
        "keygen",
        "check-config",
        "simulate",
    ] {
        assert!(top.contains(sub), "top-level help does not list {sub}");
        let (ok, stdout, stderr) = run_cli(&[sub, "--help"], None);
        assert!(ok, "{sub} --help failed: {stderr}");
        assert!(
            stdout.contains("Usage:") && stdout.contains(sub),
            "{sub} --help: {stdout}"
        );
    }
}
