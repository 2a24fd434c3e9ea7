//! Prints the test vectors of docs/protocol.md (`cargo run -p radio-bridge
//! --example make_vectors`). The keys are fixed, and ed25519 signatures are
//! deterministic, so the output only changes when the format does; the test
//! `tests/vectors.rs` checks the document against the codec.
//!
//! Frames that break a rule are made by editing a valid frame's bytes and
//! signing the result again, so each one is rejected for the rule it names
//! and not for its signature (unless the vector says so).

use ed25519_dalek::Signer;
use radio_bridge::fragment::{fragment, sender_tag};
use radio_bridge::frame::json::to_json;
use radio_bridge::frame::*;
use radio_bridge::identity::Identity;

fn seed(n: u8) -> [u8; 32] {
    std::array::from_fn(|i| n.wrapping_mul(32).wrapping_add(i as u8))
}

fn identity(n: u8) -> Identity {
    Identity::from_seed(seed(n))
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

/// One ```vector block.
#[derive(Default)]
struct Vector<'a> {
    name: &'a str,
    expect: &'a str,
    key: Option<u8>,
    frame: Option<String>,
    packets: Vec<Vec<u8>>,
    json: Option<String>,
    reencodes: bool,
}

fn print(v: Vector<'_>) {
    println!("```vector");
    println!("name: {}", v.name);
    println!("expect: {}", v.expect);
    if let Some(n) = v.key {
        println!("key: {}", hex::encode(seed(n)));
    }
    if let Some(frame) = v.frame {
        println!("frame: {frame}");
    }
    for packet in v.packets {
        println!("packet: {}", hex::encode(packet));
    }
    if let Some(json) = v.json {
        println!("json: {json}");
        if !v.reencodes {
            println!("reencodes: no");
        }
    }
    println!("```\n");
}

fn json_of(frame: &Frame) -> String {
    serde_json::to_string(&to_json(frame)).expect("json")
}

fn sign(n: u8, env: impl FnOnce(&Identity) -> Envelope) -> Frame {
    let id = identity(n);
    Frame::sign(env(&id), id.signing_key()).expect("sign")
}

fn valid(name: &str, n: u8, env: impl FnOnce(&Identity) -> Envelope) -> Frame {
    let frame = sign(n, env);
    print(Vector {
        name,
        expect: "valid",
        key: Some(n),
        frame: Some(hex::encode(&frame.bytes)),
        json: Some(json_of(&frame)),
        reencodes: true,
        ..Vector::default()
    });
    frame
}

/// A frame's bytes without the trailing 66-byte signature item.
fn unsigned_of(frame: &Frame) -> Vec<u8> {
    frame.bytes[..frame.bytes.len() - 66].to_vec()
}

/// Signs hand-edited unsigned bytes; `corrupt` flips a bit of the signature.
fn resign(n: u8, unsigned: Vec<u8>, corrupt: bool) -> Vec<u8> {
    let mut message = SIGNING_DOMAIN.to_vec();
    message.extend_from_slice(&unsigned);
    let mut signature = identity(n).signing_key().sign(&message).to_bytes();
    signature[0] ^= u8::from(corrupt);
    let mut bytes = unsigned;
    bytes.extend_from_slice(&[0x58, 0x40]);
    bytes.extend_from_slice(&signature);
    bytes
}

/// Position of the body map's header: array, version, type, device id.
const BODY: usize = 1 + 1 + 1 + 34;

/// `frame`'s unsigned bytes with `entry` (key and value, CBOR) appended to
/// the body map, which has fewer than 23 entries.
fn with_entry(frame: &Frame, entry: &[u8]) -> Vec<u8> {
    let mut unsigned = unsigned_of(frame);
    unsigned[BODY] += 1;
    unsigned.extend_from_slice(entry);
    unsigned
}

fn rejected(name: &str, expect: &str, frame: &[u8]) {
    print(Vector {
        name,
        expect,
        frame: Some(hex::encode(frame)),
        ..Vector::default()
    });
}

fn main() {
    let hb = valid("heartbeat-spec-example", 1, |id| {
        envelope(id, spec_heartbeat())
    });
    let tx = valid("transaction", 2, |id| {
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
                timestamp_counter: None,
            }),
        )
    });
    valid("ledger-sync-request", 3, |id| {
        envelope(
            id,
            Message::LedgerSync(LedgerSync::Request {
                from_height: 284,
                max_entries: 16,
                timestamp_counter: None,
            }),
        )
    });
    let entries = valid("ledger-sync-entries", 3, |id| {
        envelope(
            id,
            Message::LedgerSync(LedgerSync::Entries {
                from_height: 284,
                entries: vec![b"entry-284".to_vec(), b"entry-285".to_vec()],
                timestamp_counter: None,
            }),
        )
    });
    // The gateway acks what it acks on air: a transaction and a
    // ledger_sync, never a heartbeat.
    valid("gateway-ack", 4, |id| {
        envelope(
            id,
            Message::Ack(Ack {
                acked: vec![tx.msg_id, entries.msg_id],
                timestamp_counter: None,
            }),
        )
    });
    valid("nack", 2, |id| {
        envelope(
            id,
            Message::Nack(Nack {
                missing_ids: vec![],
                missing_ranges: vec![(3, 5), (9, 9)],
                timestamp_counter: None,
            }),
        )
    });
    valid("receipt", 2, |id| {
        envelope(
            id,
            Message::Receipt(Receipt {
                receipt_for: [0x22; 16],
                status: ReceiptStatus::Delivered,
                timestamp_counter: None,
            }),
        )
    });
    let to = identity(2).device_id();
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

    // Shared key 2 in every type that does not require it.
    valid("ledger-sync-request-with-counter", 3, |id| {
        envelope(
            id,
            Message::LedgerSync(LedgerSync::Request {
                from_height: 284,
                max_entries: 16,
                timestamp_counter: Some(90),
            }),
        )
    });
    valid("device-ack-with-counter", 2, |id| {
        envelope(
            id,
            Message::Ack(Ack {
                acked: vec![[0x33; 16]],
                timestamp_counter: Some(91),
            }),
        )
    });
    let nack_ids = valid("nack-ids-with-counter", 2, |id| {
        envelope(
            id,
            Message::Nack(Nack {
                missing_ids: vec![[0x44; 16]],
                missing_ranges: vec![],
                timestamp_counter: Some(92),
            }),
        )
    });
    valid("receipt-with-counter", 2, |id| {
        envelope(
            id,
            Message::Receipt(Receipt {
                receipt_for: [0x22; 16],
                status: ReceiptStatus::Rejected,
                timestamp_counter: Some(4_294_967_295),
            }),
        )
    });
    valid("heartbeat-other-class-and-bits", 1, |id| {
        envelope(
            id,
            Message::Heartbeat(Heartbeat {
                device_class: DeviceClass::Other(23),
                timestamp_counter: 1453,
                power_state: PowerState::LowPower,
                ledger_height: 0,
                sync_capable: false,
                capabilities: Capabilities::from_bits(0b1010_0101),
            }),
        )
    });

    // An unknown key (40) holding a nested, canonical value: skipped.
    let unknown = resign(
        1,
        with_entry(
            &hb,
            &[
                0x18, 40, 0xa1, 0x61, b'k', 0x82, 0x01, 0x43, 0x00, 0x01, 0x02,
            ],
        ),
        false,
    );
    print(Vector {
        name: "heartbeat-unknown-key",
        expect: "valid",
        key: Some(1),
        frame: Some(hex::encode(&unknown)),
        json: Some(json_of(&Frame::decode(&unknown).expect("valid"))),
        reencodes: false,
        ..Vector::default()
    });

    rejected("duplicate-of-heartbeat", "duplicate", &hb.bytes);

    let mut bad_sig = hb.bytes.clone();
    let last = bad_sig.len() - 1;
    bad_sig[last] ^= 0x01;
    rejected("bad-signature", "bad_signature", &bad_sig);

    // ledger_height 284 is encoded as 0x19 0x01 0x1c; change it to 285
    // without re-signing.
    let mut tampered = hb.bytes.clone();
    let pos = tampered
        .windows(4)
        .position(|w| w == [0x04, 0x19, 0x01, 0x1c])
        .expect("ledger_height item");
    tampered[pos + 3] = 0x1d;
    rejected("tampered-ledger-height", "bad_signature", &tampered);

    rejected("truncated", "malformed", &hb.bytes[..hb.bytes.len() - 10]);
    print(Vector {
        name: "not-cbor",
        expect: "malformed",
        frame: Some("deadbeef00112233".into()),
        ..Vector::default()
    });

    // Encoding rules (§2), each under a valid signature.
    let mut long_header = vec![0x98, 0x05];
    long_header.extend_from_slice(&unsigned_of(&hb)[1..]);
    rejected(
        "non-shortest-array-header",
        "malformed",
        &resign(1, long_header, false),
    );
    let counter_at = hb
        .bytes
        .windows(4)
        .position(|w| w == [0x02, 0x19, 0x05, 0xac])
        .expect("timestamp_counter item");
    let mut long_int = unsigned_of(&hb);
    long_int.splice(
        counter_at + 1..counter_at + 4,
        [0x1a, 0x00, 0x00, 0x05, 0xac],
    );
    rejected(
        "non-shortest-integer",
        "malformed",
        &resign(1, long_int, false),
    );
    rejected(
        "indefinite-array-in-unknown-key",
        "malformed",
        &resign(1, with_entry(&hb, &[0x18, 40, 0x9f, 0x01, 0xff]), false),
    );
    rejected(
        "indefinite-bytes-in-unknown-key",
        "malformed",
        &resign(
            1,
            with_entry(&hb, &[0x18, 40, 0x5f, 0x41, 0x00, 0xff]),
            false,
        ),
    );
    rejected(
        "invalid-utf8-in-unknown-key",
        "malformed",
        &resign(1, with_entry(&hb, &[0x18, 40, 0x62, 0xc3, 0x28]), false),
    );
    // Key 1 after key 6.
    rejected(
        "keys-out-of-order",
        "malformed",
        &resign(1, with_entry(&hb, &[0x01, 0x00]), false),
    );

    // Malformed and badly signed: malformed, the cheaper check (§7).
    rejected(
        "duplicate-key-and-bad-signature",
        "malformed",
        &resign(1, with_entry(&hb, &[0x06, 0x00]), true),
    );
    let mut unknown_type = unsigned_of(&hb);
    unknown_type[2] = 0x09;
    rejected(
        "unknown-type-and-bad-signature",
        "malformed",
        &resign(1, unknown_type, true),
    );

    // Body rules (§4), each under a valid signature. The receipt body is
    // {1: id, 3: status}; key 2 goes between them.
    let receipt = sign(2, |id| {
        envelope(
            id,
            Message::Receipt(Receipt {
                receipt_for: [0x22; 16],
                status: ReceiptStatus::Delivered,
                timestamp_counter: None,
            }),
        )
    });
    let with_key_2 = |value: &[u8]| {
        let mut unsigned = unsigned_of(&receipt);
        unsigned[BODY] += 1;
        let status_at = unsigned.len() - 2;
        let mut item = vec![0x02];
        item.extend_from_slice(value);
        unsigned.splice(status_at..status_at, item);
        resign(2, unsigned, false)
    };
    rejected(
        "counter-over-32-bits",
        "malformed",
        &with_key_2(&[0x1b, 0, 0, 0, 0x02, 0, 0, 0, 0]),
    );
    rejected(
        "counter-as-text",
        "malformed",
        &with_key_2(&[0x62, b'4', b'2']),
    );
    // nack {1: [], 2: 92}: an empty array is written by leaving the key out.
    let mut empty_ids = unsigned_of(&nack_ids);
    let ids_at = BODY + 2;
    empty_ids.splice(ids_at..ids_at + 18, [0x80]);
    rejected(
        "nack-empty-missing-ids",
        "malformed",
        &resign(2, empty_ids, false),
    );
    let offer = sign(3, |id| {
        envelope(
            id,
            Message::LedgerSync(LedgerSync::Offer {
                ledger_height: 300,
                head_hash: [0xab; 32],
                timestamp_counter: None,
            }),
        )
    });
    rejected(
        "offer-with-max-entries",
        "malformed",
        &resign(3, with_entry(&offer, &[0x06, 0x10]), false),
    );
    let mut class_24 = unsigned_of(&hb);
    assert_eq!(class_24[BODY + 1..BODY + 3], [0x01, 0x00]);
    class_24.splice(BODY + 2..BODY + 3, [0x18, 24]);
    rejected("device-class-24", "malformed", &resign(1, class_24, false));

    let v2 = sign(5, |id| Envelope {
        version: ProtocolVersion { major: 2, minor: 0 },
        ..envelope(id, spec_heartbeat())
    });
    print(Vector {
        name: "wrong-version",
        expect: "unsupported_version",
        key: Some(5),
        frame: Some(hex::encode(&v2.bytes)),
        ..Vector::default()
    });
    // Another major version's body is not interpreted, but the encoding
    // rules still apply to it.
    let mut v2_indefinite = unsigned_of(&v2)[..BODY].to_vec();
    v2_indefinite.extend_from_slice(&[0xbf, 0x01, 0x02, 0xff]);
    rejected(
        "wrong-version-indefinite-body",
        "malformed",
        &resign(5, v2_indefinite, false),
    );
    print(Vector {
        name: "oversize",
        expect: "oversize",
        frame: Some("00*16385".into()),
        ..Vector::default()
    });

    fragment_vectors();
}

/// §6: one frame of 300-odd bytes in fragments of a 255-byte MTU.
fn fragment_vectors() {
    let entries = |fill: u8| {
        sign(6, |id| {
            envelope(
                id,
                Message::LedgerSync(LedgerSync::Entries {
                    from_height: 1000,
                    entries: vec![vec![fill; 150], vec![fill + 1; 150]],
                    timestamp_counter: Some(7),
                }),
            )
        })
    };
    let frame = entries(0x61);
    let tag = sender_tag(&frame.envelope.device_id);
    let pieces = fragment(&frame.bytes, tag, 0x0102, 255).expect("fragments");
    assert_eq!(pieces.len(), 2);
    let whole = |name, packets| {
        print(Vector {
            name,
            expect: "valid",
            key: Some(6),
            frame: Some(hex::encode(&frame.bytes)),
            packets,
            json: Some(json_of(&frame)),
            reencodes: true,
        })
    };
    whole("fragments-in-order", pieces.clone());
    whole(
        "fragments-out-of-order",
        pieces.iter().rev().cloned().collect(),
    );
    print(Vector {
        name: "fragments-missing-piece",
        expect: "incomplete",
        packets: vec![pieces[1].clone()],
        ..Vector::default()
    });
    // The same sender's other frame, fragmented under the same set id: its
    // second piece completes the set into a frame that does not verify.
    let other = entries(0x71);
    let foreign = fragment(&other.bytes, tag, 0x0102, 255).expect("fragments");
    print(Vector {
        name: "fragments-foreign-piece",
        expect: "bad_signature",
        packets: vec![pieces[0].clone(), foreign[1].clone()],
        ..Vector::default()
    });
    // The same index twice with different bytes: the set is dropped.
    print(Vector {
        name: "fragments-conflicting-piece",
        expect: "malformed",
        packets: vec![pieces[0].clone(), foreign[0].clone()],
        ..Vector::default()
    });
}
