//! Prints the test vectors of docs/protocol.md (`cargo run -p radio-bridge
//! --example make_vectors`). The keys are fixed, and ed25519 signatures are
//! deterministic, so the output only changes when the format does; the test
//! `tests/vectors.rs` checks the document against the codec.

use radio_bridge::frame::json::to_json;
use radio_bridge::frame::*;
use radio_bridge::identity::Identity;

fn seed(n: u8) -> [u8; 32] {
    std::array::from_fn(|i| n.wrapping_mul(32).wrapping_add(i as u8))
}

fn envelope(id: &Identity, message: Message) -> Envelope {
    Envelope {
        version: ProtocolVersion::CURRENT,
        device_id: id.device_id(),
        to: None,
        seq: None,
        message,
    }
}

fn spec_heartbeat() -> Message {
    Message::Heartbeat(Heartbeat {
        device_class: DeviceClass::SeedDevice,
        timestamp_counter: 1452,
        power_state: PowerState::Normal,
        ledger_height: 284,
        sync_capable: true,
        capabilities: Capabilities {
            supports_groups: true,
            supports_trust_scores: true,
            supports_ai_assistant: false,
            unknown_bits: 0,
        },
    })
}

fn print(name: &str, expect: &str, key: Option<[u8; 32]>, frame: &str, json: Option<String>) {
    println!("```vector");
    println!("name: {name}");
    println!("expect: {expect}");
    if let Some(key) = key {
        println!("key: {}", hex::encode(key));
    }
    println!("frame: {frame}");
    if let Some(json) = json {
        println!("json: {json}");
    }
    println!("```\n");
}

fn valid(name: &str, n: u8, env: impl FnOnce(&Identity) -> Envelope) -> Frame {
    let id = Identity::from_seed(seed(n));
    let frame = Frame::sign(env(&id), id.signing_key()).expect("sign");
    let json = serde_json::to_string(&to_json(&frame)).expect("json");
    print(
        name,
        "valid",
        Some(seed(n)),
        &hex::encode(&frame.bytes),
        Some(json),
    );
    frame
}

fn main() {
    let hb = valid("heartbeat-spec-example", 1, |id| {
        envelope(id, spec_heartbeat())
    });
    valid("transaction", 2, |id| {
        envelope(
            id,
            Message::Transaction(Transaction {
                payload: b"opaque signed ledger transaction".to_vec(),
                timestamp_counter: Some(77),
            }),
        )
    });
    valid("ledger-sync-offer", 3, |id| {
        envelope(
            id,
            Message::LedgerSync(LedgerSync::Offer {
                ledger_height: 300,
                head_hash: [0xab; 32],
            }),
        )
    });
    valid("ledger-sync-request", 3, |id| {
        envelope(
            id,
            Message::LedgerSync(LedgerSync::Request {
                from_height: 284,
                max_entries: 16,
            }),
        )
    });
    valid("ledger-sync-entries", 3, |id| {
        envelope(
            id,
            Message::LedgerSync(LedgerSync::Entries {
                from_height: 284,
                entries: vec![b"entry-284".to_vec(), b"entry-285".to_vec()],
            }),
        )
    });
    valid("gateway-ack", 4, |id| {
        envelope(
            id,
            Message::Ack(Ack {
                acked: vec![hb.msg_id, [0x11; 16]],
            }),
        )
    });
    valid("nack", 2, |id| {
        envelope(
            id,
            Message::Nack(Nack {
                missing_ids: vec![],
                missing_ranges: vec![(3, 5), (9, 9)],
            }),
        )
    });
    valid("receipt", 2, |id| {
        envelope(
            id,
            Message::Receipt(Receipt {
                receipt_for: [0x22; 16],
                status: ReceiptStatus::Delivered,
            }),
        )
    });
    let to = Identity::from_seed(seed(2)).device_id();
    valid("downlink-to-device", 4, |id| Envelope {
        to: Some(to),
        seq: Some(7),
        ..envelope(
            id,
            Message::Transaction(Transaction {
                payload: b"backend answer".to_vec(),
                timestamp_counter: None,
            }),
        )
    });

    print(
        "duplicate-of-heartbeat",
        "duplicate",
        None,
        &hex::encode(&hb.bytes),
        None,
    );

    let mut bad_sig = hb.bytes.clone();
    let last = bad_sig.len() - 1;
    bad_sig[last] ^= 0x01;
    print(
        "bad-signature",
        "bad_signature",
        None,
        &hex::encode(&bad_sig),
        None,
    );

    // ledger_height 284 is encoded as 0x19 0x01 0x1c; change it to 285
    // without re-signing.
    let mut tampered = hb.bytes.clone();
    let pos = tampered
        .windows(4)
        .position(|w| w == [0x04, 0x19, 0x01, 0x1c])
        .expect("ledger_height item");
    tampered[pos + 3] = 0x1d;
    print(
        "tampered-ledger-height",
        "bad_signature",
        None,
        &hex::encode(&tampered),
        None,
    );

    print(
        "truncated",
        "malformed",
        None,
        &hex::encode(&hb.bytes[..hb.bytes.len() - 10]),
        None,
    );
    print("not-cbor", "malformed", None, "deadbeef00112233", None);

    let id = Identity::from_seed(seed(5));
    let v2 = Frame::sign(
        Envelope {
            version: ProtocolVersion { major: 2, minor: 0 },
            ..envelope(&id, spec_heartbeat())
        },
        id.signing_key(),
    )
    .expect("sign");
    print(
        "wrong-version",
        "unsupported_version",
        Some(seed(5)),
        &hex::encode(&v2.bytes),
        None,
    );
    print("oversize", "oversize", None, "00*16385", None);
}
