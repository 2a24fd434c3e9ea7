//! Custody-transfer throughput over loopback, next to the MQTT drain rate
//! of the same store, with the real binary (docs/benchmarks.md).
//!
//! ```text
//! cargo build --release -p seed-gateway --bin seed-gateway --example fill_store
//! cargo run --release -p seed-e2e --example bench_custody -- [MESSAGES] [WINDOW]
//! ```
//! Defaults: 20000 queued transactions, window 64. Two runs on fresh data
//! directories filled with the same backlog: (1) the gateway drains it to a
//! local Mosquitto itself; (2) the gateway has no broker, hands it to a
//! neighbour (`custody_after_s = 1`) which publishes it on the origin's
//! topics. Each prints the time from the gateway's start until the first
//! and the last message reached a subscriber.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use seed_e2e::gateway::{run_cli, GatewayProcess, TestConfig};
use seed_e2e::mosquitto::{unused_port, Mosquitto, MosquittoOptions, Subscriber};

fn fill(config: &TestConfig, messages: usize) -> String {
    let data = config.data_dir.join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    let (ok, id, err) = run_cli(
        &[
            "keygen",
            "--out",
            &data.join("gateway.key").display().to_string(),
        ],
        None,
    );
    assert!(ok, "keygen: {err}");
    let fill_store =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/examples/fill_store");
    let status = Command::new(&fill_store)
        .arg(&data)
        .arg(messages.to_string())
        .status()
        .unwrap_or_else(|e| {
            panic!(
                "{} ({e}); build it first, see the module docs",
                fill_store.display()
            )
        });
    assert!(status.success());
    id.trim().to_string()
}

async fn time_delivery(
    sub: &mut Subscriber,
    messages: usize,
    started: Instant,
) -> (Duration, Duration) {
    let first = sub
        .next(Duration::from_secs(120))
        .await
        .expect("a first message");
    let first_at = started.elapsed();
    drop(first);
    sub.collect_until(Duration::from_secs(600), "every message", |got| {
        got.len() + 1 >= messages
    })
    .await;
    (first_at, started.elapsed())
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let messages: usize = args.next().map_or(20_000, |a| a.parse().expect("MESSAGES"));
    let window: u32 = args.next().map_or(64, |a| a.parse().expect("WINDOW"));
    let broker = Mosquitto::start(MosquittoOptions {
        persistence: false,
        ..MosquittoOptions::new()
    })
    .await;
    let root = tempfile::Builder::new()
        .prefix("bench-custody-")
        .tempdir()
        .expect("dir");
    let dir = |name: &str| -> PathBuf { root.path().join(name) };

    // (1) The gateway drains its own backlog.
    let mut direct = TestConfig::new(&dir("direct"));
    direct.mqtt_url = Some(broker.url());
    let id = fill(&direct, messages);
    let mut sub =
        Subscriber::connect(broker.observer_port(), &format!("seed/v1/gw/{id}/up/#")).await;
    let started = Instant::now();
    let gw = GatewayProcess::start(&direct).await;
    let (first, all) = time_delivery(&mut sub, messages, started).await;
    println!(
        "direct MQTT drain: {messages} messages, first after {:.2} s, all after {:.2} s: {:.0} msg/s",
        first.as_secs_f64(),
        all.as_secs_f64(),
        messages as f64 / (all - first).as_secs_f64()
    );
    gw.stop().await;

    // (2) No broker for the origin: its neighbour relays everything.
    let mut origin = TestConfig::new(&dir("origin"));
    let mut custodian = TestConfig::new(&dir("custodian"));
    let origin_id = fill(&origin, messages);
    let custodian_key = custodian.data_dir.join("data");
    std::fs::create_dir_all(&custodian_key).expect("dir");
    let (_, custodian_id, _) = run_cli(
        &[
            "keygen",
            "--out",
            &custodian_key.join("gateway.key").display().to_string(),
        ],
        None,
    );
    let port = unused_port();
    origin.mqtt_url = Some(format!("mqtt://127.0.0.1:{}", unused_port()));
    origin.extra = format!(
        "[peering]\ncustody_after_s = 1\nwindow = {window}\n[[peer]]\nname = \"c\"\naddress = \"127.0.0.1:{port}\"\ngateway_id = \"{}\"\n",
        custodian_id.trim()
    );
    custodian.mqtt_url = Some(broker.url());
    custodian.extra = format!(
        "[peering]\nbind = \"127.0.0.1:{port}\"\n[[peer]]\nname = \"o\"\naddress = \"127.0.0.1:{}\"\ngateway_id = \"{origin_id}\"\n",
        unused_port()
    );
    let mut sub = Subscriber::connect(
        broker.observer_port(),
        &format!("seed/v1/gw/{origin_id}/up/#"),
    )
    .await;
    let c = GatewayProcess::start(&custodian).await;
    let started = Instant::now();
    let o = GatewayProcess::start(&origin).await;
    let (first, all) = time_delivery(&mut sub, messages, started).await;
    println!(
        "custody via neighbour (window {window}): {messages} messages, first relayed after {:.2} s (custody_after_s = 1), all after {:.2} s: {:.0} msg/s",
        first.as_secs_f64(),
        all.as_secs_f64(),
        messages as f64 / (all - first).as_secs_f64()
    );
    o.stop().await;
    c.stop().await;
}
