//! Downlinks end to end, black box: a backend publishes to a real
//! Mosquitto, the real `seed-gateway` binary holds the messages in its
//! mailboxes, and simulated devices (the real binary's `simulate`, talking
//! GWMP over UDP) come and go, lose packets, and ack or do not. What the
//! backend sees on `…/receipt` is what is checked.
//!
//! Simulated time runs fast (`--speed`), and the gateway's retry timings
//! are configured small, so minutes of device behaviour take seconds.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use base64::Engine;
use radio_bridge::frame::{DeviceClass, Frame, Message, PowerState};
use radio_bridge::simulator::devices::device_identity;
use rumqttc::Publish;
use seed_e2e::gateway::{GatewayProcess, TestConfig};
use seed_e2e::mosquitto::{Backend, Mosquitto, MosquittoOptions, Subscriber};
use seed_e2e::simulate::Devices;
use seed_gateway::daemon::request_id;
use serde_json::{json, Value};

/// Bound on every wait; generous, since a loaded machine is slow, and a
/// pass never depends on it being short.
const WAIT: Duration = Duration::from_secs(120);

/// Simulated devices' key seed, so the test knows their ids.
const SEED: u64 = 42;

fn device_hex(index: usize) -> String {
    device_identity(SEED, index).id_hex()
}

fn device_id(index: usize) -> [u8; 32] {
    device_identity(SEED, index).device_id()
}

/// A downlink in the JSON form the gateway signs itself.
fn downlink(text: &str) -> Vec<u8> {
    json!({
        "message_type": "transaction",
        "payload": base64::engine::general_purpose::STANDARD.encode(text),
    })
    .to_string()
    .into_bytes()
}

fn json_of(p: &Publish) -> Value {
    serde_json::from_slice(&p.payload)
        .unwrap_or_else(|e| panic!("payload on {} is not JSON ({e})", p.topic))
}

/// A broker, a gateway connected to it, and what the backend sees.
struct Rig {
    broker: Mosquitto,
    gateway: Option<GatewayProcess>,
    config: TestConfig,
    gateway_id: String,
    receipts: Subscriber,
    backend: Backend,
    _dir: tempfile::TempDir,
}

impl Rig {
    /// `mailbox` is the body of the `[mailbox]` table.
    async fn start(mailbox: &str) -> Rig {
        let dir = tempfile::tempdir().expect("temp dir");
        Self::start_in(dir, mailbox, None).await
    }

    async fn start_in(dir: tempfile::TempDir, mailbox: &str, power: Option<&Path>) -> Rig {
        let broker = Mosquitto::start(MosquittoOptions::new()).await;
        let mut config = TestConfig::new(dir.path());
        config.mqtt_url = Some(broker.url());
        // A power supply tree of our own, so the host's battery (if any)
        // does not change what the gateway says.
        let power_dir = dir.path().join("power_supply");
        std::fs::create_dir_all(&power_dir).expect("power dir");
        let power = power.unwrap_or(&power_dir);
        config.extra = format!(
            "[mailbox]\n{mailbox}\n\n[power]\nsupply_path = {:?}\n",
            power.display().to_string()
        );
        // Receipts are not retained: subscribe before anything can happen.
        // The gateway id is known only once it runs, so watch all gateways.
        let receipts = Subscriber::connect(broker.observer_port(), "seed/v1/gw/+/receipt").await;
        let gateway = GatewayProcess::start(&config).await;
        let gateway_id = gateway.api("/api/v1/status").await["gateway"]["id"]
            .as_str()
            .expect("gateway id in the status")
            .to_string();
        let backend = Backend::connect(&broker).await;
        let mut rig = Rig {
            broker,
            gateway: Some(gateway),
            config,
            gateway_id,
            receipts,
            backend,
            _dir: dir,
        };
        rig.wait_subscribed().await;
        rig
    }

    /// The gateway subscribes to its downlinks before it publishes its
    /// retained `online` state on the same connection, so once `online`
    /// is seen a downlink published now reaches it.
    async fn wait_subscribed(&mut self) {
        let topic = format!("seed/v1/gw/{}/state", self.gateway_id);
        let mut state = Subscriber::connect(self.broker.observer_port(), &topic).await;
        state
            .collect_until(WAIT, "the gateway's online state", |got| {
                got.last()
                    .is_some_and(|p| String::from_utf8_lossy(&p.payload).contains("online"))
            })
            .await;
    }

    fn gateway(&self) -> &GatewayProcess {
        self.gateway.as_ref().expect("gateway running")
    }

    /// Publishes a downlink for simulated device `index` (QoS 1, waits for
    /// the broker's PUBACK); returns its request id as receipts name it.
    async fn send(&mut self, index: usize, payload: &[u8]) -> String {
        let topic = format!("seed/v1/gw/{}/down/{}", self.gateway_id, device_hex(index));
        self.backend.publish(&topic, payload).await;
        hex::encode(request_id(&device_id(index), payload))
    }

    /// Waits until the gateway holds `n` downlinks (stored before PUBACK,
    /// so durable).
    async fn wait_pending(&self, n: u64) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let status = self.gateway().api("/api/v1/status").await;
            if status["mailboxes"]["pending"].as_u64() == Some(n) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "mailbox did not hold {n} downlink(s) within {WAIT:?}: {}",
                status["mailboxes"]
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Collects receipts until every request id in `ids` has one; returns
    /// all receipts seen, by request id. On timeout the panic names what is
    /// missing and shows the gateway's mailbox counters and log.
    async fn receipts_for(&mut self, ids: &[String]) -> HashMap<String, Vec<Value>> {
        let mut by_id: HashMap<String, Vec<Value>> = HashMap::new();
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let missing: Vec<&String> = ids.iter().filter(|id| !by_id.contains_key(*id)).collect();
            if missing.is_empty() {
                return by_id;
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let Some(p) = self.receipts.next(left).await else {
                let status = self.gateway().api("/api/v1/status").await;
                panic!(
                    "no receipt within {WAIT:?} for {} of {} downlinks: {missing:?}\nmailboxes: {}\ngateway log (tail):\n{}",
                    missing.len(),
                    ids.len(),
                    status["mailboxes"],
                    tail(&self.gateway().log(), 60)
                );
            };
            let v = json_of(&p);
            let id = v["request_id"].as_str().expect("request_id").to_string();
            by_id.entry(id).or_default().push(v);
        }
    }

    fn simulate(&self, devices: usize, extra: &[&str]) -> Devices {
        Devices::start(self.config.gwmp, devices, SEED, extra)
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn only_receipt<'a>(by_id: &'a HashMap<String, Vec<Value>>, id: &str) -> &'a Value {
    let list = &by_id[id];
    assert_eq!(list.len(), 1, "exactly one receipt for {id}: {list:?}");
    &list[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_downlink_waits_for_its_absent_device_and_is_delivered_when_it_returns() {
    let mut rig = Rig::start("retry_base_ms = 500").await;
    let payload = downlink("hello, are you there?");
    let id = rig.send(0, &payload).await;
    rig.wait_pending(1).await;

    let sim = rig.simulate(1, &[]);
    let by_id = rig.receipts_for(std::slice::from_ref(&id)).await;
    let receipt = only_receipt(&by_id, &id);
    assert_eq!(receipt["status"], "delivered", "{receipt}");
    assert_eq!(receipt["device_id"], device_hex(0));
    assert_eq!(receipt["seq"], 1);
    assert!(receipt["msg_id"].as_str().is_some_and(|m| m.len() == 32));
    assert!(receipt["attempts"].as_u64().is_some_and(|a| a >= 1));
    assert!(receipt["accepted_at"].as_str().is_some() && receipt["at"].as_str().is_some());
    let summary = sim.stop();
    assert_eq!(summary["downlinks_received"], 1, "{summary}");
    assert!(summary["downlinks_acked"].as_u64() >= Some(1), "{summary}");
    rig.wait_pending(0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_downlink_is_delivered_over_a_lossy_reordering_air_with_one_receipt_each() {
    let mut rig = Rig::start("retry_base_ms = 300\nretry_max_ms = 3000\nmax_attempts = 40").await;
    // Devices 0, 1, 2 and 4 (3 is a low-power device, heard rarely).
    let targets = [0usize, 1, 2, 4];
    let per_device = 5;
    let mut ids = Vec::new();
    for n in 0..per_device {
        for &d in &targets {
            ids.push(
                rig.send(d, &downlink(&format!("message {n} for {d}")))
                    .await,
            );
        }
    }
    let sim = rig.simulate(
        5,
        &["--loss", "0.3", "--duplicate", "0.2", "--reorder", "0.2"],
    );
    let by_id = rig.receipts_for(&ids).await;
    for id in &ids {
        let receipt = only_receipt(&by_id, id);
        assert_eq!(receipt["status"], "delivered", "{receipt}");
    }
    // Nothing more comes for any of them (QoS 1 would allow a repeat
    // only after a crash; there was none).
    rig.receipts.expect_nothing(Duration::from_secs(2)).await;
    let summary = sim.stop();
    assert_eq!(
        summary["downlinks_received"].as_u64(),
        Some(ids.len() as u64),
        "{summary}"
    );
    eprintln!("lossy air: {summary}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_never_returns_gets_an_expired_receipt() {
    let mut rig = Rig::start("ttl_s = 1").await;
    let id = rig.send(0, &downlink("too late")).await;
    let by_id = rig.receipts_for(std::slice::from_ref(&id)).await;
    let receipt = only_receipt(&by_id, &id);
    assert_eq!(receipt["status"], "expired", "{receipt}");
    assert_eq!(receipt["attempts"], 0);
    rig.wait_pending(0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_never_acks_gets_a_failed_receipt_after_the_attempts() {
    let mut rig = Rig::start("retry_base_ms = 200\nretry_max_ms = 400\nmax_attempts = 3").await;
    let id = rig.send(1, &downlink("do you hear me?")).await;
    let sim = rig.simulate(2, &["--no-ack-downlinks"]);
    let by_id = rig.receipts_for(std::slice::from_ref(&id)).await;
    let receipt = only_receipt(&by_id, &id);
    assert_eq!(receipt["status"], "failed", "{receipt}");
    assert_eq!(receipt["attempts"], 3);
    assert!(
        receipt["reason"]
            .as_str()
            .is_some_and(|r| r.contains("3 attempts")),
        "{receipt}"
    );
    let summary = sim.stop();
    assert_eq!(summary["downlinks_received"], 1, "{summary}");
    assert_eq!(summary["downlinks_acked"], 0, "{summary}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_mailbox_rejects_with_a_receipt_and_keeps_the_rest() {
    let mut rig = Rig::start("max_per_device = 2\nretry_base_ms = 500").await;
    let kept = [
        rig.send(0, &downlink("first")).await,
        rig.send(0, &downlink("second")).await,
    ];
    let refused = rig.send(0, &downlink("third")).await;
    let by_id = rig.receipts_for(std::slice::from_ref(&refused)).await;
    let receipt = only_receipt(&by_id, &refused);
    assert_eq!(receipt["status"], "rejected", "{receipt}");
    assert!(
        receipt["reason"]
            .as_str()
            .is_some_and(|r| r.contains("mailbox full")),
        "{receipt}"
    );
    let sim = rig.simulate(1, &[]);
    let by_id = rig.receipts_for(&kept).await;
    for id in &kept {
        assert_eq!(only_receipt(&by_id, id)["status"], "delivered");
    }
    sim.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mailbox_contents_survive_sigkill_and_are_delivered_after_restart() {
    let mut rig = Rig::start("retry_base_ms = 500").await;
    let ids = [
        rig.send(2, &downlink("before the power cut")).await,
        rig.send(2, &downlink("also before")).await,
    ];
    rig.wait_pending(2).await;
    rig.gateway.take().expect("running").kill();
    let gateway = GatewayProcess::start(&rig.config).await;
    rig.gateway = Some(gateway);
    rig.wait_pending(2).await;

    let sim = rig.simulate(3, &[]);
    let by_id = rig.receipts_for(&ids).await;
    for id in &ids {
        assert_eq!(only_receipt(&by_id, id)["status"], "delivered");
    }
    let summary = sim.stop();
    assert_eq!(summary["downlinks_received"], 2, "{summary}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_publishes_its_own_signed_heartbeat_with_its_power_state() {
    let dir = tempfile::tempdir().expect("temp dir");
    // A solar gateway at night: no mains, battery discharging at 12 %.
    let power = dir.path().join("fake_sysfs");
    let battery = power.join("BAT0");
    std::fs::create_dir_all(&battery).expect("battery dir");
    for (file, value) in [
        ("type", "Battery"),
        ("status", "Discharging"),
        ("capacity", "12"),
    ] {
        std::fs::write(battery.join(file), format!("{value}\n")).expect("sysfs file");
    }
    let rig = Rig::start_in(dir, "retry_base_ms = 500", Some(&power)).await;
    let mut heartbeats = Subscriber::connect(
        rig.broker.observer_port(),
        &format!("seed/v1/gw/{}/heartbeat", rig.gateway_id),
    )
    .await;
    // The boot heartbeat went out before the concentrator was there (and
    // perhaps before this subscription); the concentrator coming up (the
    // simulator) makes the gateway speak again, on air this time.
    let sim = rig.simulate(1, &[]);
    let got = heartbeats
        .collect_until(WAIT, "a gateway heartbeat sent with a radio up", |got| {
            got.last()
                .is_some_and(|p| json_of(p)["links_up"].as_u64() >= Some(1))
        })
        .await;
    let body = json_of(got.last().expect("one"));
    assert_eq!(body["device_id"], rig.gateway_id);
    assert_eq!(body["message"]["device_class"], "gateway");
    assert_eq!(body["message"]["power_state"], "low_power");
    let frame_bytes = base64::engine::general_purpose::STANDARD
        .decode(body["frame"].as_str().expect("frame"))
        .expect("base64");
    let frame = Frame::decode(&frame_bytes).expect("a valid signed frame");
    assert_eq!(hex::encode(frame.envelope.device_id), rig.gateway_id);
    let Message::Heartbeat(hb) = frame.envelope.message else {
        panic!("not a heartbeat: {body}");
    };
    assert_eq!(hb.device_class, DeviceClass::Gateway);
    assert_eq!(hb.power_state, PowerState::LowPower);
    assert_eq!(body["msg_id"], hex::encode(frame.msg_id));

    // That heartbeat was queued for the air before it was published; a
    // downlink sent after it (same link, same order) reaching the device
    // means the device has heard the heartbeat too.
    let mut rig = rig;
    let id = rig.send(0, &downlink("after the heartbeat")).await;
    let by_id = rig.receipts_for(std::slice::from_ref(&id)).await;
    assert_eq!(only_receipt(&by_id, &id)["status"], "delivered");
    let summary = sim.stop();
    assert!(
        summary["gateway_heartbeats"].as_u64() >= Some(1),
        "{summary}"
    );
}
