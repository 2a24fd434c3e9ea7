//! An emulated RNode on the master side of a real pseudo-terminal.
//!
//! The gateway's [`crate::kiss::RnodeLink`] opens the slave side exactly as
//! it would open `/dev/ttyACM0`, so everything between them is real: the
//! kernel tty layer, termios, tokio-serial, partial reads, EIO on unplug.
//! Only the radio is imaginary, and the emulator speaks the RNode firmware's
//! wire protocol byte for byte: it answers DETECT and the version/platform
//! queries, echoes each configuration value, answers RADIO_STATE, reports
//! `READY` (or an error) for each DATA frame the host sends, and delivers
//! "received" packets as `STAT_RSSI`, `STAT_SNR`, `DATA`, in that order.
//!
//! Unplugging closes the pty, which is what a USB serial device does when it
//! vanishes: the host's reads fail and the `/dev/pts/N` node disappears.
//! Replugging opens a new pty, which usually has a different number, so the
//! emulator maintains a stable symlink ([`RnodeDevice::path`]) that it
//! re-points, the way udev maintains `/dev/serial/by-id/...`. Links under
//! test should open the symlink.
//!
//! The emulator runs as a tokio task; create it inside a runtime.

use std::collections::VecDeque;
use std::ffi::CStr;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::unix::AsyncFd;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::kiss::commands::{
    parse_host_frame, rssi_to_byte, snr_to_byte, HostMessage, CMD_BANDWIDTH, CMD_CR, CMD_DATA,
    CMD_DETECT, CMD_ERROR, CMD_FREQUENCY, CMD_FW_VERSION, CMD_MCU, CMD_PLATFORM, CMD_RADIO_STATE,
    CMD_READY, CMD_SF, CMD_STAT_RSSI, CMD_STAT_SNR, CMD_TXPOWER, DETECT_REQ, DETECT_RESP,
    ERROR_INITRADIO, RADIO_STATE_OFF, RADIO_STATE_ON,
};
use crate::kiss::framing::{encode, encode_into, Deframed, Deframer};
use crate::link::RadioParams;

/// Bytes for the host the emulator holds while the pty will not take more.
const MAX_PENDING_OUTPUT: usize = 64 * 1024;

/// How the emulated firmware answers a DATA frame from the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxVerdict {
    /// Queue it, transmit it, and send `READY 0x01` (current firmware).
    Ready,
    /// Transmit it and say nothing (older firmware, or a queue that just
    /// filled up).
    Silent,
    /// Refuse it with this `ERROR` code (e.g. `ERROR_QUEUE_FULL`); nothing
    /// goes on air.
    Error(u8),
}

/// How the emulated device behaves.
#[derive(Debug, Clone, PartialEq)]
pub struct RnodeDeviceOptions {
    /// Stable path for the symlink to the current pty. `None`: a symlink
    /// named `rnode` in a fresh directory under the system temp dir,
    /// removed when the device is dropped.
    pub link_path: Option<PathBuf>,
    /// `false` makes a device that never answers DETECT (or anything):
    /// wrong baud rate, not an RNode, firmware hung.
    pub answer_detect: bool,
    /// Echo this frequency instead of the one the host set, as firmware
    /// whose radio cannot tune the requested band would.
    pub echo_frequency: Option<u32>,
    /// Report INITRADIO and radio state off when the host turns the radio on.
    pub radio_init_fails: bool,
    pub tx_verdict: TxVerdict,
    pub firmware_version: (u8, u8),
    pub platform: u8,
    pub mcu: u8,
}

impl Default for RnodeDeviceOptions {
    /// A healthy RNode (ESP32, firmware 1.74) that answers everything.
    fn default() -> Self {
        RnodeDeviceOptions {
            link_path: None,
            answer_detect: true,
            echo_frequency: None,
            radio_init_fails: false,
            tx_verdict: TxVerdict::Ready,
            firmware_version: (1, 74),
            platform: 0x80,
            mcu: 0x81,
        }
    }
}

/// A packet the host asked the device to put on air.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceTransmission {
    pub bytes: Vec<u8>,
    /// The radio settings it went out with (as the host configured them).
    pub params: RadioParams,
}

/// What the device looks like from the outside, for tests to wait on.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceStatus {
    /// The pty exists (the "cable" is in).
    pub plugged: bool,
    /// The current slave path, `/dev/pts/N`, while plugged.
    pub pts: Option<PathBuf>,
    pub radio_on: bool,
    /// Settings as the host last configured them (zeros before that).
    pub params: RadioParams,
    /// DETECT requests seen (answered or not).
    pub detects: u64,
    /// DATA frames from the host that went on air.
    pub transmissions: u64,
    /// Injected packets not delivered because the radio was off or the
    /// device unplugged (a real radio would not have heard them either).
    pub unheard: u64,
}

enum Command {
    /// Bytes for the host, written as-is.
    Write(Vec<u8>),
    /// A received packet: only delivered while the radio is on.
    Packet(Vec<u8>),
    SetEchoFrequency(Option<u32>),
    SetAnswerDetect(bool),
    SetTxVerdict(TxVerdict),
    SetRadioInitFails(bool),
    Unplug(oneshot::Sender<()>),
    Replug(oneshot::Sender<io::Result<()>>),
}

/// Handle to a running emulated RNode. Dropping it unplugs the device for
/// good and removes its symlink.
pub struct RnodeDevice {
    commands: mpsc::UnboundedSender<Command>,
    transmissions: broadcast::Sender<DeviceTransmission>,
    status: watch::Receiver<DeviceStatus>,
    path: PathBuf,
    /// Directory we created for the symlink, removed on drop.
    owned_dir: Option<PathBuf>,
    task: JoinHandle<()>,
}

impl RnodeDevice {
    /// Create the pty and the symlink and start answering. Returns the
    /// handle and the path the host should open (the stable symlink).
    pub fn start(opts: RnodeDeviceOptions) -> io::Result<(RnodeDevice, PathBuf)> {
        let (path, owned_dir) = match &opts.link_path {
            Some(path) => (path.clone(), None),
            None => {
                let dir = fresh_temp_dir()?;
                (dir.join("rnode"), Some(dir))
            }
        };
        let pty = match Pty::open() {
            Ok(pty) => pty,
            Err(e) => {
                if let Some(dir) = &owned_dir {
                    let _ = std::fs::remove_dir_all(dir);
                }
                return Err(e);
            }
        };
        point_symlink(&path, &pty.pts)?;
        let (status_tx, status) = watch::channel(DeviceStatus {
            plugged: true,
            pts: Some(pty.pts.clone()),
            radio_on: false,
            params: unconfigured(),
            detects: 0,
            transmissions: 0,
            unheard: 0,
        });
        let (commands, commands_rx) = mpsc::unbounded_channel();
        let (transmissions, _) = broadcast::channel(1024);
        let emulator = Emulator {
            opts,
            path: path.clone(),
            pty: Some(pty),
            out: VecDeque::new(),
            deframer: Deframer::new(),
            commands: commands_rx,
            transmissions: transmissions.clone(),
            status: status_tx,
        };
        let task = tokio::spawn(emulator.run());
        let device = RnodeDevice {
            commands,
            transmissions,
            status,
            path: path.clone(),
            owned_dir,
            task,
        };
        Ok((device, path))
    }

    /// The stable path (symlink) the host should open.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Deliver a packet to the host as the radio heard it: `STAT_RSSI`,
    /// `STAT_SNR`, then `DATA`. Dropped (and counted in
    /// [`DeviceStatus::unheard`]) while the radio is off or unplugged.
    pub fn inject(&self, bytes: &[u8], rssi_dbm: f32, snr_db: f32) {
        let mut wire = encode(CMD_STAT_RSSI, &[rssi_to_byte(rssi_dbm)]);
        encode_into(&mut wire, CMD_STAT_SNR, &[snr_to_byte(snr_db)]);
        encode_into(&mut wire, CMD_DATA, bytes);
        self.send(Command::Packet(wire));
    }

    /// Write arbitrary bytes to the host (junk, hand-made frames, halves of
    /// frames). Written whenever plugged, radio or not.
    pub fn inject_raw(&self, bytes: &[u8]) {
        self.send(Command::Write(bytes.to_vec()));
    }

    /// Send an `ERROR` frame with this code.
    pub fn inject_error(&self, code: u8) {
        self.send(Command::Write(encode(CMD_ERROR, &[code])));
    }

    /// Everything the host transmits from now on. Each subscriber gets every
    /// transmission (so several simulated devices can all "hear" a
    /// downlink); a subscriber more than 1024 behind loses the oldest.
    pub fn subscribe_transmissions(&self) -> broadcast::Receiver<DeviceTransmission> {
        self.transmissions.subscribe()
    }

    /// The current status.
    pub fn status(&self) -> DeviceStatus {
        self.status.borrow().clone()
    }

    /// A receiver that sees every status change, to await conditions.
    pub fn watch_status(&self) -> watch::Receiver<DeviceStatus> {
        self.status.clone()
    }

    pub fn set_echo_frequency(&self, hz: Option<u32>) {
        self.send(Command::SetEchoFrequency(hz));
    }

    pub fn set_answer_detect(&self, answer: bool) {
        self.send(Command::SetAnswerDetect(answer));
    }

    pub fn set_tx_verdict(&self, verdict: TxVerdict) {
        self.send(Command::SetTxVerdict(verdict));
    }

    pub fn set_radio_init_fails(&self, fails: bool) {
        self.send(Command::SetRadioInitFails(fails));
    }

    /// Pull the cable: close the pty (the host's reads fail) and remove the
    /// symlink. Returns once done.
    pub async fn unplug(&self) {
        let (ack, done) = oneshot::channel();
        self.send(Command::Unplug(ack));
        let _ = done.await;
    }

    /// Plug it back in: a fresh pty (the device rebooted: radio off, settings
    /// lost), symlink re-pointed. Returns once the host can open the path.
    pub async fn replug(&self) -> io::Result<()> {
        let (ack, done) = oneshot::channel();
        self.send(Command::Replug(ack));
        done.await
            .unwrap_or_else(|_| Err(io::Error::other("emulator task ended")))
    }

    fn send(&self, command: Command) {
        // The task only ends when this handle is dropped.
        let _ = self.commands.send(command);
    }
}

impl Drop for RnodeDevice {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
        if let Some(dir) = &self.owned_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn unconfigured() -> RadioParams {
    RadioParams {
        freq_hz: 0,
        sf: 0,
        bandwidth_hz: 0,
        coding_rate: 0,
        tx_power_dbm: 0,
    }
}

/// A new, empty directory of our own under the temp dir.
fn fresh_temp_dir() -> io::Result<PathBuf> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let base = std::env::temp_dir();
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = base.join(format!("rnode-sim-{}-{n}", std::process::id()));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Make `link` point at `target`, atomically (rename over the old link), so
/// a host opening the path never sees it half-updated.
fn point_symlink(link: &Path, target: &Path) -> io::Result<()> {
    let mut tmp = link.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)?;
    std::fs::rename(&tmp, link)
}

/// One pseudo-terminal pair. The emulator keeps the slave open too, so the
/// master never sees EIO between host sessions (a real RNode does not care
/// whether the host has the port open), and closes both to unplug.
struct Pty {
    master: AsyncFd<File>,
    _slave: File,
    pts: PathBuf,
}

impl Pty {
    fn open() -> io::Result<Pty> {
        // SAFETY: posix_openpt has no memory-safety preconditions; the fd it
        // returns is owned by us from here on. O_CLOEXEC so child processes
        // spawned elsewhere in the test process cannot keep the pty alive
        // after an unplug.
        let fd = unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a freshly opened descriptor nobody else owns.
        let master = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: fd is a valid pty master.
        if unsafe { libc::grantpt(fd) } != 0 || unsafe { libc::unlockpt(fd) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let mut name = [0 as libc::c_char; 128];
        // SAFETY: the buffer and its length match; ptsname_r NUL-terminates
        // on success and returns an errno value on failure.
        let rc = unsafe { libc::ptsname_r(fd, name.as_mut_ptr(), name.len()) };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        // SAFETY: NUL-terminated by ptsname_r above.
        let pts = PathBuf::from(
            unsafe { CStr::from_ptr(name.as_ptr()) }
                .to_string_lossy()
                .into_owned(),
        );
        let slave = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY)
            .open(&pts)?;
        make_raw(&slave)?;
        set_nonblocking(&master)?;
        // SAFETY: the File owns the descriptor and is owned by the AsyncFd
        // for its whole life, so the fd stays open and unchanged.
        let master =
            unsafe { AsyncFd::register(File::from(master)) }.map_err(|e| e.into_parts().1)?;
        Ok(Pty {
            master,
            _slave: slave,
            pts,
        })
    }
}

/// Raw mode on the tty: no echo, no line editing, no CR/LF mangling. The
/// host sets this too when it opens the port, but bytes injected before that
/// must not be echoed back to us.
fn make_raw(tty: &File) -> io::Result<()> {
    let fd = tty.as_raw_fd();
    let mut termios = std::mem::MaybeUninit::<libc::termios>::uninit();
    // SAFETY: fd is an open tty; tcgetattr fills the struct on success.
    if unsafe { libc::tcgetattr(fd, termios.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: initialised by the successful tcgetattr above.
    let mut termios = unsafe { termios.assume_init() };
    // SAFETY: termios is a valid struct.
    unsafe { libc::cfmakeraw(&mut termios) };
    // SAFETY: fd is an open tty, termios a valid struct.
    if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &termios) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    let fd = fd.as_raw_fd();
    // SAFETY: fcntl on a descriptor we own.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The device task's state.
struct Emulator {
    opts: RnodeDeviceOptions,
    path: PathBuf,
    /// `None` while unplugged.
    pty: Option<Pty>,
    /// Bytes for the host not yet accepted by the pty.
    out: VecDeque<u8>,
    deframer: Deframer,
    commands: mpsc::UnboundedReceiver<Command>,
    transmissions: broadcast::Sender<DeviceTransmission>,
    status: watch::Sender<DeviceStatus>,
}

async fn readable(pty: &Option<Pty>) -> io::Result<tokio::io::unix::AsyncFdReadyGuard<'_, File>> {
    match pty {
        Some(pty) => pty.master.readable().await,
        None => std::future::pending().await,
    }
}

async fn writable(pty: &Option<Pty>) -> io::Result<tokio::io::unix::AsyncFdReadyGuard<'_, File>> {
    match pty {
        Some(pty) => pty.master.writable().await,
        None => std::future::pending().await,
    }
}

impl Emulator {
    async fn run(mut self) {
        let mut buf = [0u8; 1024];
        loop {
            tokio::select! {
                command = self.commands.recv() => match command {
                    Some(command) => self.command(command),
                    None => break,
                },
                guard = readable(&self.pty) => {
                    let read = match guard {
                        Ok(mut guard) => guard.try_io(|fd| fd.get_ref().read(&mut buf)),
                        Err(e) => Ok(Err(e)),
                    };
                    match read {
                        Err(_would_block) => {}
                        Ok(Ok(n)) => self.bytes_from_host(&buf[..n]),
                        Ok(Err(e)) => self.pty_failed(e),
                    }
                }
                guard = writable(&self.pty), if !self.out.is_empty() => {
                    let (front, _) = self.out.as_slices();
                    let written = match guard {
                        Ok(mut guard) => guard.try_io(|fd| fd.get_ref().write(front)),
                        Err(e) => Ok(Err(e)),
                    };
                    match written {
                        Err(_would_block) => {}
                        Ok(Ok(n)) => {
                            self.out.drain(..n);
                        }
                        Ok(Err(e)) => self.pty_failed(e),
                    }
                }
            }
        }
    }

    fn pty_failed(&mut self, e: io::Error) {
        // Not expected while we hold the slave open; behave like a device
        // that fell off the bus rather than spinning on the error.
        warn!("emulated RNode: pty error {e}; unplugging");
        self.unplug();
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Write(bytes) => self.write(&bytes),
            Command::Packet(wire) => {
                let status = self.status.borrow().clone();
                if status.plugged && status.radio_on {
                    self.write(&wire);
                } else {
                    self.status.send_modify(|s| s.unheard += 1);
                }
            }
            Command::SetEchoFrequency(hz) => self.opts.echo_frequency = hz,
            Command::SetAnswerDetect(answer) => self.opts.answer_detect = answer,
            Command::SetTxVerdict(verdict) => self.opts.tx_verdict = verdict,
            Command::SetRadioInitFails(fails) => self.opts.radio_init_fails = fails,
            Command::Unplug(ack) => {
                self.unplug();
                let _ = ack.send(());
            }
            Command::Replug(ack) => {
                let _ = ack.send(self.replug());
            }
        }
    }

    fn unplug(&mut self) {
        self.pty = None;
        self.out.clear();
        self.deframer = Deframer::new();
        let _ = std::fs::remove_file(&self.path);
        self.status.send_modify(|s| {
            s.plugged = false;
            s.pts = None;
            s.radio_on = false;
        });
        debug!("emulated RNode unplugged");
    }

    fn replug(&mut self) -> io::Result<()> {
        if self.pty.is_some() {
            return Ok(());
        }
        let pty = Pty::open()?;
        point_symlink(&self.path, &pty.pts)?;
        let pts = pty.pts.clone();
        self.pty = Some(pty);
        self.status.send_modify(|s| {
            s.plugged = true;
            s.pts = Some(pts);
            s.radio_on = false;
            s.params = unconfigured();
        });
        debug!("emulated RNode replugged");
        Ok(())
    }

    fn write(&mut self, bytes: &[u8]) {
        if self.pty.is_none() {
            return;
        }
        // With no host reading, the tty buffer fills and writes stall; a
        // real RNode's UART buffer overflows the same way, so drop rather
        // than grow without bound.
        if self.out.len() + bytes.len() > MAX_PENDING_OUTPUT {
            debug!(
                "emulated RNode: host not reading, dropping {} bytes",
                bytes.len()
            );
            return;
        }
        self.out.extend(bytes);
    }

    fn reply(&mut self, command: u8, data: &[u8]) {
        let frame = encode(command, data);
        self.write(&frame);
    }

    /// Bytes the host wrote: answer like the firmware's serial callback.
    fn bytes_from_host(&mut self, bytes: &[u8]) {
        for item in self.deframer.feed(bytes) {
            let frame = match item {
                Deframed::Frame(frame) => frame,
                Deframed::Dropped(reason) => {
                    debug!("emulated RNode: dropped host bytes ({reason:?})");
                    continue;
                }
            };
            match parse_host_frame(&frame) {
                Ok(msg) => self.host_message(msg),
                Err(e) => debug!("emulated RNode: ignoring host frame: {e}"),
            }
        }
    }

    fn host_message(&mut self, msg: HostMessage) {
        if let HostMessage::Detect(_) = msg {
            self.status.send_modify(|s| s.detects += 1);
        }
        // A device that does not answer DETECT is not an RNode at all (or a
        // hung one): it answers nothing.
        if !self.opts.answer_detect {
            return;
        }
        match msg {
            HostMessage::Detect(DETECT_REQ) => self.reply(CMD_DETECT, &[DETECT_RESP]),
            HostMessage::Detect(_) => {}
            HostMessage::QueryFwVersion => {
                let (major, minor) = self.opts.firmware_version;
                self.reply(CMD_FW_VERSION, &[major, minor]);
            }
            HostMessage::QueryPlatform => self.reply(CMD_PLATFORM, &[self.opts.platform]),
            HostMessage::QueryMcu => self.reply(CMD_MCU, &[self.opts.mcu]),
            HostMessage::SetFrequency(hz) => {
                self.status.send_modify(|s| s.params.freq_hz = hz);
                let echoed = self.opts.echo_frequency.unwrap_or(hz);
                self.reply(CMD_FREQUENCY, &echoed.to_be_bytes());
            }
            HostMessage::SetBandwidth(hz) => {
                self.status.send_modify(|s| s.params.bandwidth_hz = hz);
                self.reply(CMD_BANDWIDTH, &hz.to_be_bytes());
            }
            HostMessage::SetTxPower(dbm) => {
                self.status.send_modify(|s| s.params.tx_power_dbm = dbm);
                self.reply(CMD_TXPOWER, &[dbm as u8]);
            }
            HostMessage::SetSpreadingFactor(sf) => {
                self.status.send_modify(|s| s.params.sf = sf);
                self.reply(CMD_SF, &[sf]);
            }
            HostMessage::SetCodingRate(cr) => {
                self.status.send_modify(|s| s.params.coding_rate = cr);
                self.reply(CMD_CR, &[cr]);
            }
            HostMessage::SetRadioState(RADIO_STATE_ON) if self.opts.radio_init_fails => {
                self.reply(CMD_ERROR, &[ERROR_INITRADIO]);
                self.status.send_modify(|s| s.radio_on = false);
                self.reply(CMD_RADIO_STATE, &[RADIO_STATE_OFF]);
            }
            HostMessage::SetRadioState(RADIO_STATE_ON) => {
                self.status.send_modify(|s| s.radio_on = true);
                self.reply(CMD_RADIO_STATE, &[RADIO_STATE_ON]);
            }
            HostMessage::SetRadioState(RADIO_STATE_OFF) => {
                self.status.send_modify(|s| s.radio_on = false);
                self.reply(CMD_RADIO_STATE, &[RADIO_STATE_OFF]);
            }
            HostMessage::SetRadioState(_) => {
                let on = self.status.borrow().radio_on;
                let state = if on { RADIO_STATE_ON } else { RADIO_STATE_OFF };
                self.reply(CMD_RADIO_STATE, &[state]);
            }
            HostMessage::Data(bytes) => self.host_data(bytes),
            HostMessage::Leave => debug!("emulated RNode: host left"),
            HostMessage::Other(command) => {
                debug!("emulated RNode: ignoring command 0x{command:02x}")
            }
        }
    }

    fn host_data(&mut self, bytes: Vec<u8>) {
        match self.opts.tx_verdict {
            TxVerdict::Error(code) => {
                self.reply(CMD_ERROR, &[code]);
                return;
            }
            TxVerdict::Ready => self.reply(CMD_READY, &[0x01]),
            TxVerdict::Silent => {}
        }
        let status = self.status.borrow().clone();
        if !status.radio_on {
            // The firmware queues it, but an offline radio never sends it.
            return;
        }
        self.status.send_modify(|s| s.transmissions += 1);
        let _ = self.transmissions.send(DeviceTransmission {
            bytes,
            params: status.params,
        });
    }
}
