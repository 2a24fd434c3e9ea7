//! The RNode path end to end: simulated devices behind an emulated RNode on
//! a real pseudo-terminal (`seed-gateway simulate --serial`), the real
//! gateway binary with an `rnode` link on that pty, a real Mosquitto.

mod common;

use std::time::Duration;

use common::{body, collect_transactions, num, wait_status};
use seed_e2e::gateway::{GatewayProcess, TestConfig, FAST_RADIO};
use seed_e2e::mosquitto::{Mosquitto, MosquittoOptions, Subscriber};
use seed_e2e::simulate::Simulation;

const TIMEOUT: Duration = Duration::from_secs(45);

#[tokio::test]
async fn rnode_serial_messages_reach_mqtt_with_rssi_and_snr() {
    let dir = tempfile::Builder::new()
        .prefix("seed-e2e-rnode-")
        .tempdir()
        .expect("temp dir");
    let broker = Mosquitto::start(MosquittoOptions::new()).await;
    let mut sub = Subscriber::connect(broker.observer_port(), "seed/v1/gw/+/up/transaction").await;

    // The simulator creates the pty and links it here; the gateway opens the
    // link like /dev/ttyACM0 (retrying until it exists).
    let pty = dir.path().join("rnode0.tty");
    let mut config = TestConfig::new(dir.path());
    config.mqtt_url = Some(broker.url());
    // TestConfig always has an idle GWMP link; this adds the RNode.
    config.extra = format!(
        "[[link]]\nname = \"rnode0\"\ntype = \"rnode\"\nport = {:?}\n{FAST_RADIO}",
        pty.display().to_string()
    );
    let gw = GatewayProcess::start(&config).await;

    let summary = Simulation::serial(&pty, 3, 8)
        .deadline_s(35)
        .spawn()
        .finish(TIMEOUT)
        .await;
    assert_eq!(summary.sent, 24, "simulator summary: {summary:?}");
    assert_eq!(
        summary.acked, summary.sent,
        "every message must be acked over the RNode"
    );

    let got = collect_transactions(&mut sub, &summary.acked_ids, TIMEOUT).await;
    for p in &got {
        let up = body(p);
        let rx = &up["rx"];
        assert_eq!(rx["link"], "rnode0", "reception link: {up}");
        let rssi = rx["rssi"]
            .as_f64()
            .unwrap_or_else(|| panic!("no rssi: {up}"));
        let snr = rx["snr"].as_f64().unwrap_or_else(|| panic!("no snr: {up}"));
        // The simulated air gives -120..-60 dBm and -10..10 dB; the RNode's
        // one-byte encodings round them.
        assert!((-121.0..=-59.0).contains(&rssi), "rssi {rssi}: {up}");
        assert!((-10.5..=10.5).contains(&snr), "snr {snr}: {up}");
        assert!(rx["received_at"].is_string(), "received_at: {up}");
        assert!(up["frame"].is_string() && up["message"].is_object(), "{up}");
    }

    let status = wait_status(&gw, TIMEOUT, "an empty backlog", |s| {
        s["uplink"]["backlog"] == 0
    })
    .await;
    let link = status["links"]
        .as_array()
        .and_then(|links| links.iter().find(|l| l["name"] == "rnode0"))
        .unwrap_or_else(|| panic!("no rnode0 link in the status: {status}"))
        .clone();
    // (The link itself is down by now: the simulator closed its pty.)
    assert!(num(&link, &["frames_received"]) >= 24, "rnode0: {link}");
    assert!(link["last_rssi"].is_number(), "rnode0: {link}");
}
