//! The gateway's own heartbeat: the gateway is a Seed node too (device
//! class `gateway`), so it announces itself like any device, over the radio
//! to the devices around it and on `…/heartbeat` to the backend.
//!
//! Two tasks split the job so each is simple to reason about and to test:
//!
//! - the **pacer** decides *when*: on boot, then periodically at the rate
//!   its power state allows, and soon after the radio or the internet
//!   uplink changes (spec §3: "when radio connectivity changes"). It reads
//!   the power state from Linux `power_supply` sysfs every
//!   [`POWER_POLL`]; a change moves the next heartbeat at once.
//! - the **sender** decides *what*: it signs a heartbeat with the next
//!   counter value, queues it for every radio link at
//!   [`Priority::Heartbeat`] (the lowest: acks, downlinks and sync offers
//!   go first), and commits it to the outbox as `gateway_heartbeat`, which
//!   the uplink publishes on `…/heartbeat`.
//!
//! # Power state rule
//!
//! Read from every supply under `[power] supply_path`
//! (default `/sys/class/power_supply`), first match wins:
//!
//! 1. a battery whose `status` is `Charging` → `charging`;
//! 2. a `Mains` or `USB` supply with `online` = 1 → `normal`;
//! 3. a battery whose `status` is `Discharging` with `capacity` below
//!    `[power] low_battery_percent` (default 30) → `low_power`;
//! 4. anything else, including no supply information at all → `normal`.
//!
//! Rates (spec §8, the middle of its ranges): normal every 45 s, low power
//! every 7.5 min, charging every 20 s.
//!
//! # Counter
//!
//! `timestamp_counter` must grow across restarts (receivers drop a
//! heartbeat whose counter is not above the last one as a replay). Writing
//! it to disk for every heartbeat would cost an fsync each, so the sender
//! reserves blocks of [`COUNTER_BLOCK`] values in the store and after a
//! restart continues above the reserved block, skipping what was unused.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use radio_bridge::frame::json::to_json;
use radio_bridge::frame::{
    Capabilities, DeviceClass, Envelope, Frame, Heartbeat, Message, PowerState, ProtocolVersion,
};
use radio_bridge::identity::Identity;
use radio_bridge::link::{unix_millis, LinkState};
use serde_json::json;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::scheduler::{Priority, SchedulerHandle, TxRequest};
use crate::state::GatewayState;
use crate::store::{CommitOutcome, Inbound, Store};
use crate::uplink::topics::GATEWAY_HEARTBEAT;
use crate::uplink::UplinkStatus;

/// How often the power supply is read.
pub const POWER_POLL: Duration = Duration::from_secs(10);

/// Least time between two heartbeats, however often links flap.
pub const MIN_GAP: Duration = Duration::from_secs(5);

/// Counter values reserved in the store at a time.
pub const COUNTER_BLOCK: u32 = 64;

/// Store key holding the end of the reserved counter block.
const COUNTER_KEY: &str = "gateway_heartbeat_counter";

/// The heartbeat interval for a power state.
pub fn interval(power: PowerState) -> Duration {
    match power {
        PowerState::Normal => Duration::from_secs(45),
        PowerState::LowPower => Duration::from_secs(450),
        PowerState::Charging => Duration::from_secs(20),
    }
}

/// Reads the power state from a `power_supply` class directory (see the
/// module docs for the rule). Never fails: unreadable means `normal`.
pub fn read_power_state(supply_path: &Path, low_battery_percent: u8) -> PowerState {
    let Ok(dir) = std::fs::read_dir(supply_path) else {
        return PowerState::Normal;
    };
    let read = |supply: &Path, file: &str| {
        std::fs::read_to_string(supply.join(file))
            .ok()
            .map(|s| s.trim().to_string())
    };
    let mut external = false;
    let mut charging = false;
    let mut low = false;
    for entry in dir.flatten() {
        let supply = entry.path();
        let kind = read(&supply, "type").unwrap_or_default();
        match kind.as_str() {
            "Mains" | "USB" => external |= read(&supply, "online").as_deref() == Some("1"),
            "Battery" => match read(&supply, "status").as_deref() {
                Some("Charging") => charging = true,
                Some("Discharging") => {
                    let capacity = read(&supply, "capacity").and_then(|c| c.parse::<u8>().ok());
                    low |= capacity.is_some_and(|c| c < low_battery_percent);
                }
                _ => {}
            },
            _ => {}
        }
    }
    if charging {
        PowerState::Charging
    } else if external {
        PowerState::Normal
    } else if low {
        PowerState::LowPower
    } else {
        PowerState::Normal
    }
}

/// Why a heartbeat goes out; published with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Boot,
    Periodic,
    PowerChanged,
    RadioChanged,
    UplinkChanged,
}

impl Reason {
    pub fn name(self) -> &'static str {
        match self {
            Reason::Boot => "boot",
            Reason::Periodic => "periodic",
            Reason::PowerChanged => "power_changed",
            Reason::RadioChanged => "radio_changed",
            Reason::UplinkChanged => "uplink_changed",
        }
    }
}

/// One decision of the pacer: send a heartbeat now, in this power state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Beat {
    pub power: PowerState,
    pub reason: Reason,
}

/// Where the pacer reads the power state.
#[derive(Debug, Clone)]
pub struct PowerSource {
    pub supply_path: PathBuf,
    pub low_battery_percent: u8,
}

impl PowerSource {
    pub fn read(&self) -> PowerState {
        read_power_state(&self.supply_path, self.low_battery_percent)
    }
}

/// Decides when heartbeats go out and hands each to `beats`. Returns when
/// `stop` is cancelled or the receiver of `beats` is gone.
pub async fn pace(
    power: PowerSource,
    mut changes: mpsc::UnboundedReceiver<Reason>,
    beats: mpsc::UnboundedSender<Beat>,
    stop: CancellationToken,
) {
    let mut state = power.read();
    let mut last = Instant::now();
    if beats
        .send(Beat {
            power: state,
            reason: Reason::Boot,
        })
        .is_err()
    {
        return;
    }
    let mut next = last + interval(state);
    // A change that arrives too soon after a heartbeat is served at MIN_GAP.
    let mut pending: Option<Reason> = None;
    let mut poll = tokio::time::interval_at(last + POWER_POLL, POWER_POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut changes_open = true;
    loop {
        let reason = tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep_until(next) => pending.take().unwrap_or(Reason::Periodic),
            _ = poll.tick() => {
                let now_state = power.read();
                if now_state == state {
                    continue;
                }
                tracing::info!(from = state.name(), to = now_state.name(), "gateway power state changed");
                state = now_state;
                // The new rate counts from the last heartbeat; if that is
                // already past, the next one goes now.
                next = (last + interval(state)).max(last + MIN_GAP);
                if Instant::now() < next {
                    continue;
                }
                Reason::PowerChanged
            }
            change = changes.recv(), if changes_open => {
                let Some(change) = change else {
                    changes_open = false;
                    continue;
                };
                let soonest = last + MIN_GAP;
                if Instant::now() < soonest {
                    pending = Some(change);
                    next = next.min(soonest);
                    continue;
                }
                change
            }
        };
        last = Instant::now();
        next = last + interval(state);
        pending = None;
        if beats
            .send(Beat {
                power: state,
                reason,
            })
            .is_err()
        {
            return;
        }
    }
}

/// Turns gateway events about links and the uplink into pacer triggers.
pub async fn watch_changes(
    mut events: broadcast::Receiver<crate::state::Event>,
    changes: mpsc::UnboundedSender<Reason>,
    stop: CancellationToken,
) {
    loop {
        let event = tokio::select! {
            _ = stop.cancelled() => return,
            e = events.recv() => match e {
                Ok(e) => e,
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return,
            },
        };
        let reason = match event.kind {
            "link_up" | "link_down" => Reason::RadioChanged,
            "broker_up" | "broker_down" => Reason::UplinkChanged,
            _ => continue,
        };
        if changes.send(reason).is_err() {
            return;
        }
    }
}

/// Hands out heartbeat counter values, monotonic across restarts.
#[derive(Debug, Default)]
pub struct Counter {
    next: u32,
    /// First value not reserved; `None` until the store was read.
    reserved_until: Option<u32>,
}

impl Counter {
    pub async fn take(&mut self, store: &Store) -> Result<u32, String> {
        let until = match self.reserved_until {
            Some(until) => until,
            None => {
                let stored: u32 = store
                    .get_meta(COUNTER_KEY)
                    .await
                    .map_err(|e| e.to_string())?
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                // 0 is never used: a receiver's "nothing heard yet".
                self.next = stored.max(1);
                self.next
            }
        };
        if self.next >= until {
            let new_until = self.next.saturating_add(COUNTER_BLOCK);
            store
                .set_meta(COUNTER_KEY, &new_until.to_string())
                .await
                .map_err(|e| e.to_string())?;
            self.reserved_until = Some(new_until);
        }
        let value = self.next;
        self.next = self.next.saturating_add(1);
        Ok(value)
    }
}

/// Signs and sends the gateway's heartbeats.
pub struct HeartbeatSender {
    identity: Identity,
    store: Store,
    state: Arc<GatewayState>,
    scheduler: SchedulerHandle,
    /// The uplink's status, when an MQTT uplink is configured. Without one,
    /// nothing is put in the outbox (nobody would ever take it out).
    uplink: Option<watch::Receiver<UplinkStatus>>,
    counter: Counter,
    /// A heartbeat went into the outbox while the uplink was down: a newer
    /// one would add nothing the backend needs after the outage.
    queued_while_down: bool,
}

impl HeartbeatSender {
    pub fn new(
        identity: Identity,
        store: Store,
        state: Arc<GatewayState>,
        scheduler: SchedulerHandle,
        uplink: Option<watch::Receiver<UplinkStatus>>,
    ) -> HeartbeatSender {
        HeartbeatSender {
            identity,
            store,
            state,
            scheduler,
            uplink,
            counter: Counter::default(),
            queued_while_down: false,
        }
    }

    /// Sends one heartbeat: on every radio link, and to the outbox.
    pub async fn send(&mut self, beat: Beat) -> Result<Frame, String> {
        let counter = self.counter.take(&self.store).await?;
        let ledger_height = self.state.neighbors().best_height();
        let envelope = Envelope {
            version: ProtocolVersion::CURRENT,
            device_id: self.identity.device_id(),
            to: None,
            seq: None,
            message: Message::Heartbeat(Heartbeat {
                device_class: DeviceClass::Gateway,
                timestamp_counter: counter,
                power_state: beat.power,
                ledger_height,
                // The gateway holds no ledger, but with an uplink it relays
                // ledger_sync requests to the backend, which answers them.
                sync_capable: self.uplink.is_some(),
                capabilities: Capabilities::default(),
            }),
        };
        let frame =
            Frame::sign(envelope, self.identity.signing_key()).map_err(|e| e.to_string())?;
        self.scheduler.submit(TxRequest::Frame {
            link: None,
            via: None,
            priority: Priority::Heartbeat,
            bytes: frame.bytes.clone(),
            tag: 0,
        });
        let Some(uplink) = &self.uplink else {
            return Ok(frame);
        };
        let connected = uplink.borrow().connected;
        if connected {
            self.queued_while_down = false;
        } else if self.queued_while_down {
            return Ok(frame);
        } else {
            self.queued_while_down = true;
        }
        let at = unix_millis(SystemTime::now());
        let links_up = self
            .state
            .links()
            .values()
            .filter(|l| l.state == LinkState::Up)
            .count();
        let body = json!({
            "msg_id": hex::encode(frame.msg_id),
            "device_id": self.identity.id_hex(),
            "message": to_json(&frame),
            "frame": BASE64.encode(&frame.bytes),
            "reason": beat.reason.name(),
            // Radio links that were up when it was sent: with 0 it went
            // out on no air at all.
            "links_up": links_up,
            "sent_at": crate::uplink::payload::rfc3339_utc_millis(at),
        });
        let outcome = self
            .store
            .commit(vec![Inbound::own(
                frame.msg_id,
                self.identity.device_id(),
                GATEWAY_HEARTBEAT,
                frame.bytes.clone(),
                body.to_string(),
                at,
            )])
            .await
            .map_err(|e| e.to_string())?;
        if matches!(outcome.first(), Some(CommitOutcome::Refused)) {
            tracing::debug!("store full: gateway heartbeat sent on radio only");
        }
        self.state.wake_uplink();
        Ok(frame)
    }

    /// Sends every beat the pacer decides on, until it stops.
    pub async fn run(mut self, mut beats: mpsc::UnboundedReceiver<Beat>) {
        while let Some(beat) = beats.recv().await {
            if let Err(e) = self.send(beat).await {
                tracing::warn!("gateway heartbeat not sent: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests;
