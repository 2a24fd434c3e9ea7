//! The JSON bodies the gateway publishes: one `up` message per stored
//! message, and the retained `online`/`offline` state.
//!
//! Field names are the contract's (`docs/operations.md`, MQTT section),
//! not our Rust names: `RxMeta::freq_hz` goes out as `rx.freq`, milliseconds
//! become an RFC 3339 UTC string, and so on.

use base64::Engine as _;
use radio_bridge::link::RxMeta;
use serde::Serialize;
use serde_json::value::RawValue;

use crate::store::OutboxEntry;

/// An `up` payload and whether the stored entry it came from was damaged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpPayload {
    pub json: Vec<u8>,
    /// The stored `message_json` or `rx_json` did not parse. The message is
    /// still published (with `message: null` / partial `rx`) because the raw
    /// `frame` is the authoritative data and a backend can decode it; holding
    /// it back would block the outbox forever.
    pub damaged: bool,
}

#[derive(Serialize)]
struct Up<'a> {
    msg_id: String,
    device_id: String,
    /// Embedded as JSON (not a string holding JSON).
    message: Option<&'a RawValue>,
    frame: String,
    rx: Rx<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    compacted: Option<u64>,
}

/// Reception metadata under the contract's names.
#[derive(Serialize)]
struct Rx<'a> {
    link: Option<&'a str>,
    rssi: Option<f32>,
    snr: Option<f32>,
    /// Hz.
    freq: Option<u32>,
    sf: Option<u8>,
    received_at: String,
    /// The concentrator within the link that heard it, on links with
    /// several (a packet forwarder's gateway EUI); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    via: Option<&'a str>,
}

impl<'a> Rx<'a> {
    fn of(meta: &'a RxMeta) -> Rx<'a> {
        Rx {
            link: Some(&meta.link),
            rssi: meta.rssi,
            snr: meta.snr,
            freq: meta.freq_hz,
            sf: meta.sf,
            received_at: rfc3339_utc_millis(meta.received_at_ms),
            via: meta.via.as_deref(),
        }
    }
}

/// The payload itself. Serializing plain strings, numbers and
/// already-valid raw JSON cannot fail.
fn encode(
    msg_id: &[u8; 16],
    device_id: &[u8; 32],
    message: Option<&RawValue>,
    frame: &[u8],
    rx: Rx<'_>,
    compacted: Option<u64>,
) -> Vec<u8> {
    let up = Up {
        msg_id: hex::encode(msg_id),
        device_id: hex::encode(device_id),
        message,
        frame: base64::engine::general_purpose::STANDARD.encode(frame),
        rx,
        compacted,
    };
    serde_json::to_vec(&up).expect("up payload serializes")
}

/// Builds the `up/{message_type}` payload of one outbox entry.
///
/// `compacted`: how many heartbeats the store folded into this one, when it
/// did (the store's `OutboxEntry` does not carry it yet; pass `None`).
pub fn up_payload(entry: &OutboxEntry, compacted: Option<u64>) -> UpPayload {
    let mut damaged = false;
    let message = match serde_json::from_str::<&RawValue>(&entry.message_json) {
        Ok(raw) => Some(raw),
        Err(_) => {
            damaged = true;
            None
        }
    };
    let meta = serde_json::from_str::<RxMeta>(&entry.rx_json);
    let rx = match &meta {
        Ok(meta) => Rx::of(meta),
        Err(_) => {
            damaged = true;
            Rx {
                link: None,
                rssi: None,
                snr: None,
                freq: None,
                sf: None,
                received_at: rfc3339_utc_millis(entry.received_at_ms),
                via: None,
            }
        }
    };
    let json = encode(
        &entry.msg_id,
        &entry.device_id,
        message,
        &entry.frame,
        rx,
        compacted,
    );
    UpPayload { json, damaged }
}

/// The `up` payload of a message being stored, built at ingest from what it
/// has in hand (the frame, its JSON form and its reception metadata), so
/// the uplink need not parse the stored JSON back. The same bytes as
/// [`up_payload`] of the stored row; `None` only if `message_json` is not
/// JSON (then the uplink builds it from the row and reports it damaged).
pub fn up_payload_at_ingest(
    msg_id: &[u8; 16],
    device_id: &[u8; 32],
    frame: &[u8],
    message_json: &str,
    rx: &RxMeta,
) -> Option<Vec<u8>> {
    let message = serde_json::from_str::<&RawValue>(message_json).ok()?;
    Some(encode(
        msg_id,
        device_id,
        Some(message),
        frame,
        Rx::of(rx),
        None,
    ))
}

/// `online` or `offline`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Availability {
    Online,
    Offline,
}

/// What the gateway runs, as the retained `state` message tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versions {
    /// This gateway software (`seed-gateway`'s crate version).
    pub software: String,
    /// The appliance image (`VERSION_ID` of its os-release, the version OTA
    /// updates install and compare); `None` where the gateway is not an
    /// updatable appliance (no `[ota]` section), since a host's os-release
    /// says nothing about the gateway.
    pub system: Option<String>,
}

/// The retained `state` message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatePayload {
    pub state: Availability,
    pub version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_version: Option<String>,
    /// Seconds since the uplink started; absent in the Last Will, which is
    /// fixed at connect time and would carry a stale value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uptime_s: Option<u64>,
    /// Messages stored but not yet acknowledged by the broker.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_depth: Option<u64>,
    /// Why the gateway is offline: `shutdown` (clean stop) or
    /// `connection_lost` (the Last Will).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
}

impl StatePayload {
    pub fn online(versions: &Versions, uptime_s: u64, queue_depth: u64) -> StatePayload {
        StatePayload {
            state: Availability::Online,
            version: versions.software.clone(),
            system_version: versions.system.clone(),
            uptime_s: Some(uptime_s),
            queue_depth: Some(queue_depth),
            reason: None,
        }
    }

    pub fn shutdown(versions: &Versions, uptime_s: u64, queue_depth: u64) -> StatePayload {
        StatePayload {
            state: Availability::Offline,
            version: versions.software.clone(),
            system_version: versions.system.clone(),
            uptime_s: Some(uptime_s),
            queue_depth: Some(queue_depth),
            reason: Some("shutdown"),
        }
    }

    pub fn last_will(versions: &Versions) -> StatePayload {
        StatePayload {
            state: Availability::Offline,
            version: versions.software.clone(),
            system_version: versions.system.clone(),
            uptime_s: None,
            queue_depth: None,
            reason: Some("connection_lost"),
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("state payload serializes")
    }
}

/// `2024-05-01T12:34:56.789Z` for milliseconds since the Unix epoch.
pub fn rfc3339_utc_millis(ms: u64) -> String {
    let secs = ms / 1000;
    let millis = ms % 1000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, exact for the whole proleptic calendar).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn entry() -> OutboxEntry {
        let meta = RxMeta {
            link: "rnode0".into(),
            rssi: Some(-97.5),
            snr: Some(6.25),
            freq_hz: Some(869_525_000),
            sf: Some(9),
            bandwidth_hz: Some(125_000),
            received_at_ms: 1_714_566_896_789,
            via: None,
        };
        OutboxEntry {
            seq: 7,
            msg_id: [0xab; 16],
            device_id: [0x01; 32],
            message_type: "heartbeat".into(),
            frame: vec![0, 1, 2, 250, 251, 252],
            message_json: r#"{"msg_type":"heartbeat","battery":87}"#.into(),
            rx_json: serde_json::to_string(&meta).unwrap(),
            received_at_ms: 1_714_566_896_789,
            compacted_count: 0,
        }
    }

    #[test]
    fn up_payload_uses_contract_names_and_embeds_the_message() {
        let p = up_payload(&entry(), None);
        assert!(!p.damaged);
        let v: Value = serde_json::from_slice(&p.json).unwrap();
        assert_eq!(
            v,
            json!({
                "msg_id": "ab".repeat(16),
                "device_id": "01".repeat(32),
                "message": {"msg_type": "heartbeat", "battery": 87},
                "frame": "AAEC+vv8",
                "rx": {
                    "link": "rnode0",
                    "rssi": -97.5,
                    "snr": 6.25,
                    "freq": 869_525_000,
                    "sf": 9,
                    "received_at": "2024-05-01T12:34:56.789Z"
                }
            })
        );
    }

    #[test]
    fn the_payload_built_at_ingest_is_the_one_built_from_the_stored_row() {
        let mut e = entry();
        for (rssi, snr, via) in [
            (Some(-97.5), Some(6.25), None),
            (
                Some(-120.3),
                Some(-7.1),
                Some("0a0a0a0a0a0a0a0a".to_string()),
            ),
            (None, None, None),
        ] {
            let mut meta: RxMeta = serde_json::from_str(&e.rx_json).unwrap();
            meta.rssi = rssi;
            meta.snr = snr;
            meta.via = via;
            e.rx_json = serde_json::to_string(&meta).unwrap();
            let at_ingest =
                up_payload_at_ingest(&e.msg_id, &e.device_id, &e.frame, &e.message_json, &meta);
            assert_eq!(at_ingest, Some(up_payload(&e, None).json), "{meta:?}");
        }
        let meta: RxMeta = serde_json::from_str(&e.rx_json).unwrap();
        let not_json = up_payload_at_ingest(&e.msg_id, &e.device_id, &e.frame, "{", &meta);
        assert_eq!(
            not_json, None,
            "left to the uplink, which reports it damaged"
        );
    }

    #[test]
    fn compacted_count_appears_only_when_given() {
        let v: Value = serde_json::from_slice(&up_payload(&entry(), Some(4)).json).unwrap();
        assert_eq!(v["compacted"], 4);
    }

    #[test]
    fn the_forwarder_that_heard_a_frame_is_named_when_known() {
        let mut e = entry();
        let mut meta: RxMeta = serde_json::from_str(&e.rx_json).unwrap();
        meta.via = Some("0a0a0a0a0a0a0a0a".into());
        e.rx_json = serde_json::to_string(&meta).unwrap();
        let v: Value = serde_json::from_slice(&up_payload(&e, None).json).unwrap();
        assert_eq!(v["rx"]["via"], "0a0a0a0a0a0a0a0a");
        assert_eq!(v["rx"]["link"], "rnode0");
    }

    #[test]
    fn damaged_rows_still_carry_the_frame() {
        let mut e = entry();
        e.message_json = "{not json".into();
        e.rx_json = "[]".into();
        let p = up_payload(&e, None);
        assert!(p.damaged);
        let v: Value = serde_json::from_slice(&p.json).unwrap();
        assert_eq!(v["message"], Value::Null);
        assert_eq!(v["frame"], "AAEC+vv8");
        assert_eq!(v["rx"]["link"], Value::Null);
        assert_eq!(v["rx"]["received_at"], "2024-05-01T12:34:56.789Z");
    }

    #[test]
    fn state_payloads() {
        let host = Versions {
            software: "0.1.0".into(),
            system: None,
        };
        let v: Value =
            serde_json::from_slice(&StatePayload::online(&host, 12, 3).to_json()).unwrap();
        assert_eq!(
            v,
            json!({"state":"online","version":"0.1.0","uptime_s":12,"queue_depth":3})
        );
        let v: Value = serde_json::from_slice(&StatePayload::last_will(&host).to_json()).unwrap();
        assert_eq!(
            v,
            json!({"state":"offline","version":"0.1.0","reason":"connection_lost"})
        );
        let v: Value =
            serde_json::from_slice(&StatePayload::shutdown(&host, 5, 0).to_json()).unwrap();
        assert_eq!(v["state"], "offline");
        assert_eq!(v["reason"], "shutdown");
    }

    #[test]
    fn an_appliance_also_names_its_system_version() {
        let appliance = Versions {
            software: "0.1.0".into(),
            system: Some("2.0.0".into()),
        };
        for payload in [
            StatePayload::online(&appliance, 1, 0),
            StatePayload::shutdown(&appliance, 1, 0),
            StatePayload::last_will(&appliance),
        ] {
            let v: Value = serde_json::from_slice(&payload.to_json()).unwrap();
            assert_eq!(v["version"], "0.1.0");
            assert_eq!(v["system_version"], "2.0.0");
        }
    }

    #[test]
    fn rfc3339_known_instants() {
        assert_eq!(rfc3339_utc_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339_utc_millis(951_782_400_000),
            "2000-02-29T00:00:00.000Z"
        );
        assert_eq!(
            rfc3339_utc_millis(4_107_542_399_999),
            "2100-02-28T23:59:59.999Z"
        );
        assert_eq!(
            rfc3339_utc_millis(1_704_067_199_001),
            "2023-12-31T23:59:59.001Z"
        );
    }
}
