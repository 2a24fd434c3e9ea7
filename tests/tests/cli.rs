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
    /// Hex; `00*16385` repetitions expanded.
    frame_hex: String,
    json: Option<Value>,
}

fn vectors() -> Vec<Vector> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/protocol.md"))
        .expect("docs/protocol.md is readable");
    let vectors: Vec<Vector> = doc
        .split("```vector\n")
        .skip(1)
        .filter(|block| !block.contains("\npacket: "))
        .map(|block| {
            let body = block.split("```").next().unwrap_or_default();
            let field = |name: &str| {
                body.lines()
                    .find_map(|l| l.strip_prefix(&format!("{name}: ")))
                    .map(str::to_string)
            };
            let name = field("name").expect("vector has a name");
            let frame = field("frame").expect("vector has a frame");
            let frame_hex = match frame.split_once('*') {
                Some((byte, count)) => byte.repeat(count.parse().expect("repeat count")),
                None => frame,
            };
            Vector {
                expect: field("expect").expect("vector has an expect"),
                json: field("json").map(|j| serde_json::from_str(&j).expect("vector json")),
                frame_hex,
                name,
            }
        })
        .collect();
    assert!(vectors.len() >= 10, "docs/protocol.md has too few vectors");
    vectors
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
    if let Some(json) = &v.json {
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
    for v in vectors()
        .iter()
        .filter(|v| v.expect == "valid" || v.expect == "duplicate")
    {
        let (ok, stdout, stderr) = run_cli(&["decode", &v.frame_hex], None);
        assert!(ok, "{}: decode failed: {stderr}", v.name);
        check_decoded(v, &stdout);
        // `--hex` is the default spelled out, and stdin works as well.
        let (ok, again, stderr) = run_cli(&["decode", "--hex"], Some(v.frame_hex.as_bytes()));
        assert!(ok, "{}: decode --hex from stdin failed: {stderr}", v.name);
        assert_eq!(again, stdout, "{}: stdin and argument disagree", v.name);
        checked += 1;
    }
    assert!(checked >= 8, "only {checked} valid vectors");
}

#[test]
fn decode_reads_base64() {
    let v = vectors()
        .into_iter()
        .find(|v| v.expect == "valid" && v.json.is_some())
        .expect("a valid vector with JSON");
    let bytes = hex::decode(&v.frame_hex).expect("vector hex");
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
    for v in vectors()
        .iter()
        .filter(|v| v.expect != "valid" && v.expect != "duplicate")
    {
        // The oversize frame (32 KiB of hex) goes through stdin, like a pipe.
        let (ok, stdout, stderr) = if v.expect == "oversize" {
            run_cli(&["decode"], Some(v.frame_hex.as_bytes()))
        } else {
            run_cli(&["decode", &v.frame_hex], None)
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
            lines[0].contains(&v.expect),
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
