//! The data the status page, the JSON API and the metrics are built from.
//!
//! The gateway fills these plain structs (see [`crate::GatewayView`]); web-ui never reaches
//! into the gateway's internals. Every type serialises to the JSON documented in `API.md`,
//! so a field added here is a field added to the public API: document it there too.
//!
//! Times are Unix epoch milliseconds taken from the gateway's clock (`*_ms`). The API adds
//! the gateway's `now_ms` to every document so that a phone with a wrong clock still shows
//! correct ages ("3 h ago").

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Everything the status page shows except the neighbor table (which has its own endpoint
/// because it can grow long).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub gateway: Identity,
    pub uplink: UplinkView,
    pub links: Vec<LinkView>,
    pub duty_cycle: Vec<BandView>,
    pub storage: StorageView,
    pub frames: FrameCounters,
    pub mailboxes: MailboxView,
    /// Most recent notable events, newest first. The gateway decides how many (20 is plenty).
    pub events: Vec<EventView>,
    /// Frames heard per hour over the last 24 hours, oldest first; the last bucket is the
    /// current, still running hour. Always 24 entries when filled by the gateway.
    pub traffic_24h: Vec<u32>,
    /// Messages too long for one radio packet arrive split in pieces; what became of them.
    #[serde(default)]
    pub fragments: FragmentCounters,
    /// The latest over-the-air update, when updates are enabled.
    #[serde(default)]
    pub update: Option<UpdateView>,
}

/// The latest over-the-air update (the same fields as its `ota/progress` report).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateView {
    /// `idle` (nothing since start), `downloading`, `verifying`, `installing`, `rebooting`,
    /// `health_check`, `installed`, `health_check_failed`, `rolled_back`, `refused`, `failed`.
    pub state: String,
    /// The version being installed (or refused).
    pub version: Option<String>,
    /// The version running now.
    pub running_version: String,
    pub percent: Option<u8>,
    pub reason: Option<String>,
    pub at_ms: u64,
}

/// Reassembly of messages that arrived split over several radio packets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FragmentCounters {
    /// Messages put back together from their pieces.
    pub completed: u64,
    /// Incomplete messages given up because their remaining pieces did not arrive in time.
    pub timed_out: u64,
    /// Incomplete messages dropped to keep memory bounded (too many at once).
    pub evicted_for_memory: u64,
    /// Pieces that were not valid fragments.
    pub malformed: u64,
    /// Pieces received twice (ignored).
    pub duplicates: u64,
}

impl FragmentCounters {
    /// Split messages that never became whole.
    pub fn incomplete(&self) -> u64 {
        self.timed_out + self.evicted_for_memory
    }
}

/// Who this gateway is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Identity {
    /// The gateway's public id (the same id as in the MQTT topics).
    pub id: String,
    /// Software version, e.g. `0.1.0`.
    pub version: String,
    /// Seconds since the daemon started.
    pub uptime_s: u64,
}

/// The MQTT uplink ("Internet" on the page).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UplinkView {
    /// False when no broker is configured: messages are only stored.
    pub configured: bool,
    pub connected: bool,
    /// Broker address without credentials, e.g. `mqtts://broker.example:8883`.
    /// web-ui strips any `user:password@` part again before showing it.
    pub broker: Option<String>,
    /// When the current state (connected or not) began; None if never connected.
    pub since_ms: Option<u64>,
    /// When the last message was acknowledged by the broker.
    pub last_publish_ms: Option<u64>,
    /// The last connection or publish error, in words (no secrets).
    pub last_error: Option<String>,
    /// Messages stored but not yet acknowledged by the broker.
    pub backlog: u64,
    /// Receive time of the oldest message in the backlog.
    pub oldest_pending_ms: Option<u64>,
    /// Messages acknowledged by the broker since the daemon started.
    pub published_total: u64,
    /// Messages deleted before the broker acknowledged them. The gateway's design keeps this
    /// at 0; anything else is shown prominently.
    pub dropped_total: u64,
    /// Time from handing a message to the MQTT client to the broker's acknowledgement.
    pub publish_latency: LatencyHistogram,
}

/// One radio link (a concentrator: RNode on a serial port, a packet forwarder over UDP, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkView {
    /// Configured name, unique per gateway, e.g. `rnode0`.
    pub name: String,
    /// What kind of concentrator, e.g. `rnode-serial`, `gwmp-udp`, `simulated`.
    pub kind: String,
    pub state: LinkState,
    /// Human detail: where it is attached, or why it is down (no secrets).
    pub detail: String,
    /// When the link entered its current state.
    pub since_ms: Option<u64>,
    /// Frames the concentrator passed up with a good CRC.
    pub frames_received: u64,
    /// Frames that could not be decoded at the link layer (bad KISS/GWMP framing).
    pub malformed: u64,
    /// Frames the radio reported with a bad CRC.
    pub bad_crc: u64,
    /// Errors talking to the device itself (serial read errors, socket errors, restarts).
    pub device_errors: u64,
    /// Transmissions held because the link did not yet know where to send
    /// them (a GWMP link before its packet forwarder's first PULL_DATA).
    #[serde(default)]
    pub tx_held: u64,
    /// Held transmissions that could not go out in time (the device had
    /// stopped listening): not sent, and counted here rather than lost silently.
    #[serde(default)]
    pub tx_too_late: u64,
    /// Signal strength of the last frame, dBm.
    pub last_rssi: Option<f32>,
    /// Signal-to-noise ratio of the last frame, dB.
    pub last_snr: Option<f32>,
    /// When the last frame was heard.
    pub last_frame_ms: Option<u64>,
    /// What became of this link's frames after link-layer decoding (the
    /// gateway-wide totals are [`Status::frames`]).
    #[serde(default)]
    pub frames: FrameCounters,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkState {
    Up,
    Down,
    Connecting,
}

impl LinkState {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkState::Up => "up",
            LinkState::Down => "down",
            LinkState::Connecting => "connecting",
        }
    }
}

/// Transmit airtime used in one regulatory sub-band over its rolling window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BandView {
    /// Sub-band name, e.g. `g1 868.0-868.6 MHz`.
    pub band: String,
    /// Airtime used in the current window, ms.
    pub used_ms: u64,
    /// Airtime allowed per window (duty-cycle limit x window), ms.
    pub budget_ms: u64,
    /// Length of the rolling window, s (3600 for EU868).
    pub window_s: u64,
    /// `used_ms / budget_ms` in percent, may exceed 100 briefly.
    pub percent: f32,
}

impl BandView {
    /// Builds a band view with `percent` computed, so it can never disagree with the numbers.
    pub fn new(band: impl Into<String>, used_ms: u64, budget_ms: u64, window_s: u64) -> Self {
        let percent = if budget_ms == 0 {
            if used_ms == 0 {
                0.0
            } else {
                100.0
            }
        } else {
            (used_ms as f64 * 100.0 / budget_ms as f64) as f32
        };
        BandView {
            band: band.into(),
            used_ms,
            budget_ms,
            window_s,
            percent,
        }
    }
}

/// The durable store (SQLite database on the data partition).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StorageView {
    /// Bytes used by the database (including its write-ahead log).
    pub bytes_used: u64,
    /// The configured ceiling; new messages are refused (not acknowledged) above it.
    pub quota_bytes: u64,
    pub quota_state: QuotaState,
    /// False when the last write failed (disk full, read-only file system, I/O error).
    pub writable: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QuotaState {
    /// Comfortably below the quota.
    Ok,
    /// Close to the quota (the gateway picks the threshold, e.g. 80 %).
    Warning,
    /// At the quota: new messages are refused until the backlog drains.
    Full,
}

/// What happened to the frames the radios heard, after link-layer decoding.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FrameCounters {
    /// Verified and stored.
    pub accepted: u64,
    /// Already stored (a device repeated a frame we had acknowledged).
    pub duplicates: u64,
    /// Signature did not verify.
    pub bad_signature: u64,
    /// Not a valid Seed frame (CBOR or field errors).
    pub malformed: u64,
    /// Valid frame of a protocol version this gateway does not speak.
    pub unsupported_version: u64,
    /// A heartbeat whose counter went backwards (an old frame sent again): dropped.
    #[serde(default)]
    pub replayed: u64,
    /// Valid, but not stored because storage was full (not acknowledged, the device retries).
    pub refused_full: u64,
}

impl FrameCounters {
    /// Every outcome with its metric label, in a fixed order.
    pub fn outcomes(&self) -> [(&'static str, u64); 7] {
        [
            ("accepted", self.accepted),
            ("duplicate", self.duplicates),
            ("bad_signature", self.bad_signature),
            ("malformed", self.malformed),
            ("unsupported_version", self.unsupported_version),
            ("replayed", self.replayed),
            ("refused_full", self.refused_full),
        ]
    }

    /// Frames heard but not stored for a reason other than being a duplicate.
    pub fn rejected(&self) -> u64 {
        self.bad_signature
            + self.malformed
            + self.unsupported_version
            + self.replayed
            + self.refused_full
    }
}

/// Messages from the backend waiting for devices (mailboxes) and their delivery receipts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MailboxView {
    /// Messages waiting for their device to come in range.
    pub pending: u64,
    /// Number of devices with at least one pending message.
    pub devices_waiting: u64,
    /// Delivered and acknowledged by the device (receipt sent upstream).
    pub delivered: u64,
    /// Given up after retries (failure receipt sent upstream).
    pub failed: u64,
    /// Expired before the device was heard (failure receipt sent upstream).
    pub expired: u64,
    /// Receipts stored but not yet published to the backend.
    pub receipts_waiting: u64,
}

/// One line of the "recent events" list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventView {
    pub at_ms: u64,
    pub level: EventLevel,
    /// Machine-readable kind, e.g. `link_down`, `link_up`, `broker_down`, `broker_up`,
    /// `quota`, `frame_rejected`, `started`. Clients must accept kinds they don't know.
    pub kind: String,
    /// The event in a kiosk keeper's words, e.g. "Radio rnode0 unplugged".
    pub text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventLevel {
    Info,
    Warning,
    Error,
}

/// A device heard over the radio (from its heartbeats, spec 004).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Neighbor {
    pub device_id: String,
    /// e.g. `seed_device`, `kiosk`, `gateway`.
    pub device_class: String,
    /// `low_power`, `normal` or `charging` as the device reported it.
    pub power_state: String,
    pub last_seen_ms: u64,
    pub rssi: Option<f32>,
    pub snr: Option<f32>,
    /// Number of valid ledger transactions the device reports.
    pub ledger_height: u64,
    pub protocol_version: String,
    /// The device says it can sync right now.
    pub sync_capable: bool,
    /// A short hint, e.g. "behind by 12", "ahead by 3", or None when in step / unknown.
    pub sync_hint: Option<String>,
    pub liveness: Liveness,
    /// The radio link that heard it last.
    pub link: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Liveness {
    /// Heard recently.
    Active,
    /// Missed some heartbeats; shown greyed.
    Stale,
    /// Not heard for long; hidden unless the user asks.
    Gone,
}

impl Liveness {
    pub fn as_str(self) -> &'static str {
        match self {
            Liveness::Active => "active",
            Liveness::Stale => "stale",
            Liveness::Gone => "gone",
        }
    }
}

/// The uplink backlog: stored messages not yet acknowledged by the broker.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Queue {
    pub backlog: u64,
    pub oldest_pending_ms: Option<u64>,
    /// Backlog per message type, e.g. `{"heartbeat": 1100, "telemetry": 104}`.
    pub by_type: BTreeMap<String, u64>,
    /// The oldest few waiting messages (the gateway decides how many, 50 is plenty).
    pub recent: Vec<QueueItem>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueItem {
    /// Store sequence number (publish order).
    pub seq: u64,
    /// Message id, hex.
    pub msg_id: String,
    pub device_id: String,
    pub message_type: String,
    pub received_at_ms: u64,
}

/// The answer of `/healthz`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Health {
    pub ok: bool,
    /// Why not ok, in words; empty when ok.
    pub reasons: Vec<String>,
}

impl Health {
    /// The default rule: healthy when the store takes writes and every configured link is up.
    /// A missing Internet connection is not unhealthy: the gateway is built to work offline.
    pub fn from_status(status: &Status) -> Health {
        let mut reasons = Vec::new();
        if !status.storage.writable {
            reasons.push("storage is not writable".to_string());
        }
        if status.storage.quota_state == QuotaState::Full {
            reasons.push("storage is full".to_string());
        }
        for link in &status.links {
            if link.state != LinkState::Up {
                reasons.push(format!(
                    "radio link {} is {}",
                    link.name,
                    link.state.as_str()
                ));
            }
        }
        Health {
            ok: reasons.is_empty(),
            reasons,
        }
    }
}

/// What the gateway pushes to web-ui for live updates (see [`crate::GatewayView::subscribe`]).
#[derive(Debug, Clone, PartialEq)]
pub enum LiveEvent {
    /// Something in status, neighbors or queue changed. web-ui takes fresh snapshots itself,
    /// at most about once a second per open page, so this is cheap to send often.
    Changed,
    /// A notable event, shown at once at the top of the "recent events" list. It also marks
    /// the status as changed, and the next snapshot replaces the list with `Status::events`,
    /// so the gateway must put the event there too (before sending it here).
    Event(EventView),
}

/// A Prometheus-style latency histogram with fixed bounds, cheap to clone into a snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencyHistogram {
    /// Upper bounds in seconds, ascending (the `+Inf` bucket is implicit).
    pub bounds_s: Vec<f64>,
    /// Observations per bucket (not cumulative); one more entry than `bounds_s`, the last
    /// counting observations above every bound.
    pub counts: Vec<u64>,
    pub sum_s: f64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::with_bounds(&[0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0])
    }
}

impl LatencyHistogram {
    pub fn with_bounds(bounds_s: &[f64]) -> Self {
        LatencyHistogram {
            bounds_s: bounds_s.to_vec(),
            counts: vec![0; bounds_s.len() + 1],
            sum_s: 0.0,
        }
    }

    pub fn observe(&mut self, seconds: f64) {
        let index = self
            .bounds_s
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(self.bounds_s.len());
        if let Some(count) = self.counts.get_mut(index) {
            *count += 1;
        }
        self.sum_s += seconds;
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The smallest bound within which at least `share` (0..=1) of the
    /// observations fell; infinity when that takes the bucket above every
    /// bound, `None` without observations.
    pub fn bound_for_share(&self, share: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let wanted = (share.clamp(0.0, 1.0) * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= wanted {
                return Some(self.bounds_s.get(i).copied().unwrap_or(f64::INFINITY));
            }
        }
        Some(f64::INFINITY)
    }
}

/// The gateway's wall clock in Unix milliseconds (0 if the clock is before 1970).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn band_percent_follows_the_numbers() {
        assert_eq!(BandView::new("g1", 18_000, 36_000, 3600).percent, 50.0);
        assert_eq!(BandView::new("g1", 0, 0, 3600).percent, 0.0);
        assert_eq!(BandView::new("g1", 5, 0, 3600).percent, 100.0);
    }

    #[test]
    fn histogram_puts_each_observation_in_one_bucket() {
        let mut histogram = LatencyHistogram::with_bounds(&[0.1, 1.0]);
        histogram.observe(0.05);
        histogram.observe(0.1);
        histogram.observe(0.5);
        histogram.observe(7.0);
        assert_eq!(histogram.counts, vec![2, 1, 1]);
        assert_eq!(histogram.count(), 4);
        assert!((histogram.sum_s - 7.65).abs() < 1e-9);
        assert_eq!(histogram.bound_for_share(0.5), Some(0.1));
        assert_eq!(histogram.bound_for_share(0.75), Some(1.0));
        assert_eq!(histogram.bound_for_share(0.9), Some(f64::INFINITY));
        assert_eq!(LatencyHistogram::default().bound_for_share(0.5), None);
    }

    #[test]
    fn enums_serialise_as_lowercase_words() {
        let json = serde_json::to_string(&(LinkState::Connecting, Liveness::Gone, QuotaState::Ok));
        assert_eq!(json.unwrap(), r#"["connecting","gone","ok"]"#);
    }
}
