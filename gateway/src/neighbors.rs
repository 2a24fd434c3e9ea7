//! The neighbor table: what the gateway knows about every device it hears,
//! built from heartbeats as the spec's receive steps describe (validate,
//! check protocol, update entry, record last seen, compare ledger height,
//! decide whether sync would help).
//!
//! Liveness is graded rather than binary because Seed devices sleep: a
//! device is *active* while its heartbeats arrive about when its power state
//! says they should, *stale* after a few missed ones, and *gone* after many.
//! The thresholds scale with the interval its power state implies, so a
//! low-power device heard every 7 minutes is not declared stale after 2.
//!
//! The table also holds the highest `timestamp_counter` per device, which is
//! what makes a replayed heartbeat detectable (docs/protocol.md §7).

use std::collections::HashMap;
use std::time::Duration;

use radio_bridge::frame::{DeviceClass, DeviceId, Heartbeat, PowerState, ProtocolVersion};
use radio_bridge::link::RxMeta;
use serde::{Deserialize, Serialize};

/// Heartbeats missed before a device counts as stale, and as gone.
const STALE_AFTER_INTERVALS: u32 = 3;
const GONE_AFTER_INTERVALS: u32 = 10;

/// The longest heartbeat interval the spec allows for a power state; a
/// device is judged against the slow end so jitter never makes it stale.
pub fn expected_interval(power: PowerState) -> Duration {
    match power {
        PowerState::Normal => Duration::from_secs(60),
        PowerState::LowPower => Duration::from_secs(600),
        PowerState::Charging => Duration::from_secs(60),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Liveness {
    Active,
    Stale,
    Gone,
}

/// One device as last heard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Neighbor {
    #[serde(with = "hex_id")]
    pub device_id: DeviceId,
    pub device_class: String,
    pub power_state: String,
    pub protocol_version: String,
    pub ledger_height: u64,
    pub sync_capable: bool,
    pub supports_groups: bool,
    pub supports_trust_scores: bool,
    pub supports_ai_assistant: bool,
    /// Highest heartbeat counter accepted; lower or equal ones are replays.
    pub last_counter: u32,
    /// Wall clock, ms since the Unix epoch.
    pub last_seen_ms: u64,
    pub last_link: String,
    pub rssi: Option<f32>,
    pub snr: Option<f32>,
    /// Heard with a protocol major version this gateway cannot sync with.
    pub outdated: bool,
    pub heartbeats: u64,
}

/// Serialises device ids as hex in the persisted table and the API.
mod hex_id {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(id: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(id))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let text = String::deserialize(d)?;
        let bytes = hex::decode(&text).map_err(serde::de::Error::custom)?;
        bytes
            .try_into()
            .map_err(|_| serde::de::Error::custom("device id is not 32 bytes"))
    }
}

/// What the table decided about one heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeartbeatVerdict {
    /// New information; the entry was updated.
    Accepted,
    /// Counter not above the last accepted one: an old heartbeat replayed.
    Replayed { last: u32, got: u32 },
}

/// Whether a ledger sync with a device would help, and why (or why not).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SyncHint {
    pub behind_by: u64,
    /// The device could sync right now: sync_capable, not low power, same
    /// protocol major version.
    pub would_help: bool,
}

#[derive(Debug, Default)]
pub struct NeighborTable {
    entries: HashMap<DeviceId, Neighbor>,
    /// Best ledger height learned from the backend (over MQTT).
    backend_height: Option<u64>,
}

impl NeighborTable {
    pub fn new() -> NeighborTable {
        NeighborTable::default()
    }

    /// Restores a table persisted with [`NeighborTable::to_json`]; a
    /// damaged snapshot starts an empty table rather than failing start-up,
    /// costing only replay protection until devices are heard again.
    pub fn from_json(text: &str) -> NeighborTable {
        let entries: Vec<Neighbor> = serde_json::from_str(text).unwrap_or_default();
        NeighborTable {
            entries: entries.into_iter().map(|n| (n.device_id, n)).collect(),
            backend_height: None,
        }
    }

    pub fn to_json(&self) -> String {
        let list: Vec<&Neighbor> = self.entries.values().collect();
        serde_json::to_string(&list).unwrap_or_else(|_| "[]".into())
    }

    /// Applies a verified heartbeat (spec §7 steps 3–5).
    pub fn heartbeat(
        &mut self,
        device_id: DeviceId,
        version: ProtocolVersion,
        hb: &Heartbeat,
        rx: &RxMeta,
    ) -> HeartbeatVerdict {
        if let Some(existing) = self.entries.get(&device_id) {
            if hb.timestamp_counter <= existing.last_counter {
                return HeartbeatVerdict::Replayed {
                    last: existing.last_counter,
                    got: hb.timestamp_counter,
                };
            }
        }
        let heartbeats = self.entries.get(&device_id).map_or(0, |n| n.heartbeats) + 1;
        self.entries.insert(
            device_id,
            Neighbor {
                device_id,
                device_class: hb.device_class.name(),
                power_state: hb.power_state.name().into(),
                protocol_version: version.to_string(),
                ledger_height: hb.ledger_height,
                sync_capable: hb.sync_capable,
                supports_groups: hb.capabilities.supports_groups,
                supports_trust_scores: hb.capabilities.supports_trust_scores,
                supports_ai_assistant: hb.capabilities.supports_ai_assistant,
                last_counter: hb.timestamp_counter,
                last_seen_ms: rx.received_at_ms,
                last_link: rx.link.clone(),
                rssi: rx.rssi,
                snr: rx.snr,
                outdated: false,
                heartbeats,
            },
        );
        HeartbeatVerdict::Accepted
    }

    /// Any other verified frame from a device refreshes when it was heard.
    pub fn heard(&mut self, device_id: &DeviceId, rx: &RxMeta) {
        if let Some(n) = self.entries.get_mut(device_id) {
            n.last_seen_ms = n.last_seen_ms.max(rx.received_at_ms);
            n.last_link = rx.link.clone();
            n.rssi = rx.rssi.or(n.rssi);
            n.snr = rx.snr.or(n.snr);
        }
    }

    /// A correctly signed frame of a protocol major version we cannot speak:
    /// recorded so the status page can say the device needs an update.
    pub fn outdated(&mut self, device_id: DeviceId, version: ProtocolVersion, rx: &RxMeta) {
        let entry = self.entries.entry(device_id).or_insert_with(|| Neighbor {
            device_id,
            device_class: DeviceClass::SeedDevice.name(),
            power_state: PowerState::Normal.name().into(),
            protocol_version: version.to_string(),
            ledger_height: 0,
            sync_capable: false,
            supports_groups: false,
            supports_trust_scores: false,
            supports_ai_assistant: false,
            last_counter: 0,
            last_seen_ms: rx.received_at_ms,
            last_link: rx.link.clone(),
            rssi: rx.rssi,
            snr: rx.snr,
            outdated: true,
            heartbeats: 0,
        });
        entry.outdated = true;
        entry.protocol_version = version.to_string();
        entry.last_seen_ms = entry.last_seen_ms.max(rx.received_at_ms);
    }

    pub fn set_backend_height(&mut self, height: u64) {
        self.backend_height = Some(height);
    }

    /// The best ledger height known: the backend's, or the highest heard.
    pub fn best_height(&self) -> u64 {
        let heard = self
            .entries
            .values()
            .filter(|n| !n.outdated)
            .map(|n| n.ledger_height)
            .max()
            .unwrap_or(0);
        self.backend_height.unwrap_or(0).max(heard)
    }

    /// Spec §7 step 6: would a sync help this device? Recording the answer
    /// is all a heartbeat does; the device decides whether to sync.
    pub fn sync_hint(&self, device_id: &DeviceId) -> Option<SyncHint> {
        let n = self.entries.get(device_id)?;
        let behind_by = self.best_height().saturating_sub(n.ledger_height);
        Some(SyncHint {
            behind_by,
            would_help: behind_by > 0
                && n.sync_capable
                && !n.outdated
                && n.power_state != PowerState::LowPower.name(),
        })
    }

    pub fn liveness(n: &Neighbor, now_ms: u64) -> Liveness {
        let power = PowerState::from_name(&n.power_state).unwrap_or(PowerState::Normal);
        let interval = expected_interval(power).as_millis() as u64;
        let silent = now_ms.saturating_sub(n.last_seen_ms);
        if silent <= interval * STALE_AFTER_INTERVALS as u64 {
            Liveness::Active
        } else if silent <= interval * GONE_AFTER_INTERVALS as u64 {
            Liveness::Stale
        } else {
            Liveness::Gone
        }
    }

    pub fn get(&self, device_id: &DeviceId) -> Option<&Neighbor> {
        self.entries.get(device_id)
    }

    pub fn all(&self) -> impl Iterator<Item = &Neighbor> {
        self.entries.values()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hb(counter: u32, height: u64, power: PowerState) -> Heartbeat {
        Heartbeat {
            device_class: DeviceClass::Handheld,
            timestamp_counter: counter,
            power_state: power,
            ledger_height: height,
            sync_capable: true,
            capabilities: radio_bridge::frame::Capabilities::default(),
        }
    }

    fn rx(at: u64) -> RxMeta {
        RxMeta {
            received_at_ms: at,
            ..RxMeta::now("test")
        }
    }

    #[test]
    fn counter_going_backwards_is_a_replay() {
        let mut t = NeighborTable::new();
        let v = ProtocolVersion::CURRENT;
        assert_eq!(
            t.heartbeat([1; 32], v, &hb(10, 5, PowerState::Normal), &rx(1)),
            HeartbeatVerdict::Accepted
        );
        assert_eq!(
            t.heartbeat([1; 32], v, &hb(10, 5, PowerState::Normal), &rx(2)),
            HeartbeatVerdict::Replayed { last: 10, got: 10 }
        );
        assert_eq!(
            t.heartbeat([1; 32], v, &hb(9, 5, PowerState::Normal), &rx(3)),
            HeartbeatVerdict::Replayed { last: 10, got: 9 }
        );
        assert_eq!(t.get(&[1; 32]).unwrap().last_seen_ms, 1);
    }

    #[test]
    fn liveness_scales_with_power_state() {
        let mut t = NeighborTable::new();
        let v = ProtocolVersion::CURRENT;
        t.heartbeat([1; 32], v, &hb(1, 0, PowerState::Normal), &rx(0));
        t.heartbeat([2; 32], v, &hb(1, 0, PowerState::LowPower), &rx(0));
        let normal = t.get(&[1; 32]).unwrap();
        let low = t.get(&[2; 32]).unwrap();
        let five_min = 5 * 60 * 1000;
        assert_eq!(NeighborTable::liveness(normal, five_min), Liveness::Stale);
        assert_eq!(NeighborTable::liveness(low, five_min), Liveness::Active);
        assert_eq!(
            NeighborTable::liveness(normal, 11 * 60 * 1000),
            Liveness::Gone
        );
        assert_eq!(
            NeighborTable::liveness(low, 11 * 60 * 1000),
            Liveness::Active
        );
    }

    #[test]
    fn sync_hint_compares_with_best_height() {
        let mut t = NeighborTable::new();
        let v = ProtocolVersion::CURRENT;
        t.heartbeat([1; 32], v, &hb(1, 100, PowerState::Normal), &rx(0));
        t.heartbeat([2; 32], v, &hb(1, 90, PowerState::Normal), &rx(0));
        t.heartbeat([3; 32], v, &hb(1, 80, PowerState::LowPower), &rx(0));
        assert_eq!(
            t.sync_hint(&[2; 32]),
            Some(SyncHint {
                behind_by: 10,
                would_help: true
            })
        );
        assert!(!t.sync_hint(&[1; 32]).unwrap().would_help);
        assert!(
            !t.sync_hint(&[3; 32]).unwrap().would_help,
            "low power never syncs"
        );
        t.set_backend_height(150);
        assert_eq!(t.sync_hint(&[1; 32]).unwrap().behind_by, 50);
    }

    #[test]
    fn outdated_devices_are_not_syncable() {
        let mut t = NeighborTable::new();
        t.set_backend_height(10);
        t.outdated([9; 32], ProtocolVersion { major: 0, minor: 9 }, &rx(0));
        let n = t.get(&[9; 32]).unwrap();
        assert!(n.outdated);
        assert_eq!(n.protocol_version, "0.9");
        assert!(!t.sync_hint(&[9; 32]).unwrap().would_help);
    }

    #[test]
    fn table_survives_a_json_round_trip() {
        let mut t = NeighborTable::new();
        t.heartbeat(
            [4; 32],
            ProtocolVersion::CURRENT,
            &hb(77, 3, PowerState::Charging),
            &rx(5),
        );
        let restored = NeighborTable::from_json(&t.to_json());
        assert_eq!(restored.get(&[4; 32]), t.get(&[4; 32]));
        assert!(NeighborTable::from_json("not json").is_empty());
    }
}
