//! A fixed gateway for exercising the HTTP layer: real model values (a kiosk that has been
//! offline for three hours with 1,204 messages waiting), a real broadcast channel, and a
//! record of the admin actions it was asked to run. The lead's end-to-end tests use the real
//! gateway; this only stands in for it above the trait.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Mutex;

use argon2::password_hash::PasswordHasher;
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::broadcast;
use web_ui::{
    now_ms, AdminAction, BandView, DiagnosticBundle, EventLevel, EventView, FragmentCounters,
    FrameCounters, GatewayView, Identity, LatencyHistogram, LinkState, LinkView, LiveEvent,
    Liveness, MailboxView, Neighbor, Queue, QueueItem, QuotaState, Status, StorageView, UpdateView,
    UplinkView,
};

/// The admin password of the fixture. Must never appear in any response.
pub const PASSWORD: &str = "kiosk-admin-passphrase-7731";
/// A password hidden in the broker URL; web-ui must strip it.
pub const BROKER_SECRET: &str = "broker-secret-91";

const MINUTE: u64 = 60_000;
const HOUR: u64 = 60 * MINUTE;

/// An argon2id hash with the smallest parameters, so tests verify in microseconds even in a
/// debug build. The parameters travel in the PHC string, so the server verifies it as is.
pub fn cheap_hash(password: &str) -> String {
    let params = Params::new(64, 1, 1, None).expect("valid argon2 params");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password(password.as_bytes())
        .expect("hash")
        .to_string()
}

pub struct Fixture {
    pub status: Mutex<Status>,
    pub neighbors: Mutex<Vec<Neighbor>>,
    pub queue: Mutex<Queue>,
    pub hash: Mutex<Option<String>>,
    pub actions: Mutex<Vec<AdminAction>>,
    pub live: broadcast::Sender<LiveEvent>,
    /// Where update uploads go; None: updates off.
    pub upload_dir: Mutex<Option<std::path::PathBuf>>,
    /// What an upload may take; None: unknown.
    pub upload_room: Mutex<Option<u64>>,
}

impl Fixture {
    pub fn new() -> Fixture {
        Self::with_hash(Some(cheap_hash(PASSWORD)))
    }

    pub fn with_hash(hash: Option<String>) -> Fixture {
        let now = now_ms();
        let (live, _) = broadcast::channel(16);
        Fixture {
            status: Mutex::new(status(now)),
            neighbors: Mutex::new(neighbors(now)),
            queue: Mutex::new(queue(now)),
            hash: Mutex::new(hash),
            actions: Mutex::new(Vec::new()),
            live,
            upload_dir: Mutex::new(None),
            upload_room: Mutex::new(None),
        }
    }

    pub fn hash(&self) -> String {
        self.hash.lock().unwrap().clone().unwrap_or_default()
    }

    pub fn actions(&self) -> Vec<AdminAction> {
        self.actions.lock().unwrap().clone()
    }
}

impl GatewayView for Fixture {
    fn status(&self) -> Status {
        self.status.lock().unwrap().clone()
    }

    fn neighbors(&self) -> Vec<Neighbor> {
        self.neighbors.lock().unwrap().clone()
    }

    fn queue(&self) -> Queue {
        self.queue.lock().unwrap().clone()
    }

    fn subscribe(&self) -> broadcast::Receiver<LiveEvent> {
        self.live.subscribe()
    }

    fn admin_password_hash(&self) -> Option<String> {
        self.hash.lock().unwrap().clone()
    }

    fn admin_setup_hint(&self) -> String {
        "Run `seed-gateway set-admin-password` on the gateway, then reload this page.".into()
    }

    fn admin_action(&self, action: AdminAction) -> Result<String, String> {
        self.actions.lock().unwrap().push(action.clone());
        match action {
            AdminAction::RestartLink(name) if name == "rnode0" || name == "gwmp0" => {
                Ok(format!("Radio {name} is restarting."))
            }
            AdminAction::RestartLink(name) => Err(format!("There is no radio called {name}.")),
            AdminAction::FlushUplink => Ok("Sending waiting messages now.".into()),
            AdminAction::InstallUpdate { .. } => Ok("Update to version 2.0.0 started".into()),
            _ => Err("Not supported.".into()),
        }
    }

    fn update_upload_dir(&self) -> Option<std::path::PathBuf> {
        self.upload_dir.lock().unwrap().clone()
    }

    fn update_upload_room(&self) -> Option<u64> {
        *self.upload_room.lock().unwrap()
    }

    fn diagnostic_bundle(&self) -> DiagnosticBundle {
        DiagnosticBundle {
            file_name: "seed-gateway-gw-kiosk-diagnostics.txt".into(),
            content_type: "text/plain; charset=utf-8".into(),
            bytes: b"== log ==\nstarted\n== config ==\n[mqtt]\npassword = \"<removed>\"\n".to_vec(),
        }
    }
}

fn status(now: u64) -> Status {
    let mut latency = LatencyHistogram::default();
    for seconds in [0.03, 0.08, 0.2, 0.2, 1.5] {
        latency.observe(seconds);
    }
    let mut traffic: Vec<u32> = (0..24u32).map(|h| 20 + (h * 37) % 90).collect();
    traffic[23] = 12;
    Status {
        gateway: Identity {
            id: "gw-3fa9c21d".into(),
            version: "0.1.0".into(),
            uptime_s: 3 * 86_400 + 4 * 3600,
        },
        uplink: UplinkView {
            configured: true,
            connected: false,
            broker: Some(format!(
                "mqtts://kiosk:{BROKER_SECRET}@broker.example.org:8883"
            )),
            since_ms: Some(now - 3 * HOUR - 4 * MINUTE),
            last_publish_ms: Some(now - 3 * HOUR - 5 * MINUTE),
            last_error: Some("cannot reach broker.example.org (no route to host)".into()),
            backlog: 1204,
            oldest_pending_ms: Some(now - 3 * HOUR - 2 * MINUTE),
            published_total: 48_210,
            dropped_total: 0,
            publish_latency: latency,
        },
        links: vec![
            LinkView {
                name: "rnode0".into(),
                kind: "rnode-serial".into(),
                state: LinkState::Up,
                detail: "/dev/ttyUSB0, 869.525 MHz SF9".into(),
                since_ms: Some(now - 3 * 86_400_000),
                frames_received: 51_877,
                malformed: 12,
                bad_crc: 40,
                device_errors: 1,
                tx_held: 0,
                tx_too_late: 0,
                last_rssi: Some(-97.0),
                last_snr: Some(6.5),
                last_frame_ms: Some(now - 40_000),
                frames: FrameCounters {
                    accepted: 51_400,
                    duplicates: 300,
                    bad_signature: 3,
                    malformed: 9,
                    unsupported_version: 1,
                    replayed: 2,
                    refused_full: 0,
                },
            },
            LinkView {
                name: "gwmp0".into(),
                kind: "gwmp-udp".into(),
                state: LinkState::Up,
                detail: "packet forwarder at 127.0.0.1:1700".into(),
                since_ms: Some(now - 2 * HOUR),
                frames_received: 1234,
                malformed: 0,
                bad_crc: 0,
                device_errors: 0,
                tx_held: 0,
                tx_too_late: 0,
                last_rssi: Some(-112.0),
                last_snr: Some(-4.0),
                last_frame_ms: Some(now - 5 * MINUTE),
                frames: FrameCounters {
                    accepted: 1_211,
                    duplicates: 10,
                    ..FrameCounters::default()
                },
            },
        ],
        duty_cycle: vec![
            BandView::new("g1 868.0-868.6 MHz", 4_300, 36_000, 3600),
            BandView::new("g3 869.4-869.65 MHz", 91_000, 360_000, 3600),
        ],
        storage: StorageView {
            bytes_used: 48_500_000,
            quota_bytes: 512_000_000,
            quota_state: QuotaState::Ok,
            writable: true,
        },
        frames: FrameCounters {
            accepted: 52_611,
            duplicates: 310,
            bad_signature: 3,
            malformed: 9,
            unsupported_version: 1,
            replayed: 2,
            refused_full: 0,
        },
        mailboxes: MailboxView {
            pending: 3,
            devices_waiting: 2,
            delivered: 120,
            failed: 1,
            expired: 0,
            receipts_waiting: 4,
        },
        events: vec![
            EventView {
                at_ms: now - 3 * HOUR - 4 * MINUTE,
                level: EventLevel::Warning,
                kind: "broker_down".into(),
                text: "Internet connection lost: cannot reach the message server.".into(),
            },
            EventView {
                at_ms: now - 5 * HOUR,
                level: EventLevel::Info,
                kind: "frame_rejected".into(),
                text: "A message with a bad signature was ignored.".into(),
            },
            EventView {
                at_ms: now - 3 * 86_400_000,
                level: EventLevel::Info,
                kind: "started".into(),
                text: "Gateway started.".into(),
            },
        ],
        traffic_24h: traffic,
        fragments: FragmentCounters {
            completed: 41,
            timed_out: 2,
            evicted_for_memory: 1,
            malformed: 5,
            duplicates: 7,
        },
        update: Some(UpdateView {
            state: "idle".into(),
            version: None,
            running_version: "1.0.0".into(),
            percent: None,
            reason: None,
            at_ms: now,
        }),
    }
}

fn neighbor(now: u64, id: &str, ago: u64, liveness: Liveness) -> Neighbor {
    Neighbor {
        device_id: id.into(),
        device_class: "seed_device".into(),
        power_state: "normal".into(),
        last_seen_ms: now - ago,
        rssi: Some(-101.0),
        snr: Some(3.0),
        ledger_height: 284,
        protocol_version: "1.0".into(),
        sync_capable: true,
        sync_hint: None,
        liveness,
        link: Some("rnode0".into()),
    }
}

fn neighbors(now: u64) -> Vec<Neighbor> {
    let mut list = vec![
        neighbor(
            now,
            "a1b2c3d4e5f60718293a4b5c6d7e8f90",
            2 * MINUTE,
            Liveness::Active,
        ),
        neighbor(
            now,
            "77aa10c2d3e4f5a6b7c8d9e0f1a2b3c4",
            40_000,
            Liveness::Active,
        ),
        neighbor(
            now,
            "0f0e0d0c0b0a09080706050403020100",
            25 * MINUTE,
            Liveness::Stale,
        ),
        neighbor(
            now,
            "deadbeefcafef00d1122334455667788",
            3 * 86_400_000,
            Liveness::Gone,
        ),
    ];
    list[0].power_state = "charging".into();
    list[0].sync_hint = Some("behind by 12".into());
    list[0].ledger_height = 272;
    list[1].power_state = "low_power".into();
    list[1].device_class = "kiosk".into();
    list[1].sync_capable = false;
    list
}

fn queue(now: u64) -> Queue {
    let mut by_type = BTreeMap::new();
    by_type.insert("heartbeat".to_string(), 1100);
    by_type.insert("telemetry".to_string(), 104);
    Queue {
        backlog: 1204,
        oldest_pending_ms: Some(now - 3 * HOUR - 2 * MINUTE),
        by_type,
        recent: vec![QueueItem {
            seq: 48_211,
            msg_id: "9f86d081884c7d65".into(),
            device_id: "a1b2c3d4e5f60718293a4b5c6d7e8f90".into(),
            message_type: "heartbeat".into(),
            received_at_ms: now - 3 * HOUR - 2 * MINUTE,
        }],
    }
}
