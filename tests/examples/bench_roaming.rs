//! Shared mailboxes over loopback with the real binary (docs/benchmarks.md,
//! docs/peering.md §7): how soon a neighbour holds copies of the downlinks
//! one kiosk accepted, and how soon devices heard only at the neighbour
//! turn them into receipts on the accepting kiosk's topic.
//!
//! ```text
//! cargo build --release -p seed-gateway
//! cargo run --release -p seed-e2e --example bench_roaming -- [DEVICES] [PER_DEVICE]
//! ```
//! Defaults: 10 devices, 10 downlinks each. Kiosk A takes the downlinks
//! from a local Mosquitto; kiosk B listens for A. Printed: the time until A
//! holds them all, the time from then until B holds a copy of every one,
//! and the time from starting the simulated devices (at B only) until the
//! last of the receipts arrived from A. Mailbox counts are polled every
//! 5 ms through the status API.

use std::time::{Duration, Instant};

use base64::Engine;
use radio_bridge::simulator::devices::device_identity;
use seed_e2e::gateway::{keygen, peer_entry, GatewayProcess, TestConfig, FAST_RADIO};
use seed_e2e::mosquitto::{unused_port, Backend, Mosquitto, MosquittoOptions, Subscriber};
use seed_e2e::simulate::Devices;

const SEED: u64 = 42;

/// Polls until `gw` holds `n` mailbox entries (its own or copies).
async fn wait_for_entries(gw: &GatewayProcess, n: usize, what: &str) {
    let since = Instant::now();
    loop {
        let held = gw.api("/api/v1/status").await["mailboxes"]["pending"]
            .as_u64()
            .unwrap_or(0);
        if held >= n as u64 {
            return;
        }
        assert!(
            since.elapsed() < Duration::from_secs(120),
            "waited 120 s for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let devices: usize = args.next().map_or(10, |a| a.parse().expect("DEVICES"));
    let per_device: usize = args.next().map_or(10, |a| a.parse().expect("PER_DEVICE"));
    let total = devices * per_device;
    let broker = Mosquitto::start(MosquittoOptions {
        persistence: false,
        ..MosquittoOptions::new()
    })
    .await;
    let root = tempfile::Builder::new()
        .prefix("bench-roaming-")
        .tempdir()
        .expect("dir");
    let mut a = TestConfig::new(&root.path().join("a"));
    let mut b = TestConfig::new(&root.path().join("b"));
    let (a_id, b_id) = (keygen(&a), keygen(&b));
    let port = unused_port();
    for config in [&mut a, &mut b] {
        config.mqtt_url = Some(broker.url());
        config.link_extra = FAST_RADIO.into();
    }
    let mailbox = format!("[mailbox]\nmax_per_device = {}\n", per_device.max(32));
    a.extra = format!("{mailbox}[peering]\n{}", peer_entry("b", port, &b_id));
    b.extra = format!(
        "{mailbox}[peering]\nbind = \"127.0.0.1:{port}\"\n{}",
        peer_entry("a", unused_port(), &a_id)
    );
    let mut receipts = Subscriber::connect(
        broker.observer_port(),
        &format!("seed/v1/gw/{a_id}/receipt"),
    )
    .await;
    let gw_b = GatewayProcess::start(&b).await;
    let mut state =
        Subscriber::connect(broker.observer_port(), &format!("seed/v1/gw/{a_id}/state")).await;
    let gw_a = GatewayProcess::start(&a).await;
    state
        .collect_until(Duration::from_secs(60), "a online", |got| {
            got.last()
                .is_some_and(|p| String::from_utf8_lossy(&p.payload).contains("online"))
        })
        .await;
    let mut backend = Backend::connect(&broker).await;

    let started = Instant::now();
    for n in 0..per_device {
        for d in 0..devices {
            let device = device_identity(SEED, d).id_hex();
            let payload = serde_json::json!({
                "message_type": "transaction",
                "payload": base64::engine::general_purpose::STANDARD.encode(format!("{n} for {d}")),
            })
            .to_string();
            backend
                .publish(
                    &format!("seed/v1/gw/{a_id}/down/{device}"),
                    payload.as_bytes(),
                )
                .await;
        }
    }
    wait_for_entries(&gw_a, total, "a to hold every downlink").await;
    let accepted = started.elapsed();
    let a_holds = Instant::now();
    wait_for_entries(&gw_b, total, "b to hold every copy").await;
    let copied = a_holds.elapsed();
    println!(
        "{total} downlinks held by a {:.2} s after the first publish ({:.0}/s); b held a copy of every one {:.0} ms later",
        accepted.as_secs_f64(),
        total as f64 / accepted.as_secs_f64(),
        copied.as_secs_f64() * 1000.0
    );

    let heard = Instant::now();
    let sim = Devices::start(b.gwmp, devices, SEED, &[]);
    receipts
        .collect_until(Duration::from_secs(600), "every receipt", |got| {
            got.len() >= total
        })
        .await;
    let delivered = heard.elapsed();
    println!(
        "{total} receipts from a, delivered by b, {:.2} s after b's devices started",
        delivered.as_secs_f64()
    );
    drop(sim);
    gw_a.stop().await;
    gw_b.stop().await;
}
