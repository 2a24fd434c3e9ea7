//! Downlink benchmark: airtime per delivered downlink and duty-cycle use
//! under load, through the whole path a backend uses.
//!
//! A real Mosquitto (started here, on a free port), the gateway in this
//! process (EU868 rules enforced), and simulated devices behind an emulated
//! Semtech packet forwarder talking GWMP over loopback UDP. A backend
//! client publishes downlinks for every device and waits for their
//! receipts; everything the gateway transmits is classified on the way to
//! the devices and its airtime computed with the link's modulation.
//!
//! ```text
//! cargo run --release -p seed-gateway --example bench_downlinks -- \
//!     [--devices 20] [--per-device 10] [--loss 0.1] [--speed 20] \
//!     [--freq-hz 869525000] [--sf 9] [--timeout-s 900]
//! ```
//!
//! Needs `mosquitto` on the PATH (Debian: `apt-get install mosquitto`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use radio_bridge::airtime::time_on_air;
use radio_bridge::frame::{Frame, LedgerSync, Message};
use radio_bridge::gwmp::{Eui, GwmpConfig, GwmpLink};
use radio_bridge::link::RadioParams;
use radio_bridge::simulator::devices::{
    device_identity, run_fleet, Air, AirConditions, AirPacket, FleetOptions,
};
use radio_bridge::simulator::packet_forwarder::{PacketForwarder, PacketForwarderConfig};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use seed_gateway::config::{Config, MqttConfig};
use seed_gateway::daemon::{self, request_id, LinkSpec};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

struct Args {
    devices: usize,
    per_device: usize,
    loss: f64,
    speed: f64,
    freq_hz: u32,
    sf: u8,
    timeout: Duration,
}

fn args() -> Args {
    let mut a = Args {
        devices: 20,
        per_device: 10,
        loss: 0.1,
        speed: 20.0,
        freq_hz: 869_525_000,
        sf: 9,
        timeout: Duration::from_secs(900),
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    for pair in argv.chunks(2) {
        let flag = pair[0].as_str();
        let value = pair.get(1).map(String::as_str).unwrap_or("");
        match flag {
            "--devices" => a.devices = parse(flag, value),
            "--per-device" => a.per_device = parse(flag, value),
            "--loss" => a.loss = parse(flag, value),
            "--speed" => a.speed = parse(flag, value),
            "--freq-hz" => a.freq_hz = parse(flag, value),
            "--sf" => a.sf = parse(flag, value),
            "--timeout-s" => a.timeout = Duration::from_secs(parse(flag, value)),
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

fn parse<T: std::str::FromStr>(flag: &str, value: &str) -> T {
    value
        .parse()
        .unwrap_or_else(|_| panic!("{flag}: bad value {value:?}"))
}

/// Airtime of what the gateway transmitted, by kind.
#[derive(Debug, Default)]
struct OnAir {
    by_kind: HashMap<&'static str, (u64, Duration)>,
}

impl OnAir {
    fn record(&mut self, bytes: &[u8], params: &RadioParams) {
        let kind = match Frame::decode(bytes).map(|f| f.envelope.message) {
            Ok(Message::Ack(_)) => "radio acks",
            Ok(Message::Heartbeat(_)) => "gateway heartbeats",
            Ok(Message::LedgerSync(LedgerSync::Offer { .. })) => "ledger-sync offers",
            Ok(_) => "downlinks",
            Err(_) => "undecodable",
        };
        let entry = self.by_kind.entry(kind).or_default();
        entry.0 += 1;
        entry.1 += time_on_air(bytes.len(), params);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

struct Broker(Child);

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn start_mosquitto(dir: &std::path::Path) -> (Broker, u16) {
    let port = free_port();
    let conf = dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"),
    )
    .expect("mosquitto config");
    let broker = Broker(
        Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto on the PATH (apt-get install mosquitto)"),
    );
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return (broker, port);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("mosquitto did not listen on {port}");
}

#[tokio::main]
async fn main() {
    let a = args();
    let dir = tempfile::tempdir().expect("temp dir");
    let (_broker, port) = start_mosquitto(dir.path()).await;
    let params = RadioParams {
        freq_hz: a.freq_hz,
        sf: a.sf,
        ..RadioParams::default()
    };

    // The gateway: EU868 duty cycle enforced, retries scaled like the
    // devices' simulated time.
    let mut config = Config::default();
    config.gateway.data_dir = dir.path().join("gateway");
    config.http.bind = "127.0.0.1:0".parse().expect("literal");
    config.region.name = "EU868".into();
    config.power.supply_path = dir.path().join("no-power-supply");
    config.mailbox.retry_base_ms = (10_000.0 / a.speed) as u64;
    config.mailbox.retry_max_ms = (600_000.0 / a.speed) as u64;
    config.mailbox.max_attempts = 20;
    config.mailbox.max_per_device = a.per_device.max(32) as u32;
    let mut mqtt = MqttConfig::from_url(format!("mqtt://127.0.0.1:{port}"));
    mqtt.reconnect_min_ms = 100;
    mqtt.reconnect_max_ms = 1000;
    config.mqtt = Some(mqtt);
    let link = GwmpLink::bind(GwmpConfig::new(
        "gwmp0",
        "127.0.0.1:0".parse().expect("literal"),
    ))
    .await
    .expect("GWMP socket");
    let gwmp: SocketAddr = link.local_addr().expect("bound");
    let running = daemon::start(
        &config,
        vec![LinkSpec {
            link: Box::new(link),
            kind: "gwmp",
            params,
            rebuild: None,
        }],
    )
    .await
    .expect("gateway starts");
    let gateway_id = running.gateway_id.clone();

    // The backend: receipts first (not retained), then the downlinks.
    let mut options = MqttOptions::new("bench-backend", "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(30));
    let (client, mut eventloop) = AsyncClient::new(options, 4096);
    let (receipts_tx, mut receipts) = mpsc::unbounded_channel::<serde_json::Value>();
    let (subacks_tx, mut subacks) = mpsc::unbounded_channel::<()>();
    tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if let Ok(v) = serde_json::from_slice(&p.payload) {
                        let _ = receipts_tx.send(v);
                    }
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    let _ = subacks_tx.send(());
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    });
    client
        .subscribe(format!("seed/v1/gw/{gateway_id}/receipt"), QoS::AtLeastOnce)
        .await
        .expect("subscribe");
    subacks.recv().await.expect("SUBACK");
    // Let the gateway's own subscription settle (it subscribes on connect).
    while !running
        .state
        .recent_events()
        .iter()
        .any(|e| e.kind == "broker_up")
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let started = Instant::now();
    let mut published: HashMap<String, Instant> = HashMap::new();
    for n in 0..a.per_device {
        for d in 0..a.devices {
            let device = device_identity(1, d);
            let payload = serde_json::json!({
                "message_type": "transaction",
                "payload": base64::engine::general_purpose::STANDARD
                    .encode(format!("bench downlink {n} for device {d}")),
            })
            .to_string();
            let id = hex::encode(request_id(&device.device_id(), payload.as_bytes()));
            client
                .publish(
                    format!("seed/v1/gw/{gateway_id}/down/{}", device.id_hex()),
                    QoS::AtLeastOnce,
                    false,
                    payload.into_bytes(),
                )
                .await
                .expect("publish");
            published.insert(id, Instant::now());
        }
    }

    // The air: a packet forwarder in front of the devices, with a tap on
    // everything the gateway transmits.
    let stop = CancellationToken::new();
    let forwarder = PacketForwarder::start(PacketForwarderConfig::new(gwmp, Eui([7; 8])))
        .await
        .expect("packet forwarder");
    let (uplink_tx, mut uplink_rx) = mpsc::channel::<AirPacket>(4096);
    let (downlink_tx, _) = broadcast::channel(4096);
    let on_air = Arc::new(Mutex::new(OnAir::default()));
    let mut heard = forwarder.subscribe_downlinks();
    let relay_down = downlink_tx.clone();
    let tap = on_air.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                packet = uplink_rx.recv() => match packet {
                    Some(p) => { let _ = forwarder.inject(&p.bytes, p.rssi, p.snr).await; }
                    None => break,
                },
                down = heard.recv() => match down {
                    Ok(d) => {
                        if let Ok(mut t) = tap.lock() {
                            t.record(&d.bytes, &params);
                        }
                        let _ = relay_down.send(d.bytes);
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => break,
                },
            }
        }
    });
    let fleet = tokio::spawn(run_fleet(
        FleetOptions {
            devices: a.devices,
            speed: a.speed,
            conditions: AirConditions {
                loss: a.loss,
                ..AirConditions::default()
            },
            ..FleetOptions::default()
        },
        Air {
            uplink: uplink_tx,
            downlink: downlink_tx,
        },
        stop.clone(),
    ));

    // Wait for every receipt, watching the duty cycle as we go.
    let total = published.len();
    let mut latencies: Vec<Duration> = Vec::new();
    let mut outcomes: HashMap<String, usize> = HashMap::new();
    let mut seen = std::collections::HashSet::new();
    let mut max_used_percent: f64 = 0.0;
    let deadline = tokio::time::Instant::now() + a.timeout;
    let mut sample = tokio::time::interval(Duration::from_secs(1));
    while seen.len() < total {
        tokio::select! {
            r = receipts.recv() => {
                let Some(r) = r else { break };
                let id = r["request_id"].as_str().unwrap_or_default().to_string();
                if seen.insert(id.clone()) {
                    *outcomes.entry(r["status"].as_str().unwrap_or("?").to_string()).or_default() += 1;
                    if let Some(t) = published.get(&id) {
                        latencies.push(t.elapsed());
                    }
                }
            }
            _ = sample.tick() => {
                if let Some(dc) = running.scheduler_stats().duty_cycle {
                    for b in dc.bands {
                        max_used_percent = max_used_percent.max(b.used_ms as f64 * 100.0 / b.budget_ms.max(1) as f64);
                    }
                }
            }
            _ = tokio::time::sleep_until(deadline) => break,
        }
    }
    let elapsed = started.elapsed();
    stop.cancel();
    let fleet = fleet.await.expect("fleet task");

    // Figures.
    let stats = running.scheduler_stats();
    let counters = running.mailbox_counters();
    let delivered = outcomes.get("delivered").copied().unwrap_or(0);
    let air = on_air.lock().expect("tap").by_kind.clone();
    let (down_frames, down_air) = air.get("downlinks").copied().unwrap_or_default();
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map(|d| format!("{:.1} s", d.as_secs_f64()))
            .unwrap_or_else(|| "-".into())
    };
    println!(
        "downlink benchmark: {} devices x {} downlinks = {total}, loss {:.0} % each way, EU868, SF{}/125 kHz at {:.3} MHz, devices' time x{}",
        a.devices,
        a.per_device,
        a.loss * 100.0,
        a.sf,
        a.freq_hz as f64 / 1e6,
        a.speed
    );
    println!(
        "outcomes after {:.1} s: {outcomes:?} ({} of {total} receipts)",
        elapsed.as_secs_f64(),
        seen.len()
    );
    println!(
        "downlink frames on air: {down_frames} ({:.2} per delivered; mailbox counted {} transmissions, {} on NACK)",
        down_frames as f64 / delivered.max(1) as f64,
        counters.transmissions.load(Ordering::Relaxed),
        counters.nack_redeliveries.load(Ordering::Relaxed)
    );
    println!(
        "downlink airtime: {:.1} s in all, {:.0} ms per delivered downlink ({:.0} ms per frame)",
        down_air.as_secs_f64(),
        down_air.as_secs_f64() * 1000.0 / delivered.max(1) as f64,
        down_air.as_secs_f64() * 1000.0 / down_frames.max(1) as f64
    );
    let mut kinds: Vec<_> = air.iter().collect();
    kinds.sort_by_key(|(k, _)| *k);
    for (kind, (frames, airtime)) in kinds {
        println!(
            "  on air, {kind}: {frames} frames, {:.1} s",
            airtime.as_secs_f64()
        );
    }
    if let Some(dc) = &stats.duty_cycle {
        for b in &dc.bands {
            if b.used_ms > 0 {
                println!(
                    "duty cycle, band {:?}: {:.1} s of {:.1} s allowed in the rolling hour ({:.1} % of budget; limit {} %)",
                    b.band,
                    b.used_ms as f64 / 1000.0,
                    b.budget_ms as f64 / 1000.0,
                    b.used_percent,
                    b.limit_percent
                );
            }
        }
    }
    println!(
        "highest budget use sampled: {max_used_percent:.1} %; frames held back by the duty cycle: {}; scheduler airtime total {:.1} s",
        stats.deferred_total,
        stats.airtime_ms_total as f64 / 1000.0
    );
    println!(
        "publish -> receipt latency: p50 {}, p90 {}, max {}",
        pct(0.5),
        pct(0.9),
        pct(1.0)
    );
    println!(
        "devices: {} downlinks received, {} acks sent, {} NACKs sent, {} heartbeats",
        fleet.downlinks_received, fleet.downlinks_acked, fleet.nacks_sent, fleet.heartbeats
    );
    running.shutdown_token().cancel();
    running.wait().await;
}
