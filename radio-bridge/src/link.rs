//! The one trait every radio source implements, and the types that cross it.
//!
//! A link is a driver for one piece of concentrator hardware (an RNode on a
//! serial port, a Semtech packet forwarder talking GWMP over UDP, ...). The
//! gateway does not care which: it starts every configured link with
//! [`Link::run`], reads [`LinkEvent`]s from one shared channel and hands each
//! link its own queue of [`Transmit`] requests. Adding a radio means adding a
//! module that implements this trait, nothing else (the shape ChirpStack's
//! MQTT forwarder uses for its backends).
//!
//! Links move opaque bytes. Decoding, verification and de-duplication happen
//! above them, so a link never needs to know the Seed frame format.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// LoRa modulation settings of one reception or transmission.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RadioParams {
    /// Centre frequency in Hz.
    pub freq_hz: u32,
    /// Spreading factor, 5..=12.
    pub sf: u8,
    /// Bandwidth in Hz (125_000, 250_000, 500_000).
    pub bandwidth_hz: u32,
    /// Coding rate denominator: 5 means 4/5, 8 means 4/8.
    pub coding_rate: u8,
    /// Transmit power in dBm (ignored on receive).
    pub tx_power_dbm: i8,
}

impl Default for RadioParams {
    /// EU868 g3 sub-band (869.525 MHz, band P, 10 % duty cycle), SF9/125 kHz,
    /// 4/5: the setting the simulated devices and the demo use.
    fn default() -> Self {
        RadioParams {
            freq_hz: 869_525_000,
            sf: 9,
            bandwidth_hz: 125_000,
            coding_rate: 5,
            tx_power_dbm: 14,
        }
    }
}

/// What the link knew about a frame when it arrived.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RxMeta {
    /// Name of the link that heard the frame (from the config).
    pub link: String,
    pub rssi: Option<f32>,
    pub snr: Option<f32>,
    pub freq_hz: Option<u32>,
    pub sf: Option<u8>,
    pub bandwidth_hz: Option<u32>,
    /// Wall-clock reception time, milliseconds since the Unix epoch.
    pub received_at_ms: u64,
    /// Which concentrator of the link heard it, for links with several (a
    /// GWMP link's packet forwarders, by gateway EUI); `None` for one-radio
    /// links. Answers to the sender go back the same way ([`Transmit::via`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
}

impl RxMeta {
    /// Metadata with only the link name and the current time filled in.
    pub fn now(link: &str) -> RxMeta {
        RxMeta {
            link: link.to_string(),
            rssi: None,
            snr: None,
            freq_hz: None,
            sf: None,
            bandwidth_hz: None,
            received_at_ms: unix_millis(SystemTime::now()),
            via: None,
        }
    }
}

/// Milliseconds since the Unix epoch (0 for times before it).
pub fn unix_millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// One radio packet as heard, before any decoding.
#[derive(Debug, Clone, PartialEq)]
pub struct RxFrame {
    pub bytes: Vec<u8>,
    pub meta: RxMeta,
}

/// The longest a link holds a [`Transmit`] it cannot send yet (a GWMP link
/// that has heard no packet forwarder's PULL_DATA since it started) before
/// answering it as not sent. The scheduler charges airtime as if every
/// frame might start this late, so a held frame never escapes the duty
/// cycle. 10 s: a Seed device repeats an unacked message after that, and
/// the repeat gets its own ack.
pub const MAX_TX_HOLD: Duration = Duration::from_secs(10);

/// A request to put bytes on air.
#[derive(Debug, Clone, PartialEq)]
pub struct Transmit {
    /// Caller-chosen id, echoed back in [`LinkEvent::TxDone`].
    pub id: u64,
    pub bytes: Vec<u8>,
    pub params: RadioParams,
    /// The concentrator to send through, when the frame answers one that
    /// [`RxMeta::via`] named; the link uses it while it can still reach it,
    /// and otherwise its most recently active one. `None`: the frame is
    /// for everyone, and a link with several concentrators sends it
    /// through each.
    pub via: Option<String>,
}

/// Whether a link can currently hear and transmit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", content = "detail", rename_all = "snake_case")]
pub enum LinkState {
    /// Opening the device or waiting for the first sign of life.
    Connecting,
    /// Configured and receiving.
    Up,
    /// Not usable; the text says why (port gone, config echo mismatch, ...).
    /// The link keeps retrying by itself.
    Down(String),
}

/// Why a transmission did not happen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxError {
    /// The link is down or has no peer to send through.
    NotConnected,
    /// The hardware or forwarder refused or failed it; the text is its reason
    /// (e.g. GWMP `TOO_LATE`, RNode `TXFAILED`).
    Rejected(String),
}

/// Everything a link reports upward.
#[derive(Debug, Clone, PartialEq)]
pub enum LinkEvent {
    Received(RxFrame),
    State {
        link: String,
        state: LinkState,
    },
    TxDone {
        link: String,
        id: u64,
        result: Result<(), TxError>,
    },
}

/// Counters every link keeps; read by the status page and `/metrics`.
/// Atomics so the driver task and readers never contend on a lock.
#[derive(Debug, Default)]
pub struct LinkCounters {
    /// Frames handed upward as [`LinkEvent::Received`].
    pub frames_received: AtomicU64,
    /// Packets the hardware reported with a bad CRC (dropped).
    pub bad_crc: AtomicU64,
    /// Bytes or datagrams that were not a valid link-protocol message
    /// (broken KISS frames, junk UDP datagrams, unparsable JSON).
    pub malformed: AtomicU64,
    /// Partial frames thrown away after a silence on the line.
    pub partial_dropped: AtomicU64,
    /// Errors the device itself reported (RNode ERROR frames, GWMP TX_ACK errors).
    pub device_errors: AtomicU64,
    pub tx_ok: AtomicU64,
    pub tx_failed: AtomicU64,
    /// Times the link went from up to down.
    pub disconnects: AtomicU64,
    /// Transmissions held because the link did not yet know where to send
    /// them (a GWMP link before any packet forwarder's PULL_DATA).
    pub tx_held: AtomicU64,
    /// Held transmissions that could not be sent within [`MAX_TX_HOLD`]
    /// (or found the hold full); each also counts in `tx_failed`.
    pub tx_too_late: AtomicU64,
}

impl LinkCounters {
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// A plain copy for serialisation.
    pub fn snapshot(&self) -> LinkCountersSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        LinkCountersSnapshot {
            frames_received: get(&self.frames_received),
            bad_crc: get(&self.bad_crc),
            malformed: get(&self.malformed),
            partial_dropped: get(&self.partial_dropped),
            device_errors: get(&self.device_errors),
            tx_ok: get(&self.tx_ok),
            tx_failed: get(&self.tx_failed),
            disconnects: get(&self.disconnects),
            tx_held: get(&self.tx_held),
            tx_too_late: get(&self.tx_too_late),
        }
    }
}

/// Serialisable copy of [`LinkCounters`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkCountersSnapshot {
    pub frames_received: u64,
    pub bad_crc: u64,
    pub malformed: u64,
    pub partial_dropped: u64,
    pub device_errors: u64,
    pub tx_ok: u64,
    pub tx_failed: u64,
    pub disconnects: u64,
    pub tx_held: u64,
    pub tx_too_late: u64,
}

/// A boxed future, so links of different types can live in one list.
pub type LinkFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// A source of received frames and a sink for transmissions.
pub trait Link: Send + 'static {
    /// The configured name, used in [`RxMeta::link`] and in logs.
    fn name(&self) -> &str;

    /// Counters the driver updates while it runs.
    fn counters(&self) -> Arc<LinkCounters>;

    /// Drives the link until `shutdown` is cancelled. Never returns early on
    /// a device error: it reports [`LinkState::Down`] and keeps retrying, so
    /// an unplugged RNode or a restarted packet forwarder needs no process
    /// restart. Frames go to `events`; each request from `transmit` is
    /// answered by exactly one [`LinkEvent::TxDone`].
    fn run(
        self: Box<Self>,
        events: mpsc::Sender<LinkEvent>,
        transmit: mpsc::Receiver<Transmit>,
        shutdown: CancellationToken,
    ) -> LinkFuture;
}

/// Sends an event upward unless shutdown comes first: a consumer that
/// stopped reading (a full channel) must not keep a link from stopping, and
/// a closed channel means nobody listens any more. Biased so a final
/// `TxDone` still goes out during shutdown when the channel has room.
pub async fn emit(
    events: &mpsc::Sender<LinkEvent>,
    shutdown: &CancellationToken,
    event: LinkEvent,
) {
    tokio::select! {
        biased;
        _ = events.send(event) => {}
        _ = shutdown.cancelled() => {}
    }
}
