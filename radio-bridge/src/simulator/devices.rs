//! Simulated Seed devices: each holds its own key and behaves as the
//! heartbeat spec and the gateway's reliability rules expect of a device.
//!
//! A device sends heartbeats on the spec's schedule for its power state,
//! transactions that it retransmits until the gateway acks them, and it
//! listens to what the gateway transmits (acks, downlinks addressed to it,
//! which it acks in turn). Devices do not know how their packets reach the
//! gateway: they talk to an [`Air`], and the simulator front-ends put a real
//! RNode or packet-forwarder wire protocol behind it.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;

use crate::fragment;
use crate::frame::*;
use crate::identity::Identity;

/// Radio conditions between the devices and the gateway, applied to every
/// uplink packet: loss, duplication and corruption happen "on air".
#[derive(Debug, Clone, Copy, Default)]
pub struct AirConditions {
    /// Probability a packet is lost, 0.0..=1.0.
    pub loss: f64,
    /// Probability a packet is heard twice.
    pub duplicate: f64,
    /// Probability one byte of a packet is corrupted.
    pub corrupt: f64,
}

/// One packet a device puts on air, with the signal the gateway will report.
#[derive(Debug, Clone, PartialEq)]
pub struct AirPacket {
    pub bytes: Vec<u8>,
    pub rssi: f32,
    pub snr: f32,
}

/// The shared medium as the devices see it.
pub struct Air {
    /// Packets towards the gateway (after loss/duplication/corruption).
    pub uplink: mpsc::Sender<AirPacket>,
    /// Everything the gateway transmits; every device hears it.
    pub downlink: broadcast::Sender<Vec<u8>>,
}

/// Settings of a simulated fleet.
#[derive(Debug, Clone)]
pub struct FleetOptions {
    pub devices: usize,
    /// With `Some(m)`: every device sends exactly `m` transactions, then
    /// retransmits unacked ones until acked or `deadline` passes.
    pub messages: Option<u64>,
    /// Simulated time runs this many times faster than real time (heartbeat
    /// intervals and retransmit backoff are divided by it).
    pub speed: f64,
    pub conditions: AirConditions,
    /// Seed for keys and randomness: the same seed gives the same device ids.
    pub seed: u64,
    /// Largest packet the link carries; longer frames are fragmented.
    pub mtu: usize,
    /// How long `--messages` mode waits for acks.
    pub deadline: Duration,
    /// Whether devices send heartbeats (on by default).
    pub heartbeats: bool,
    /// Without `messages`: each device sends a transaction about this often
    /// (simulated time), forever. `None`: heartbeats only.
    pub transaction_interval: Option<Duration>,
}

impl Default for FleetOptions {
    fn default() -> Self {
        FleetOptions {
            devices: 8,
            messages: None,
            speed: 1.0,
            conditions: AirConditions::default(),
            seed: 1,
            mtu: 255,
            deadline: Duration::from_secs(120),
            heartbeats: true,
            transaction_interval: None,
        }
    }
}

/// What a fleet run achieved; printed as the `simulate` summary line.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct FleetSummary {
    pub sent: u64,
    pub acked: u64,
    /// Hex message ids the gateway acked: each is durable on its disk.
    pub acked_ids: Vec<String>,
    pub heartbeats: u64,
    /// Downlinks addressed to one of the devices that they received.
    pub downlinks_received: u64,
}

/// The heartbeat interval the spec gives for a power state (we pick the
/// middle of its range), before the speed factor.
pub fn heartbeat_interval(power: PowerState) -> Duration {
    match power {
        PowerState::Normal => Duration::from_secs(45),
        PowerState::LowPower => Duration::from_secs(450),
        PowerState::Charging => Duration::from_secs(20),
    }
}

/// One simulated device's state.
struct Device {
    identity: Identity,
    power: PowerState,
    counter: u32,
    ledger_height: u64,
    next_heartbeat: Instant,
    /// Unacked transactions: msg_id → (frame bytes, next retransmit, attempts).
    unacked: BTreeMap<MsgId, (Vec<u8>, Instant, u32)>,
    sent: u64,
    /// Downlink sequence numbers received, for gap detection.
    downlink_seqs: HashSet<u64>,
    next_transaction: Instant,
}

/// Deterministic identity of simulated device `index` under `seed`, so
/// tests and the gateway's status page can name devices across restarts.
pub fn device_identity(seed: u64, index: usize) -> Identity {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_be_bytes());
    bytes[8..16].copy_from_slice(&(index as u64).to_be_bytes());
    bytes[16..].copy_from_slice(b"seed-sim-device!");
    Identity::from_seed(bytes)
}

/// Runs a fleet until `messages` mode completes (all acked or deadline), or
/// forever when `messages` is `None`. Returns the summary.
pub async fn run_fleet(options: FleetOptions, air: Air) -> FleetSummary {
    let mut rng = StdRng::seed_from_u64(options.seed);
    let speed = options.speed.max(0.001);
    let scaled = |d: Duration| d.div_f64(speed);
    let start = Instant::now();
    let mut devices: Vec<Device> = (0..options.devices)
        .map(|i| {
            let power = match i % 5 {
                3 => PowerState::LowPower,
                4 => PowerState::Charging,
                _ => PowerState::Normal,
            };
            Device {
                identity: device_identity(options.seed, i),
                power,
                counter: 1000 + i as u32,
                ledger_height: 280 + (i as u64 * 7) % 20,
                // Stagger first heartbeats so they do not collide.
                next_heartbeat: start + scaled(Duration::from_millis(rng.random_range(0..2000u64))),
                unacked: BTreeMap::new(),
                sent: 0,
                downlink_seqs: HashSet::new(),
                next_transaction: start
                    + options
                        .transaction_interval
                        .map(|t| scaled(t.mul_f64(rng.random_range(0.2..1.0))))
                        .unwrap_or_default(),
            }
        })
        .collect();
    let mut summary = FleetSummary::default();
    let mut acked: HashSet<MsgId> = HashSet::new();
    let mut downlink = air.downlink.subscribe();
    let deadline = start + options.deadline;
    let send_gap = scaled(Duration::from_millis(200));
    let retransmit_after = scaled(Duration::from_secs(10));

    loop {
        let now = Instant::now();
        // Hear the gateway first: an ack may spare a retransmission.
        while let Ok(packet) = downlink.try_recv() {
            hear(&packet, &mut devices, &mut acked, &mut summary);
        }
        let mut to_send: Vec<(DeviceId, Vec<u8>)> = Vec::new();
        for d in devices.iter_mut() {
            if options.heartbeats && now >= d.next_heartbeat {
                d.counter += 1;
                to_send.push((d.identity.device_id(), d.heartbeat()));
                summary.heartbeats += 1;
                d.next_heartbeat = now + scaled(heartbeat_interval(d.power));
            }
            let continuous_due = options.messages.is_none()
                && options.transaction_interval.is_some()
                && now >= d.next_transaction;
            if continuous_due {
                if let Some(interval) = options.transaction_interval {
                    d.next_transaction = now + scaled(interval);
                }
            }
            if let Some(m) = options.messages.or(continuous_due.then_some(u64::MAX)) {
                if d.sent < m {
                    d.counter += 1;
                    let frame = d.transaction();
                    d.unacked.insert(
                        frame.msg_id,
                        (frame.bytes.clone(), now + retransmit_after, 1),
                    );
                    d.sent += 1;
                    summary.sent += 1;
                    to_send.push((d.identity.device_id(), frame.bytes));
                }
            }
            for (bytes, next, attempts) in d.unacked.values_mut() {
                if now >= *next {
                    *attempts += 1;
                    // Back off, but keep trying until the deadline.
                    *next = now + retransmit_after * (*attempts).min(6);
                    to_send.push((d.identity.device_id(), bytes.clone()));
                }
            }
        }
        for (device_id, frame) in to_send {
            let set_id = rng.random::<u16>();
            let tag = fragment::sender_tag(&device_id);
            // A frame too large even for 255 fragments is a simulator bug,
            // not something to put on air.
            let packets =
                fragment::packets_for(&frame, tag, set_id, options.mtu).unwrap_or_default();
            for p in packets {
                put_on_air(&air, p, &options.conditions, &mut rng).await;
            }
        }
        if let Some(m) = options.messages {
            let all_sent = devices.iter().all(|d| d.sent >= m);
            let all_acked = devices.iter().all(|d| d.unacked.is_empty());
            if (all_sent && all_acked) || Instant::now() >= deadline {
                break;
            }
        }
        // Wait for the next thing to do, or for the gateway to speak.
        tokio::select! {
            _ = tokio::time::sleep(send_gap) => {}
            packet = downlink.recv() => {
                if let Ok(packet) = packet {
                    hear(&packet, &mut devices, &mut acked, &mut summary);
                }
            }
        }
    }
    summary.acked = acked.len() as u64;
    let mut ids: Vec<String> = acked.iter().map(hex::encode).collect();
    ids.sort();
    summary.acked_ids = ids;
    summary
}

async fn put_on_air(air: &Air, bytes: Vec<u8>, c: &AirConditions, rng: &mut StdRng) {
    if rng.random_bool(c.loss.clamp(0.0, 1.0)) {
        return;
    }
    let mut bytes = bytes;
    if rng.random_bool(c.corrupt.clamp(0.0, 1.0)) && !bytes.is_empty() {
        let i = rng.random_range(0..bytes.len());
        bytes[i] ^= 1 << rng.random_range(0..8);
    }
    let packet = AirPacket {
        bytes,
        rssi: -60.0 - rng.random_range(0.0..60.0f32),
        snr: rng.random_range(-10.0..10.0f32),
    };
    let copies = if rng.random_bool(c.duplicate.clamp(0.0, 1.0)) {
        2
    } else {
        1
    };
    for _ in 0..copies {
        // A closed gateway side just means nobody listens any more.
        let _ = air.uplink.send(packet.clone()).await;
    }
}

/// A packet the gateway transmitted, as every device hears it.
fn hear(
    packet: &[u8],
    devices: &mut [Device],
    acked: &mut HashSet<MsgId>,
    summary: &mut FleetSummary,
) {
    let Ok(frame) = Frame::decode(packet) else {
        return;
    };
    match &frame.envelope.message {
        Message::Ack(ack) => {
            for id in &ack.acked {
                for d in devices.iter_mut() {
                    if d.unacked.remove(id).is_some() {
                        acked.insert(*id);
                    }
                }
            }
        }
        _ => {
            if let Some(to) = frame.envelope.to {
                if let Some(d) = devices.iter_mut().find(|d| d.identity.device_id() == to) {
                    let first = frame
                        .envelope
                        .seq
                        .map(|s| d.downlink_seqs.insert(s))
                        .unwrap_or(true);
                    if first {
                        summary.downlinks_received += 1;
                    }
                }
            }
        }
    }
}

impl Device {
    fn envelope(&self, message: Message) -> Envelope {
        Envelope {
            version: ProtocolVersion::CURRENT,
            device_id: self.identity.device_id(),
            to: None,
            seq: None,
            message,
        }
    }

    fn sign(&self, message: Message) -> Frame {
        Frame::sign(self.envelope(message), self.identity.signing_key())
            .expect("a device signs with its own key")
    }

    fn heartbeat(&self) -> Vec<u8> {
        self.sign(Message::Heartbeat(Heartbeat {
            device_class: DeviceClass::Handheld,
            timestamp_counter: self.counter,
            power_state: self.power,
            ledger_height: self.ledger_height,
            sync_capable: self.power != PowerState::LowPower,
            capabilities: Capabilities {
                supports_groups: true,
                supports_trust_scores: true,
                supports_ai_assistant: false,
                unknown_bits: 0,
            },
        }))
        .bytes
    }

    fn transaction(&mut self) -> Frame {
        let payload = format!(
            "sim tx {} #{} from {}",
            self.counter,
            self.sent,
            &self.identity.id_hex()[..8]
        );
        self.sign(Message::Transaction(Transaction {
            payload: payload.into_bytes(),
            timestamp_counter: Some(self.counter),
        }))
    }
}
