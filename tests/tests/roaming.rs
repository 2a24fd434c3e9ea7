//! Mailboxes that follow roaming devices, black-box (docs/peering.md §7):
//! two real `seed-gateway` processes with their own data directories, one
//! real Mosquitto both publish to, and a simulated device (the real
//! binary's `simulate`, speaking GWMP over UDP) heard only at the second
//! kiosk.
//!
//! The promise under test: a downlink the backend gave to the market kiosk
//! reaches the device that walked to the school kiosk, and the backend
//! gets exactly one receipt for it, on the market kiosk's topic; whatever
//! ends it (delivery there, expiry here, a delivery while the market kiosk
//! was off), no copy is left behind on either kiosk.

mod common;

use std::time::Duration;

use base64::Engine;
use common::{tail, wait_api, wait_status};
use radio_bridge::simulator::devices::device_identity;
use rumqttc::Publish;
use seed_e2e::gateway::{keygen, peer_entry, GatewayProcess, TestConfig, FAST_RADIO};
use seed_e2e::mosquitto::{unused_port, Backend, Mosquitto, MosquittoOptions, Subscriber};
use seed_e2e::simulate::Devices;
use seed_gateway::daemon::request_id;
use serde_json::{json, Value};

/// Bound on every wait; a pass never depends on it being short.
const WAIT: Duration = Duration::from_secs(90);
/// Simulated devices' key seed, so the test knows their ids.
const SEED: u64 = 42;

/// The market kiosk (`a`, where the backend sends downlinks) and the school
/// kiosk (`b`, where the device is heard), both on the broker, `a` dialling
/// `b`.
struct Kiosks {
    broker: Mosquitto,
    a: TestConfig,
    b: TestConfig,
    a_id: String,
    b_id: String,
    /// `a`'s own broker, when it is not the one `b` uses.
    a_broker: Option<Mosquitto>,
    receipts: Subscriber,
    /// Publishes downlinks to `a`'s broker.
    backend: Backend,
    _dir: tempfile::TempDir,
}

impl Kiosks {
    /// `a_mailbox`: the body of `a`'s `[mailbox]` table.
    async fn new(a_mailbox: &str) -> Kiosks {
        Self::build(a_mailbox, false).await
    }

    /// Like [`Kiosks::new`], but `a` has a broker of its own and hands its
    /// outbox to `b` one second after losing it.
    async fn with_separate_brokers() -> Kiosks {
        Self::build("", true).await
    }

    async fn build(a_mailbox: &str, separate: bool) -> Kiosks {
        let dir = tempfile::Builder::new()
            .prefix("seed-e2e-roam-")
            .tempdir()
            .expect("temp dir");
        let broker = Mosquitto::start(MosquittoOptions::new()).await;
        let mut a = TestConfig::new(&dir.path().join("a"));
        let mut b = TestConfig::new(&dir.path().join("b"));
        let (a_id, b_id) = (keygen(&a), keygen(&b));
        let b_port = unused_port();
        for config in [&mut a, &mut b] {
            config.link_extra = FAST_RADIO.into();
            config.mqtt_url = Some(broker.url());
        }
        let a_broker = match separate {
            true => Some(Mosquitto::start(MosquittoOptions::new()).await),
            false => None,
        };
        if let Some(own) = &a_broker {
            a.mqtt_url = Some(own.url());
        }
        a.extra = format!(
            "[mailbox]\nretry_base_ms = 500\n{a_mailbox}\n\n[peering]\ncustody_after_s = 1\n{}",
            peer_entry("school", b_port, &b_id)
        );
        b.extra = format!(
            "[mailbox]\nretry_base_ms = 500\n\n[peering]\nbind = \"127.0.0.1:{b_port}\"\n{}",
            peer_entry("market", unused_port(), &a_id)
        );
        // Receipts are not retained: subscribe before anything can happen.
        let receipts = Subscriber::connect(broker.observer_port(), "seed/v1/gw/+/receipt").await;
        let backend = Backend::connect(a_broker.as_ref().unwrap_or(&broker)).await;
        Kiosks {
            broker,
            a,
            b,
            a_id,
            b_id,
            a_broker,
            receipts,
            backend,
            _dir: dir,
        }
    }

    /// Starts `a` and waits until it takes downlinks from the broker (it
    /// subscribes before publishing its retained `online`) and its link to
    /// `b` is up.
    async fn start_a(&self) -> GatewayProcess {
        let topic = format!("seed/v1/gw/{}/state", self.a_id);
        let broker = self.a_broker.as_ref().unwrap_or(&self.broker);
        let mut state = Subscriber::connect(broker.observer_port(), &topic).await;
        let a = GatewayProcess::start(&self.a).await;
        state
            .collect_until(WAIT, "the market kiosk's online state", |got| {
                got.last()
                    .is_some_and(|p| String::from_utf8_lossy(&p.payload).contains("online"))
            })
            .await;
        wait_peers(&a, "the link to the school kiosk", |p| {
            p["outbound"]["connected"] == true
        })
        .await;
        a
    }

    /// Publishes a downlink for simulated device 0 on `a`'s topic; returns
    /// its request id as receipts name it.
    async fn send(&mut self, text: &str) -> String {
        let payload = json!({
            "message_type": "transaction",
            "payload": base64::engine::general_purpose::STANDARD.encode(text),
        })
        .to_string()
        .into_bytes();
        let device = device_identity(SEED, 0);
        let topic = format!("seed/v1/gw/{}/down/{}", self.a_id, device.id_hex());
        self.backend.publish(&topic, &payload).await;
        hex::encode(request_id(&device.device_id(), &payload))
    }

    /// The first receipt on any gateway's topic.
    async fn receipt(&mut self, gateways: &[&GatewayProcess]) -> Publish {
        match self.receipts.next(WAIT).await {
            Some(p) => p,
            None => panic!(
                "no receipt within {WAIT:?}; logs:\n{}",
                gateways
                    .iter()
                    .map(|g| tail(&g.log(), 40))
                    .collect::<Vec<_>>()
                    .join("\n----\n")
            ),
        }
    }

    /// The one receipt for `id`: on `a`'s topic, with `status`; and no
    /// other receipt from anyone once both kiosks have settled.
    async fn expect_one_receipt(
        &mut self,
        id: &str,
        status: &str,
        gateways: &[&GatewayProcess],
    ) -> Value {
        let publish = self.receipt(gateways).await;
        assert_eq!(
            publish.topic,
            format!("seed/v1/gw/{}/receipt", self.a_id),
            "the receipt must come from the accepting kiosk's topic: {}",
            String::from_utf8_lossy(&publish.payload)
        );
        let receipt: Value = serde_json::from_slice(&publish.payload).expect("receipt JSON");
        assert_eq!(receipt["request_id"], id, "{receipt}");
        assert_eq!(receipt["status"], status, "{receipt}");
        receipt
    }
}

/// Polls `/api/v1/peers` until the first neighbour's entry satisfies `done`.
async fn wait_peers(gw: &GatewayProcess, what: &str, mut done: impl FnMut(&Value) -> bool) {
    wait_api(gw, "/api/v1/peers", WAIT, what, |v| done(&v["peers"][0])).await;
}

/// Waits until `gw` holds no downlink at all (its own or a neighbour's).
async fn wait_mailbox_empty(gw: &GatewayProcess, who: &str) {
    wait_status(gw, WAIT, &format!("{who}'s mailbox empty"), |s| {
        s["mailboxes"]["pending"] == 0
    })
    .await;
}

fn assert_no_panic(gw: &GatewayProcess) {
    assert!(
        !gw.log().contains("panicked"),
        "the gateway panicked; log:\n{}",
        tail(&gw.log(), 60)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_downlink_accepted_at_one_kiosk_is_delivered_where_the_device_is_heard() {
    let mut k = Kiosks::new("").await;
    let b = GatewayProcess::start(&k.b).await;
    let a = k.start_a().await;
    let id = k.send("your parcel is at the school").await;

    // The school kiosk holds a copy before the device comes by.
    wait_peers(&b, "the copy taken", |p| p["mail"]["held_for_peer"] == 1).await;
    wait_peers(&a, "the copy recorded", |p| p["mail"]["offered_total"] == 1).await;
    let a_status = a.api("/api/v1/status").await;
    assert_eq!(a_status["mailboxes"]["pending"], 1, "a keeps its own");

    let device = Devices::start(k.b.gwmp, 1, SEED, &[]);
    let receipt = k.expect_one_receipt(&id, "delivered", &[&a, &b]).await;
    assert_eq!(receipt["delivered_by"], k.b_id, "{receipt}");
    assert_eq!(receipt["device_id"], device_identity(SEED, 0).id_hex());
    assert!(receipt["attempts"].as_u64() >= Some(1), "{receipt}");

    // Every copy is gone, on both kiosks, and the agreement is settled.
    wait_peers(&b, "the copy withdrawn", |p| {
        p["mail"]["held_for_peer"] == 0 && p["mail"]["delivered_for_peer_total"] == 1
    })
    .await;
    wait_peers(&a, "the withdrawal confirmed", |p| {
        p["mail"]["held_by_peer"] == 0 && p["mail"]["delivered_by_peer_total"] == 1
    })
    .await;
    wait_mailbox_empty(&a, "a").await;
    wait_mailbox_empty(&b, "b").await;
    // The school kiosk publishes no receipt of its own, even late.
    k.receipts.expect_nothing(Duration::from_secs(2)).await;
    let summary = device.stop();
    assert_eq!(summary["downlinks_received"], 1, "{summary}");

    let metrics = seed_e2e::gateway::http_get(k.a.http, "/metrics")
        .await
        .expect("metrics")
        .1;
    let line = format!(
        "seed_peer_mail_delivered_by_peer_total{{peer=\"school\",gateway_id=\"{}\"}} 1",
        k.b_id
    );
    assert!(metrics.contains(&line), "no {line} in:\n{metrics}");
    assert_no_panic(&a);
    assert_no_panic(&b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_is_decided_by_the_accepting_kiosk_and_the_copy_withdrawn() {
    let mut k = Kiosks::new("ttl_s = 3").await;
    let b = GatewayProcess::start(&k.b).await;
    let a = k.start_a().await;
    let id = k.send("nobody came").await;
    wait_peers(&b, "the copy taken", |p| p["mail"]["taken_total"] == 1).await;

    let receipt = k.expect_one_receipt(&id, "expired", &[&a, &b]).await;
    assert!(receipt.get("delivered_by").is_none(), "{receipt}");
    wait_peers(&b, "the copy withdrawn undelivered", |p| {
        p["mail"]["held_for_peer"] == 0 && p["mail"]["withdrawn_total"] == 1
    })
    .await;
    wait_peers(&a, "the withdrawal confirmed", |p| {
        p["mail"]["held_by_peer"] == 0
    })
    .await;
    wait_mailbox_empty(&a, "a").await;
    wait_mailbox_empty(&b, "b").await;
    k.receipts.expect_nothing(Duration::from_secs(2)).await;
    assert_no_panic(&a);
    assert_no_panic(&b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_while_the_accepting_kiosk_is_off_is_reported_when_it_returns() {
    let mut k = Kiosks::new("").await;
    let b = GatewayProcess::start(&k.b).await;
    let a = k.start_a().await;
    let id = k.send("delivered in the dark").await;
    wait_peers(&a, "the copy recorded", |p| p["mail"]["offered_total"] == 1).await;

    // Power cut at the market; the device walks past the school.
    a.kill();
    let device = Devices::start(k.b.gwmp, 1, SEED, &[]);
    wait_peers(&b, "the delivery noted", |p| {
        p["mail"]["delivered_unsettled"] == 1
    })
    .await;
    let summary = device.stop();
    assert_eq!(summary["downlinks_received"], 1, "{summary}");
    // Nobody has settled it yet, so nobody published a receipt.
    k.receipts.expect_nothing(Duration::from_secs(1)).await;

    let a = k.start_a().await;
    let receipt = k.expect_one_receipt(&id, "delivered", &[&a, &b]).await;
    assert_eq!(receipt["delivered_by"], k.b_id, "{receipt}");
    wait_peers(&b, "the note settled", |p| p["mail"]["held_for_peer"] == 0).await;
    wait_mailbox_empty(&a, "a").await;
    wait_mailbox_empty(&b, "b").await;
    k.receipts.expect_nothing(Duration::from_secs(2)).await;
    assert_no_panic(&a);
    assert_no_panic(&b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_heard_at_both_kiosks_still_gets_one_receipt() {
    let mut k = Kiosks::new("").await;
    let b = GatewayProcess::start(&k.b).await;
    let a = k.start_a().await;
    let id = k.send("for whoever hears you first").await;
    wait_peers(&b, "the copy taken", |p| p["mail"]["held_for_peer"] == 1).await;

    // The device stands between the kiosks: both hear it, both deliver.
    let at_a = Devices::start(k.a.gwmp, 1, SEED, &[]);
    let at_b = Devices::start(k.b.gwmp, 1, SEED, &[]);
    let receipt = k.expect_one_receipt(&id, "delivered", &[&a, &b]).await;
    let by = &receipt["delivered_by"];
    assert!(by.is_null() || *by == k.b_id, "{receipt}");
    wait_peers(&a, "every copy withdrawn", |p| {
        p["mail"]["held_by_peer"] == 0
    })
    .await;
    wait_mailbox_empty(&a, "a").await;
    wait_mailbox_empty(&b, "b").await;
    k.receipts.expect_nothing(Duration::from_secs(2)).await;
    let heard = [at_a.stop(), at_b.stop()]
        .iter()
        .map(|s| s["downlinks_received"].as_u64().unwrap_or(0))
        .sum::<u64>();
    assert!(heard >= 1, "the device got it from at least one kiosk");
    eprintln!("race: delivered_by {by}, received {heard} time(s) in all");
    assert_no_panic(&a);
    assert_no_panic(&b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_receipt_of_a_kiosk_that_lost_its_internet_is_relayed_by_its_neighbour() {
    let mut k = Kiosks::with_separate_brokers().await;
    let b = GatewayProcess::start(&k.b).await;
    let a = k.start_a().await;
    let id = k.send("the market's internet is about to go").await;
    wait_peers(&b, "the copy taken", |p| p["mail"]["held_for_peer"] == 1).await;
    k.a_broker.as_mut().expect("a's own broker").stop().await;

    let device = Devices::start(k.b.gwmp, 1, SEED, &[]);
    // On b's broker, on a's topic: a decided, custody carried it.
    let receipt = k.expect_one_receipt(&id, "delivered", &[&a, &b]).await;
    assert_eq!(receipt["delivered_by"], k.b_id, "{receipt}");
    assert_eq!(receipt["relayed_by"], k.b_id, "{receipt}");
    wait_peers(&b, "the note settled", |p| p["mail"]["held_for_peer"] == 0).await;
    wait_mailbox_empty(&a, "a").await;
    wait_mailbox_empty(&b, "b").await;
    k.receipts.expect_nothing(Duration::from_secs(2)).await;
    device.stop();
    assert_no_panic(&a);
    assert_no_panic(&b);
}
