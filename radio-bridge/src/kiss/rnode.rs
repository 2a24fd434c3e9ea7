//! [`RnodeLink`]: the [`Link`] driver for an RNode on a serial port.
//!
//! Life of the link, repeated until shutdown:
//!
//! 1. **Open** the port (115200 8N1, stale input discarded).
//! 2. **Detect**: send `DETECT 0x73` plus firmware/platform/MCU queries and
//!    wait for `DETECT 0x46`. The request is repeated every
//!    [`DETECT_RESEND`] because ESP32 boards reboot when the port opens and
//!    miss whatever arrives while they boot.
//! 3. **Configure** frequency, bandwidth, TX power, SF and CR, then turn the
//!    radio on, one at a time, each time waiting for the firmware to echo the
//!    value it actually applied. A different value (a clamped TX power, a
//!    band the hardware cannot tune) means the radio would sit on the wrong
//!    channel: that is a [`LinkState::Down`] with the values in the reason,
//!    not a silent success.
//! 4. **Serve** ([`LinkState::Up`]): deliver DATA frames with the RSSI/SNR
//!    the firmware sent just before them, write transmissions, surface
//!    `ERROR` frames.
//! 5. On any port error: [`LinkState::Down`], count a disconnect, wait
//!    [`RnodeConfig::reconnect_interval`], go to 1. The run future only ends
//!    on shutdown, so unplugging and replugging the USB cable needs no
//!    restart.
//!
//! Transmissions: each [`Transmit`] is written as one DATA frame, and then the
//! link waits for the firmware's verdict before answering with
//! [`LinkEvent::TxDone`]: `READY` means it was queued for the air (Ok), an
//! `ERROR` frame (e.g. `QUEUE_FULL`) means it was refused
//! ([`TxError::Rejected`] naming the code). Firmware that sends neither is
//! given [`RnodeConfig::tx_confirm_timeout`], after which the write itself
//! counts as success. One transmission is in flight at a time; the rest wait
//! in the caller's channel, which is the queue the gateway already manages.
//! A `TXFAILED` reported after the verdict (the firmware only knows once the
//! airtime is over) is counted and logged but cannot revise the TxDone.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::{sleep, sleep_until, timeout, Instant};
use tokio_serial::{SerialPort, SerialPortBuilderExt, SerialStream};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, trace, warn};

use super::commands::{
    error_description, error_name, parse_device_frame, platform_name, DeviceMessage, CMD_BANDWIDTH,
    CMD_CR, CMD_DATA, CMD_DETECT, CMD_FREQUENCY, CMD_FW_VERSION, CMD_LEAVE, CMD_MCU, CMD_PLATFORM,
    CMD_RADIO_STATE, CMD_SF, CMD_TXPOWER, DETECT_REQ, ERROR_INITRADIO, HARDWARE_MTU, LEAVE_REQ,
    RADIO_STATE_OFF, RADIO_STATE_ON,
};
use super::framing::{encode, encode_into, Deframed, Deframer, DropReason};
use crate::link::{
    Link, LinkCounters, LinkEvent, LinkFuture, LinkState, RadioParams, RxFrame, RxMeta, Transmit,
    TxError,
};

/// RNode serial speed; the firmware does not negotiate.
pub const BAUD_RATE: u32 = 115_200;

/// How often DETECT is repeated while waiting for the first answer.
pub const DETECT_RESEND: Duration = Duration::from_millis(500);

/// Largest difference between requested and echoed frequency still taken as
/// a match: SX127x firmware echoes the synthesiser's quantised frequency
/// (61 Hz steps), and Reticulum accepts the same 100 Hz.
pub const FREQUENCY_TOLERANCE_HZ: u32 = 100;

/// Everything the RNode link needs to know.
#[derive(Debug, Clone, PartialEq)]
pub struct RnodeConfig {
    /// Link name (`rnode0`), used in events, logs and every Down reason.
    pub name: String,
    /// Serial device path. Prefer a stable name (`/dev/serial/by-id/...`)
    /// over `/dev/ttyACM0`, which can change on replug.
    pub port: PathBuf,
    /// What to configure the radio to.
    pub params: RadioParams,
    /// A frame that stops arriving halfway is thrown away after this much
    /// silence (the RNode sends a frame in one burst).
    pub silence_timeout: Duration,
    /// Pause between attempts to reopen a missing or failing port.
    pub reconnect_interval: Duration,
    /// How long to wait for the DETECT answer and for each configuration
    /// echo before declaring the device unresponsive.
    pub response_timeout: Duration,
    /// How long to wait for READY/ERROR after writing a DATA frame.
    pub tx_confirm_timeout: Duration,
}

impl RnodeConfig {
    /// A config with the usual timings: 100 ms silence, 5 s reconnect,
    /// 5 s response, 500 ms transmit confirmation.
    pub fn new(name: impl Into<String>, port: impl Into<PathBuf>, params: RadioParams) -> Self {
        RnodeConfig {
            name: name.into(),
            port: port.into(),
            params,
            silence_timeout: Duration::from_millis(100),
            reconnect_interval: Duration::from_secs(5),
            response_timeout: Duration::from_secs(5),
            tx_confirm_timeout: Duration::from_millis(500),
        }
    }
}

/// An RNode attached over serial. Create it, then hand it to the gateway,
/// which calls [`Link::run`].
#[derive(Debug)]
pub struct RnodeLink {
    config: RnodeConfig,
    counters: Arc<LinkCounters>,
}

impl RnodeLink {
    pub fn new(config: RnodeConfig) -> RnodeLink {
        RnodeLink {
            config,
            counters: Arc::new(LinkCounters::default()),
        }
    }

    pub fn config(&self) -> &RnodeConfig {
        &self.config
    }
}

impl Link for RnodeLink {
    fn name(&self) -> &str {
        &self.config.name
    }

    fn counters(&self) -> Arc<LinkCounters> {
        self.counters.clone()
    }

    fn run(
        self: Box<Self>,
        events: mpsc::Sender<LinkEvent>,
        transmit: mpsc::Receiver<Transmit>,
        shutdown: CancellationToken,
    ) -> LinkFuture {
        let driver = Driver {
            cfg: self.config,
            counters: self.counters,
            events,
            transmit: Some(transmit),
            shutdown,
            state: None,
        };
        Box::pin(driver.run())
    }
}

/// Why a session (one open port) ended.
enum Stop {
    Shutdown,
    /// The port failed or the device is unusable; the text is the Down reason.
    Lost(String),
}

/// What the device said about itself during the handshake.
#[derive(Debug, Default)]
struct DeviceInfo {
    firmware: Option<(u8, u8)>,
    platform: Option<u8>,
    mcu: Option<u8>,
}

impl DeviceInfo {
    fn describe(&self) -> String {
        let firmware = match self.firmware {
            Some((major, minor)) => format!("firmware {major}.{minor:02}"),
            None => "firmware unknown".to_string(),
        };
        let platform = match self.platform {
            Some(p) => format!("platform {} (0x{p:02x})", platform_name(p)),
            None => "platform unknown".to_string(),
        };
        let mcu = match self.mcu {
            Some(m) => format!("mcu 0x{m:02x}"),
            None => "mcu unknown".to_string(),
        };
        format!("{firmware}, {platform}, {mcu}")
    }
}

/// A transmission written to the device, waiting for READY or ERROR.
struct InFlight {
    id: u64,
    deadline: Instant,
}

/// What the port produced next.
enum Incoming {
    Item(Deframed),
    /// A partial frame was thrown away after silence.
    PartialExpired,
}

/// One open serial port and everything that only lives as long as it.
struct Session {
    port: SerialStream,
    deframer: Deframer,
    /// Deframed items not yet handled (one read can complete several frames).
    queue: std::collections::VecDeque<Deframed>,
    last_byte: Instant,
    silence: Duration,
    /// Statistics for the next DATA frame; the firmware sends them first.
    rssi: Option<f32>,
    snr: Option<f32>,
    in_flight: Option<InFlight>,
    info: DeviceInfo,
    buf: Box<[u8; 1024]>,
}

impl Session {
    fn forget_stats(&mut self) {
        self.rssi = None;
        self.snr = None;
    }

    /// The next deframed item, or why the port is unusable. Cancel-safe:
    /// bytes are only consumed by a completed read and immediately queued.
    async fn next(&mut self) -> Result<Incoming, String> {
        loop {
            if let Some(item) = self.queue.pop_front() {
                return Ok(Incoming::Item(item));
            }
            let read = if self.deframer.has_partial() {
                tokio::select! {
                    // Bytes already waiting are not silence, however late
                    // this task got to run.
                    biased;
                    read = self.port.read(&mut self.buf[..]) => read,
                    _ = sleep_until(self.last_byte + self.silence) => {
                        if self.deframer.expire_partial() {
                            return Ok(Incoming::PartialExpired);
                        }
                        continue;
                    }
                }
            } else {
                self.port.read(&mut self.buf[..]).await
            };
            match read {
                Ok(0) => return Err("hangup (read returned end of stream)".to_string()),
                Ok(n) => {
                    self.last_byte = Instant::now();
                    let items = self.deframer.feed(&self.buf[..n]);
                    self.queue.extend(items);
                }
                Err(e) => return Err(e.to_string()),
            }
        }
    }
}

/// One configuration value and how to check its echo.
#[derive(Debug, Clone, Copy)]
enum Setting {
    Frequency(u32),
    Bandwidth(u32),
    TxPower(i8),
    SpreadingFactor(u8),
    CodingRate(u8),
    RadioState(u8),
}

impl Setting {
    fn sequence(params: &RadioParams) -> [Setting; 6] {
        [
            Setting::Frequency(params.freq_hz),
            Setting::Bandwidth(params.bandwidth_hz),
            Setting::TxPower(params.tx_power_dbm),
            Setting::SpreadingFactor(params.sf),
            Setting::CodingRate(params.coding_rate),
            Setting::RadioState(RADIO_STATE_ON),
        ]
    }

    fn frame(self) -> Vec<u8> {
        match self {
            Setting::Frequency(hz) => encode(CMD_FREQUENCY, &hz.to_be_bytes()),
            Setting::Bandwidth(hz) => encode(CMD_BANDWIDTH, &hz.to_be_bytes()),
            Setting::TxPower(dbm) => encode(CMD_TXPOWER, &[dbm as u8]),
            Setting::SpreadingFactor(sf) => encode(CMD_SF, &[sf]),
            Setting::CodingRate(cr) => encode(CMD_CR, &[cr]),
            Setting::RadioState(state) => encode(CMD_RADIO_STATE, &[state]),
        }
    }

    fn what(self) -> &'static str {
        match self {
            Setting::Frequency(_) => "frequency",
            Setting::Bandwidth(_) => "bandwidth",
            Setting::TxPower(_) => "TX power",
            Setting::SpreadingFactor(_) => "spreading factor",
            Setting::CodingRate(_) => "coding rate",
            Setting::RadioState(_) => "radio state",
        }
    }

    /// The echo of this setting in `msg`, if `msg` is one.
    fn echo_in(self, msg: &DeviceMessage) -> Option<Setting> {
        match (self, msg) {
            (Setting::Frequency(_), DeviceMessage::Frequency(v)) => Some(Setting::Frequency(*v)),
            (Setting::Bandwidth(_), DeviceMessage::Bandwidth(v)) => Some(Setting::Bandwidth(*v)),
            (Setting::TxPower(_), DeviceMessage::TxPower(v)) => Some(Setting::TxPower(*v)),
            (Setting::SpreadingFactor(_), DeviceMessage::SpreadingFactor(v)) => {
                Some(Setting::SpreadingFactor(*v))
            }
            (Setting::CodingRate(_), DeviceMessage::CodingRate(v)) => Some(Setting::CodingRate(*v)),
            (Setting::RadioState(_), DeviceMessage::RadioState(v)) => Some(Setting::RadioState(*v)),
            _ => None,
        }
    }

    fn matches(self, echoed: Setting) -> bool {
        match (self, echoed) {
            (Setting::Frequency(want), Setting::Frequency(got)) => {
                want.abs_diff(got) <= FREQUENCY_TOLERANCE_HZ
            }
            (Setting::Bandwidth(a), Setting::Bandwidth(b)) => a == b,
            (Setting::TxPower(a), Setting::TxPower(b)) => a == b,
            (Setting::SpreadingFactor(a), Setting::SpreadingFactor(b)) => a == b,
            (Setting::CodingRate(a), Setting::CodingRate(b)) => a == b,
            (Setting::RadioState(a), Setting::RadioState(b)) => a == b,
            _ => false,
        }
    }

    /// The value with its unit, as an operator would write it.
    fn value(self) -> String {
        match self {
            Setting::Frequency(hz) | Setting::Bandwidth(hz) => format!("{hz} Hz"),
            Setting::TxPower(dbm) => format!("{dbm} dBm"),
            Setting::SpreadingFactor(sf) => format!("SF{sf}"),
            Setting::CodingRate(cr) => format!("4/{cr}"),
            Setting::RadioState(RADIO_STATE_ON) => "on".to_string(),
            Setting::RadioState(RADIO_STATE_OFF) => "off".to_string(),
            Setting::RadioState(other) => format!("0x{other:02x}"),
        }
    }
}

/// The running link: owns the channels and the reported state across
/// sessions.
struct Driver {
    cfg: RnodeConfig,
    counters: Arc<LinkCounters>,
    events: mpsc::Sender<LinkEvent>,
    /// `None` once the gateway dropped its sender; the link keeps receiving.
    transmit: Option<mpsc::Receiver<Transmit>>,
    shutdown: CancellationToken,
    /// Last state reported, so only changes are sent upward.
    state: Option<LinkState>,
}

/// The next transmit request; pends forever once the channel is closed.
async fn next_transmit(rx: &mut Option<mpsc::Receiver<Transmit>>) -> Option<Transmit> {
    let request = match rx.as_mut() {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    };
    if request.is_none() {
        *rx = None;
    }
    request
}

impl Driver {
    async fn run(mut self) {
        self.set_state(LinkState::Connecting).await;
        loop {
            if self.shutdown.is_cancelled() {
                break;
            }
            let mut session = match self.open() {
                Ok(session) => session,
                Err(reason) => {
                    self.set_state(LinkState::Down(reason)).await;
                    if self.idle(self.cfg.reconnect_interval).await.is_err() {
                        break;
                    }
                    continue;
                }
            };
            match self.handshake(&mut session).await {
                Ok(()) => {}
                Err(Stop::Shutdown) => break,
                Err(Stop::Lost(reason)) => {
                    drop(session);
                    self.set_state(LinkState::Down(reason)).await;
                    if self.idle(self.cfg.reconnect_interval).await.is_err() {
                        break;
                    }
                    continue;
                }
            }
            info!(
                link = %self.cfg.name,
                "RNode on {} up ({}); {} Hz, {} Hz bandwidth, SF{}, CR 4/{}, {} dBm",
                self.cfg.port.display(),
                session.info.describe(),
                self.cfg.params.freq_hz,
                self.cfg.params.bandwidth_hz,
                self.cfg.params.sf,
                self.cfg.params.coding_rate,
                self.cfg.params.tx_power_dbm,
            );
            self.set_state(LinkState::Up).await;
            match self.serve(&mut session).await {
                Stop::Shutdown => {
                    self.detach(&mut session).await;
                    break;
                }
                Stop::Lost(reason) => {
                    LinkCounters::bump(&self.counters.disconnects);
                    if let Some(flight) = session.in_flight.take() {
                        self.tx_done(flight.id, Err(TxError::NotConnected)).await;
                    }
                    drop(session);
                    self.set_state(LinkState::Down(reason)).await;
                    if self.idle(self.cfg.reconnect_interval).await.is_err() {
                        break;
                    }
                }
            }
        }
        debug!(link = %self.cfg.name, "RNode link stopped");
    }

    fn open(&self) -> Result<Session, String> {
        let path = self.cfg.port.to_string_lossy().into_owned();
        let port = tokio_serial::new(path, BAUD_RATE)
            .data_bits(tokio_serial::DataBits::Eight)
            .parity(tokio_serial::Parity::None)
            .stop_bits(tokio_serial::StopBits::One)
            .flow_control(tokio_serial::FlowControl::None)
            .open_native_async()
            .map_err(|e| {
                format!(
                    "{}: cannot open serial port {}: {e}",
                    self.cfg.name,
                    self.cfg.port.display()
                )
            })?;
        // Bytes queued before we opened belong to an earlier conversation.
        if let Err(e) = port.clear(tokio_serial::ClearBuffer::Input) {
            debug!(link = %self.cfg.name, "could not flush stale input: {e}");
        }
        Ok(Session {
            port,
            deframer: Deframer::new(),
            queue: Default::default(),
            last_byte: Instant::now(),
            silence: self.cfg.silence_timeout,
            rssi: None,
            snr: None,
            in_flight: None,
            info: DeviceInfo::default(),
            buf: Box::new([0; 1024]),
        })
    }

    fn port_gone(&self, detail: impl std::fmt::Display) -> String {
        format!(
            "{}: serial port {} gone: {detail}",
            self.cfg.name,
            self.cfg.port.display()
        )
    }

    /// Write bytes to the device. Bounded, because a port whose other end
    /// stopped reading would otherwise hang the link forever.
    async fn write(&self, session: &mut Session, bytes: &[u8]) -> Result<(), Stop> {
        let write = async {
            session.port.write_all(bytes).await?;
            session.port.flush().await
        };
        match timeout(self.cfg.response_timeout, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Stop::Lost(self.port_gone(e))),
            Err(_) => Err(Stop::Lost(self.port_gone(format!(
                "write not accepted within {:?}",
                self.cfg.response_timeout
            )))),
        }
    }

    /// Detect the RNode and configure it; Ok means the radio is on with
    /// exactly the configured parameters.
    async fn handshake(&mut self, session: &mut Session) -> Result<(), Stop> {
        let mut detect = encode(CMD_DETECT, &[DETECT_REQ]);
        encode_into(&mut detect, CMD_FW_VERSION, &[0x00]);
        encode_into(&mut detect, CMD_PLATFORM, &[0x00]);
        encode_into(&mut detect, CMD_MCU, &[0x00]);
        self.write(session, &detect).await?;
        let deadline = Instant::now() + self.cfg.response_timeout;
        let answered = self
            .await_reply(session, deadline, Some(&detect), |msg| {
                matches!(msg, DeviceMessage::Detect(true)).then_some(())
            })
            .await?;
        if answered.is_none() {
            return Err(Stop::Lost(format!(
                "{}: no answer to DETECT on {} within {:?} (is an RNode attached, at {BAUD_RATE} baud?)",
                self.cfg.name,
                self.cfg.port.display(),
                self.cfg.response_timeout
            )));
        }
        debug!(link = %self.cfg.name, "RNode detected");

        for wanted in Setting::sequence(&self.cfg.params) {
            self.write(session, &wanted.frame()).await?;
            let deadline = Instant::now() + self.cfg.response_timeout;
            let reply = self
                .await_reply(session, deadline, None, |msg| match msg {
                    DeviceMessage::Error(ERROR_INITRADIO) => Some(Err(())),
                    other => wanted.echo_in(other).map(Ok),
                })
                .await?;
            match reply {
                None => {
                    return Err(Stop::Lost(format!(
                        "{}: device did not echo {} within {:?}",
                        self.cfg.name,
                        wanted.what(),
                        self.cfg.response_timeout
                    )))
                }
                Some(Err(())) => {
                    return Err(Stop::Lost(format!(
                        "{}: device reported INITRADIO ({}) while setting {} to {}",
                        self.cfg.name,
                        error_description(ERROR_INITRADIO),
                        wanted.what(),
                        wanted.value()
                    )))
                }
                Some(Ok(echoed)) if !wanted.matches(echoed) => {
                    return Err(Stop::Lost(format!(
                        "{}: device echoed {} {}, expected {}",
                        self.cfg.name,
                        wanted.what(),
                        echoed.value(),
                        wanted.value()
                    )))
                }
                Some(Ok(_)) => {}
            }
        }
        Ok(())
    }

    /// Wait until `pick` accepts a device message or `deadline` passes
    /// (`Ok(None)`). Every other message is handled normally on the way;
    /// `resend`, if given, is written again every [`DETECT_RESEND`].
    async fn await_reply<T>(
        &mut self,
        session: &mut Session,
        deadline: Instant,
        resend: Option<&[u8]>,
        mut pick: impl FnMut(&DeviceMessage) -> Option<T>,
    ) -> Result<Option<T>, Stop> {
        let mut next_resend = Instant::now() + DETECT_RESEND;
        loop {
            // Incoming bytes come last in the select below so a chatty
            // device cannot starve the deadline; this check covers a
            // deadline that passed while frames were being handled.
            if Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => return Err(Stop::Shutdown),
                _ = sleep_until(deadline) => return Ok(None),
                _ = sleep_until(next_resend), if resend.is_some() => {
                    if let Some(bytes) = resend {
                        self.write(session, bytes).await?;
                    }
                    next_resend += DETECT_RESEND;
                }
                request = next_transmit(&mut self.transmit) => {
                    if let Some(request) = request {
                        self.tx_done(request.id, Err(TxError::NotConnected)).await;
                    }
                }
                incoming = session.next() => {
                    let incoming = incoming.map_err(|e| Stop::Lost(self.port_gone(e)))?;
                    if let Some(msg) = self.dispatch(session, incoming).await {
                        if let Some(found) = pick(&msg) {
                            return Ok(Some(found));
                        }
                    }
                }
            }
        }
    }

    /// The Up state: receive, transmit, until the port fails or shutdown.
    async fn serve(&mut self, session: &mut Session) -> Stop {
        loop {
            let flight_deadline = session.in_flight.as_ref().map(|f| f.deadline);
            let can_send = flight_deadline.is_none();
            // Order matters: a waiting transmission goes before more input,
            // so a busy receive channel cannot starve the downlink (and only
            // one write happens between reads, as one is in flight at a
            // time). The verdict deadline comes after input, so a READY or
            // ERROR already received wins over a timer that fired late.
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => return Stop::Shutdown,
                request = next_transmit(&mut self.transmit), if can_send => {
                    if let Some(request) = request {
                        if let Err(stop) = self.start_transmit(session, request).await {
                            return stop;
                        }
                    }
                }
                incoming = session.next() => {
                    let incoming = match incoming {
                        Ok(incoming) => incoming,
                        Err(e) => return Stop::Lost(self.port_gone(e)),
                    };
                    if let Some(DeviceMessage::Reset) = self.dispatch(session, incoming).await {
                        return Stop::Lost(format!(
                            "{}: device on {} reset itself (radio off, configuration lost)",
                            self.cfg.name,
                            self.cfg.port.display()
                        ));
                    }
                }
                _ = sleep_until(flight_deadline.unwrap_or_else(Instant::now)), if !can_send => {
                    // Firmware without READY: the write is all we will know.
                    if let Some(flight) = session.in_flight.take() {
                        self.tx_done(flight.id, Ok(())).await;
                    }
                }
            }
        }
    }

    async fn start_transmit(
        &mut self,
        session: &mut Session,
        request: Transmit,
    ) -> Result<(), Stop> {
        if let Some(reason) = self.unsendable(&request) {
            warn!(link = %self.cfg.name, id = request.id, "transmit refused: {reason}");
            self.tx_done(request.id, Err(TxError::Rejected(reason)))
                .await;
            return Ok(());
        }
        let frame = encode(CMD_DATA, &request.bytes);
        if let Err(stop) = self.write(session, &frame).await {
            self.tx_done(request.id, Err(TxError::NotConnected)).await;
            return Err(stop);
        }
        debug!(link = %self.cfg.name, id = request.id, len = request.bytes.len(), "DATA written");
        session.in_flight = Some(InFlight {
            id: request.id,
            deadline: Instant::now() + self.cfg.tx_confirm_timeout,
        });
        Ok(())
    }

    /// Why this request cannot go out through this RNode, if it cannot.
    fn unsendable(&self, request: &Transmit) -> Option<String> {
        let len = request.bytes.len();
        if len == 0 {
            return Some("empty frame".to_string());
        }
        if len > HARDWARE_MTU {
            return Some(format!(
                "frame of {len} bytes exceeds the RNode MTU of {HARDWARE_MTU}"
            ));
        }
        // The RNode transmits with whatever it was configured to; a request
        // for other modulation would go out where nobody listens.
        let (want, have) = (&request.params, &self.cfg.params);
        if want.freq_hz != have.freq_hz
            || want.sf != have.sf
            || want.bandwidth_hz != have.bandwidth_hz
            || want.coding_rate != have.coding_rate
        {
            return Some(format!(
                "{} is configured for {} Hz SF{} BW{} CR4/{}, request wants {} Hz SF{} BW{} CR4/{}",
                self.cfg.name,
                have.freq_hz,
                have.sf,
                have.bandwidth_hz,
                have.coding_rate,
                want.freq_hz,
                want.sf,
                want.bandwidth_hz,
                want.coding_rate
            ));
        }
        None
    }

    /// Handle one item from the port: count it, deliver it, settle a
    /// transmission. Returns the parsed message so a waiting caller can look
    /// at it.
    async fn dispatch(
        &mut self,
        session: &mut Session,
        incoming: Incoming,
    ) -> Option<DeviceMessage> {
        // Whenever something is thrown away, the RSSI/SNR waiting for "the
        // next DATA frame" may have belonged to it; attaching them to a
        // later frame would be a lie, so they go too.
        let frame = match incoming {
            Incoming::PartialExpired => {
                LinkCounters::bump(&self.counters.partial_dropped);
                debug!(link = %self.cfg.name, "partial frame dropped after silence");
                session.forget_stats();
                return None;
            }
            Incoming::Item(Deframed::Dropped(reason)) => {
                self.malformed(drop_text(reason));
                session.forget_stats();
                return None;
            }
            Incoming::Item(Deframed::Frame(frame)) => frame,
        };
        let msg = match parse_device_frame(&frame) {
            Ok(msg) => msg,
            Err(e) => {
                self.malformed(&e.to_string());
                session.forget_stats();
                return None;
            }
        };
        match &msg {
            DeviceMessage::Data(bytes) => {
                self.deliver(session, bytes.clone()).await;
            }
            DeviceMessage::StatRssi(dbm) => session.rssi = Some(*dbm),
            DeviceMessage::StatSnr(db) => session.snr = Some(*db),
            DeviceMessage::Error(code) => {
                LinkCounters::bump(&self.counters.device_errors);
                let pending = session.in_flight.take();
                warn!(
                    link = %self.cfg.name,
                    code = error_name(*code),
                    "RNode reported error 0x{code:02x} {} ({}){}",
                    error_name(*code),
                    error_description(*code),
                    match &pending {
                        Some(flight) => format!("; refusing transmit {}", flight.id),
                        None => String::new(),
                    }
                );
                if let Some(flight) = pending {
                    let reason = error_name(*code).to_string();
                    self.tx_done(flight.id, Err(TxError::Rejected(reason)))
                        .await;
                }
            }
            DeviceMessage::Ready(ready) => {
                if let Some(flight) = session.in_flight.take() {
                    self.tx_done(flight.id, Ok(())).await;
                } else {
                    trace!(link = %self.cfg.name, ready, "READY");
                }
            }
            DeviceMessage::FwVersion { major, minor } => {
                session.info.firmware = Some((*major, *minor))
            }
            DeviceMessage::Platform(p) => session.info.platform = Some(*p),
            DeviceMessage::Mcu(m) => session.info.mcu = Some(*m),
            DeviceMessage::Reset => {
                warn!(link = %self.cfg.name, "RNode announced a reset");
            }
            other => trace!(link = %self.cfg.name, "device message {other:?}"),
        }
        Some(msg)
    }

    fn malformed(&self, what: &str) {
        LinkCounters::bump(&self.counters.malformed);
        debug!(link = %self.cfg.name, "malformed input from RNode: {what}");
    }

    async fn deliver(&self, session: &mut Session, bytes: Vec<u8>) {
        let params = &self.cfg.params;
        let meta = RxMeta {
            rssi: session.rssi.take(),
            snr: session.snr.take(),
            freq_hz: Some(params.freq_hz),
            sf: Some(params.sf),
            bandwidth_hz: Some(params.bandwidth_hz),
            ..RxMeta::now(&self.cfg.name)
        };
        LinkCounters::bump(&self.counters.frames_received);
        trace!(link = %self.cfg.name, len = bytes.len(), rssi = ?meta.rssi, snr = ?meta.snr, "frame received");
        self.emit(LinkEvent::Received(RxFrame { bytes, meta }))
            .await;
    }

    /// Turn the radio off and leave, best effort, so the RNode stops
    /// receiving for a host that is gone (what Reticulum does on detach).
    async fn detach(&self, session: &mut Session) {
        if let Some(flight) = session.in_flight.take() {
            // Written and not refused: as good as the write gets.
            self.tx_done(flight.id, Ok(())).await;
        }
        let mut bye = encode(CMD_RADIO_STATE, &[RADIO_STATE_OFF]);
        encode_into(&mut bye, CMD_LEAVE, &[LEAVE_REQ]);
        let write = async {
            session.port.write_all(&bye).await?;
            session.port.flush().await
        };
        if let Ok(Err(e)) = timeout(Duration::from_millis(200), write).await {
            debug!(link = %self.cfg.name, "could not send LEAVE: {e}");
        }
    }

    /// Wait `period` while down, refusing transmissions. Err on shutdown.
    async fn idle(&mut self, period: Duration) -> Result<(), ()> {
        let sleep = sleep(period);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => return Err(()),
                _ = &mut sleep => return Ok(()),
                request = next_transmit(&mut self.transmit) => {
                    if let Some(request) = request {
                        self.tx_done(request.id, Err(TxError::NotConnected)).await;
                    }
                }
            }
        }
    }

    async fn tx_done(&self, id: u64, result: Result<(), TxError>) {
        match &result {
            Ok(()) => LinkCounters::bump(&self.counters.tx_ok),
            Err(_) => LinkCounters::bump(&self.counters.tx_failed),
        }
        self.emit(LinkEvent::TxDone {
            link: self.cfg.name.clone(),
            id,
            result,
        })
        .await;
    }

    async fn set_state(&mut self, state: LinkState) {
        if self.state.as_ref() == Some(&state) {
            return;
        }
        match &state {
            LinkState::Down(reason) => warn!(link = %self.cfg.name, "link down: {reason}"),
            LinkState::Up => info!(link = %self.cfg.name, "link up"),
            LinkState::Connecting => debug!(link = %self.cfg.name, "connecting"),
        }
        self.state = Some(state.clone());
        self.emit(LinkEvent::State {
            link: self.cfg.name.clone(),
            state,
        })
        .await;
    }

    /// Sends an event upward (see [`crate::link::emit`]).
    async fn emit(&self, event: LinkEvent) {
        crate::link::emit(&self.events, &self.shutdown, event).await
    }
}

fn drop_text(reason: DropReason) -> &'static str {
    match reason {
        DropReason::Junk => "bytes outside any KISS frame",
        DropReason::BadEscape => "bad KISS escape sequence",
        DropReason::Oversize => "KISS frame longer than the RNode can send",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frequency_echo_within_synthesiser_step_matches() {
        let want = Setting::Frequency(869_525_000);
        assert!(want.matches(Setting::Frequency(869_525_061)));
        assert!(!want.matches(Setting::Frequency(868_100_000)));
    }

    #[test]
    fn other_settings_match_exactly() {
        assert!(!Setting::TxPower(20).matches(Setting::TxPower(17)));
        assert!(Setting::SpreadingFactor(9).matches(Setting::SpreadingFactor(9)));
        assert!(!Setting::Bandwidth(125_000).matches(Setting::Frequency(125_000)));
    }

    #[test]
    fn settings_encode_as_rnode_frames() {
        assert_eq!(
            Setting::Frequency(869_525_000).frame(),
            vec![0xC0, 0x01, 0x33, 0xD3, 0xE6, 0x08, 0xC0]
        );
        assert_eq!(Setting::TxPower(-4).frame(), vec![0xC0, 0x03, 0xFC, 0xC0]);
    }

    #[test]
    fn config_defaults_follow_the_reference() {
        let c = RnodeConfig::new("rnode0", "/dev/ttyACM0", RadioParams::default());
        assert_eq!(c.silence_timeout, Duration::from_millis(100));
        assert_eq!(c.reconnect_interval, Duration::from_secs(5));
    }
}
