//! The PUSH_DATA body: received packets (`rxpk`) and gateway statistics
//! (`stat`), and how one `rxpk` becomes an [`RxFrame`].
//!
//! Only the fields the spec marks as always present for a LoRa packet
//! (`freq`, `stat`, `datr`, `data`) are required; everything else is
//! optional so a forwarder that omits, say, `time` (no GPS) or puts its
//! signal figures into the multi-antenna `rsig` array is still understood.
//! Unknown fields are ignored, as newer forwarders keep adding them.
//!
//! The payload stays base64 text here and is decoded in
//! [`RxPk::to_frame`]: one packet with a broken payload must not make the
//! whole datagram (and the good packets next to it) unreadable.

use base64::engine::general_purpose::{STANDARD, STANDARD_PAD_INDIFFERENT};
use base64::Engine;
use serde::{Deserialize, Serialize};

use super::datr::{coding_rate_text, DataRate};
use crate::link::{RadioParams, RxFrame, RxMeta};

/// JSON body of a PUSH_DATA datagram.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PushPayload {
    /// Packets heard since the last PUSH_DATA; absent in a statistics-only
    /// datagram.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rxpk: Vec<RxPk>,
    /// Periodic gateway statistics (every `stat_interval`, 30 s by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stat: Option<Stat>,
}

/// One packet the concentrator received.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RxPk {
    /// UTC reception time, ISO 8601; only when the gateway has GPS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// GPS time of reception, ms since 6 Jan 1980.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tmms: Option<u64>,
    /// Concentrator microsecond counter at "RX finished" (wraps at 2^32).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tmst: Option<u32>,
    /// Centre frequency in MHz.
    pub freq: f64,
    /// Concentrator IF channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chan: Option<u32>,
    /// Concentrator RF chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rfch: Option<u32>,
    /// CRC status: 1 ok, -1 bad, 0 no CRC. See [`CrcStatus`].
    pub stat: i8,
    /// `"LORA"` or `"FSK"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modu: Option<String>,
    pub datr: DataRate,
    /// LoRa coding rate, `"4/5"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codr: Option<String>,
    /// RSSI in dBm (the spec says integer; floats are accepted).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "whole_dbm"
    )]
    pub rssi: Option<f64>,
    /// LoRa SNR in dB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lsnr: Option<f64>,
    /// Per-antenna signal figures (the `jver` 2 format); used when the
    /// top-level `rssi`/`lsnr` are missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rsig: Option<Vec<RSig>>,
    /// Payload length in bytes; checked against `data`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u32>,
    /// Payload, base64.
    pub data: String,
}

/// Signal figures of one antenna in the `rsig` array.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RSig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ant: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chan: Option<u32>,
    /// Channel RSSI in dBm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rssic: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lsnr: Option<f64>,
}

/// Gateway statistics carried in PUSH_DATA.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stat {
    /// UTC system time of the gateway, `"2014-01-12 08:59:28 GMT"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lati: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub long: Option<f64>,
    /// Altitude in metres.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alti: Option<f64>,
    /// Packets received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rxnb: Option<u64>,
    /// Packets received with a valid CRC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rxok: Option<u64>,
    /// Packets forwarded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rxfw: Option<u64>,
    /// Percentage of upstream datagrams that were acknowledged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ackr: Option<f64>,
    /// Downlink datagrams received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dwnb: Option<u64>,
    /// Packets emitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub txnb: Option<u64>,
}

/// The meaning of `rxpk.stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrcStatus {
    /// The payload CRC checked out.
    Ok,
    /// The payload CRC failed: the bytes are corrupt.
    Bad,
    /// The packet carried no CRC (or the radio did not check it).
    None,
}

impl CrcStatus {
    pub fn from_wire(stat: i8) -> Option<CrcStatus> {
        match stat {
            1 => Some(CrcStatus::Ok),
            -1 => Some(CrcStatus::Bad),
            0 => Some(CrcStatus::None),
            _ => None,
        }
    }

    pub fn to_wire(self) -> i8 {
        match self {
            CrcStatus::Ok => 1,
            CrcStatus::Bad => -1,
            CrcStatus::None => 0,
        }
    }
}

/// Why one `rxpk` was not handed upward.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RxPkReject {
    #[error("the concentrator reported a bad CRC")]
    BadCrc,
    #[error("unknown CRC status {0} (expected 1, 0 or -1)")]
    UnknownCrcStatus(i8),
    #[error("payload is not valid base64")]
    BadBase64,
    #[error("payload is {actual} bytes but size says {declared}")]
    SizeMismatch { declared: u32, actual: usize },
}

impl RxPk {
    /// A LoRa packet as a concentrator would report it; used by the
    /// packet-forwarder emulator and tests.
    pub fn lora(
        payload: &[u8],
        params: &RadioParams,
        rssi: f32,
        snr: f32,
        crc: CrcStatus,
        tmst: u32,
    ) -> RxPk {
        RxPk {
            time: None,
            tmms: None,
            tmst: Some(tmst),
            freq: hz_to_mhz(params.freq_hz),
            chan: Some(0),
            rfch: Some(0),
            stat: crc.to_wire(),
            modu: Some("LORA".into()),
            datr: DataRate::lora(params.sf, params.bandwidth_hz),
            codr: Some(coding_rate_text(params.coding_rate)),
            rssi: Some(f64::from(rssi).round()),
            lsnr: Some(f64::from(snr)),
            rsig: None,
            size: Some(payload.len() as u32),
            data: STANDARD.encode(payload),
        }
    }

    /// The frame to hand upward, or why this packet is dropped.
    ///
    /// `stat` 0 (no CRC) is accepted: the concentrator had nothing to check
    /// against, and every Seed frame carries an ed25519 signature that the
    /// layer above verifies, so a corrupt payload is still caught there.
    /// Dropping it here would lose frames from radios configured without CRC.
    ///
    /// `received_at_ms` is the gateway's own clock at datagram arrival, not
    /// `time`: that field exists only on GPS-equipped gateways.
    pub fn to_frame(&self, link: &str, received_at_ms: u64) -> Result<RxFrame, RxPkReject> {
        match CrcStatus::from_wire(self.stat) {
            Some(CrcStatus::Ok | CrcStatus::None) => {}
            Some(CrcStatus::Bad) => return Err(RxPkReject::BadCrc),
            None => return Err(RxPkReject::UnknownCrcStatus(self.stat)),
        }
        // Forwarders pad, but an unpadded payload is unambiguous too.
        let bytes = STANDARD_PAD_INDIFFERENT
            .decode(&self.data)
            .map_err(|_| RxPkReject::BadBase64)?;
        if let Some(declared) = self.size {
            if declared as usize != bytes.len() {
                return Err(RxPkReject::SizeMismatch {
                    declared,
                    actual: bytes.len(),
                });
            }
        }
        let first_antenna = self.rsig.as_ref().and_then(|r| r.first());
        let rssi = self.rssi.or(first_antenna.and_then(|a| a.rssic));
        let snr = self.lsnr.or(first_antenna.and_then(|a| a.lsnr));
        let lora = self.datr.lora_params();
        Ok(RxFrame {
            bytes,
            meta: RxMeta {
                link: link.to_string(),
                rssi: rssi.and_then(finite_f32),
                snr: snr.and_then(finite_f32),
                freq_hz: mhz_to_hz(self.freq),
                sf: lora.map(|(sf, _)| sf),
                bandwidth_hz: lora.map(|(_, bw)| bw),
                received_at_ms,
                via: None,
            },
        })
    }
}

/// MHz (as GWMP writes frequencies) to whole Hz; `None` when the value is
/// not a frequency a u32 can hold.
pub fn mhz_to_hz(mhz: f64) -> Option<u32> {
    let hz = (mhz * 1e6).round();
    (hz.is_finite() && hz >= 0.0 && hz <= f64::from(u32::MAX)).then_some(hz as u32)
}

/// Whole Hz to MHz. Exact for the printed form: 869_525_000 → 869.525.
pub fn hz_to_mhz(hz: u32) -> f64 {
    f64::from(hz) / 1e6
}

/// Metadata outside f32 range (a forwarder bug) is treated as absent rather
/// than turned into an infinity that later serialises as `null`.
fn finite_f32(value: f64) -> Option<f32> {
    let narrowed = value as f32;
    narrowed.is_finite().then_some(narrowed)
}

/// Writes a whole RSSI as the integer the protocol (and `lora_pkt_fwd`)
/// sends: strict servers such as ChirpStack's forwarder refuse `-80.0`.
fn whole_dbm<S: serde::Serializer>(rssi: &Option<f64>, out: S) -> Result<S::Ok, S::Error> {
    match rssi {
        Some(dbm) if dbm.fract() == 0.0 && dbm.abs() < 1e6 => out.serialize_i64(*dbm as i64),
        Some(dbm) => out.serialize_f64(*dbm),
        None => out.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The upstream example from Semtech's PROTOCOL.TXT, section 4.
    const SEMTECH_EXAMPLE: &str = r#"{"rxpk":[
        {"time":"2013-03-31T16:21:17.528002Z","tmst":3512348611,"chan":2,"rfch":0,
         "freq":866.349812,"stat":1,"modu":"LORA","datr":"SF7BW125","codr":"4/6",
         "rssi":-35,"lsnr":5.1,"size":32,
         "data":"-DS4CGaDCdG+48eJNM3Vai-zDpsR71Pn9CPA9uCON84"},
        {"time":"2013-03-31T16:21:17.530974Z","tmst":3512348514,"chan":9,"rfch":1,
         "freq":869.1,"stat":1,"modu":"FSK","datr":50000,"rssi":-75,"size":16,
         "data":"VEVTVF9QQUNLRVRfMTIzNA=="},
        {"time":"2013-03-31T16:21:17.532038Z","tmst":3316387610,"chan":0,"rfch":0,
         "freq":863.00981,"stat":1,"modu":"LORA","datr":"SF10BW125","codr":"4/7",
         "rssi":-38,"lsnr":5.5,"size":32,
         "data":"ysgRl452xNLep9S1NTIg2lomKDxUgn3DJ7DE+b00Ass"}]}"#;

    #[test]
    fn semtech_protocol_example_parses() {
        let payload: PushPayload = serde_json::from_str(SEMTECH_EXAMPLE).unwrap();
        assert_eq!(payload.rxpk.len(), 3);
        assert_eq!(payload.rxpk[1].datr, DataRate::Fsk(50_000));

        // The spec's own first example uses '-' which is not base64: the
        // one broken packet is rejected alone.
        assert_eq!(
            payload.rxpk[0].to_frame("gw", 1),
            Err(RxPkReject::BadBase64)
        );

        let fsk = payload.rxpk[1].to_frame("gw", 1).unwrap();
        assert_eq!(fsk.bytes, b"TEST_PACKET_1234");
        assert_eq!(fsk.meta.freq_hz, Some(869_100_000));
        assert_eq!(fsk.meta.sf, None);

        let lora = payload.rxpk[2].to_frame("gw", 7).unwrap();
        assert_eq!(lora.bytes.len(), 32, "unpadded base64 is accepted");
        assert_eq!(lora.meta.link, "gw");
        assert_eq!(lora.meta.rssi, Some(-38.0));
        assert_eq!(lora.meta.snr, Some(5.5));
        assert_eq!(lora.meta.freq_hz, Some(863_009_810));
        assert_eq!(lora.meta.sf, Some(10));
        assert_eq!(lora.meta.bandwidth_hz, Some(125_000));
        assert_eq!(lora.meta.received_at_ms, 7);
    }

    #[test]
    fn crc_status_decides_delivery() {
        let params = RadioParams::default();
        let good = RxPk::lora(b"abc", &params, -50.0, 9.0, CrcStatus::Ok, 0);
        assert!(good.to_frame("gw", 0).is_ok());
        let unchecked = RxPk::lora(b"abc", &params, -50.0, 9.0, CrcStatus::None, 0);
        assert_eq!(unchecked.to_frame("gw", 0).unwrap().bytes, b"abc");
        let bad = RxPk::lora(b"abc", &params, -50.0, 9.0, CrcStatus::Bad, 0);
        assert_eq!(bad.to_frame("gw", 0), Err(RxPkReject::BadCrc));
        let strange = RxPk { stat: 2, ..good };
        assert_eq!(
            strange.to_frame("gw", 0),
            Err(RxPkReject::UnknownCrcStatus(2))
        );
    }

    #[test]
    fn size_must_match_payload() {
        let mut packet = RxPk::lora(
            b"abcd",
            &RadioParams::default(),
            -50.0,
            9.0,
            CrcStatus::Ok,
            0,
        );
        packet.size = Some(5);
        assert_eq!(
            packet.to_frame("gw", 0),
            Err(RxPkReject::SizeMismatch {
                declared: 5,
                actual: 4
            })
        );
        packet.size = None;
        assert!(packet.to_frame("gw", 0).is_ok(), "size is optional");
    }

    #[test]
    fn rsig_supplies_missing_signal_figures() {
        let json = r#"{"freq":868.1,"stat":1,"datr":"SF9BW125","data":"AQI=",
            "rsig":[{"ant":0,"chan":3,"rssic":-97,"lsnr":-4.25}]}"#;
        let packet: RxPk = serde_json::from_str(json).unwrap();
        let frame = packet.to_frame("gw", 0).unwrap();
        assert_eq!(frame.meta.rssi, Some(-97.0));
        assert_eq!(frame.meta.snr, Some(-4.25));
        assert_eq!(frame.meta.sf, Some(9));
    }

    #[test]
    fn absurd_metadata_becomes_absent() {
        let json = r#"{"freq":-1,"stat":1,"datr":"SF9BW125","data":"","rssi":1e300}"#;
        let packet: RxPk = serde_json::from_str(json).unwrap();
        let frame = packet.to_frame("gw", 0).unwrap();
        assert_eq!(frame.meta.rssi, None);
        assert_eq!(frame.meta.freq_hz, None);
    }

    #[test]
    fn a_whole_rssi_is_written_as_an_integer_like_lora_pkt_fwd() {
        let rxpk = RxPk::lora(
            &[1, 2, 3],
            &RadioParams::default(),
            -80.0,
            7.5,
            CrcStatus::Ok,
            0,
        );
        let json = serde_json::to_string(&rxpk).expect("serializes");
        assert!(json.contains("\"rssi\":-80,"), "{json}");
    }

    #[test]
    fn frequencies_convert_exactly() {
        for hz in [
            863_000_000,
            868_100_000,
            869_525_000,
            433_175_000,
            915_200_000,
        ] {
            assert_eq!(mhz_to_hz(hz_to_mhz(hz)), Some(hz));
        }
        assert_eq!(mhz_to_hz(866.349812), Some(866_349_812));
    }
}
