//! GWMP datagrams: the 4-byte header, the gateway EUI and the JSON body,
//! parsed from and written to bytes.
//!
//! ```text
//! byte 0     protocol version (2)
//! bytes 1-2  random token; an ack echoes the token of what it acknowledges
//! byte 3     identifier (PUSH_DATA 0 ... TX_ACK 5)
//! bytes 4-11 gateway EUI      (PUSH_DATA, PULL_DATA, TX_ACK)
//! rest       JSON body        (PUSH_DATA, PULL_RESP, optional in TX_ACK)
//! ```
//!
//! Anything that does not fit is a [`ParseError`]; parsing never panics
//! (a property test and a fuzz target hold it to that). Bytes after a
//! body-less datagram are ignored, and NUL bytes after a JSON body are
//! stripped, because some forwarders C-terminate their JSON.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::rxpk::PushPayload;
use super::txpk::{PullRespPayload, TxAckPayload};

/// The only protocol version spoken here. Version 1 forwarders (no TX_ACK,
/// token-less PULL_RESP) are treated as junk.
pub const PROTOCOL_VERSION: u8 = 2;

const HEADER_LEN: usize = 4;
const EUI_LEN: usize = 8;

/// A gateway's 64-bit identifier, written as 16 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Eui(pub [u8; 8]);

impl fmt::Display for Eui {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// Error for an EUI that is not exactly 16 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a gateway EUI is 16 hex digits, got {0:?}")]
pub struct EuiParseError(String);

impl FromStr for Eui {
    type Err = EuiParseError;

    fn from_str(text: &str) -> Result<Eui, EuiParseError> {
        let mut eui = [0u8; 8];
        hex::decode_to_slice(text, &mut eui).map_err(|_| EuiParseError(text.to_string()))?;
        Ok(Eui(eui))
    }
}

impl Serialize for Eui {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Eui {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Eui, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The datagram kind in header byte 3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identifier {
    PushData = 0x00,
    PushAck = 0x01,
    PullData = 0x02,
    PullResp = 0x03,
    PullAck = 0x04,
    TxAck = 0x05,
}

impl Identifier {
    pub fn from_byte(byte: u8) -> Option<Identifier> {
        Some(match byte {
            0x00 => Identifier::PushData,
            0x01 => Identifier::PushAck,
            0x02 => Identifier::PullData,
            0x03 => Identifier::PullResp,
            0x04 => Identifier::PullAck,
            0x05 => Identifier::TxAck,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Identifier::PushData => "PUSH_DATA",
            Identifier::PushAck => "PUSH_ACK",
            Identifier::PullData => "PULL_DATA",
            Identifier::PullResp => "PULL_RESP",
            Identifier::PullAck => "PULL_ACK",
            Identifier::TxAck => "TX_ACK",
        }
    }
}

impl fmt::Display for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One GWMP datagram.
///
/// Upstream (forwarder → server): `PushData`, `PullData`, `TxAck`.
/// Downstream (server → forwarder): `PushAck`, `PullResp`, `PullAck`.
#[derive(Debug, Clone, PartialEq)]
pub enum Datagram {
    /// Received packets and/or statistics.
    PushData {
        token: u16,
        gateway: Eui,
        payload: PushPayload,
    },
    /// Receipt for a PUSH_DATA.
    PushAck { token: u16 },
    /// Keep-alive that also tells the server where downlinks go.
    PullData { token: u16, gateway: Eui },
    /// A packet to transmit.
    PullResp {
        token: u16,
        payload: PullRespPayload,
    },
    /// Receipt for a PULL_DATA.
    PullAck { token: u16 },
    /// Outcome of a PULL_RESP, same token.
    TxAck {
        token: u16,
        gateway: Eui,
        payload: Option<TxAckPayload>,
    },
}

/// Why a datagram is not GWMP v2.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("{len} bytes is shorter than the {need} a {what} needs")]
    TooShort {
        len: usize,
        need: usize,
        what: &'static str,
    },
    #[error("protocol version {0}, only 2 is spoken")]
    Version(u8),
    #[error("unknown identifier 0x{0:02x}")]
    UnknownIdentifier(u8),
    #[error("{0} without its JSON body")]
    MissingJson(Identifier),
    #[error("{identifier} JSON body is invalid: {source}")]
    Json {
        identifier: Identifier,
        source: serde_json::Error,
    },
}

/// Parses one datagram. The entry point for the server, the emulator and
/// the `gwmp_parser` fuzz target.
pub fn parse(bytes: &[u8]) -> Result<Datagram, ParseError> {
    Datagram::parse(bytes)
}

impl Datagram {
    pub fn parse(bytes: &[u8]) -> Result<Datagram, ParseError> {
        if bytes.len() < HEADER_LEN {
            return Err(ParseError::TooShort {
                len: bytes.len(),
                need: HEADER_LEN,
                what: "GWMP header",
            });
        }
        if bytes[0] != PROTOCOL_VERSION {
            return Err(ParseError::Version(bytes[0]));
        }
        let token = u16::from_be_bytes([bytes[1], bytes[2]]);
        let identifier =
            Identifier::from_byte(bytes[3]).ok_or(ParseError::UnknownIdentifier(bytes[3]))?;
        let rest = &bytes[HEADER_LEN..];
        Ok(match identifier {
            Identifier::PushData => {
                let (gateway, body) = split_eui(rest, identifier, bytes.len())?;
                let payload = required_json(body, identifier)?;
                Datagram::PushData {
                    token,
                    gateway,
                    payload,
                }
            }
            Identifier::PushAck => Datagram::PushAck { token },
            Identifier::PullData => {
                let (gateway, _) = split_eui(rest, identifier, bytes.len())?;
                Datagram::PullData { token, gateway }
            }
            Identifier::PullResp => Datagram::PullResp {
                token,
                payload: required_json(rest, identifier)?,
            },
            Identifier::PullAck => Datagram::PullAck { token },
            Identifier::TxAck => {
                let (gateway, body) = split_eui(rest, identifier, bytes.len())?;
                let body = strip_nuls(body);
                let payload = if body.is_empty() {
                    None
                } else {
                    Some(json(body, identifier)?)
                };
                Datagram::TxAck {
                    token,
                    gateway,
                    payload,
                }
            }
        })
    }

    /// The datagram as bytes on the wire.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.push(PROTOCOL_VERSION);
        out.extend_from_slice(&self.token().to_be_bytes());
        out.push(self.identifier() as u8);
        match self {
            Datagram::PushData {
                gateway, payload, ..
            } => {
                out.extend_from_slice(&gateway.0);
                write_json(&mut out, payload);
            }
            Datagram::PullData { gateway, .. } => out.extend_from_slice(&gateway.0),
            Datagram::PullResp { payload, .. } => write_json(&mut out, payload),
            Datagram::TxAck {
                gateway, payload, ..
            } => {
                out.extend_from_slice(&gateway.0);
                if let Some(payload) = payload {
                    write_json(&mut out, payload);
                }
            }
            Datagram::PushAck { .. } | Datagram::PullAck { .. } => {}
        }
        out
    }

    pub fn token(&self) -> u16 {
        match self {
            Datagram::PushData { token, .. }
            | Datagram::PushAck { token }
            | Datagram::PullData { token, .. }
            | Datagram::PullResp { token, .. }
            | Datagram::PullAck { token }
            | Datagram::TxAck { token, .. } => *token,
        }
    }

    pub fn identifier(&self) -> Identifier {
        match self {
            Datagram::PushData { .. } => Identifier::PushData,
            Datagram::PushAck { .. } => Identifier::PushAck,
            Datagram::PullData { .. } => Identifier::PullData,
            Datagram::PullResp { .. } => Identifier::PullResp,
            Datagram::PullAck { .. } => Identifier::PullAck,
            Datagram::TxAck { .. } => Identifier::TxAck,
        }
    }
}

fn split_eui(
    rest: &[u8],
    identifier: Identifier,
    total: usize,
) -> Result<(Eui, &[u8]), ParseError> {
    let Some((eui, body)) = rest.split_first_chunk::<EUI_LEN>() else {
        return Err(ParseError::TooShort {
            len: total,
            need: HEADER_LEN + EUI_LEN,
            what: identifier.name(),
        });
    };
    Ok((Eui(*eui), body))
}

fn strip_nuls(body: &[u8]) -> &[u8] {
    let end = body.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    &body[..end]
}

fn required_json<T: serde::de::DeserializeOwned>(
    body: &[u8],
    identifier: Identifier,
) -> Result<T, ParseError> {
    let body = strip_nuls(body);
    if body.is_empty() {
        return Err(ParseError::MissingJson(identifier));
    }
    json(body, identifier)
}

fn json<T: serde::de::DeserializeOwned>(
    body: &[u8],
    identifier: Identifier,
) -> Result<T, ParseError> {
    serde_json::from_slice(body).map_err(|source| ParseError::Json { identifier, source })
}

fn write_json<T: Serialize>(out: &mut Vec<u8>, body: &T) {
    // Our bodies are plain structs with string keys and finite numbers:
    // serialising them into memory has no failure mode.
    serde_json::to_writer(out, body).expect("serialising a GWMP body into memory cannot fail");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gwmp::rxpk::{CrcStatus, RxPk, Stat};
    use crate::gwmp::txpk::{TxAckCode, TxPk};
    use crate::link::{RadioParams, Transmit};

    const GW: Eui = Eui([0xAA, 0x55, 0x5A, 0x00, 0x00, 0x00, 0x01, 0x01]);

    #[test]
    fn eui_text_form() {
        assert_eq!(GW.to_string(), "aa555a0000000101");
        assert_eq!("AA555A0000000101".parse::<Eui>(), Ok(GW));
        assert!("aa555a00000001".parse::<Eui>().is_err());
        assert!("aa555a000000010g".parse::<Eui>().is_err());
        assert_eq!(serde_json::to_string(&GW).unwrap(), "\"aa555a0000000101\"");
    }

    #[test]
    fn pull_data_wire_layout() {
        let bytes = Datagram::PullData {
            token: 0x1234,
            gateway: GW,
        }
        .to_bytes();
        assert_eq!(bytes, [2, 0x12, 0x34, 2, 0xAA, 0x55, 0x5A, 0, 0, 0, 1, 1]);
        assert_eq!(
            parse(&bytes).unwrap(),
            Datagram::PullData {
                token: 0x1234,
                gateway: GW
            }
        );
    }

    #[test]
    fn acks_are_four_bytes() {
        assert_eq!(Datagram::PushAck { token: 7 }.to_bytes(), [2, 0, 7, 1]);
        assert_eq!(
            Datagram::PullAck { token: 0xFFFE }.to_bytes(),
            [2, 0xFF, 0xFE, 4]
        );
    }

    #[test]
    fn push_data_with_a_real_forwarder_body() {
        let mut bytes = vec![2, 0xAB, 0xCD, 0];
        bytes.extend_from_slice(&GW.0);
        bytes.extend_from_slice(
            br#"{"rxpk":[{"jver":1,"tmst":41251283,"chan":2,"rfch":1,"freq":868.500000,
            "mid":8,"stat":1,"modu":"LORA","datr":"SF9BW125","codr":"4/5","rssis":-49,
            "lsnr":9.2,"foff":-12,"rssi":-49,"size":3,"data":"AQID"}],
            "stat":{"time":"2024-01-12 08:59:28 GMT","rxnb":2,"rxok":1,"rxfw":1,"ackr":100.0,"dwnb":0,"txnb":0,"temp":31.5}}"#,
        );
        bytes.push(0); // C-terminated, as some forwarders send it
        let Datagram::PushData {
            token,
            gateway,
            payload,
        } = parse(&bytes).unwrap()
        else {
            panic!("expected PUSH_DATA");
        };
        assert_eq!((token, gateway), (0xABCD, GW));
        assert_eq!(payload.rxpk.len(), 1);
        assert_eq!(payload.rxpk[0].rssi, Some(-49.0));
        assert_eq!(payload.stat.unwrap().rxnb, Some(2));
    }

    #[test]
    fn tx_ack_body_is_optional() {
        let mut bytes = vec![2, 0, 9, 5];
        bytes.extend_from_slice(&GW.0);
        let bare = parse(&bytes).unwrap();
        assert_eq!(
            bare,
            Datagram::TxAck {
                token: 9,
                gateway: GW,
                payload: None
            }
        );
        bytes.push(0); // one NUL and nothing else: still no body
        assert_eq!(parse(&bytes).unwrap(), bare);

        bytes.pop();
        bytes.extend_from_slice(br#"{"txpk_ack":{"error":"TOO_LATE"}}"#);
        let Datagram::TxAck { payload, .. } = parse(&bytes).unwrap() else {
            panic!("expected TX_ACK");
        };
        assert_eq!(
            payload.unwrap().txpk_ack.unwrap().error,
            Some(TxAckCode::TooLate)
        );
    }

    #[test]
    fn junk_is_a_typed_error() {
        let mut eui_only = vec![2, 0, 0, 0];
        eui_only.extend_from_slice(&GW.0);
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![], "TooShort"),
            (vec![2, 0, 0], "TooShort"),
            (vec![1, 0, 0, 2, 1, 2, 3, 4, 5, 6, 7, 8], "Version"),
            (vec![2, 0, 0, 6], "UnknownIdentifier"),
            (vec![2, 0, 0, 2, 1, 2, 3], "TooShort"),
            (eui_only.clone(), "MissingJson"),
            ([eui_only.as_slice(), b"{\"rxpk\":"].concat(), "Json"),
            ([eui_only.as_slice(), b"{\"rxpk\":[{}]}"].concat(), "Json"),
            ([eui_only.as_slice(), b"\xff\xfe"].concat(), "Json"),
            (vec![2, 0, 0, 3], "MissingJson"),
            ([&[2u8, 0, 0, 3][..], b"{\"txpk\":1}"].concat(), "Json"),
            ([&[2u8, 0, 0, 5][..], &GW.0, b"nope"].concat(), "Json"),
        ];
        for (bytes, expected) in cases {
            let error = parse(&bytes).expect_err(expected);
            assert!(
                format!("{error:?}").starts_with(expected),
                "{bytes:?} gave {error:?}, expected {expected}"
            );
        }
    }

    #[test]
    fn serialise_then_parse_is_identity() {
        let params = RadioParams::default();
        let txpk = TxPk::from_transmit(
            &Transmit {
                id: 0,
                bytes: vec![1, 2, 3],
                params,
                via: None,
            },
            0,
        )
        .unwrap();
        let datagrams = [
            Datagram::PushData {
                token: 1,
                gateway: GW,
                payload: PushPayload {
                    rxpk: vec![RxPk::lora(b"hi", &params, -80.0, 6.5, CrcStatus::Ok, 99)],
                    stat: Some(Stat {
                        rxnb: Some(1),
                        ..Stat::default()
                    }),
                },
            },
            Datagram::PushAck { token: 2 },
            Datagram::PullData {
                token: 3,
                gateway: GW,
            },
            Datagram::PullResp {
                token: 4,
                payload: PullRespPayload { txpk },
            },
            Datagram::PullAck { token: 5 },
            Datagram::TxAck {
                token: 6,
                gateway: GW,
                payload: Some(TxAckPayload::with_error(TxAckCode::None)),
            },
        ];
        for datagram in datagrams {
            assert_eq!(parse(&datagram.to_bytes()).unwrap(), datagram);
        }
    }
}
