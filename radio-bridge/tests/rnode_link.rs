//! The RNode link against the emulated RNode over a real pseudo-terminal:
//! tokio-serial, the kernel tty layer and the RNode wire protocol are all
//! real; only the radio is emulated.

use std::sync::Arc;
use std::time::Duration;

use radio_bridge::kiss::commands::{
    CMD_DATA, CMD_RESET, CMD_STAT_RSSI, ERROR_QUEUE_FULL, ERROR_TXFAILED, HARDWARE_MTU,
    RESET_ANNOUNCE,
};
use radio_bridge::kiss::{encode, RnodeConfig, RnodeLink};
use radio_bridge::link::{
    Link, LinkCounters, LinkCountersSnapshot, LinkEvent, LinkState, RadioParams, RxFrame, Transmit,
    TxError,
};
use radio_bridge::simulator::rnode_device::{RnodeDevice, RnodeDeviceOptions, TxVerdict};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

/// Upper bound for anything a test waits for. Generous: it only matters
/// when something is broken, and then the message says what.
const WAIT: Duration = Duration::from_secs(10);

struct Harness {
    device: RnodeDevice,
    events: mpsc::Receiver<LinkEvent>,
    transmit: mpsc::Sender<Transmit>,
    counters: Arc<LinkCounters>,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

fn fast_config(port: &std::path::Path) -> RnodeConfig {
    let mut config = RnodeConfig::new("rnode0", port, RadioParams::default());
    config.reconnect_interval = Duration::from_millis(100);
    config.response_timeout = Duration::from_secs(2);
    config
}

impl Harness {
    async fn start(opts: RnodeDeviceOptions) -> Harness {
        Harness::start_with(opts, |_| {}).await
    }

    async fn start_with(opts: RnodeDeviceOptions, tweak: impl FnOnce(&mut RnodeConfig)) -> Harness {
        let (device, path) = RnodeDevice::start(opts).expect("emulated RNode starts");
        let mut config = fast_config(&path);
        tweak(&mut config);
        let link = Box::new(RnodeLink::new(config));
        let counters = link.counters();
        let (events_tx, events) = mpsc::channel(64);
        let (transmit, transmit_rx) = mpsc::channel(16);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(link.run(events_tx, transmit_rx, shutdown.clone()));
        Harness {
            device,
            events,
            transmit,
            counters,
            shutdown,
            task,
        }
    }

    /// Skip events until `pick` accepts one.
    async fn wait_for<T>(
        &mut self,
        what: &str,
        mut pick: impl FnMut(&LinkEvent) -> Option<T>,
    ) -> T {
        let found = timeout(WAIT, async {
            loop {
                let event = self.events.recv().await.expect("link event channel open");
                if let Some(found) = pick(&event) {
                    return found;
                }
            }
        })
        .await;
        found.unwrap_or_else(|_| panic!("timed out waiting for {what}"))
    }

    async fn wait_up(&mut self) {
        self.wait_for("LinkState::Up", |e| {
            matches!(
                e,
                LinkEvent::State {
                    state: LinkState::Up,
                    ..
                }
            )
            .then_some(())
        })
        .await
    }

    async fn wait_down(&mut self, containing: &str) -> String {
        let what = format!("LinkState::Down containing {containing:?}");
        self.wait_for(&what, |e| match e {
            LinkEvent::State {
                state: LinkState::Down(reason),
                ..
            } if reason.contains(containing) => Some(reason.clone()),
            _ => None,
        })
        .await
    }

    async fn wait_received(&mut self) -> RxFrame {
        self.wait_for("a received frame", |e| match e {
            LinkEvent::Received(frame) => Some(frame.clone()),
            _ => None,
        })
        .await
    }

    async fn transmit(
        &mut self,
        id: u64,
        bytes: &[u8],
        params: RadioParams,
    ) -> Result<(), TxError> {
        self.transmit
            .send(Transmit {
                id,
                bytes: bytes.to_vec(),
                params,
                via: None,
            })
            .await
            .expect("link accepts transmit requests");
        self.wait_for(&format!("TxDone for {id}"), |e| match e {
            LinkEvent::TxDone {
                id: done, result, ..
            } if *done == id => Some(result.clone()),
            _ => None,
        })
        .await
    }

    fn counters(&self) -> LinkCountersSnapshot {
        self.counters.snapshot()
    }

    /// Counters have no event of their own; poll them within the bound.
    async fn wait_counters(&self, what: &str, ok: impl Fn(&LinkCountersSnapshot) -> bool) {
        let polled = timeout(WAIT, async {
            while !ok(&self.counters.snapshot()) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        if polled.is_err() {
            panic!(
                "timed out waiting for {what}; counters {:?}",
                self.counters()
            );
        }
    }

    /// Cancel the link, check its run future ends, hand back the device.
    async fn stop(self) -> RnodeDevice {
        self.shutdown.cancel();
        timeout(WAIT, self.task)
            .await
            .expect("link run future ends after shutdown")
            .expect("link task did not panic");
        self.device
    }
}

#[tokio::test]
async fn detects_configures_and_comes_up() {
    let mut h = Harness::start(RnodeDeviceOptions::default()).await;
    let first = h
        .wait_for("first state", |e| match e {
            LinkEvent::State { link, state } => Some((link.clone(), state.clone())),
            _ => None,
        })
        .await;
    assert_eq!(first, ("rnode0".to_string(), LinkState::Connecting));
    h.wait_up().await;
    let status = h.device.status();
    assert!(status.radio_on, "radio turned on");
    assert_eq!(
        status.params,
        RadioParams::default(),
        "device got the configured params"
    );
    assert!(status.detects >= 1);
    assert_eq!(h.counters(), LinkCountersSnapshot::default());
    h.stop().await;
}

#[tokio::test]
async fn received_frame_carries_rssi_and_snr_then_stats_clear() {
    let mut h = Harness::start(RnodeDeviceOptions::default()).await;
    h.wait_up().await;

    h.device.inject(b"hello seed", -87.0, 6.5);
    let frame = h.wait_received().await;
    assert_eq!(frame.bytes, b"hello seed");
    assert_eq!(frame.meta.link, "rnode0");
    assert_eq!(frame.meta.rssi, Some(-87.0));
    assert_eq!(frame.meta.snr, Some(6.5));
    assert_eq!(frame.meta.freq_hz, Some(869_525_000));
    assert_eq!(frame.meta.sf, Some(9));
    assert_eq!(frame.meta.bandwidth_hz, Some(125_000));
    assert!(frame.meta.received_at_ms > 0);

    // A DATA frame without stat frames before it must not inherit old ones.
    h.device.inject_raw(&encode(CMD_DATA, b"no stats"));
    let frame = h.wait_received().await;
    assert_eq!(frame.bytes, b"no stats");
    assert_eq!(frame.meta.rssi, None);
    assert_eq!(frame.meta.snr, None);

    // Negative SNR (signed byte) survives.
    h.device.inject(b"weak", -120.0, -12.25);
    let frame = h.wait_received().await;
    assert_eq!(frame.meta.rssi, Some(-120.0));
    assert_eq!(frame.meta.snr, Some(-12.25));
    assert_eq!(h.counters().frames_received, 3);
    h.stop().await;
}

#[tokio::test]
async fn escapes_round_trip_both_ways() {
    let payload = [0xC0, 0xDB, 0xDB, 0xDC, 0xC0, 0xDD, 0x00, 0xC0, 0xDB];
    let mut h = Harness::start(RnodeDeviceOptions::default()).await;
    let mut heard = h.device.subscribe_transmissions();
    h.wait_up().await;

    h.device.inject(&payload, -60.0, 9.0);
    assert_eq!(h.wait_received().await.bytes, payload);

    assert_eq!(
        h.transmit(1, &payload, RadioParams::default()).await,
        Ok(())
    );
    let sent = timeout(WAIT, heard.recv())
        .await
        .expect("device heard the transmission")
        .expect("transmission channel open");
    assert_eq!(sent.bytes, payload);
    assert_eq!(h.counters().malformed, 0);
    h.stop().await;
}

#[tokio::test]
async fn junk_bad_escapes_and_oversize_frames_are_counted_not_fatal() {
    let mut h = Harness::start(RnodeDeviceOptions::default()).await;
    h.wait_up().await;
    assert_eq!(h.counters().malformed, 0);

    // Not a known command ('h').
    h.device.inject_raw(b"\xC0hello\xC0");
    // FESC followed by 'A': a broken escape.
    h.device.inject_raw(&[0xC0, 0x00, 0x41, 0xDB, 0x41, 0xC0]);
    // STAT_RSSI without its byte.
    h.device.inject_raw(&[0xC0, CMD_STAT_RSSI, 0xC0]);
    // Longer than any RNode frame.
    let mut huge = vec![0xC0, 0x00];
    huge.extend(std::iter::repeat_n(0x55, HARDWARE_MTU + 200));
    huge.push(0xC0);
    h.device.inject_raw(&huge);
    // Then a good frame, which must still decode exactly.
    h.device.inject(b"still fine", -70.0, 5.0);

    let frame = h.wait_received().await;
    assert_eq!(frame.bytes, b"still fine");
    assert_eq!(frame.meta.rssi, Some(-70.0));
    let counters = h.counters();
    assert_eq!(counters.malformed, 4, "{counters:?}");
    assert_eq!(counters.frames_received, 1);
    assert_eq!(counters.disconnects, 0);
    h.stop().await;
}

#[tokio::test]
async fn partial_frame_then_silence_is_dropped_and_next_frame_decodes() {
    let mut h = Harness::start(RnodeDeviceOptions::default()).await;
    h.wait_up().await;

    h.device.inject_raw(&[0xC0, 0x00, 0x41, 0x42, 0x43]);
    h.wait_counters("partial_dropped == 1", |c| c.partial_dropped == 1)
        .await;

    h.device.inject(b"whole", -80.0, 3.0);
    let frame = h.wait_received().await;
    assert_eq!(frame.bytes, b"whole", "the dropped half must not prefix it");
    let counters = h.counters();
    assert_eq!(counters.partial_dropped, 1);
    assert_eq!(counters.malformed, 0);
    h.stop().await;
}

#[tokio::test]
async fn config_echo_mismatch_goes_down_naming_the_values_then_recovers() {
    let opts = RnodeDeviceOptions {
        echo_frequency: Some(868_100_000),
        ..Default::default()
    };
    let mut h = Harness::start(opts).await;
    let reason = h.wait_down("echoed").await;
    assert_eq!(
        reason,
        "rnode0: device echoed frequency 868100000 Hz, expected 869525000 Hz"
    );
    assert_eq!(h.counters().disconnects, 0, "it was never up");

    // The link keeps retrying by itself: fix the device and it comes up.
    h.device.set_echo_frequency(None);
    h.wait_up().await;
    h.stop().await;
}

#[tokio::test]
async fn radio_init_failure_is_reported() {
    let opts = RnodeDeviceOptions {
        radio_init_fails: true,
        ..Default::default()
    };
    let mut h = Harness::start(opts).await;
    let reason = h.wait_down("INITRADIO").await;
    assert!(reason.starts_with("rnode0: "), "{reason}");
    assert!(h.counters().device_errors >= 1);
    h.device.set_radio_init_fails(false);
    h.wait_up().await;
    h.stop().await;
}

#[tokio::test]
async fn device_error_frames_are_counted_and_refuse_the_pending_transmit() {
    let mut h = Harness::start(RnodeDeviceOptions::default()).await;
    h.wait_up().await;

    h.device.inject_error(ERROR_TXFAILED);
    h.wait_counters("device_errors == 1", |c| c.device_errors == 1)
        .await;

    h.device.set_tx_verdict(TxVerdict::Error(ERROR_QUEUE_FULL));
    let result = h.transmit(7, b"downlink", RadioParams::default()).await;
    assert_eq!(result, Err(TxError::Rejected("QUEUE_FULL".to_string())));
    let counters = h.counters();
    assert_eq!(counters.device_errors, 2);
    assert_eq!(counters.tx_failed, 1);
    assert_eq!(counters.tx_ok, 0);

    // Errors do not take the link down.
    h.device.set_tx_verdict(TxVerdict::Ready);
    assert_eq!(
        h.transmit(8, b"again", RadioParams::default()).await,
        Ok(())
    );
    assert_eq!(h.counters().disconnects, 0);
    h.stop().await;
}

#[tokio::test]
async fn transmit_reaches_the_device_and_is_answered_once() {
    let mut h = Harness::start(RnodeDeviceOptions::default()).await;
    let mut heard = h.device.subscribe_transmissions();
    h.wait_up().await;

    assert_eq!(
        h.transmit(42, b"to a seed", RadioParams::default()).await,
        Ok(())
    );
    let sent = timeout(WAIT, heard.recv())
        .await
        .expect("heard")
        .expect("open");
    assert_eq!(sent.bytes, b"to a seed");
    assert_eq!(sent.params, RadioParams::default());

    // Firmware that never says READY: the write alone counts, after the
    // confirmation window.
    h.device.set_tx_verdict(TxVerdict::Silent);
    assert_eq!(
        h.transmit(43, b"quiet fw", RadioParams::default()).await,
        Ok(())
    );
    let sent = timeout(WAIT, heard.recv())
        .await
        .expect("heard")
        .expect("open");
    assert_eq!(sent.bytes, b"quiet fw");

    // Exactly one TxDone per request: nothing else is pending.
    h.device.inject(b"marker", -50.0, 1.0);
    let mut extra_tx_done = 0;
    loop {
        let event = timeout(WAIT, h.events.recv())
            .await
            .expect("event")
            .expect("open");
        match event {
            LinkEvent::TxDone { .. } => extra_tx_done += 1,
            LinkEvent::Received(frame) if frame.bytes == b"marker" => break,
            _ => {}
        }
    }
    assert_eq!(extra_tx_done, 0);
    assert_eq!(h.counters().tx_ok, 2);
    h.stop().await;
}

#[tokio::test]
async fn transmit_the_rnode_cannot_send_is_rejected() {
    let mut h = Harness::start(RnodeDeviceOptions::default()).await;
    let mut heard = h.device.subscribe_transmissions();
    h.wait_up().await;

    let other = RadioParams {
        sf: 12,
        ..RadioParams::default()
    };
    match h.transmit(1, b"x", other).await {
        Err(TxError::Rejected(reason)) => assert!(reason.contains("SF12"), "{reason}"),
        other => panic!("expected Rejected, got {other:?}"),
    }
    let too_big = vec![1u8; HARDWARE_MTU + 1];
    match h.transmit(2, &too_big, RadioParams::default()).await {
        Err(TxError::Rejected(reason)) => assert!(reason.contains("MTU"), "{reason}"),
        other => panic!("expected Rejected, got {other:?}"),
    }
    // The largest legal frame goes through.
    let biggest = vec![0xC0u8; HARDWARE_MTU];
    assert_eq!(
        h.transmit(3, &biggest, RadioParams::default()).await,
        Ok(())
    );
    let sent = timeout(WAIT, heard.recv())
        .await
        .expect("heard")
        .expect("open");
    assert_eq!(sent.bytes, biggest);
    assert_eq!(h.counters().tx_failed, 2);
    h.stop().await;
}

#[tokio::test]
async fn transmit_while_down_is_not_connected() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("no-such-tty");
    let link = Box::new(RnodeLink::new(fast_config(&missing)));
    let counters = link.counters();
    let (events_tx, mut events) = mpsc::channel(16);
    let (transmit, transmit_rx) = mpsc::channel(4);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(link.run(events_tx, transmit_rx, shutdown.clone()));

    let reason = timeout(WAIT, async {
        loop {
            if let Some(LinkEvent::State {
                state: LinkState::Down(reason),
                ..
            }) = events.recv().await
            {
                return reason;
            }
        }
    })
    .await
    .expect("Down for a missing port");
    assert!(reason.contains("cannot open serial port"), "{reason}");
    assert!(reason.contains("no-such-tty"), "{reason}");

    transmit
        .send(Transmit {
            id: 5,
            bytes: b"nobody".to_vec(),
            params: RadioParams::default(),
            via: None,
        })
        .await
        .expect("send");
    let done = timeout(WAIT, async {
        loop {
            if let Some(LinkEvent::TxDone { id, result, .. }) = events.recv().await {
                return (id, result);
            }
        }
    })
    .await
    .expect("TxDone while down");
    assert_eq!(done, (5, Err(TxError::NotConnected)));
    assert_eq!(counters.snapshot().tx_failed, 1);

    shutdown.cancel();
    timeout(WAIT, task).await.expect("ends").expect("no panic");
}

#[tokio::test]
async fn unplug_and_replug_recover_in_the_same_process() {
    let mut h = Harness::start(RnodeDeviceOptions::default()).await;
    h.wait_up().await;
    let first_pts = h.device.status().pts.expect("plugged");

    h.device.unplug().await;
    let reason = h.wait_down("gone").await;
    assert!(
        reason.starts_with(&format!(
            "rnode0: serial port {} gone: ",
            h.device.path().display()
        )),
        "{reason}"
    );
    assert_eq!(h.counters().disconnects, 1);
    assert_eq!(
        h.transmit(9, b"while unplugged", RadioParams::default())
            .await,
        Err(TxError::NotConnected)
    );

    h.device.replug().await.expect("replug");
    h.wait_up().await;
    let status = h.device.status();
    assert!(status.radio_on, "reconfigured after replug");
    assert_eq!(status.params, RadioParams::default());
    assert!(status.pts.is_some());
    // The pts number may or may not be reused; the symlink hides either way.
    let _ = first_pts;

    h.device.inject(b"after replug", -90.0, 2.0);
    assert_eq!(h.wait_received().await.bytes, b"after replug");
    let mut heard = h.device.subscribe_transmissions();
    assert_eq!(
        h.transmit(10, b"downlink", RadioParams::default()).await,
        Ok(())
    );
    assert_eq!(
        timeout(WAIT, heard.recv())
            .await
            .expect("heard")
            .expect("open")
            .bytes,
        b"downlink"
    );
    assert_eq!(h.counters().disconnects, 1);
    h.stop().await;
}

#[tokio::test]
async fn device_that_never_answers_detect_goes_down_then_recovers() {
    let opts = RnodeDeviceOptions {
        answer_detect: false,
        ..Default::default()
    };
    let mut h =
        Harness::start_with(opts, |c| c.response_timeout = Duration::from_millis(300)).await;
    let reason = h.wait_down("DETECT").await;
    assert!(
        reason.starts_with("rnode0: no answer to DETECT"),
        "{reason}"
    );
    assert!(h.device.status().detects >= 1);

    h.device.set_answer_detect(true);
    h.wait_up().await;
    h.stop().await;
}

#[tokio::test]
async fn device_reset_announcement_triggers_reconfiguration() {
    let mut h = Harness::start(RnodeDeviceOptions::default()).await;
    h.wait_up().await;
    h.device.inject_raw(&encode(CMD_RESET, &[RESET_ANNOUNCE]));
    let reason = h.wait_down("reset").await;
    assert!(reason.starts_with("rnode0: "), "{reason}");
    h.wait_up().await;
    assert_eq!(h.counters().disconnects, 1);
    h.stop().await;
}

#[tokio::test]
async fn shutdown_ends_the_run_future_and_turns_the_radio_off() {
    let mut h = Harness::start(RnodeDeviceOptions::default()).await;
    h.wait_up().await;
    let mut status = h.device.watch_status();
    let device = h.stop().await;
    timeout(WAIT, status.wait_for(|s| !s.radio_on))
        .await
        .expect("radio turned off on shutdown")
        .expect("status channel open");
    drop(device);
}

/// The emulator checked against hand-written RNode bytes, not against our
/// own encoder, so a shared mistake in the command table cannot hide.
#[tokio::test]
async fn emulator_speaks_literal_rnode_bytes() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_serial::SerialPortBuilderExt;

    let (device, path) = RnodeDevice::start(RnodeDeviceOptions::default()).expect("device");
    let mut port = tokio_serial::new(path.to_string_lossy(), 115_200)
        .open_native_async()
        .expect("open pty slave");

    async fn exchange(port: &mut tokio_serial::SerialStream, send: &[u8], expect: &[u8]) {
        port.write_all(send).await.expect("write");
        let mut got = vec![0u8; expect.len()];
        timeout(WAIT, port.read_exact(&mut got))
            .await
            .unwrap_or_else(|_| panic!("no answer to {send:02X?}"))
            .expect("read");
        assert_eq!(got, expect, "answer to {send:02X?}");
    }

    // DETECT + firmware version + platform + MCU queries.
    exchange(
        &mut port,
        &[
            0xC0, 0x08, 0x73, 0xC0, 0x50, 0x00, 0xC0, 0x48, 0x00, 0xC0, 0x49, 0x00, 0xC0,
        ],
        &[
            0xC0, 0x08, 0x46, 0xC0, 0xC0, 0x50, 0x01, 0x4A, 0xC0, 0xC0, 0x48, 0x80, 0xC0, 0xC0,
            0x49, 0x81, 0xC0,
        ],
    )
    .await;
    // 869.525 MHz = 0x33D3E608, echoed as sent.
    let freq = [0xC0, 0x01, 0x33, 0xD3, 0xE6, 0x08, 0xC0];
    exchange(&mut port, &freq, &freq).await;
    // 125 kHz = 0x0001E848.
    let bw = [0xC0, 0x02, 0x00, 0x01, 0xE8, 0x48, 0xC0];
    exchange(&mut port, &bw, &bw).await;
    exchange(
        &mut port,
        &[0xC0, 0x06, 0x01, 0xC0],
        &[0xC0, 0x06, 0x01, 0xC0],
    )
    .await;

    // A received packet: RSSI -80 dBm (77), SNR 7.25 dB (29), then DATA
    // with a 0xC0 inside, escaped as DB DC.
    device.inject(&[0x41, 0xC0], -80.0, 7.25);
    let expect = [
        0xC0, 0x23, 0x4D, 0xC0, 0xC0, 0x24, 0x1D, 0xC0, 0xC0, 0x00, 0x41, 0xDB, 0xDC, 0xC0,
    ];
    let mut got = vec![0u8; expect.len()];
    timeout(WAIT, port.read_exact(&mut got))
        .await
        .expect("injected packet arrives")
        .expect("read");
    assert_eq!(got, expect);

    // A host DATA frame is answered READY 0x01 and heard with its bytes.
    let mut heard = device.subscribe_transmissions();
    exchange(
        &mut port,
        &[0xC0, 0x00, 0xDB, 0xDD, 0x42, 0xC0],
        &[0xC0, 0x0F, 0x01, 0xC0],
    )
    .await;
    let sent = timeout(WAIT, heard.recv())
        .await
        .expect("heard")
        .expect("open");
    assert_eq!(sent.bytes, vec![0xDB, 0x42]);
}

#[tokio::test]
async fn stats_of_a_dropped_frame_are_not_attached_to_the_next_one() {
    let mut h = Harness::start(RnodeDeviceOptions::default()).await;
    h.wait_up().await;
    // STAT_RSSI, STAT_SNR, then a DATA frame with a broken escape.
    let mut wire = encode(CMD_STAT_RSSI, &[77]);
    wire.extend(encode(radio_bridge::kiss::commands::CMD_STAT_SNR, &[29]));
    wire.extend([0xC0, 0x00, 0x41, 0xDB, 0x00, 0xC0]);
    h.device.inject_raw(&wire);
    h.device.inject_raw(&encode(CMD_DATA, b"clean"));
    let frame = h.wait_received().await;
    assert_eq!(frame.bytes, b"clean");
    assert_eq!((frame.meta.rssi, frame.meta.snr), (None, None));
    assert_eq!(h.counters().malformed, 1);
    h.stop().await;
}
