//! [`GwmpLink`]: the server end of GWMP, driving one UDP socket that any
//! number of packet forwarders talk to.
//!
//! # Receiving
//! Every PUSH_DATA that parses is answered with a PUSH_ACK (same token)
//! straight away, before its packets are handed upward. The ack is a
//! protocol-level receipt meaning "datagram understood"; durability is the
//! job of the store above the link, which is why acking first is fine here
//! (ChirpStack's weakness is acking and then keeping the data only in
//! memory, not the order of the two).
//!
//! Each `rxpk` with CRC status 1 (ok) or 0 (no CRC) becomes a
//! [`LinkEvent::Received`]; status -1 is counted in `bad_crc` and dropped;
//! an undecodable payload or a wrong `size` is counted in `malformed`.
//! Datagrams that are not GWMP v2, or that only a server would send, are
//! counted in `malformed` and otherwise ignored.
//!
//! # Transmitting
//! A [`Transmit`] becomes a PULL_RESP with a fresh random token, sent to the
//! forwarder its `via` names (the one that heard the device being answered,
//! from [`RxMeta::via`](crate::link::RxMeta)) while that forwarder's
//! PULL_DATA is current, else to the address of the most recent PULL_DATA.
//! A Transmit without `via` is for everyone: one PULL_RESP to each forwarder
//! with a current PULL_DATA, answered once, when the last of them has (sent
//! if any sent it). A configured `downlink_gateway` overrides all of this. Its
//! [`LinkEvent::TxDone`] waits for the TX_ACK with that token: error `NONE`
//! (or no error) is success, anything else is
//! [`TxError::Rejected`] with the code, counted in `device_errors` and
//! `tx_failed`. If no TX_ACK arrives within `tx_ack_timeout`, the outcome is
//! unknown; by default that is reported as `Rejected("NO_TX_ACK")` so the
//! layer above retries (a duplicate on air is harmless, Seed frames carry
//! ids; a silently lost answer is not). Every GWMP v2 forwarder sends
//! TX_ACK, so this only fires when the datagram or the forwarder was lost;
//! `assume_sent_without_tx_ack` flips it for a forwarder known not to ack.
//!
//! # State
//! - `Connecting` from start, and again right after a (re)bind.
//! - `Up` as soon as any forwarder has sent a valid datagram within the
//!   keep-alive window (30 s: three missed PULL_DATA at the forwarder's
//!   default 10 s keep-alive).
//! - `Down("no packet forwarder heard for 30 s")` when the last one falls
//!   silent (counted in `disconnects`), `Down("no packet forwarder has
//!   contacted …")` if none speaks within a window of binding, and
//!   `Down("cannot bind …")` while the port is unavailable (retried every
//!   `rebind_interval`).
//!
//! Up means "hearing"; transmitting additionally needs a PULL_DATA within
//! the window. A request that finds none (after a restart, the forwarders
//! speak again only at their next keep-alive, 5–10 s later) is held, up to
//! `hold_without_forwarder` ([`MAX_TX_HOLD`], the time a device waits for
//! its ack) and at most 64 at once, counted in `tx_held`, and sent as soon
//! as a PULL_DATA says where; one still held at its deadline, or finding
//! the hold full, fails with [`TxError::NotConnected`] and counts in
//! `tx_too_late`, as does everything still held when the transmit queue
//! closes (the gateway is stopping; a frame already sent then waits at most
//! 250 ms more for its TX_ACK). Every failed request, whatever the reason, counts in
//! `tx_failed`.
//!
//! Anyone who can reach the port can inject packets; GWMP has no
//! authentication. The frames' own signatures, checked above, are the guard.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::{sleep, sleep_until, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::forwarders::Forwarders;
use super::packet::{parse, Datagram, Eui};
use super::rxpk::RxPkReject;
use super::txpk::{tx_ack_outcome, PullRespPayload, TxAckPayload, TxPk};
use crate::link::{
    unix_millis, Link, LinkCounters, LinkEvent, LinkFuture, LinkState, Transmit, TxError,
    MAX_TX_HOLD,
};

/// Reason text when a TX_ACK never came.
pub const NO_TX_ACK: &str = "NO_TX_ACK";

/// Largest UDP payload; a PUSH_DATA with many rxpk can get big.
const MAX_DATAGRAM: usize = 65_535;

/// Once the gateway is stopping, how long a sent frame still waits for its
/// TX_ACK (instead of `tx_ack_timeout`).
const STOPPING_TX_ACK_WAIT: Duration = Duration::from_millis(250);

/// Datagrams handled per wake-up of the link task at most, so shutdown,
/// transmissions and housekeeping still get their turn under a flood.
const RECEIVE_BATCH: usize = 64;

/// Transmissions held while no forwarder is known, beyond which new ones
/// are answered as not sent at once (and counted as too late).
const MAX_HELD_TX: usize = 64;

/// PULL_RESPs awaiting their TX_ACK beyond which new requests are refused.
/// A concentrator's just-in-time queue holds 32 packets; anything near this
/// limit means the forwarder is not answering.
const MAX_PENDING_TX: usize = 256;

/// Settings of one GWMP link.
#[derive(Debug, Clone, PartialEq)]
pub struct GwmpConfig {
    /// Link name, used in [`RxMeta::link`](crate::link::RxMeta) and logs.
    pub name: String,
    /// Address to listen on; packet forwarders use port 1700 by default.
    pub bind: SocketAddr,
    /// How long a forwarder counts as present after its last datagram.
    pub keepalive_window: Duration,
    /// How long to wait for the TX_ACK of a PULL_RESP.
    pub tx_ack_timeout: Duration,
    /// Report a transmission without TX_ACK as sent instead of failed.
    pub assume_sent_without_tx_ack: bool,
    /// Send downlinks only through this gateway, whichever heard the device.
    pub downlink_gateway: Option<Eui>,
    /// Concentrator RF chain to transmit on (`txpk.rfch`).
    pub tx_rf_chain: u32,
    /// Pause between attempts to bind an unavailable address.
    pub rebind_interval: Duration,
    /// How long a transmission is held while no packet forwarder can take
    /// it (capped at [`MAX_TX_HOLD`]).
    pub hold_without_forwarder: Duration,
}

impl GwmpConfig {
    /// A config with the documented defaults.
    pub fn new(name: impl Into<String>, bind: SocketAddr) -> GwmpConfig {
        GwmpConfig {
            name: name.into(),
            bind,
            keepalive_window: Duration::from_secs(30),
            tx_ack_timeout: Duration::from_secs(5),
            assume_sent_without_tx_ack: false,
            downlink_gateway: None,
            tx_rf_chain: 0,
            rebind_interval: Duration::from_secs(5),
            hold_without_forwarder: MAX_TX_HOLD,
        }
    }
}

/// A [`Link`] to Semtech UDP packet forwarders.
pub struct GwmpLink {
    config: GwmpConfig,
    counters: Arc<LinkCounters>,
    socket: Option<UdpSocket>,
}

impl GwmpLink {
    /// A link that binds its socket when it runs, retrying while the
    /// address is unavailable (reported as `Down`).
    pub fn new(config: GwmpConfig) -> GwmpLink {
        GwmpLink {
            config,
            counters: Arc::default(),
            socket: None,
        }
    }

    /// A link whose socket is bound now, so a bind error surfaces to the
    /// caller and [`local_addr`](Self::local_addr) is known (port 0 in tests).
    pub async fn bind(config: GwmpConfig) -> io::Result<GwmpLink> {
        let socket = bind_socket(config.bind).await?;
        Ok(GwmpLink {
            config,
            counters: Arc::default(),
            socket: Some(socket),
        })
    }

    /// The bound address, if [`bind`](Self::bind) was used.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.socket.as_ref().and_then(|s| s.local_addr().ok())
    }
}

impl Link for GwmpLink {
    fn name(&self) -> &str {
        &self.config.name
    }

    fn counters(&self) -> Arc<LinkCounters> {
        self.counters.clone()
    }

    fn run(
        self: Box<Self>,
        events: mpsc::Sender<LinkEvent>,
        mut transmit: mpsc::Receiver<Transmit>,
        shutdown: CancellationToken,
    ) -> LinkFuture {
        Box::pin(async move {
            let GwmpLink {
                config,
                counters,
                socket,
            } = *self;
            let mut driver = Driver::new(config, counters, events, shutdown.clone());
            driver.set_state(LinkState::Connecting).await;
            let socket = match socket {
                Some(socket) => socket,
                None => match driver.bind_until_ok(&mut transmit).await {
                    Some(socket) => socket,
                    None => return,
                },
            };
            driver.serve(socket, transmit).await;
        })
    }
}

/// A PULL_RESP waiting for its TX_ACK.
struct PendingTx {
    id: u64,
    gateway: Eui,
    deadline: Instant,
}

/// A transmission waiting for a forwarder to send it through.
struct HeldTx {
    request: Transmit,
    deadline: Instant,
}

/// What the forwarders said so far about one request sent through several.
#[derive(Debug)]
struct Copies {
    waiting: usize,
    sent: bool,
    error: Option<TxError>,
}

/// The running link: all state lives in this one task, so nothing is locked.
struct Driver {
    config: GwmpConfig,
    counters: Arc<LinkCounters>,
    events: mpsc::Sender<LinkEvent>,
    shutdown: CancellationToken,
    forwarders: Forwarders,
    pending: HashMap<u16, PendingTx>,
    /// Requests sent through several forwarders (a frame for everyone), by
    /// id: answered once every copy is.
    copies: HashMap<u64, Copies>,
    /// Requests that came while no forwarder could take them, oldest first.
    held: VecDeque<HeldTx>,
    state: LinkState,
    bound_at: Instant,
    /// The bound address (differs from the config for port 0).
    listening: SocketAddr,
    transmit_open: bool,
}

impl Driver {
    fn new(
        config: GwmpConfig,
        counters: Arc<LinkCounters>,
        events: mpsc::Sender<LinkEvent>,
        shutdown: CancellationToken,
    ) -> Driver {
        let forwarders = Forwarders::new(config.keepalive_window, config.downlink_gateway);
        let listening = config.bind;
        Driver {
            config,
            counters,
            events,
            shutdown,
            forwarders,
            pending: HashMap::new(),
            copies: HashMap::new(),
            held: VecDeque::new(),
            // Differs from every real state, so the first report is sent.
            state: LinkState::Down(String::new()),
            bound_at: Instant::now(),
            listening,
            transmit_open: true,
        }
    }

    /// Binds the configured address, reporting `Down` and answering
    /// transmissions with `NotConnected` until it works. `None` on shutdown.
    async fn bind_until_ok(
        &mut self,
        transmit: &mut mpsc::Receiver<Transmit>,
    ) -> Option<UdpSocket> {
        loop {
            match bind_socket(self.config.bind).await {
                Ok(socket) => return Some(socket),
                Err(error) => {
                    let reason = format!("cannot bind UDP {}: {error}", self.config.bind);
                    if self.state != LinkState::Down(reason.clone()) {
                        warn!(link = %self.config.name, %reason, "GWMP link down");
                    }
                    self.set_state(LinkState::Down(reason)).await;
                }
            }
            let retry = sleep(self.config.rebind_interval);
            tokio::pin!(retry);
            loop {
                tokio::select! {
                    _ = self.shutdown.cancelled() => return None,
                    _ = &mut retry => break,
                    request = transmit.recv(), if self.transmit_open => match request {
                        Some(request) => self.finish(request.id, Err(TxError::NotConnected)).await,
                        None => self.transmit_open = false,
                    },
                }
            }
        }
    }

    async fn serve(&mut self, socket: UdpSocket, mut transmit: mpsc::Receiver<Transmit>) {
        self.listening = socket.local_addr().unwrap_or(self.config.bind);
        info!(link = %self.config.name, addr = %self.listening, "GWMP link listening");
        self.bound_at = Instant::now();
        self.set_state(LinkState::Connecting).await;
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            let wake = self.next_wakeup();
            tokio::select! {
                _ = self.shutdown.cancelled() => break,
                received = socket.recv_from(&mut buf) => match received {
                    Ok((len, from)) => {
                        self.on_datagram(&socket, &buf[..len], from).await;
                        self.take_waiting(&socket, &mut buf).await;
                    }
                    Err(error) => {
                        // UDP receive errors are transient (e.g. a stale ICMP
                        // report); pause so a persistent one cannot spin.
                        warn!(link = %self.config.name, %error, "GWMP receive failed");
                        sleep(Duration::from_millis(100)).await;
                    }
                },
                request = transmit.recv(), if self.transmit_open => match request {
                    Some(request) => self.on_transmit(&socket, request).await,
                    None => {
                        // The gateway is stopping and hands over nothing
                        // more: what is held for a forwarder that has not
                        // asked yet was never on air and will not be now.
                        self.transmit_open = false;
                        while let Some(held) = self.held.pop_front() {
                            self.too_late(held.request.id).await;
                        }
                        // A forwarder answers a PULL_RESP within
                        // milliseconds; one that has not by now does not
                        // send TX_ACKs, and the frame is in its hands
                        // whatever the gateway does: no point holding the
                        // stop for the full timeout.
                        let soon = Instant::now() + STOPPING_TX_ACK_WAIT;
                        for pending in self.pending.values_mut() {
                            pending.deadline = pending.deadline.min(soon);
                        }
                    }
                },
                _ = sleep_until(wake) => {}
            }
            self.housekeeping(Instant::now()).await;
        }
        // Shutting down: what was sent may or may not go out; answer each
        // request exactly once, as for a missing TX_ACK.
        let open: Vec<u64> = self.pending.drain().map(|(_, p)| p.id).collect();
        for id in open {
            self.answered(id, self.missing_ack_outcome()).await;
        }
        while let Some(held) = self.held.pop_front() {
            self.too_late(held.request.id).await;
        }
    }

    /// Handles datagrams already waiting at the socket, up to
    /// [`RECEIVE_BATCH`]: under a flood one wake-up then serves many
    /// datagrams instead of one loop round (timer, select, housekeeping)
    /// each. Stops at the first `WouldBlock` (or error, which the next
    /// `recv_from` reports).
    async fn take_waiting(&mut self, socket: &UdpSocket, buf: &mut [u8]) {
        for _ in 1..RECEIVE_BATCH {
            match socket.try_recv_from(buf) {
                Ok((len, from)) => self.on_datagram(socket, &buf[..len], from).await,
                Err(_) => break,
            }
        }
    }

    /// The next moment something can change without a datagram arriving.
    fn next_wakeup(&self) -> Instant {
        let far = Instant::now() + Duration::from_secs(3600);
        let tx_deadline = self
            .pending
            .values()
            .map(|p| p.deadline)
            .chain(self.held.front().map(|h| h.deadline))
            .min();
        let state_change = match self.state {
            LinkState::Up => self.forwarders.silent_at(),
            LinkState::Connecting => Some(self.bound_at + self.config.keepalive_window),
            LinkState::Down(_) => None,
        };
        [tx_deadline, state_change]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(far)
    }

    async fn housekeeping(&mut self, now: Instant) {
        let expired: Vec<u16> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(token, _)| *token)
            .collect();
        for token in expired {
            if let Some(pending) = self.pending.remove(&token) {
                warn!(link = %self.config.name, id = pending.id, gateway = %pending.gateway,
                      "no TX_ACK within {:?}", self.config.tx_ack_timeout);
                self.answered(pending.id, self.missing_ack_outcome()).await;
            }
        }
        // Held in arrival order with one hold time: the front expires first.
        while self.held.front().is_some_and(|h| h.deadline <= now) {
            if let Some(held) = self.held.pop_front() {
                self.too_late(held.request.id).await;
            }
        }
        self.forwarders.prune(now);
        self.update_state(now).await;
    }

    fn missing_ack_outcome(&self) -> Result<(), TxError> {
        if self.config.assume_sent_without_tx_ack {
            Ok(())
        } else {
            Err(TxError::Rejected(NO_TX_ACK.to_string()))
        }
    }

    async fn update_state(&mut self, now: Instant) {
        let window = self.config.keepalive_window;
        let next = match (&self.state, self.forwarders.any_alive(now)) {
            (LinkState::Up, true) => return,
            (_, true) => LinkState::Up,
            (LinkState::Up, false) => {
                LinkCounters::bump(&self.counters.disconnects);
                LinkState::Down(format!(
                    "no packet forwarder heard for {}",
                    describe(window)
                ))
            }
            (LinkState::Connecting, false) if now >= self.bound_at + window => {
                LinkState::Down(format!(
                    "no packet forwarder has contacted {} in {}",
                    self.listening,
                    describe(window)
                ))
            }
            _ => return,
        };
        match &next {
            LinkState::Down(reason) => warn!(link = %self.config.name, %reason, "GWMP link down"),
            _ => info!(link = %self.config.name, "GWMP link up"),
        }
        self.set_state(next).await;
    }

    async fn on_datagram(&mut self, socket: &UdpSocket, bytes: &[u8], from: SocketAddr) {
        let datagram = match parse(bytes) {
            Ok(datagram) => datagram,
            Err(error) => {
                LinkCounters::bump(&self.counters.malformed);
                debug!(link = %self.config.name, %from, %error, "junk datagram ignored");
                return;
            }
        };
        let now = Instant::now();
        match datagram {
            Datagram::PushData {
                token,
                gateway,
                payload,
            } => {
                let received_at_ms = unix_millis(SystemTime::now());
                self.reply(socket, Datagram::PushAck { token }, from).await;
                self.forwarders.heard(gateway, now);
                self.update_state(now).await;
                for rxpk in &payload.rxpk {
                    match rxpk.to_frame(&self.config.name, received_at_ms) {
                        Ok(mut frame) => {
                            // So that acks and mailbox deliveries for this
                            // device go out through the radio that heard it.
                            frame.meta.via = Some(gateway.to_string());
                            LinkCounters::bump(&self.counters.frames_received);
                            self.emit(LinkEvent::Received(frame)).await;
                        }
                        Err(RxPkReject::BadCrc) => LinkCounters::bump(&self.counters.bad_crc),
                        Err(reason) => {
                            LinkCounters::bump(&self.counters.malformed);
                            debug!(link = %self.config.name, %gateway, %reason, "rxpk dropped");
                        }
                    }
                }
            }
            Datagram::PullData { token, gateway } => {
                self.forwarders.pulled(gateway, from, now);
                self.reply(socket, Datagram::PullAck { token }, from).await;
                self.update_state(now).await;
                self.release_held(socket, now).await;
            }
            Datagram::TxAck {
                token,
                gateway,
                payload,
            } => {
                self.forwarders.heard(gateway, now);
                self.update_state(now).await;
                self.on_tx_ack(token, gateway, payload).await;
            }
            Datagram::PushAck { .. } | Datagram::PullResp { .. } | Datagram::PullAck { .. } => {
                LinkCounters::bump(&self.counters.malformed);
                debug!(link = %self.config.name, %from, "server-bound link got a downstream datagram");
            }
        }
    }

    async fn on_tx_ack(&mut self, token: u16, gateway: Eui, payload: Option<TxAckPayload>) {
        let asked_this_gateway = self.pending.get(&token).map(|p| p.gateway) == Some(gateway);
        // Removed only on a match: a stray ack must not orphan a request.
        let Some(pending) = asked_this_gateway
            .then(|| self.pending.remove(&token))
            .flatten()
        else {
            // Late (after the timeout), for a token we never sent, or from
            // another gateway than the one asked.
            debug!(link = %self.config.name, token, %gateway, "TX_ACK matches no pending PULL_RESP");
            return;
        };
        match tx_ack_outcome(payload.as_ref()) {
            Ok(warning) => {
                if let Some(warning) = warning {
                    info!(link = %self.config.name, %gateway, %warning, "transmitted with adjustment");
                }
                self.answered(pending.id, Ok(())).await;
            }
            Err(code) => {
                LinkCounters::bump(&self.counters.device_errors);
                warn!(link = %self.config.name, %gateway, %code, "forwarder refused transmission");
                self.answered(pending.id, Err(TxError::Rejected(code.to_string())))
                    .await;
            }
        }
    }

    async fn on_transmit(&mut self, socket: &UdpSocket, request: Transmit) {
        let now = Instant::now();
        if let Err(error) = TxPk::from_transmit(&request, self.config.tx_rf_chain) {
            self.finish(request.id, Err(TxError::Rejected(error.to_string())))
                .await;
            return;
        }
        if self.targets(&request, now).is_empty() {
            self.hold(request, now).await;
            return;
        }
        self.send(socket, request, now).await;
    }

    /// Where a request goes: a frame for one device through one forwarder
    /// (the one that heard it, when still reachable); a frame for everyone
    /// (no `via`) through each.
    fn targets(&self, request: &Transmit, now: Instant) -> Vec<(Eui, SocketAddr)> {
        match &request.via {
            Some(via) => {
                let preferred = via.parse::<Eui>().ok();
                Vec::from_iter(self.forwarders.downlink_target(preferred, now))
            }
            None => self.forwarders.broadcast_targets(now),
        }
    }

    /// Keeps a request no forwarder can take yet (after a restart, until
    /// the first PULL_DATA) for the hold time; a full hold answers at once.
    async fn hold(&mut self, request: Transmit, now: Instant) {
        if self.held.len() >= MAX_HELD_TX {
            warn!(link = %self.config.name, id = request.id,
                  "no packet forwarder to send through and {MAX_HELD_TX} transmissions already held");
            self.too_late(request.id).await;
            return;
        }
        LinkCounters::bump(&self.counters.tx_held);
        debug!(link = %self.config.name, id = request.id, "held until a packet forwarder asks");
        let hold = self.config.hold_without_forwarder.min(MAX_TX_HOLD);
        self.held.push_back(HeldTx {
            request,
            deadline: now + hold,
        });
    }

    /// A forwarder just said where it listens: send what was held for it.
    async fn release_held(&mut self, socket: &UdpSocket, now: Instant) {
        let held = std::mem::take(&mut self.held);
        for HeldTx { request, deadline } in held {
            if deadline <= now {
                self.too_late(request.id).await;
            } else if self.targets(&request, now).is_empty() {
                // The forwarder that asked cannot reach this one's device.
                self.held.push_back(HeldTx { request, deadline });
            } else {
                self.send(socket, request, now).await;
            }
        }
    }

    /// A held request that no forwarder could take in time: answered as not
    /// sent, and counted so the loss of an ack is never silent.
    async fn too_late(&self, id: u64) {
        LinkCounters::bump(&self.counters.tx_too_late);
        self.finish(id, Err(TxError::NotConnected)).await;
    }

    async fn send(&mut self, socket: &UdpSocket, request: Transmit, now: Instant) {
        let txpk = match TxPk::from_transmit(&request, self.config.tx_rf_chain) {
            Ok(txpk) => txpk,
            Err(error) => {
                self.finish(request.id, Err(TxError::Rejected(error.to_string())))
                    .await;
                return;
            }
        };
        let targets = self.targets(&request, now);
        if targets.is_empty() {
            self.finish(request.id, Err(TxError::NotConnected)).await;
            return;
        }
        if self.pending.len() + targets.len() > MAX_PENDING_TX {
            let reason = format!("{MAX_PENDING_TX} transmissions already await TX_ACK");
            self.finish(request.id, Err(TxError::Rejected(reason)))
                .await;
            return;
        }
        let mut copies = Copies {
            waiting: 0,
            sent: false,
            error: None,
        };
        for (gateway, addr) in targets {
            let token = self.fresh_token();
            let datagram = Datagram::PullResp {
                token,
                payload: PullRespPayload { txpk: txpk.clone() },
            };
            match socket.send_to(&datagram.to_bytes(), addr).await {
                Ok(_) => {
                    debug!(link = %self.config.name, id = request.id, %gateway, token, "PULL_RESP sent");
                    self.pending.insert(
                        token,
                        PendingTx {
                            id: request.id,
                            gateway,
                            deadline: now + self.config.tx_ack_timeout,
                        },
                    );
                    copies.waiting += 1;
                }
                Err(error) => {
                    let reason = format!("UDP send to {addr} failed: {error}");
                    copies.error = Some(TxError::Rejected(reason));
                }
            }
        }
        match copies.waiting {
            0 => {
                let error = copies.error.unwrap_or(TxError::NotConnected);
                self.finish(request.id, Err(error)).await;
            }
            // One copy out: its own answer is the request's.
            1 => {}
            _ => {
                self.copies.insert(request.id, copies);
            }
        }
    }

    /// One forwarder's answer to a request. A request sent through several
    /// is finished when the last of them answers: sent if any of them sent
    /// it (each covers its own devices), else with the last refusal.
    async fn answered(&mut self, id: u64, result: Result<(), TxError>) {
        let Some(copies) = self.copies.get_mut(&id) else {
            self.finish(id, result).await;
            return;
        };
        copies.waiting = copies.waiting.saturating_sub(1);
        match result {
            Ok(()) => copies.sent = true,
            Err(error) => copies.error = Some(error),
        }
        if copies.waiting > 0 {
            return;
        }
        let Some(copies) = self.copies.remove(&id) else {
            return;
        };
        let outcome = if copies.sent {
            Ok(())
        } else {
            Err(copies.error.unwrap_or(TxError::NotConnected))
        };
        self.finish(id, outcome).await;
    }

    /// A token no pending PULL_RESP uses, so each TX_ACK matches one request.
    /// Terminates: at most `MAX_PENDING_TX` of 65536 tokens are taken.
    fn fresh_token(&self) -> u16 {
        loop {
            let token: u16 = rand::random();
            if !self.pending.contains_key(&token) {
                return token;
            }
        }
    }

    async fn reply(&self, socket: &UdpSocket, datagram: Datagram, to: SocketAddr) {
        if let Err(error) = socket.send_to(&datagram.to_bytes(), to).await {
            warn!(link = %self.config.name, %to, %error, "cannot send {}", datagram.identifier());
        }
    }

    async fn finish(&self, id: u64, result: Result<(), TxError>) {
        let counter = match result {
            Ok(()) => &self.counters.tx_ok,
            Err(_) => &self.counters.tx_failed,
        };
        LinkCounters::bump(counter);
        self.emit(LinkEvent::TxDone {
            link: self.config.name.clone(),
            id,
            result,
        })
        .await;
    }

    async fn set_state(&mut self, state: LinkState) {
        if self.state == state {
            return;
        }
        self.state = state.clone();
        self.emit(LinkEvent::State {
            link: self.config.name.clone(),
            state,
        })
        .await;
    }

    /// Sends upward (see [`crate::link::emit`]).
    async fn emit(&self, event: LinkEvent) {
        crate::link::emit(&self.events, &self.shutdown, event).await
    }
}

/// "30 s" for whole seconds, "250 ms" otherwise (short windows in tests).
fn describe(window: Duration) -> String {
    if window.subsec_millis() == 0 && window.as_secs() > 0 {
        format!("{} s", window.as_secs())
    } else {
        format!("{} ms", window.as_millis())
    }
}

/// Receive buffer asked for: a burst of datagrams while ingest is busy
/// committing queues here instead of being dropped by the kernel (the
/// default, about 200 KiB, holds a few hundred). The kernel caps it at
/// `net.core.rmem_max`; as root the cap is lifted (`SO_RCVBUFFORCE`).
const RECEIVE_BUFFER_BYTES: libc::c_int = 4 << 20;

/// Binds the server socket with a large receive buffer (best effort: a
/// smaller buffer only means drops under a flood, which the forwarder's
/// devices recover from by retransmitting).
async fn bind_socket(addr: std::net::SocketAddr) -> io::Result<UdpSocket> {
    use std::os::fd::AsRawFd;
    let socket = UdpSocket::bind(addr).await?;
    let fd = socket.as_raw_fd();
    let size = RECEIVE_BUFFER_BYTES;
    for option in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
        // SAFETY: a plain setsockopt on a socket we own, with a c_int value
        // of the size we pass.
        let done = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                option,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        } == 0;
        if done {
            break;
        }
    }
    Ok(socket)
}
