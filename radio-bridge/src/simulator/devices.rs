//! Simulated Seed devices: each holds its own key and behaves as the
//! heartbeat spec and the gateway's reliability rules expect of a device.
//!
//! A device sends heartbeats on the spec's schedule for its power state,
//! transactions that it retransmits until the gateway acks them, and it
//! listens to what the gateway transmits: acks of its own messages, and
//! downlinks addressed to it, which it acks at once (every time it hears
//! one: its earlier ack may have been lost). It watches the downlinks'
//! sequence numbers and NACKs gaps, naming the missing range, a few times
//! per missing number before giving up on it (the gateway may have nothing
//! there: a downlink that expired, or a number skipped by a crash).
//!
//! Devices do not know how their packets reach the gateway: they talk to an
//! [`Air`], and the simulator front-ends put a real RNode or
//! packet-forwarder wire protocol behind it. The air loses, duplicates and
//! reorders packets in both directions as [`AirConditions`] say.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::fragment;
use crate::frame::*;
use crate::identity::Identity;

/// Radio conditions between the devices and the gateway. Loss,
/// duplication and reordering apply to every packet in both directions;
/// corruption to packets towards the gateway (a corrupted packet towards a
/// device fails its signature check there, which is just a loss).
#[derive(Debug, Clone, Copy, Default)]
pub struct AirConditions {
    /// Probability a packet is lost, 0.0..=1.0.
    pub loss: f64,
    /// Probability a packet is heard twice.
    pub duplicate: f64,
    /// Probability one byte of a packet is corrupted.
    pub corrupt: f64,
    /// Probability a packet is held back and arrives after the next one.
    pub reorder: f64,
}

/// A held-back packet comes out after the next packet, or after this long
/// (simulated time) if none follows.
const MAX_HOLD: Duration = Duration::from_secs(2);

/// Times a device NACKs one missing sequence number before giving up on it.
const NACKS_PER_GAP: u32 = 3;

/// How far below the highest sequence number heard a device looks for gaps.
const GAP_WINDOW: u64 = 64;

/// Loss, duplication and reordering of one direction of the air.
struct Impaired<T> {
    held: Option<(T, Instant)>,
}

impl<T: Clone> Impaired<T> {
    fn new() -> Self {
        Impaired { held: None }
    }

    /// What arrives, in order, when `item` is put on air.
    fn pass(&mut self, item: T, c: &AirConditions, rng: &mut StdRng, now: Instant) -> Vec<T> {
        let mut out = Vec::new();
        if !rng.random_bool(c.loss.clamp(0.0, 1.0)) {
            out.push(item.clone());
            if rng.random_bool(c.duplicate.clamp(0.0, 1.0)) {
                out.push(item);
            }
        }
        if let Some((held, _)) = self.held.take() {
            // Overtaken: the held packet lands after this one.
            out.push(held);
        } else if !out.is_empty() && rng.random_bool(c.reorder.clamp(0.0, 1.0)) {
            self.held = Some((out.remove(0), now));
        }
        out
    }

    /// The held packet, once it has waited `max_hold` for a successor.
    fn release_stale(&mut self, now: Instant, max_hold: Duration) -> Option<T> {
        match &self.held {
            Some((_, since)) if now >= *since + max_hold => self.held.take().map(|(t, _)| t),
            _ => None,
        }
    }
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
    /// Whether devices ack the downlinks they receive and NACK gaps (on by
    /// default; off simulates a device that hears but never answers).
    pub ack_downlinks: bool,
    /// Where the devices keep their counters between runs (`None`: every
    /// run starts afresh). A fleet started again on the same file carries
    /// on where the last one stopped, as real devices do when the gateway
    /// restarts, instead of repeating its earlier frames.
    pub counters_file: Option<PathBuf>,
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
            ack_downlinks: true,
            counters_file: None,
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
    /// Distinct downlinks addressed to one of the devices that it received.
    pub downlinks_received: u64,
    /// Acks the devices sent for downlinks (a downlink heard twice is
    /// acked twice).
    pub downlinks_acked: u64,
    /// NACK frames the devices sent for gaps in downlink sequence numbers.
    pub nacks_sent: u64,
    /// Ledger-sync offers addressed to one of the devices.
    pub sync_offers_received: u64,
    /// Heartbeats of the gateway itself that the devices heard.
    pub gateway_heartbeats: u64,
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
    downlink_seqs: BTreeSet<u64>,
    /// Downlinks received (by msg_id), to count each once.
    downlinks: HashSet<MsgId>,
    /// NACKs sent per missing sequence number.
    nacked: HashMap<u64, u32>,
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
/// until `stop` is cancelled. Returns the summary either way.
pub async fn run_fleet(options: FleetOptions, air: Air, stop: CancellationToken) -> FleetSummary {
    let mut rng = StdRng::seed_from_u64(options.seed);
    let speed = options.speed.max(0.001);
    let scaled = |d: Duration| d.div_f64(speed);
    let start = Instant::now();
    let saved = options
        .counters_file
        .as_deref()
        .map(load_counters)
        .unwrap_or_default();
    let mut devices: Vec<Device> = (0..options.devices)
        .map(|i| {
            let identity = device_identity(options.seed, i);
            let first = 1000 + i as u32;
            let counter = saved
                .get(&identity.id_hex())
                .map_or(first, |&last| last.max(first));
            let power = match i % 5 {
                3 => PowerState::LowPower,
                4 => PowerState::Charging,
                _ => PowerState::Normal,
            };
            Device {
                identity,
                power,
                counter,
                ledger_height: 280 + (i as u64 * 7) % 20,
                // Stagger first heartbeats so they do not collide.
                next_heartbeat: start + scaled(Duration::from_millis(rng.random_range(0..2000u64))),
                unacked: BTreeMap::new(),
                sent: 0,
                downlink_seqs: BTreeSet::new(),
                downlinks: HashSet::new(),
                nacked: HashMap::new(),
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
    let max_hold = scaled(MAX_HOLD);
    let mut up_air: Impaired<AirPacket> = Impaired::new();
    let mut down_air: Impaired<Vec<u8>> = Impaired::new();
    let mut heard_now: Vec<Vec<u8>> = Vec::new();
    let mut saved_total: u64 = devices.iter().map(|d| u64::from(d.counter)).sum();

    loop {
        let now = Instant::now();
        // Hear the gateway first: an ack may spare a retransmission.
        while let Ok(packet) = downlink.try_recv() {
            heard_now.push(packet);
        }
        let mut arrived: Vec<Vec<u8>> = Vec::new();
        for packet in heard_now.drain(..) {
            arrived.extend(down_air.pass(packet, &options.conditions, &mut rng, now));
        }
        arrived.extend(down_air.release_stale(now, max_hold));
        let mut to_send: Vec<(DeviceId, Vec<u8>)> = Vec::new();
        for packet in arrived {
            let replies = hear(
                &packet,
                &mut devices,
                &mut acked,
                &mut summary,
                options.ack_downlinks,
            );
            to_send.extend(replies);
        }
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
        if let Some(path) = &options.counters_file {
            // Before the frames go on air: a kill after this cannot make the
            // next run repeat a counter that was heard.
            let total: u64 = devices.iter().map(|d| u64::from(d.counter)).sum();
            if total != saved_total {
                saved_total = total;
                if let Err(e) = save_counters(path, &devices) {
                    tracing::warn!(
                        "cannot keep the devices' counters in {}: {e}",
                        path.display()
                    );
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
                put_on_air(&air, &mut up_air, p, &options.conditions, &mut rng).await;
            }
        }
        if let Some(p) = up_air.release_stale(Instant::now(), max_hold) {
            // A closed gateway side just means nobody listens any more.
            let _ = air.uplink.send(p).await;
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
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(send_gap) => {}
            packet = downlink.recv() => {
                if let Ok(packet) = packet {
                    heard_now.push(packet);
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

/// Each device's last counter by device id (hex), from a file written by
/// [`save_counters`]; what cannot be read counts as nothing saved.
fn load_counters(path: &Path) -> HashMap<String, u32> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return HashMap::new();
    };
    text.lines()
        .filter_map(|line| {
            let (id, counter) = line.split_once(' ')?;
            Some((id.to_string(), counter.trim().parse().ok()?))
        })
        .collect()
}

/// One line per device, `<device id hex> <last counter>`, replaced whole
/// (written aside, then renamed) so a kill never leaves half a file.
fn save_counters(path: &Path, devices: &[Device]) -> std::io::Result<()> {
    let text: String = devices
        .iter()
        .map(|d| format!("{} {}\n", d.identity.id_hex(), d.counter))
        .collect();
    let aside = path.with_extension("tmp");
    std::fs::write(&aside, text)?;
    std::fs::rename(&aside, path)
}

async fn put_on_air(
    air: &Air,
    up_air: &mut Impaired<AirPacket>,
    bytes: Vec<u8>,
    c: &AirConditions,
    rng: &mut StdRng,
) {
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
    for p in up_air.pass(packet, c, rng, Instant::now()) {
        // A closed gateway side just means nobody listens any more.
        let _ = air.uplink.send(p).await;
    }
}

/// A packet the gateway transmitted, as every device hears it. Returns what
/// the devices answer (acks and NACKs of downlinks), by sender.
fn hear(
    packet: &[u8],
    devices: &mut [Device],
    acked: &mut HashSet<MsgId>,
    summary: &mut FleetSummary,
    ack_downlinks: bool,
) -> Vec<(DeviceId, Vec<u8>)> {
    let Ok(frame) = Frame::decode(packet) else {
        return Vec::new();
    };
    let addressee = |devices: &mut [Device]| -> Option<usize> {
        let to = frame.envelope.to?;
        devices.iter().position(|d| d.identity.device_id() == to)
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
            Vec::new()
        }
        Message::Heartbeat(_) => {
            summary.gateway_heartbeats += 1;
            Vec::new()
        }
        // An offer is a hint, not a message to keep: nothing to ack.
        Message::LedgerSync(LedgerSync::Offer { .. }) => {
            if addressee(devices).is_some() {
                summary.sync_offers_received += 1;
            }
            Vec::new()
        }
        _ => match addressee(devices) {
            Some(i) => {
                let d = &mut devices[i];
                let replies = d.receive_downlink(&frame, summary, ack_downlinks);
                let id = d.identity.device_id();
                replies.into_iter().map(|r| (id, r)).collect()
            }
            None => Vec::new(),
        },
    }
}

impl Device {
    /// Takes in a downlink addressed to this device; returns the frames it
    /// answers with: an ack, and a NACK if sequence numbers are missing.
    fn receive_downlink(
        &mut self,
        frame: &Frame,
        summary: &mut FleetSummary,
        answer: bool,
    ) -> Vec<Vec<u8>> {
        if self.downlinks.insert(frame.msg_id) {
            summary.downlinks_received += 1;
        }
        if let Some(seq) = frame.envelope.seq {
            self.downlink_seqs.insert(seq);
        }
        if !answer {
            return Vec::new();
        }
        let mut replies = vec![
            self.sign(Message::Ack(Ack {
                acked: vec![frame.msg_id],
                timestamp_counter: None,
            }))
            .bytes,
        ];
        summary.downlinks_acked += 1;
        let missing = self.missing_ranges();
        if !missing.is_empty() {
            replies.push(
                self.sign(Message::Nack(Nack {
                    missing_ids: Vec::new(),
                    missing_ranges: missing,
                    timestamp_counter: None,
                }))
                .bytes,
            );
            summary.nacks_sent += 1;
        }
        replies
    }

    /// Gaps below the highest downlink sequence number heard, above the
    /// lowest heard in this run (a device starting up does not know what
    /// came before), that have not been NACKed too often yet. Counts the
    /// NACK it is about to send.
    fn missing_ranges(&mut self) -> Vec<(u64, u64)> {
        let (Some(&lowest), Some(&highest)) =
            (self.downlink_seqs.first(), self.downlink_seqs.last())
        else {
            return Vec::new();
        };
        let mut ranges: Vec<(u64, u64)> = Vec::new();
        for seq in lowest.max(highest.saturating_sub(GAP_WINDOW))..highest {
            if self.downlink_seqs.contains(&seq) {
                continue;
            }
            let asked = self.nacked.entry(seq).or_insert(0);
            if *asked >= NACKS_PER_GAP {
                continue;
            }
            *asked += 1;
            match ranges.last_mut() {
                Some((_, to)) if *to + 1 == seq => *to = seq,
                _ => ranges.push((seq, seq)),
            }
        }
        ranges
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    fn device(index: usize) -> Device {
        let now = Instant::now();
        Device {
            identity: device_identity(1, index),
            power: PowerState::Normal,
            counter: 1,
            ledger_height: 0,
            next_heartbeat: now,
            unacked: BTreeMap::new(),
            sent: 0,
            downlink_seqs: BTreeSet::new(),
            downlinks: HashSet::new(),
            nacked: HashMap::new(),
            next_transaction: now,
        }
    }

    fn downlink(to: &Device, seq: u64) -> Frame {
        let gateway = Identity::from_seed([9; 32]);
        Frame::sign(
            Envelope {
                version: ProtocolVersion::CURRENT,
                device_id: gateway.device_id(),
                to: Some(to.identity.device_id()),
                seq: Some(seq),
                message: Message::Transaction(Transaction {
                    payload: format!("down {seq}").into_bytes(),
                    timestamp_counter: None,
                }),
            },
            gateway.signing_key(),
        )
        .unwrap()
    }

    fn decode_all(replies: &[Vec<u8>]) -> Vec<Message> {
        replies
            .iter()
            .map(|r| Frame::decode(r).unwrap().envelope.message)
            .collect()
    }

    #[test]
    fn devices_ack_downlinks_and_nack_gaps() {
        let mut d = device(0);
        let mut summary = FleetSummary::default();
        let one = downlink(&d, 1);
        let replies = d.receive_downlink(&one, &mut summary, true);
        assert_eq!(
            decode_all(&replies),
            vec![Message::Ack(Ack {
                acked: vec![one.msg_id],
                timestamp_counter: None,
            })]
        );
        // 2 and 3 lost: hearing 4 names them.
        let four = downlink(&d, 4);
        let replies = d.receive_downlink(&four, &mut summary, true);
        assert_eq!(
            decode_all(&replies)[1],
            Message::Nack(Nack {
                missing_ids: vec![],
                missing_ranges: vec![(2, 3)],
                timestamp_counter: None,
            })
        );
        // Heard twice: acked twice, counted once.
        d.receive_downlink(&four, &mut summary, true);
        assert_eq!(summary.downlinks_received, 2);
        assert_eq!(summary.downlinks_acked, 3);
        // A gap nobody fills is given up after a few NACKs.
        let seven = downlink(&d, 7);
        d.receive_downlink(&downlink(&d, 2), &mut summary, true);
        let replies = d.receive_downlink(&seven, &mut summary, true);
        assert_eq!(
            decode_all(&replies)[1],
            Message::Nack(Nack {
                missing_ids: vec![],
                missing_ranges: vec![(5, 6)],
                timestamp_counter: None,
            }),
            "3 was NACKed thrice already"
        );
        // A silent device hears but answers nothing.
        assert!(d
            .receive_downlink(&downlink(&d, 8), &mut summary, false)
            .is_empty());
    }

    #[test]
    fn reordering_holds_a_packet_until_the_next_one() {
        let mut rng = StdRng::seed_from_u64(3);
        let always = AirConditions {
            reorder: 1.0,
            ..AirConditions::default()
        };
        let now = Instant::now();
        let mut air: Impaired<u32> = Impaired::new();
        assert!(air.pass(1, &always, &mut rng, now).is_empty(), "held");
        assert_eq!(air.pass(2, &always, &mut rng, now), vec![2, 1]);
        assert!(air.pass(3, &always, &mut rng, now).is_empty());
        assert_eq!(air.release_stale(now, MAX_HOLD), None, "not yet");
        assert_eq!(air.release_stale(now + MAX_HOLD, MAX_HOLD), Some(3));

        let lossy = AirConditions {
            loss: 1.0,
            ..AirConditions::default()
        };
        assert!(air.pass(4, &lossy, &mut rng, now).is_empty());
        let doubled = AirConditions {
            duplicate: 1.0,
            ..AirConditions::default()
        };
        assert_eq!(air.pass(5, &doubled, &mut rng, now), vec![5, 5]);
    }

    #[test]
    fn a_mixed_air_delivers_each_packet_at_most_twice_and_loses_some() {
        let mut rng = StdRng::seed_from_u64(11);
        let c = AirConditions {
            loss: 0.3,
            duplicate: 0.2,
            reorder: 0.2,
            corrupt: 0.0,
        };
        let now = Instant::now();
        let mut air: Impaired<u32> = Impaired::new();
        let mut got = Vec::new();
        for i in 0..1000 {
            got.extend(air.pass(i, &c, &mut rng, now));
        }
        got.extend(air.release_stale(now + MAX_HOLD, MAX_HOLD));
        let mut counts = HashMap::new();
        for g in &got {
            *counts.entry(*g).or_insert(0) += 1;
        }
        assert!(counts.values().all(|&n| n <= 2));
        assert!(counts.len() < 1000 && counts.len() > 500);
        assert!(
            got.windows(2).any(|w| w[0] > w[1]),
            "some arrive out of order"
        );
    }
}
