//! `decode`, `encode` and `keygen`: the frame codec from the command line.

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use radio_bridge::frame::json::{from_json, to_json};
use radio_bridge::frame::Frame;
use radio_bridge::identity::Identity;

use super::fail;

fn read_stdin() -> Result<String, std::io::Error> {
    let mut text = String::new();
    std::io::stdin().read_to_string(&mut text)?;
    Ok(text)
}

pub fn decode(frame: Option<String>, base64: bool) -> ExitCode {
    let text = match frame.map(Ok).unwrap_or_else(read_stdin) {
        Ok(t) => t,
        Err(e) => return fail(format!("cannot read stdin: {e}")),
    };
    let text: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let bytes = if base64 {
        BASE64.decode(&text).map_err(|e| format!("not base64: {e}"))
    } else {
        hex::decode(&text).map_err(|e| format!("not hex: {e}"))
    };
    let bytes = match bytes {
        Ok(b) => b,
        Err(e) => return fail(e),
    };
    match Frame::decode(&bytes) {
        Ok(frame) => {
            let mut json = to_json(&frame);
            json["msg_id"] = hex::encode(frame.msg_id).into();
            json["verified"] = true.into();
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!("rejected ({}): {e}", e.outcome())),
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
    let json: serde_json::Value = match serde_json::from_str(&text) {
        Ok(j) => j,
        Err(e) => return fail(format!("stdin is not JSON: {e}")),
    };
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
