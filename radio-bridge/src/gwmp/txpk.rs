//! The downlink side of GWMP: the PULL_RESP body (`txpk`) and the TX_ACK
//! body (`txpk_ack`) the forwarder answers it with.
//!
//! # IQ polarity
//! LoRaWAN gateways send downlinks with inverted IQ (`ipol: true`) so that
//! end devices, which listen with inverted IQ, never hear each other's
//! uplinks. Seed devices are peers on a mesh, not LoRaWAN end devices: they
//! all transmit and listen with normal IQ (as an RNode does), so the gateway
//! must transmit with `ipol: false` or no device would demodulate it.

use base64::engine::general_purpose::{STANDARD, STANDARD_PAD_INDIFFERENT};
use base64::Engine;
use serde::{Deserialize, Serialize};

use super::datr::{coding_rate_denominator, coding_rate_text, DataRate};
use super::rxpk::{hz_to_mhz, mhz_to_hz};
use crate::link::{RadioParams, Transmit};

/// Largest payload a LoRa concentrator can send (the PHY length field is one byte).
pub const MAX_TX_PAYLOAD: usize = 255;

/// JSON body of a PULL_RESP datagram.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PullRespPayload {
    pub txpk: TxPk,
}

/// One packet the server asks the forwarder to transmit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TxPk {
    /// Send immediately, ignoring `tmst`/`tmms`.
    #[serde(default)]
    pub imme: bool,
    /// Send when the concentrator counter reaches this value (µs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tmst: Option<u32>,
    /// Send at this GPS time (ms since 6 Jan 1980).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tmms: Option<u64>,
    /// Centre frequency in MHz.
    pub freq: f64,
    /// RF chain to transmit on.
    pub rfch: u32,
    /// Output power in dBm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub powe: Option<i32>,
    /// `"LORA"` or `"FSK"`.
    pub modu: String,
    pub datr: DataRate,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codr: Option<String>,
    /// Invert IQ polarity; see the module docs for why Seed uses `false`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipol: Option<bool>,
    /// Preamble length in symbols (forwarder default 8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prea: Option<u32>,
    /// Payload length in bytes.
    pub size: u32,
    /// Payload, base64.
    pub data: String,
    /// Disable the payload CRC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ncrc: Option<bool>,
}

/// Why a [`Transmit`] cannot be expressed as a `txpk`, or a received
/// `txpk` cannot be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxPkError {
    #[error("payload of {0} bytes exceeds the LoRa maximum of 255")]
    TooLarge(usize),
    #[error("spreading factor {0} is outside 5..=12")]
    SpreadingFactor(u8),
    #[error("bandwidth {0} Hz is not 125, 250 or 500 kHz")]
    Bandwidth(u32),
    #[error("coding rate 4/{0} is outside 4/5..=4/8")]
    CodingRate(u8),
    #[error("payload is not valid base64")]
    BadBase64,
    #[error("payload is {actual} bytes but size says {declared}")]
    SizeMismatch { declared: u32, actual: usize },
}

impl TxPk {
    /// The immediate, non-inverted LoRa transmission for a gateway request.
    pub fn from_transmit(request: &Transmit, rf_chain: u32) -> Result<TxPk, TxPkError> {
        let RadioParams {
            freq_hz,
            sf,
            bandwidth_hz,
            coding_rate,
            tx_power_dbm,
        } = request.params;
        if request.bytes.len() > MAX_TX_PAYLOAD {
            return Err(TxPkError::TooLarge(request.bytes.len()));
        }
        if !(5..=12).contains(&sf) {
            return Err(TxPkError::SpreadingFactor(sf));
        }
        if ![125_000, 250_000, 500_000].contains(&bandwidth_hz) {
            return Err(TxPkError::Bandwidth(bandwidth_hz));
        }
        if !(5..=8).contains(&coding_rate) {
            return Err(TxPkError::CodingRate(coding_rate));
        }
        Ok(TxPk {
            // The gateway decides *when* to send (duty cycle, scheduling)
            // before it asks; there is no receive window to aim at.
            imme: true,
            tmst: None,
            tmms: None,
            freq: hz_to_mhz(freq_hz),
            rfch: rf_chain,
            powe: Some(i32::from(tx_power_dbm)),
            modu: "LORA".into(),
            datr: DataRate::lora(sf, bandwidth_hz),
            codr: Some(coding_rate_text(coding_rate)),
            ipol: Some(false),
            prea: None,
            size: request.bytes.len() as u32,
            data: STANDARD.encode(&request.bytes),
            // Seed receivers check the CRC like any RNode does.
            ncrc: Some(false),
        })
    }

    /// The payload bytes, checked against `size`.
    pub fn payload(&self) -> Result<Vec<u8>, TxPkError> {
        let bytes = STANDARD_PAD_INDIFFERENT
            .decode(&self.data)
            .map_err(|_| TxPkError::BadBase64)?;
        if self.size as usize != bytes.len() {
            return Err(TxPkError::SizeMismatch {
                declared: self.size,
                actual: bytes.len(),
            });
        }
        Ok(bytes)
    }

    /// The radio settings this `txpk` asks for, if it is well-formed LoRa.
    pub fn radio_params(&self) -> Option<RadioParams> {
        let (sf, bandwidth_hz) = self.datr.lora_params()?;
        Some(RadioParams {
            freq_hz: mhz_to_hz(self.freq)?,
            sf,
            bandwidth_hz,
            coding_rate: coding_rate_denominator(self.codr.as_deref()?)?,
            tx_power_dbm: i8::try_from(self.powe?).ok()?,
        })
    }
}

/// JSON body of a TX_ACK datagram. A TX_ACK without any body means success.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TxAckPayload {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub txpk_ack: Option<TxAckDetail>,
}

/// The `txpk_ack` object.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TxAckDetail {
    /// `NONE` when the packet was scheduled, otherwise why it was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<TxAckCode>,
    /// Sent anyway, but adjusted (SX1302 forwarders: `TX_POWER` with the
    /// power actually used in `value`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warn: Option<TxAckCode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<serde_json::Value>,
}

/// A TX_ACK error or warning code.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum TxAckCode {
    /// Scheduled for transmission.
    None,
    /// Too late to schedule.
    TooLate,
    /// Timestamp too far in the future.
    TooEarly,
    /// Another packet already occupies that time.
    CollisionPacket,
    /// A beacon is planned at that time.
    CollisionBeacon,
    /// Frequency not supported by the TX RF chain.
    TxFreq,
    /// Power not supported (an error on older forwarders, a warning on
    /// newer ones).
    TxPower,
    /// GPS timestamp requested but GPS unlocked.
    GpsUnlocked,
    /// Anything else a forwarder invents (e.g. `SEND_LBT`, `SEND_FAIL`).
    Other(String),
}

impl TxAckCode {
    pub fn as_str(&self) -> &str {
        match self {
            TxAckCode::None => "NONE",
            TxAckCode::TooLate => "TOO_LATE",
            TxAckCode::TooEarly => "TOO_EARLY",
            TxAckCode::CollisionPacket => "COLLISION_PACKET",
            TxAckCode::CollisionBeacon => "COLLISION_BEACON",
            TxAckCode::TxFreq => "TX_FREQ",
            TxAckCode::TxPower => "TX_POWER",
            TxAckCode::GpsUnlocked => "GPS_UNLOCKED",
            TxAckCode::Other(code) => code,
        }
    }
}

impl From<String> for TxAckCode {
    fn from(code: String) -> TxAckCode {
        match code.as_str() {
            "NONE" => TxAckCode::None,
            "TOO_LATE" => TxAckCode::TooLate,
            "TOO_EARLY" => TxAckCode::TooEarly,
            "COLLISION_PACKET" => TxAckCode::CollisionPacket,
            "COLLISION_BEACON" => TxAckCode::CollisionBeacon,
            "TX_FREQ" => TxAckCode::TxFreq,
            "TX_POWER" => TxAckCode::TxPower,
            "GPS_UNLOCKED" => TxAckCode::GpsUnlocked,
            _ => TxAckCode::Other(code),
        }
    }
}

impl From<TxAckCode> for String {
    fn from(code: TxAckCode) -> String {
        code.as_str().to_string()
    }
}

impl std::fmt::Display for TxAckCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TxAckPayload {
    /// A TX_ACK body reporting `code` as the error (`NONE` for success).
    pub fn with_error(code: TxAckCode) -> TxAckPayload {
        TxAckPayload {
            txpk_ack: Some(TxAckDetail {
                error: Some(code),
                warn: None,
                value: None,
            }),
        }
    }
}

/// What a TX_ACK says about the transmission: `Ok` with an optional
/// warning when it was scheduled, `Err` with the code when it was refused.
///
/// Only the `error` field can refuse: a `warn` means the packet went out
/// with an adjustment, and a missing body or `txpk_ack` means success, as
/// the spec states.
pub fn tx_ack_outcome(payload: Option<&TxAckPayload>) -> Result<Option<TxAckCode>, TxAckCode> {
    let Some(detail) = payload.and_then(|p| p.txpk_ack.as_ref()) else {
        return Ok(None);
    };
    match &detail.error {
        Some(code) if *code != TxAckCode::None => Err(code.clone()),
        _ => Ok(detail.warn.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(bytes: &[u8]) -> Transmit {
        Transmit {
            id: 1,
            bytes: bytes.to_vec(),
            params: RadioParams::default(),
            via: None,
        }
    }

    #[test]
    fn transmit_becomes_immediate_non_inverted_lora() {
        let txpk = TxPk::from_transmit(&request(b"hello"), 0).unwrap();
        let json = serde_json::to_value(&txpk).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "imme": true, "freq": 869.525, "rfch": 0, "powe": 14, "modu": "LORA",
                "datr": "SF9BW125", "codr": "4/5", "ipol": false, "size": 5,
                "data": "aGVsbG8=", "ncrc": false
            })
        );
        assert_eq!(txpk.payload().unwrap(), b"hello");
        assert_eq!(txpk.radio_params(), Some(RadioParams::default()));
    }

    #[test]
    fn impossible_transmissions_are_refused() {
        assert_eq!(
            TxPk::from_transmit(&request(&[0; 256]), 0),
            Err(TxPkError::TooLarge(256))
        );
        assert!(TxPk::from_transmit(&request(&[0; 255]), 0).is_ok());
        let mut bad = request(b"x");
        bad.params.sf = 13;
        assert_eq!(
            TxPk::from_transmit(&bad, 0),
            Err(TxPkError::SpreadingFactor(13))
        );
        let mut bad = request(b"x");
        bad.params.bandwidth_hz = 62_500;
        assert_eq!(
            TxPk::from_transmit(&bad, 0),
            Err(TxPkError::Bandwidth(62_500))
        );
        let mut bad = request(b"x");
        bad.params.coding_rate = 4;
        assert_eq!(TxPk::from_transmit(&bad, 0), Err(TxPkError::CodingRate(4)));
    }

    #[test]
    fn tx_ack_outcomes() {
        assert_eq!(tx_ack_outcome(None), Ok(None));
        assert_eq!(tx_ack_outcome(Some(&TxAckPayload::default())), Ok(None));
        let ok = TxAckPayload::with_error(TxAckCode::None);
        assert_eq!(tx_ack_outcome(Some(&ok)), Ok(None));
        let late = TxAckPayload::with_error(TxAckCode::TooLate);
        assert_eq!(tx_ack_outcome(Some(&late)), Err(TxAckCode::TooLate));

        let warned: TxAckPayload =
            serde_json::from_str(r#"{"txpk_ack":{"warn":"TX_POWER","value":20}}"#).unwrap();
        assert_eq!(tx_ack_outcome(Some(&warned)), Ok(Some(TxAckCode::TxPower)));
        let invented: TxAckPayload =
            serde_json::from_str(r#"{"txpk_ack":{"error":"SEND_LBT"}}"#).unwrap();
        assert_eq!(
            tx_ack_outcome(Some(&invented)),
            Err(TxAckCode::Other("SEND_LBT".into()))
        );
    }

    #[test]
    fn codes_round_trip_through_text() {
        for code in [
            "NONE",
            "TOO_LATE",
            "TOO_EARLY",
            "COLLISION_PACKET",
            "COLLISION_BEACON",
            "TX_FREQ",
            "TX_POWER",
            "GPS_UNLOCKED",
            "SEND_FAIL",
        ] {
            assert_eq!(TxAckCode::from(code.to_string()).as_str(), code);
        }
    }
}
