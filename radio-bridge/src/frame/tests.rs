use super::json::{from_json, to_json};
use super::*;
use crate::identity::Identity;
use proptest::prelude::*;

fn device(n: u8) -> Identity {
    Identity::from_seed([n; 32])
}

fn heartbeat_envelope(id: &Identity) -> Envelope {
    Envelope {
        version: ProtocolVersion::CURRENT,
        device_id: id.device_id(),
        to: None,
        seq: None,
        message: Message::Heartbeat(Heartbeat {
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
        }),
    }
}

#[test]
fn heartbeat_round_trips_and_verifies() {
    let id = device(1);
    let frame = Frame::sign(heartbeat_envelope(&id), id.signing_key()).unwrap();
    let decoded = Frame::decode(&frame.bytes).unwrap();
    assert_eq!(decoded, frame);
    assert_eq!(decoded.message_type(), MessageType::Heartbeat);
}

#[test]
fn worst_case_heartbeat_fits_128_bytes() {
    let id = device(2);
    let mut env = heartbeat_envelope(&id);
    if let Message::Heartbeat(hb) = &mut env.message {
        hb.timestamp_counter = u32::MAX;
        hb.ledger_height = u64::MAX;
        hb.device_class = DeviceClass::Other(23);
        hb.capabilities.unknown_bits = 0x10;
    }
    let frame = Frame::sign(env, id.signing_key()).unwrap();
    assert!(frame.bytes.len() <= 128, "{} bytes", frame.bytes.len());
}

#[test]
fn any_flipped_bit_is_rejected() {
    let id = device(3);
    let frame = Frame::sign(heartbeat_envelope(&id), id.signing_key()).unwrap();
    for byte in 0..frame.bytes.len() {
        for bit in 0..8 {
            let mut bytes = frame.bytes.clone();
            bytes[byte] ^= 1 << bit;
            assert!(
                Frame::decode(&bytes).is_err(),
                "flip of bit {bit} in byte {byte} was accepted"
            );
        }
    }
}

#[test]
fn every_truncation_is_rejected() {
    let id = device(4);
    let frame = Frame::sign(heartbeat_envelope(&id), id.signing_key()).unwrap();
    for len in 0..frame.bytes.len() {
        assert!(Frame::decode(&frame.bytes[..len]).is_err(), "len {len}");
    }
}

#[test]
fn unsupported_version_reports_device_and_signature() {
    let id = device(5);
    let mut env = heartbeat_envelope(&id);
    env.version = ProtocolVersion { major: 2, minor: 0 };
    let frame = Frame::sign(env, id.signing_key()).unwrap();
    match Frame::decode(&frame.bytes) {
        Err(FrameError::UnsupportedVersion {
            version,
            device,
            signature_ok,
        }) => {
            assert_eq!(version.to_string(), "2.0");
            assert_eq!(device, id.id_hex());
            assert!(signature_ok);
        }
        other => panic!("expected unsupported version, got {other:?}"),
    }
}

#[test]
fn signature_from_another_key_is_rejected() {
    let a = device(6);
    let b = device(7);
    let frame = Frame::sign(heartbeat_envelope(&a), a.signing_key()).unwrap();
    let mut forged_env = frame.envelope.clone();
    forged_env.device_id = b.device_id();
    let err = Frame::with_signature(forged_env, frame.signature).unwrap_err();
    assert_eq!(err.outcome(), "bad_signature");
}

#[test]
fn signing_with_the_wrong_key_is_refused() {
    let err = Frame::sign(heartbeat_envelope(&device(8)), device(9).signing_key()).unwrap_err();
    assert_eq!(err.outcome(), "malformed");
}

#[test]
fn oversize_is_its_own_outcome() {
    let err = Frame::decode(&vec![0u8; MAX_FRAME_LEN + 1]).unwrap_err();
    assert_eq!(err.outcome(), "oversize");
}

#[test]
fn unknown_body_keys_are_skipped() {
    // A newer minor version adds body key 40 (a nested map); this decoder
    // must still accept the frame and keep the original bytes.
    let id = device(10);
    let env = heartbeat_envelope(&id);
    let mut unsigned = cbor::encode_unsigned(&env);
    // Body map header is the byte after the 34-byte device id item.
    let map_pos = 1 + 1 + 1 + 34;
    assert_eq!(unsigned[map_pos], 0xa6, "heartbeat body is a 6-entry map");
    unsigned[map_pos] = 0xa7;
    unsigned.extend_from_slice(&[0x18, 40, 0xa1, 0x01, 0x02]);
    let signature = id.signing_key().sign(&signed_bytes(&unsigned)).to_bytes();
    let mut bytes = unsigned;
    bytes.extend_from_slice(&[0x58, 0x40]);
    bytes.extend_from_slice(&signature);
    let decoded = Frame::decode(&bytes).unwrap();
    assert_eq!(decoded.envelope, env);
    assert_eq!(decoded.bytes, bytes);
}

#[test]
fn duplicate_body_keys_are_malformed() {
    let id = device(11);
    let env = heartbeat_envelope(&id);
    let mut unsigned = cbor::encode_unsigned(&env);
    let map_pos = 1 + 1 + 1 + 34;
    unsigned[map_pos] = 0xa7;
    unsigned.extend_from_slice(&[0x06, 0x00]); // capabilities again
    let signature = id.signing_key().sign(&signed_bytes(&unsigned)).to_bytes();
    let mut bytes = unsigned;
    bytes.extend_from_slice(&[0x58, 0x40]);
    bytes.extend_from_slice(&signature);
    let err = Frame::decode(&bytes).unwrap_err();
    assert!(err.to_string().contains("appears twice"), "{err}");
}

/// Re-signs a hand-made unsigned frame, so a test can put a rule violation
/// under a valid signature (or, with `corrupt`, under a bad one).
fn signed(id: &Identity, unsigned: Vec<u8>, corrupt: bool) -> Vec<u8> {
    let mut signature = id.signing_key().sign(&signed_bytes(&unsigned)).to_bytes();
    signature[0] ^= u8::from(corrupt);
    let mut bytes = unsigned;
    bytes.extend_from_slice(&[0x58, 0x40]);
    bytes.extend_from_slice(&signature);
    bytes
}

#[test]
fn malformed_is_found_before_the_signature_single_and_batched() {
    // Keys out of order (6 then 4 again) under a bad signature: the cheap
    // check decides, in both decoders, and a valid frame in the same batch
    // is unaffected.
    let id = device(14);
    let env = heartbeat_envelope(&id);
    let mut unsigned = cbor::encode_unsigned(&env);
    unsigned[1 + 1 + 1 + 34] = 0xa7;
    unsigned.extend_from_slice(&[0x04, 0x00]);
    let junk = signed(&id, unsigned, true);
    assert_eq!(Frame::decode(&junk).unwrap_err().outcome(), "malformed");
    let good = Frame::sign(env, id.signing_key()).unwrap().bytes;
    let batch = Frame::decode_batch(&[&junk, &good]);
    assert_eq!(batch[0].as_ref().unwrap_err().outcome(), "malformed");
    assert!(batch[1].is_ok());
}

#[test]
fn keys_kept_between_batches_change_no_verdict() {
    // The second batch reuses the first one's keys: a forged frame from a
    // known device is still caught, and alone (the others stay valid).
    let mut keys = KeyCache::default();
    let frames: Vec<Vec<u8>> = (20..24)
        .map(|n| {
            let id = device(n);
            Frame::sign(heartbeat_envelope(&id), id.signing_key())
                .unwrap()
                .bytes
        })
        .collect();
    let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
    assert!(Frame::decode_batch_with(&refs, &mut keys)
        .iter()
        .all(Result::is_ok));
    let id = device(21);
    let forged = signed(&id, cbor::encode_unsigned(&heartbeat_envelope(&id)), true);
    let again = [refs[0], forged.as_slice(), refs[2]];
    let verdicts: Vec<&str> = Frame::decode_batch_with(&again, &mut keys)
        .iter()
        .map(|r| r.as_ref().map_or_else(|e| e.outcome(), |_| "ok"))
        .collect();
    assert_eq!(verdicts, ["ok", "bad_signature", "ok"]);
}

#[test]
fn only_the_canonical_encoding_is_accepted() {
    let id = device(15);
    let env = heartbeat_envelope(&id);
    let unsigned = cbor::encode_unsigned(&env);
    let with_unknown = |value: &[u8]| {
        let mut u = unsigned.clone();
        u[1 + 1 + 1 + 34] = 0xa7;
        u.extend_from_slice(&[0x18, 40]);
        u.extend_from_slice(value);
        signed(&id, u, false)
    };
    assert!(Frame::decode(&with_unknown(&[0x82, 0x01, 0x62, b'h', b'i'])).is_ok());
    let cases: [(&str, Vec<u8>); 6] = [
        ("non-shortest array header", {
            let mut u = vec![0x98, 0x05];
            u.extend_from_slice(&unsigned[1..]);
            signed(&id, u, false)
        }),
        (
            "indefinite array in an unknown key",
            with_unknown(&[0x9f, 0x01, 0xff]),
        ),
        (
            "indefinite byte string in an unknown key",
            with_unknown(&[0x5f, 0x41, 0x00, 0xff]),
        ),
        (
            "invalid UTF-8 in an unknown key",
            with_unknown(&[0x62, 0xc3, 0x28]),
        ),
        (
            "non-shortest integer in an unknown key",
            with_unknown(&[0x18, 0x05]),
        ),
        ("reserved additional information", with_unknown(&[0x1c])),
    ];
    for (what, bytes) in cases {
        let err = Frame::decode(&bytes).unwrap_err();
        assert_eq!(err.outcome(), "malformed", "{what}: {err}");
    }
}

#[test]
fn json_round_trip_with_signature_reproduces_bytes() {
    let id = device(12);
    let frame = Frame::sign(heartbeat_envelope(&id), id.signing_key()).unwrap();
    let json = to_json(&frame);
    assert_eq!(json["message_type"], "heartbeat");
    assert_eq!(json["power_state"], "normal");
    assert_eq!(json["capabilities"]["supports_groups"], true);
    let again = from_json(&json).unwrap().into_frame().unwrap();
    assert_eq!(again.bytes, frame.bytes);
    assert_eq!(to_json(&again), json);
}

#[test]
fn json_rejects_unknown_fields_and_bad_values() {
    let id = device(13);
    let frame = Frame::sign(heartbeat_envelope(&id), id.signing_key()).unwrap();
    let mut json = to_json(&frame);
    json["colour"] = "red".into();
    let err = from_json(&json).unwrap_err();
    assert!(err.to_string().contains("colour"), "{err}");

    let mut json = to_json(&frame);
    json["power_state"] = "sleepy".into();
    let err = from_json(&json).unwrap_err();
    assert!(err.to_string().contains("power_state"), "{err}");
}

#[test]
fn json_text_naming_a_field_twice_is_refused() {
    let once = r#"{"a":{"b":1,"c":[true,null,"x",-1,1.5]}}"#;
    assert_eq!(
        super::json::parse_text(once).unwrap(),
        serde_json::from_str::<serde_json::Value>(once).unwrap()
    );
    let err = super::json::parse_text(r#"{"a":{"b":1,"b":2}}"#).unwrap_err();
    assert!(err.to_string().contains("\"b\" appears twice"), "{err}");
}

fn arb_id() -> impl Strategy<Value = [u8; 16]> {
    any::<[u8; 16]>()
}

fn arb_message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (
            0u8..24,
            any::<u32>(),
            0u64..3,
            any::<u64>(),
            any::<bool>(),
            0u64..64
        )
            .prop_map(|(class, counter, power, height, sync, caps)| {
                Message::Heartbeat(Heartbeat {
                    device_class: DeviceClass::from_code(class),
                    timestamp_counter: counter,
                    power_state: PowerState::from_code(power).unwrap(),
                    ledger_height: height,
                    sync_capable: sync,
                    capabilities: Capabilities::from_bits(caps),
                })
            }),
        (
            proptest::collection::vec(any::<u8>(), 0..300),
            arb_counter()
        )
            .prop_map(
                |(payload, timestamp_counter)| Message::Transaction(Transaction {
                    payload,
                    timestamp_counter
                })
            ),
        (any::<u64>(), any::<[u8; 32]>(), arb_counter()).prop_map(|(h, hash, c)| {
            Message::LedgerSync(LedgerSync::Offer {
                ledger_height: h,
                head_hash: hash,
                timestamp_counter: c,
            })
        }),
        (any::<u64>(), any::<u64>(), arb_counter()).prop_map(|(f, m, c)| {
            Message::LedgerSync(LedgerSync::Request {
                from_height: f,
                max_entries: m,
                timestamp_counter: c,
            })
        }),
        (
            any::<u64>(),
            proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..8),
            arb_counter()
        )
            .prop_map(|(f, entries, c)| Message::LedgerSync(LedgerSync::Entries {
                from_height: f,
                entries,
                timestamp_counter: c,
            })),
        (proptest::collection::vec(arb_id(), 0..10), arb_counter()).prop_map(|(acked, c)| {
            Message::Ack(Ack {
                acked,
                timestamp_counter: c,
            })
        }),
        (
            proptest::collection::vec(arb_id(), 0..5),
            proptest::collection::vec((0u64..1000, 0u64..1000), 0..5),
            arb_counter()
        )
            .prop_map(|(ids, ranges, c)| Message::Nack(Nack {
                missing_ids: ids,
                missing_ranges: ranges
                    .into_iter()
                    .map(|(a, b)| (a.min(b), a.max(b)))
                    .collect(),
                timestamp_counter: c,
            })),
        (arb_id(), 0u64..3, arb_counter()).prop_map(|(id, s, c)| Message::Receipt(Receipt {
            receipt_for: id,
            status: ReceiptStatus::from_code(s).unwrap(),
            timestamp_counter: c,
        })),
    ]
}

fn arb_counter() -> impl Strategy<Value = Option<u32>> {
    proptest::option::of(any::<u32>())
}

proptest! {
    #[test]
    fn any_message_round_trips_through_bytes_and_json(
        seed in any::<[u8; 32]>(),
        message in arb_message(),
        to in proptest::option::of(any::<[u8; 32]>()),
        seq in proptest::option::of(any::<u64>()),
    ) {
        let id = Identity::from_seed(seed);
        let env = Envelope { version: ProtocolVersion::CURRENT, device_id: id.device_id(), to, seq, message };
        let frame = Frame::sign(env, id.signing_key()).unwrap();
        let decoded = Frame::decode(&frame.bytes).unwrap();
        prop_assert_eq!(&decoded, &frame);
        let from_json = from_json(&to_json(&frame)).unwrap().into_frame().unwrap();
        prop_assert_eq!(from_json.bytes, frame.bytes);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = Frame::decode(&bytes);
    }

    #[test]
    fn corrupted_valid_frames_never_panic(
        seed in any::<[u8; 32]>(),
        message in arb_message(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let id = Identity::from_seed(seed);
        let env = Envelope { version: ProtocolVersion::CURRENT, device_id: id.device_id(), to: None, seq: None, message };
        let mut bytes = Frame::sign(env, id.signing_key()).unwrap().bytes;
        for (index, value) in edits {
            let i = index.index(bytes.len());
            bytes[i] = value;
        }
        let _ = Frame::decode(&bytes);
    }
}
