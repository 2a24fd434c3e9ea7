//! `decode`, `encode` and `keygen`: the frame codec from the command line.

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use radio_bridge::frame::json::{from_json, parse_text, to_json};
use radio_bridge::frame::Frame;
use radio_bridge::identity::Identity;
use radio_bridge::packets::decode_packets;

use super::fail;

fn read_stdin() -> Result<String, std::io::Error> {
    let mut text = String::new();
    std::io::stdin().read_to_string(&mut text)?;
    Ok(text)
}

/// Decodes one packet per argument, or one per line of stdin: whole frames
/// and fragments, reassembled. Prints one JSON line per frame and one error
/// line per rejection (and per fragment set left incomplete); succeeds only
/// if every packet ended up in a valid frame.
pub fn decode(packets: Vec<String>, base64: bool) -> ExitCode {
    let lines = if packets.is_empty() {
        match read_stdin() {
            Ok(text) => text.lines().map(str::to_string).collect(),
            Err(e) => return fail(format!("cannot read stdin: {e}")),
        }
    } else {
        packets
    };
    let mut bytes = Vec::new();
    for (number, line) in lines.iter().enumerate() {
        let text = line.trim();
        if text.is_empty() {
            continue;
        }
        let packet = if base64 {
            BASE64.decode(text).map_err(|e| format!("not base64: {e}"))
        } else {
            hex::decode(text).map_err(|e| format!("not hex: {e}"))
        };
        match packet {
            Ok(p) => bytes.push(p),
            Err(e) if lines.len() == 1 => return fail(e),
            Err(e) => return fail(format!("packet {}: {e}", number + 1)),
        }
    }
    if bytes.is_empty() {
        return fail("no packet to decode (give one as an argument, or one per line on stdin)");
    }
    let mut all_valid = true;
    for result in decode_packets(bytes.iter().map(Vec::as_slice)) {
        match result {
            Ok(frame) => {
                let mut json = to_json(&frame);
                json["msg_id"] = hex::encode(frame.msg_id).into();
                json["verified"] = true.into();
                println!("{json}");
            }
            Err(e) => {
                all_valid = false;
                fail(format!("rejected ({}): {e}", e.outcome()));
            }
        }
    }
    if all_valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

pub fn encode(key: &Path, base64: bool) -> ExitCode {
    let identity = match Identity::load(key) {
        Ok(i) => i,
        Err(e) => return fail(e),
    };
    let text = match read_stdin() {
        Ok(t) => t,
        Err(e) => return fail(format!("cannot read stdin: {e}")),
    };
    let mut json = match parse_text(&text) {
        Ok(j) => j,
        Err(e) => return fail(format!("stdin: {e}")),
    };
    if let Err(e) = fill_device_id(&mut json, &identity, key) {
        return fail(e);
    }
    let parsed = match from_json(&json) {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    match Frame::sign(parsed.envelope, identity.signing_key()) {
        Ok(frame) if base64 => println!("{}", BASE64.encode(&frame.bytes)),
        Ok(frame) => println!("{}", hex::encode(&frame.bytes)),
        Err(e) => return fail(e),
    }
    ExitCode::SUCCESS
}

/// The key decides the sender: a missing `device_id` is the key's own, a
/// different one is refused with the id the key does have (people write
/// names like the heartbeat spec's "NODE_A" there).
fn fill_device_id(
    json: &mut serde_json::Value,
    identity: &Identity,
    key: &Path,
) -> Result<(), String> {
    let own = identity.id_hex();
    let Some(obj) = json.as_object_mut() else {
        return Ok(()); // from_json explains what the JSON form is
    };
    match obj.get("device_id") {
        None => {
            obj.insert("device_id".into(), own.into());
            Ok(())
        }
        Some(given) if given.as_str() == Some(own.as_str()) => Ok(()),
        Some(given) => Err(format!(
            "device_id {given} is not the device id of key file {}: a device id is the sender's \
             ed25519 public key as 64 hex digits, for this key {own} (leave device_id out to use it)",
            key.display()
        )),
    }
}

pub fn keygen(out: &Path) -> ExitCode {
    let identity = Identity::generate();
    match identity.save_new(out) {
        Ok(()) => {
            println!("{}", identity.id_hex());
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}
