//! A Semtech packet forwarder emulator: the client end of GWMP v2 over
//! real UDP, standing in for a concentrator we cannot have in tests.
//!
//! Like `lora_pkt_fwd` it uses two sockets: an *up* socket for PUSH_DATA
//! (answered by PUSH_ACK) and a *down* socket for PULL_DATA keep-alives,
//! from which it also receives PULL_RESP and answers TX_ACK. A server that
//! replied to the wrong port would therefore fail here as it would with
//! real hardware.
//!
//! Frames "heard on air" are injected with [`PacketForwarder::inject`];
//! what the gateway transmits comes out of
//! [`PacketForwarder::subscribe_downlinks`] so simulated devices can hear
//! it. Tests can also inject bad-CRC packets and raw junk, and make the
//! forwarder refuse transmissions (e.g. `TOO_LATE`) or never ack them.
//!
//! Dropping the [`PacketForwarder`] stops it, like pulling its plug.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::{broadcast, watch};
use tokio::time::{interval_at, Instant, MissedTickBehavior};
use tokio_util::sync::{CancellationToken, DropGuard};
use tracing::debug;

use crate::gwmp::{
    parse, CrcStatus, Datagram, Eui, PushPayload, RxPk, TxAckCode, TxAckPayload, TxPk,
};
use crate::link::RadioParams;

/// How many recent ack tokens are remembered for [`PacketForwarder::wait_push_ack`].
const REMEMBERED_ACKS: usize = 1024;

/// Settings of one emulated forwarder.
#[derive(Debug, Clone, PartialEq)]
pub struct PacketForwarderConfig {
    /// The GWMP server (the gateway's `GwmpLink`).
    pub server: SocketAddr,
    pub gateway: Eui,
    /// PULL_DATA period; `lora_pkt_fwd` defaults to 10 s. The first one is
    /// sent by [`PacketForwarder::start`] itself.
    pub keepalive: Duration,
    /// Radio settings reported for injected frames.
    pub radio: RadioParams,
    /// What TX_ACK answers a PULL_RESP: `Some(TxAckCode::None)` accepts it,
    /// another code refuses it, `None` sends no TX_ACK at all.
    pub tx_ack: Option<TxAckCode>,
}

impl PacketForwarderConfig {
    pub fn new(server: SocketAddr, gateway: Eui) -> PacketForwarderConfig {
        PacketForwarderConfig {
            server,
            gateway,
            keepalive: Duration::from_secs(5),
            radio: RadioParams::default(),
            tx_ack: Some(TxAckCode::None),
        }
    }
}

/// A transmission the emulated concentrator was asked to make.
#[derive(Debug, Clone, PartialEq)]
pub struct HeardDownlink {
    /// PULL_RESP token (echoed in the TX_ACK).
    pub token: u16,
    /// The decoded payload.
    pub bytes: Vec<u8>,
    /// The full `txpk`, for checks on `ipol`, `imme`, power...
    pub txpk: TxPk,
}

/// What the emulator has seen from the server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ForwarderStats {
    pub push_acks: u64,
    pub pull_acks: u64,
    pub pull_resps: u64,
    pub tx_acks_sent: u64,
    /// Datagrams from the server that were not valid for a forwarder.
    pub malformed: u64,
}

#[derive(Debug, Default)]
struct Observed {
    stats: ForwarderStats,
    push_acked: VecDeque<u16>,
    pull_acked: VecDeque<u16>,
}

fn remember(tokens: &mut VecDeque<u16>, token: u16) {
    if tokens.len() == REMEMBERED_ACKS {
        tokens.pop_front();
    }
    tokens.push_back(token);
}

/// Shared between the handle and the two socket tasks.
struct Shared {
    gateway: Eui,
    radio: RadioParams,
    up: UdpSocket,
    down: UdpSocket,
    tx_ack: Mutex<Option<TxAckCode>>,
    observed: watch::Sender<Observed>,
    downlinks: broadcast::Sender<HeardDownlink>,
    /// Origin of the concentrator's microsecond counter (`tmst`).
    started: Instant,
}

/// A running emulated packet forwarder.
pub struct PacketForwarder {
    shared: Arc<Shared>,
    _stop: DropGuard,
}

impl PacketForwarder {
    /// Opens both sockets, sends the first PULL_DATA and starts the
    /// keep-alive and receive tasks.
    pub async fn start(config: PacketForwarderConfig) -> io::Result<PacketForwarder> {
        // Any local address: `connect` makes the kernel pick the one that
        // reaches the server (loopback in tests, the LAN for a real gateway).
        let local: SocketAddr = if config.server.is_ipv4() {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let up = UdpSocket::bind(local).await?;
        up.connect(config.server).await?;
        let down = UdpSocket::bind(local).await?;
        down.connect(config.server).await?;
        let shared = Arc::new(Shared {
            gateway: config.gateway,
            radio: config.radio,
            up,
            down,
            tx_ack: Mutex::new(config.tx_ack),
            observed: watch::Sender::new(Observed::default()),
            downlinks: broadcast::channel(256).0,
            started: Instant::now(),
        });
        // Like lora_pkt_fwd, announce the downlink path at start, before
        // returning, so the server knows it as soon as `start` is done.
        if let Err(error) = send_pull_data(&shared).await {
            debug!(%error, "emulated forwarder: first PULL_DATA not sent");
        }
        let stop = CancellationToken::new();
        tokio::spawn(upstream_task(shared.clone(), stop.clone()));
        tokio::spawn(downstream_task(
            shared.clone(),
            config.keepalive,
            stop.clone(),
        ));
        Ok(PacketForwarder {
            shared,
            _stop: stop.drop_guard(),
        })
    }

    pub fn gateway(&self) -> Eui {
        self.shared.gateway
    }

    /// Reports a frame received with a good CRC; returns the PUSH_DATA token.
    /// RSSI goes out in whole dB, as the protocol specifies.
    pub async fn inject(&self, bytes: &[u8], rssi: f32, snr: f32) -> io::Result<u16> {
        self.inject_with_crc(bytes, rssi, snr, CrcStatus::Ok).await
    }

    /// Reports a frame the concentrator received with a failed CRC.
    pub async fn inject_bad_crc(&self, bytes: &[u8], rssi: f32, snr: f32) -> io::Result<u16> {
        self.inject_with_crc(bytes, rssi, snr, CrcStatus::Bad).await
    }

    async fn inject_with_crc(
        &self,
        bytes: &[u8],
        rssi: f32,
        snr: f32,
        crc: CrcStatus,
    ) -> io::Result<u16> {
        let rxpk = RxPk::lora(bytes, &self.shared.radio, rssi, snr, crc, self.tmst());
        self.push(PushPayload {
            rxpk: vec![rxpk],
            stat: None,
        })
        .await
    }

    /// Sends any PUSH_DATA body (several packets, odd fields, statistics);
    /// returns its token.
    pub async fn push(&self, payload: PushPayload) -> io::Result<u16> {
        let token = rand::random();
        let datagram = Datagram::PushData {
            token,
            gateway: self.shared.gateway,
            payload,
        };
        self.shared.up.send(&datagram.to_bytes()).await?;
        Ok(token)
    }

    /// Sends raw bytes from the up socket, for junk tests.
    pub async fn send_raw(&self, bytes: &[u8]) -> io::Result<()> {
        self.shared.up.send(bytes).await.map(|_| ())
    }

    /// Sends a PULL_DATA now, outside the keep-alive rhythm; returns its token.
    pub async fn pull_data(&self) -> io::Result<u16> {
        send_pull_data(&self.shared).await
    }

    /// Changes how later PULL_RESPs are answered (see
    /// [`PacketForwarderConfig::tx_ack`]).
    pub fn set_tx_ack(&self, reply: Option<TxAckCode>) {
        *lock(&self.shared.tx_ack) = reply;
    }

    /// Every transmission the forwarder is asked for from now on.
    pub fn subscribe_downlinks(&self) -> broadcast::Receiver<HeardDownlink> {
        self.shared.downlinks.subscribe()
    }

    pub fn stats(&self) -> ForwarderStats {
        self.shared.observed.borrow().stats.clone()
    }

    /// Resolves once `condition` holds for the stats. Wrap it in a timeout.
    pub async fn wait_until(&self, mut condition: impl FnMut(&ForwarderStats) -> bool) {
        let mut observed = self.shared.observed.subscribe();
        // The sender lives in `self.shared`, so the channel cannot close.
        let _ = observed.wait_for(|o| condition(&o.stats)).await;
    }

    /// Resolves once the PUSH_ACK for `token` has arrived. Wrap it in a
    /// timeout: an ack that never comes never resolves.
    pub async fn wait_push_ack(&self, token: u16) {
        let mut observed = self.shared.observed.subscribe();
        // The sender lives in `self.shared`, so the channel cannot close.
        let _ = observed.wait_for(|o| o.push_acked.contains(&token)).await;
    }

    /// Resolves once the PULL_ACK for `token` has arrived.
    pub async fn wait_pull_ack(&self, token: u16) {
        let mut observed = self.shared.observed.subscribe();
        let _ = observed.wait_for(|o| o.pull_acked.contains(&token)).await;
    }

    /// The concentrator's free-running microsecond counter.
    fn tmst(&self) -> u32 {
        // Wraps at 2^32 µs (~71 min), as on the hardware.
        self.shared.started.elapsed().as_micros() as u32
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The guarded values are plain data with no invariant a panic could break.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn send_pull_data(shared: &Shared) -> io::Result<u16> {
    let token = rand::random();
    let datagram = Datagram::PullData {
        token,
        gateway: shared.gateway,
    };
    shared.down.send(&datagram.to_bytes()).await?;
    Ok(token)
}

/// Receives PUSH_ACKs on the up socket.
async fn upstream_task(shared: Arc<Shared>, stop: CancellationToken) {
    let mut buf = vec![0u8; 65_535];
    loop {
        let received = tokio::select! {
            _ = stop.cancelled() => return,
            received = shared.up.recv(&mut buf) => received,
        };
        match received.map(|len| parse(&buf[..len])) {
            Ok(Ok(Datagram::PushAck { token })) => shared.observed.send_modify(|o| {
                o.stats.push_acks += 1;
                remember(&mut o.push_acked, token);
            }),
            Ok(_) => shared.observed.send_modify(|o| o.stats.malformed += 1),
            // Connected UDP sockets report ICMP "port unreachable" while the
            // server is away; a real forwarder just carries on.
            Err(error) => debug!(%error, "emulated forwarder: up socket error"),
        }
    }
}

/// Sends keep-alives and handles PULL_ACK / PULL_RESP on the down socket.
async fn downstream_task(shared: Arc<Shared>, keepalive: Duration, stop: CancellationToken) {
    let mut ticks = interval_at(Instant::now() + keepalive, keepalive);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut buf = vec![0u8; 65_535];
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticks.tick() => {
                if let Err(error) = send_pull_data(&shared).await {
                    debug!(%error, "emulated forwarder: PULL_DATA not sent");
                }
            }
            received = shared.down.recv(&mut buf) => match received.map(|len| parse(&buf[..len])) {
                Ok(Ok(Datagram::PullAck { token })) => shared.observed.send_modify(|o| {
                    o.stats.pull_acks += 1;
                    remember(&mut o.pull_acked, token);
                }),
                Ok(Ok(Datagram::PullResp { token, payload })) => {
                    on_pull_resp(&shared, token, payload.txpk).await;
                }
                Ok(_) => shared.observed.send_modify(|o| o.stats.malformed += 1),
                Err(error) => debug!(%error, "emulated forwarder: down socket error"),
            },
        }
    }
}

async fn on_pull_resp(shared: &Shared, token: u16, txpk: TxPk) {
    let bytes = match txpk.payload() {
        Ok(bytes) => bytes,
        Err(error) => {
            // lora_pkt_fwd drops an unusable txpk without transmitting.
            debug!(%error, "emulated forwarder: unusable txpk");
            shared.observed.send_modify(|o| o.stats.malformed += 1);
            return;
        }
    };
    shared.observed.send_modify(|o| o.stats.pull_resps += 1);
    let reply = lock(&shared.tx_ack).clone();
    let Some(code) = reply else {
        return;
    };
    if code == TxAckCode::None {
        // Published before the TX_ACK, so whoever sees the gateway's TxDone
        // can already find the frame "on air". Nobody listening is fine.
        let _ = shared.downlinks.send(HeardDownlink { token, bytes, txpk });
    }
    let ack = Datagram::TxAck {
        token,
        gateway: shared.gateway,
        payload: Some(TxAckPayload::with_error(code)),
    };
    // Counted before sending, so it is visible once the server has the ack.
    shared.observed.send_modify(|o| o.stats.tx_acks_sent += 1);
    if let Err(error) = shared.down.send(&ack.to_bytes()).await {
        debug!(%error, "emulated forwarder: TX_ACK not sent");
    }
}
