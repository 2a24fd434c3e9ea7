//! The power-state rule against fake sysfs trees, the pacer in paused
//! tokio time, and the sender against a real store.

use std::fs;

use radio_bridge::duty_cycle::Region;

use super::*;
use crate::neighbors::NeighborTable;
use crate::scheduler::Scheduler;
use crate::store::StoreOptions;

/// Writes one supply directory, e.g. `supply(root, "AC", &[("type", "Mains"), ("online", "1")])`.
fn supply(root: &Path, name: &str, files: &[(&str, &str)]) {
    let dir = root.join(name);
    fs::create_dir_all(&dir).unwrap();
    for (file, value) in files {
        // sysfs values end in a newline.
        fs::write(dir.join(file), format!("{value}\n")).unwrap();
    }
}

fn battery(root: &Path, status: &str, capacity: u8) {
    supply(
        root,
        "BAT0",
        &[
            ("type", "Battery"),
            ("status", status),
            ("capacity", &capacity.to_string()),
        ],
    );
}

fn mains(root: &Path, online: bool) {
    supply(
        root,
        "AC",
        &[
            ("type", "Mains"),
            ("online", if online { "1" } else { "0" }),
        ],
    );
}

#[test]
fn power_state_rule() {
    let read = |root: &Path| read_power_state(root, 30);

    let missing = tempfile::tempdir().unwrap();
    assert_eq!(read(&missing.path().join("nope")), PowerState::Normal);
    let empty = tempfile::tempdir().unwrap();
    assert_eq!(read(empty.path()), PowerState::Normal, "no supply info");

    let t = tempfile::tempdir().unwrap();
    mains(t.path(), true);
    battery(t.path(), "Charging", 50);
    assert_eq!(read(t.path()), PowerState::Charging);
    battery(t.path(), "Full", 100);
    assert_eq!(read(t.path()), PowerState::Normal, "on mains, not charging");
    battery(t.path(), "Discharging", 10);
    assert_eq!(
        read(t.path()),
        PowerState::Normal,
        "mains online outweighs a low battery"
    );
    mains(t.path(), false);
    assert_eq!(read(t.path()), PowerState::LowPower);
    battery(t.path(), "Discharging", 30);
    assert_eq!(read(t.path()), PowerState::Normal, "30 % is not below 30 %");
    battery(t.path(), "Discharging", 29);
    assert_eq!(read(t.path()), PowerState::LowPower);
    assert_eq!(
        read_power_state(t.path(), 20),
        PowerState::Normal,
        "threshold is configurable"
    );

    let usb = tempfile::tempdir().unwrap();
    supply(usb.path(), "usb", &[("type", "USB"), ("online", "1")]);
    battery(usb.path(), "Discharging", 5);
    assert_eq!(read(usb.path()), PowerState::Normal);

    // A solar charger that only reports through the battery.
    let solar = tempfile::tempdir().unwrap();
    battery(solar.path(), "Charging", 12);
    assert_eq!(read(solar.path()), PowerState::Charging);

    let junk = tempfile::tempdir().unwrap();
    supply(
        junk.path(),
        "BAT0",
        &[
            ("type", "Battery"),
            ("status", "Discharging"),
            ("capacity", "lots"),
        ],
    );
    supply(junk.path(), "weird", &[("type", "Wireless")]);
    fs::write(junk.path().join("stray-file"), "x").unwrap();
    assert_eq!(read(junk.path()), PowerState::Normal, "unreadable capacity");
}

struct PacerRig {
    beats: mpsc::UnboundedReceiver<Beat>,
    changes: mpsc::UnboundedSender<Reason>,
    start: Instant,
    stop: CancellationToken,
}

impl PacerRig {
    fn start(root: &Path) -> PacerRig {
        let (beats_tx, beats) = mpsc::unbounded_channel();
        let (changes, changes_rx) = mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        let start = Instant::now();
        tokio::spawn(pace(
            PowerSource {
                supply_path: root.to_path_buf(),
                low_battery_percent: 30,
            },
            changes_rx,
            beats_tx,
            stop.clone(),
        ));
        PacerRig {
            beats,
            changes,
            start,
            stop,
        }
    }

    /// The next beat and its (virtual) time in whole seconds since start.
    async fn next(&mut self) -> (u64, Beat) {
        let beat = tokio::time::timeout(Duration::from_secs(3600), self.beats.recv())
            .await
            .expect("a heartbeat within an hour")
            .expect("pacer running");
        let at = (Instant::now() - self.start).as_secs_f64().round() as u64;
        (at, beat)
    }
}

#[tokio::test(start_paused = true)]
async fn interval_follows_the_power_state() {
    let t = tempfile::tempdir().unwrap();
    mains(t.path(), true);
    battery(t.path(), "Full", 100);
    let mut p = PacerRig::start(t.path());
    let normal = |reason| Beat {
        power: PowerState::Normal,
        reason,
    };
    assert_eq!(p.next().await, (0, normal(Reason::Boot)));
    assert_eq!(p.next().await, (45, normal(Reason::Periodic)));
    assert_eq!(p.next().await, (90, normal(Reason::Periodic)));

    // Mains lost, battery low: the next one counts 450 s from the last.
    mains(t.path(), false);
    battery(t.path(), "Discharging", 12);
    let low = |reason| Beat {
        power: PowerState::LowPower,
        reason,
    };
    assert_eq!(p.next().await, (540, low(Reason::Periodic)));
    assert_eq!(p.next().await, (990, low(Reason::Periodic)));

    // Sun comes up at 1035 s: charging, noticed at the next poll (1040 s).
    // 20 s after the last heartbeat is already past, so one goes at once.
    tokio::time::sleep_until(p.start + Duration::from_secs(1035)).await;
    battery(t.path(), "Charging", 13);
    let charging = |reason| Beat {
        power: PowerState::Charging,
        reason,
    };
    assert_eq!(p.next().await, (1040, charging(Reason::PowerChanged)));
    assert_eq!(p.next().await, (1060, charging(Reason::Periodic)));
    assert_eq!(p.next().await, (1080, charging(Reason::Periodic)));
    p.stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn radio_and_uplink_changes_send_soon_but_not_in_bursts() {
    let t = tempfile::tempdir().unwrap();
    let mut p = PacerRig::start(t.path());
    assert_eq!(p.next().await.0, 0);
    tokio::time::sleep(Duration::from_secs(20)).await;
    p.changes.send(Reason::RadioChanged).unwrap();
    assert_eq!(
        p.next().await,
        (
            20,
            Beat {
                power: PowerState::Normal,
                reason: Reason::RadioChanged
            }
        )
    );
    // A flapping link: three changes within a second make one heartbeat,
    // MIN_GAP after the last.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for _ in 0..3 {
        p.changes.send(Reason::UplinkChanged).unwrap();
    }
    let (at, beat) = p.next().await;
    assert_eq!((at, beat.reason), (25, Reason::UplinkChanged));
    let (at, beat) = p.next().await;
    assert_eq!(
        (at, beat.reason),
        (70, Reason::Periodic),
        "then the normal rhythm from there"
    );
    p.stop.cancel();
}

struct SenderRig {
    sender: HeartbeatSender,
    requests: mpsc::UnboundedReceiver<TxRequest>,
    store: Store,
    uplink: Option<watch::Sender<UplinkStatus>>,
}

fn sender(store: Store, uplink: Option<bool>) -> SenderRig {
    let identity = Identity::from_seed([5; 32]);
    let mut neighbors = NeighborTable::new();
    neighbors.set_backend_height(1234);
    let state = Arc::new(GatewayState::new(identity.id_hex(), neighbors));
    let (_s, handle, requests) = Scheduler::new(identity.clone(), vec![], Region::Eu868);
    let (tx, rx) = match uplink {
        Some(connected) => {
            let (tx, rx) = watch::channel(UplinkStatus {
                connected,
                ..UplinkStatus::default()
            });
            (Some(tx), Some(rx))
        }
        None => (None, None),
    };
    SenderRig {
        sender: HeartbeatSender::new(identity, store.clone(), state, handle, rx),
        requests,
        store,
        uplink: tx,
    }
}

fn beat() -> Beat {
    Beat {
        power: PowerState::LowPower,
        reason: Reason::Periodic,
    }
}

fn counter_of(frame: &Frame) -> u32 {
    match &frame.envelope.message {
        Message::Heartbeat(hb) => hb.timestamp_counter,
        other => panic!("not a heartbeat: {other:?}"),
    }
}

#[tokio::test]
async fn heartbeat_goes_on_every_link_and_to_the_outbox() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("gw.db"), StoreOptions::default()).unwrap();
    let mut r = sender(store, Some(true));
    let frame = r.sender.send(beat()).await.unwrap();
    let Ok(TxRequest::Frame {
        link,
        priority,
        bytes,
        ..
    }) = r.requests.try_recv()
    else {
        panic!("a frame for the scheduler");
    };
    assert_eq!((link, priority), (None, Priority::Heartbeat));
    let decoded = Frame::decode(&bytes).expect("signed and valid");
    assert_eq!(
        decoded.envelope.device_id,
        Identity::from_seed([5; 32]).device_id()
    );
    let Message::Heartbeat(hb) = decoded.envelope.message else {
        panic!("a heartbeat");
    };
    assert_eq!(hb.device_class, DeviceClass::Gateway);
    assert_eq!(hb.power_state, PowerState::LowPower);
    assert_eq!(hb.ledger_height, 1234, "the best known height");
    assert!(hb.sync_capable);

    let pending = r.store.pending(0, 10).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].message_type, GATEWAY_HEARTBEAT);
    assert_eq!(pending[0].msg_id, frame.msg_id);
    let body: serde_json::Value = serde_json::from_str(&pending[0].message_json).unwrap();
    assert_eq!(body["message"]["device_class"], "gateway");
    assert_eq!(body["message"]["message_type"], "heartbeat");
    assert_eq!(body["frame"], BASE64.encode(&frame.bytes));
    assert_eq!(body["reason"], "periodic");
    assert_eq!(body["links_up"], 0);
}

#[tokio::test]
async fn while_the_uplink_is_down_one_heartbeat_waits_in_the_outbox() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("gw.db"), StoreOptions::default()).unwrap();
    let mut r = sender(store, Some(false));
    for _ in 0..5 {
        r.sender.send(beat()).await.unwrap();
    }
    assert_eq!(r.store.pending(0, 10).await.unwrap().len(), 1);
    let mut radio = 0;
    while r.requests.try_recv().is_ok() {
        radio += 1;
    }
    assert_eq!(radio, 5, "the radio gets every one");
    r.uplink
        .as_ref()
        .unwrap()
        .send_modify(|s| s.connected = true);
    r.sender.send(beat()).await.unwrap();
    r.sender.send(beat()).await.unwrap();
    assert_eq!(r.store.pending(0, 10).await.unwrap().len(), 3);

    // Without an uplink, nothing is queued for one.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("gw.db"), StoreOptions::default()).unwrap();
    let mut r = sender(store, None);
    let frame = r.sender.send(beat()).await.unwrap();
    assert!(r.store.pending(0, 10).await.unwrap().is_empty());
    let Message::Heartbeat(hb) = frame.envelope.message else {
        panic!()
    };
    assert!(!hb.sync_capable, "nobody to relay a sync to");
}

#[tokio::test]
async fn counter_grows_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gw.db");
    let mut last = 0;
    for run in 0..3 {
        let store = Store::open(&path, StoreOptions::default()).unwrap();
        let mut r = sender(store.clone(), None);
        // Past a block boundary in one run, a few in the others.
        let n = if run == 0 { COUNTER_BLOCK + 3 } else { 2 };
        for _ in 0..n {
            let c = counter_of(&r.sender.send(beat()).await.unwrap());
            assert!(c > last, "run {run}: counter {c} after {last}");
            last = c;
        }
        store.close().await.unwrap();
    }
}
