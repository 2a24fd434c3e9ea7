//! Property tests: the parser never panics on any input, and every
//! datagram we can build survives serialise → parse unchanged.
//!
//! Floats are generated as short decimals (tenths, whole Hz in MHz): those
//! are the values forwarders send, and they convert exactly both ways.

use proptest::collection::vec;
use proptest::option::of;
use proptest::prelude::*;

use super::datr::DataRate;
use super::*;
use crate::gwmp::txpk::TxAckDetail;

fn tenths() -> impl Strategy<Value = f64> {
    (-20_000i32..20_000).prop_map(|n| f64::from(n) / 10.0)
}

fn mhz() -> impl Strategy<Value = f64> {
    any::<u32>().prop_map(rxpk::hz_to_mhz)
}

fn text() -> impl Strategy<Value = String> {
    ".{0,16}"
}

fn data_rate() -> impl Strategy<Value = DataRate> {
    prop_oneof![
        (
            5u8..=12,
            prop_oneof![Just(125_000u32), Just(250_000), Just(500_000)]
        )
            .prop_map(|(sf, bw)| DataRate::lora(sf, bw)),
        text().prop_map(DataRate::Lora),
        any::<u32>().prop_map(DataRate::Fsk),
    ]
}

fn rxpk() -> impl Strategy<Value = RxPk> {
    (
        (of(text()), of(any::<u64>()), of(any::<u32>()), mhz()),
        (of(any::<u32>()), of(any::<u32>()), any::<i8>(), of(text())),
        (data_rate(), of(text()), of(tenths()), of(tenths())),
        (
            of(vec(
                (
                    of(any::<u32>()),
                    of(any::<u32>()),
                    of(tenths()),
                    of(tenths()),
                ),
                0..3,
            )),
            of(any::<u32>()),
            text(),
        ),
    )
        .prop_map(
            |(
                (time, tmms, tmst, freq),
                (chan, rfch, stat, modu),
                (datr, codr, rssi, lsnr),
                (rsig, size, data),
            )| RxPk {
                time,
                tmms,
                tmst,
                freq,
                chan,
                rfch,
                stat,
                modu,
                datr,
                codr,
                rssi,
                lsnr,
                rsig: rsig.map(|antennas| {
                    antennas
                        .into_iter()
                        .map(|(ant, chan, rssic, lsnr)| rxpk::RSig {
                            ant,
                            chan,
                            rssic,
                            lsnr,
                        })
                        .collect()
                }),
                size,
                data,
            },
        )
}

fn stat() -> impl Strategy<Value = Stat> {
    (
        (of(text()), of(tenths()), of(tenths()), of(tenths())),
        (of(any::<u64>()), of(any::<u64>()), of(any::<u64>())),
        (of(tenths()), of(any::<u64>()), of(any::<u64>())),
    )
        .prop_map(
            |((time, lati, long, alti), (rxnb, rxok, rxfw), (ackr, dwnb, txnb))| Stat {
                time,
                lati,
                long,
                alti,
                rxnb,
                rxok,
                rxfw,
                ackr,
                dwnb,
                txnb,
            },
        )
}

fn txpk() -> impl Strategy<Value = TxPk> {
    (
        (
            any::<bool>(),
            of(any::<u32>()),
            of(any::<u64>()),
            mhz(),
            any::<u32>(),
        ),
        (
            of(any::<i32>()),
            text(),
            data_rate(),
            of(text()),
            of(any::<bool>()),
        ),
        (of(any::<u32>()), any::<u32>(), text(), of(any::<bool>())),
    )
        .prop_map(
            |(
                (imme, tmst, tmms, freq, rfch),
                (powe, modu, datr, codr, ipol),
                (prea, size, data, ncrc),
            )| TxPk {
                imme,
                tmst,
                tmms,
                freq,
                rfch,
                powe,
                modu,
                datr,
                codr,
                ipol,
                prea,
                size,
                data,
                ncrc,
            },
        )
}

fn tx_ack_code() -> impl Strategy<Value = TxAckCode> {
    prop_oneof![
        Just(TxAckCode::None),
        Just(TxAckCode::TooLate),
        Just(TxAckCode::CollisionBeacon),
        Just(TxAckCode::TxPower),
        // Known names normalise to their variant, so this round-trips too.
        "[A-Z_]{1,16}".prop_map(TxAckCode::from),
    ]
}

fn tx_ack() -> impl Strategy<Value = Option<TxAckPayload>> {
    let value = prop_oneof![
        any::<i32>().prop_map(serde_json::Value::from),
        text().prop_map(serde_json::Value::from),
    ];
    of(
        of((of(tx_ack_code()), of(tx_ack_code()), of(value))).prop_map(|detail| TxAckPayload {
            txpk_ack: detail.map(|(error, warn, value)| TxAckDetail { error, warn, value }),
        }),
    )
}

fn datagram() -> impl Strategy<Value = Datagram> {
    let eui = any::<[u8; 8]>().prop_map(Eui);
    prop_oneof![
        (any::<u16>(), eui.clone(), vec(rxpk(), 0..4), of(stat())).prop_map(
            |(token, gateway, rxpk, stat)| Datagram::PushData {
                token,
                gateway,
                payload: PushPayload { rxpk, stat },
            }
        ),
        any::<u16>().prop_map(|token| Datagram::PushAck { token }),
        (any::<u16>(), eui.clone())
            .prop_map(|(token, gateway)| Datagram::PullData { token, gateway }),
        (any::<u16>(), txpk()).prop_map(|(token, txpk)| Datagram::PullResp {
            token,
            payload: PullRespPayload { txpk },
        }),
        any::<u16>().prop_map(|token| Datagram::PullAck { token }),
        (any::<u16>(), eui, tx_ack()).prop_map(|(token, gateway, payload)| Datagram::TxAck {
            token,
            gateway,
            payload,
        }),
    ]
}

/// Whatever parses must serialise into something that parses again.
fn parse_is_total(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(datagram) = parse(bytes) {
        let again = parse(&datagram.to_bytes());
        prop_assert!(again.is_ok(), "{datagram:?} re-parsed as {again:?}");
    }
    Ok(())
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..600)) {
        parse_is_total(&bytes)?;
    }

    #[test]
    fn arbitrary_bodies_behind_a_valid_header_never_panic(
        token in any::<u16>(),
        identifier in 0u8..8,
        eui in any::<[u8; 8]>(),
        body in "[\\[\\]{}\":,0-9a-z_. \\-\\\\]{0,120}",
    ) {
        let mut bytes = vec![PROTOCOL_VERSION];
        bytes.extend_from_slice(&token.to_be_bytes());
        bytes.push(identifier);
        bytes.extend_from_slice(&eui);
        bytes.extend_from_slice(body.as_bytes());
        parse_is_total(&bytes)?;
    }

    #[test]
    fn mutated_valid_datagrams_never_panic(
        datagram in datagram(),
        cut in any::<prop::sample::Index>(),
        flips in vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
    ) {
        let mut bytes = datagram.to_bytes();
        for (at, byte) in flips {
            let at = at.index(bytes.len());
            bytes[at] = byte;
        }
        bytes.truncate(cut.index(bytes.len() + 1));
        parse_is_total(&bytes)?;
    }

    #[test]
    fn serialise_then_parse_round_trips(datagram in datagram()) {
        let parsed = parse(&datagram.to_bytes());
        prop_assert!(parsed.is_ok(), "{datagram:?} did not parse: {parsed:?}");
        prop_assert_eq!(parsed.unwrap(), datagram);
    }
}
