//! What the running gateway knows about itself, shared between the tasks
//! that change it (ingest, links, uplink) and those that show it (status
//! page, metrics, MQTT state).
//!
//! Counters are atomics so the hot path never waits on a reader; the
//! neighbor table, link list and recent events sit behind short-held
//! mutexes (never held across an `.await`).

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use radio_bridge::link::{unix_millis, LinkCounters, LinkState};
use serde::Serialize;
use tokio::sync::broadcast;

use crate::neighbors::NeighborTable;
use crate::uplink::UplinkWaker;

/// Receive outcomes of docs/protocol.md §7, one counter each.
#[derive(Debug, Default)]
pub struct FrameCounters {
    pub accepted: AtomicU64,
    pub duplicate: AtomicU64,
    pub malformed: AtomicU64,
    pub oversize: AtomicU64,
    pub bad_signature: AtomicU64,
    pub unsupported_version: AtomicU64,
    pub replayed: AtomicU64,
    /// Verified but refused by the store (quota full): not acked.
    pub refused: AtomicU64,
}

impl FrameCounters {
    pub fn by_outcome(&self, outcome: &str) -> Option<&AtomicU64> {
        Some(match outcome {
            "accepted" => &self.accepted,
            "duplicate" => &self.duplicate,
            "malformed" => &self.malformed,
            "oversize" => &self.oversize,
            "bad_signature" => &self.bad_signature,
            "unsupported_version" => &self.unsupported_version,
            "replayed" => &self.replayed,
            "refused" => &self.refused,
            _ => return None,
        })
    }

    pub fn bump(&self, outcome: &str) {
        if let Some(c) = self.by_outcome(outcome) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn get(&self, outcome: &str) -> u64 {
        self.by_outcome(outcome)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }
}

/// One radio link as the status page shows it.
#[derive(Debug, Clone)]
pub struct LinkStatus {
    pub kind: &'static str,
    pub state: LinkState,
    pub counters: Arc<LinkCounters>,
    /// What became of this link's frames after link-layer decoding; kept
    /// across driver restarts, unlike `counters`.
    pub frames: Arc<FrameCounters>,
    pub last_rssi: Option<f32>,
    pub last_snr: Option<f32>,
}

/// Something worth telling the keeper: a link lost, the broker down, the
/// quota reached, frames rejected.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Event {
    pub at_ms: u64,
    /// Machine-readable kind: `link_up`, `link_down`, `broker_up`,
    /// `broker_down`, `quota`, `storage`, `mailbox`, `started`, `uplink`.
    pub kind: &'static str,
    /// `info`, `warn` or `error`.
    pub level: &'static str,
    pub text: String,
}

const RECENT_EVENTS: usize = 100;
const HOUR_MS: u64 = 3_600_000;

/// Frames heard per hour over the last 24 hours.
#[derive(Debug, Default)]
pub struct TrafficHistory {
    /// (hour number since the epoch, frames heard in it)
    hours: VecDeque<(u64, u32)>,
}

impl TrafficHistory {
    pub fn record(&mut self, at_ms: u64) {
        let hour = at_ms / HOUR_MS;
        match self.hours.back_mut() {
            Some((h, n)) if *h == hour => *n += 1,
            _ => self.hours.push_back((hour, 1)),
        }
        while self.hours.len() > 24 {
            self.hours.pop_front();
        }
    }

    /// 24 buckets, oldest first, the last one being the current hour.
    pub fn last_24h(&self, now_ms: u64) -> Vec<u32> {
        let now_hour = now_ms / HOUR_MS;
        (0..24)
            .map(|i| {
                let hour = now_hour + i - 23;
                self.hours
                    .iter()
                    .find(|(h, _)| *h == hour)
                    .map_or(0, |(_, n)| *n)
            })
            .collect()
    }
}

/// Shared state of one running gateway.
pub struct GatewayState {
    pub gateway_id: String,
    pub version: &'static str,
    pub started: Instant,
    pub frames: FrameCounters,
    neighbors: Mutex<NeighborTable>,
    links: Mutex<BTreeMap<String, LinkStatus>>,
    events: Mutex<VecDeque<Event>>,
    traffic: Mutex<TrafficHistory>,
    live: broadcast::Sender<Event>,
    uplink_waker: OnceLock<UplinkWaker>,
}

/// Locks a mutex, recovering the data if a panicking thread poisoned it:
/// counters and tables stay usable, which beats taking the gateway down.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl GatewayState {
    pub fn new(gateway_id: String, neighbors: NeighborTable) -> GatewayState {
        GatewayState {
            gateway_id,
            version: env!("CARGO_PKG_VERSION"),
            started: Instant::now(),
            frames: FrameCounters::default(),
            neighbors: Mutex::new(neighbors),
            links: Mutex::new(BTreeMap::new()),
            events: Mutex::new(VecDeque::new()),
            traffic: Mutex::new(TrafficHistory::default()),
            live: broadcast::channel(256).0,
            uplink_waker: OnceLock::new(),
        }
    }

    pub fn neighbors(&self) -> MutexGuard<'_, NeighborTable> {
        lock(&self.neighbors)
    }

    pub fn links(&self) -> MutexGuard<'_, BTreeMap<String, LinkStatus>> {
        lock(&self.links)
    }

    pub fn traffic(&self) -> MutexGuard<'_, TrafficHistory> {
        lock(&self.traffic)
    }

    pub fn add_link(&self, name: &str, kind: &'static str, counters: Arc<LinkCounters>) {
        self.links().insert(
            name.to_string(),
            LinkStatus {
                kind,
                state: LinkState::Connecting,
                counters,
                frames: Arc::default(),
                last_rssi: None,
                last_snr: None,
            },
        );
    }

    /// Counts what became of a frame heard on `link`, in the gateway's
    /// totals and in the link's own counts (so a keeper can tell which
    /// concentrator brings the bad frames).
    pub fn count_frame(&self, link: &str, outcome: &str) {
        self.frames.bump(outcome);
        if let Some(status) = self.links().get(link) {
            status.frames.bump(outcome);
        }
    }

    /// Points a link's entry at the counters of a new driver (after a
    /// restart); state, RSSI and SNR stay until the new driver reports.
    pub fn replace_link_counters(&self, name: &str, counters: Arc<LinkCounters>) {
        if let Some(link) = self.links().get_mut(name) {
            link.counters = counters;
        }
    }

    /// Records a link state change, with an event when it matters.
    pub fn set_link_state(&self, name: &str, state: LinkState) {
        let previous = {
            let mut links = self.links();
            let Some(link) = links.get_mut(name) else {
                return;
            };
            std::mem::replace(&mut link.state, state.clone())
        };
        if previous == state {
            return;
        }
        match &state {
            LinkState::Up => self.event("link_up", "info", format!("Radio {name} is working")),
            LinkState::Down(why) => {
                self.event("link_down", "warn", format!("Radio {name} stopped: {why}"))
            }
            LinkState::Connecting => {}
        }
    }

    pub fn heard_on_link(&self, name: &str, rssi: Option<f32>, snr: Option<f32>, at_ms: u64) {
        if let Some(link) = self.links().get_mut(name) {
            link.last_rssi = rssi.or(link.last_rssi);
            link.last_snr = snr.or(link.last_snr);
        }
        self.traffic().record(at_ms);
    }

    /// Adds to the recent-events list and tells live subscribers.
    pub fn event(&self, kind: &'static str, level: &'static str, text: String) {
        match level {
            "error" => tracing::error!("{text}"),
            "warn" => tracing::warn!("{text}"),
            _ => tracing::info!("{text}"),
        }
        let event = Event {
            at_ms: unix_millis(std::time::SystemTime::now()),
            kind,
            level,
            text,
        };
        {
            let mut events = lock(&self.events);
            events.push_back(event.clone());
            while events.len() > RECENT_EVENTS {
                events.pop_front();
            }
        }
        // No subscriber is fine: nobody has the page open.
        let _ = self.live.send(event);
    }

    pub fn recent_events(&self) -> Vec<Event> {
        lock(&self.events).iter().cloned().collect()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.live.subscribe()
    }

    /// Registers the uplink so anything that adds to the outbox can wake it.
    pub fn set_uplink_waker(&self, waker: UplinkWaker) {
        let _ = self.uplink_waker.set(waker);
    }

    /// Tells the uplink new outbox rows exist (no-op without an uplink).
    pub fn wake_uplink(&self) {
        if let Some(w) = self.uplink_waker.get() {
            w.wake();
        }
    }

    pub fn uptime_s(&self) -> u64 {
        self.started.elapsed().as_secs()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traffic_history_keeps_24_hourly_buckets() {
        let mut t = TrafficHistory::default();
        let base = 1000 * HOUR_MS;
        t.record(base);
        t.record(base + 10);
        t.record(base + HOUR_MS);
        let buckets = t.last_24h(base + HOUR_MS + 5);
        assert_eq!(buckets.len(), 24);
        assert_eq!(&buckets[22..], &[2, 1]);
        // A day later the old hours have rolled off.
        assert_eq!(t.last_24h(base + 30 * HOUR_MS).iter().sum::<u32>(), 0);
    }

    #[test]
    fn link_changes_become_events() {
        let s = GatewayState::new("gw".into(), NeighborTable::new());
        s.add_link("r0", "rnode", Arc::default());
        s.set_link_state("r0", LinkState::Up);
        s.set_link_state("r0", LinkState::Up);
        s.set_link_state("r0", LinkState::Down("unplugged".into()));
        let texts: Vec<String> = s.recent_events().into_iter().map(|e| e.text).collect();
        assert_eq!(
            texts,
            vec!["Radio r0 is working", "Radio r0 stopped: unplugged"]
        );
    }
}
