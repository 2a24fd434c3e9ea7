//! `/metrics` of a whole gateway in this process, fed over real UDP by the
//! emulated packet forwarder and publishing to a real Mosquitto.

use std::net::SocketAddr;
use std::time::Duration;

use radio_bridge::frame::{Envelope, Frame, Message, ProtocolVersion, Transaction};
use radio_bridge::gwmp::{Eui, GwmpConfig};
use radio_bridge::identity::Identity;
use radio_bridge::link::RadioParams;
use radio_bridge::simulator::packet_forwarder::{PacketForwarder, PacketForwarderConfig};
use seed_e2e::gateway::http_get;
use seed_e2e::mosquitto::{Mosquitto, MosquittoOptions};
use seed_gateway::config::{Config, MqttConfig};
use seed_gateway::daemon;
use tokio::time::Instant;

const WAIT: Duration = Duration::from_secs(30);

fn transaction(device: &Identity, counter: u32) -> Vec<u8> {
    Frame::sign(
        Envelope {
            version: ProtocolVersion::CURRENT,
            device_id: device.device_id(),
            to: None,
            seq: None,
            message: Message::Transaction(Transaction {
                payload: format!("tx {counter}").into_bytes(),
                timestamp_counter: Some(counter),
            }),
        },
        device.signing_key(),
    )
    .unwrap()
    .bytes
}

/// The value of an unlabelled sample, or of the one with exactly `labels`.
fn sample(metrics: &str, name_and_labels: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let (key, value) = line.rsplit_once(' ')?;
        (key == name_and_labels).then(|| value.parse().ok())?
    })
}

async fn metrics(http: SocketAddr) -> String {
    let (code, body) = http_get(http, "/metrics").await.expect("/metrics answers");
    assert_eq!(code, 200);
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_latency_is_a_consistent_prometheus_histogram() {
    let broker = Mosquitto::start(MosquittoOptions::new()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.gateway.data_dir = dir.path().join("data");
    config.http.bind = "127.0.0.1:0".parse().unwrap();
    let mut mqtt = MqttConfig::from_url(broker.url());
    mqtt.reconnect_min_ms = 50;
    mqtt.reconnect_max_ms = 400;
    config.mqtt = Some(mqtt);
    let (spec, gwmp) = daemon::bound_gwmp_link(
        GwmpConfig::new("gwmp0", "127.0.0.1:0".parse().unwrap()),
        RadioParams::default(),
    )
    .await
    .unwrap();
    let running = daemon::start(&config, vec![spec]).await.unwrap();
    let http = running.http_addr.unwrap();
    let forwarder = PacketForwarder::start(PacketForwarderConfig::new(gwmp, Eui([5; 8])))
        .await
        .unwrap();
    let device = Identity::from_seed([11; 32]);
    for counter in 1..=3 {
        forwarder
            .inject(&transaction(&device, counter), -90.0, 5.0)
            .await
            .unwrap();
    }

    // PUBACKs arrive asynchronously; the histogram fills as they do.
    let name = "seed_uplink_publish_latency_seconds";
    let deadline = Instant::now() + WAIT;
    let text = loop {
        let text = metrics(http).await;
        if sample(&text, &format!("{name}_count")).unwrap_or(0.0) >= 3.0 {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "publish latency never counted 3 PUBACKs:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(text.contains(&format!("# TYPE {name} histogram")), "{text}");
    let count = sample(&text, &format!("{name}_count")).unwrap();
    let sum = sample(&text, &format!("{name}_sum")).expect("_sum");
    assert!(sum >= 0.0 && sum.is_finite(), "sum {sum}");
    let buckets: Vec<(String, f64)> = text
        .lines()
        .filter(|l| l.starts_with(&format!("{name}_bucket{{")))
        .map(|l| {
            let (key, value) = l.rsplit_once(' ').unwrap();
            let le = key.split("le=\"").nth(1).unwrap().trim_end_matches("\"}");
            (le.to_string(), value.parse().unwrap())
        })
        .collect();
    assert!(buckets.len() > 2, "{text}");
    assert!(
        buckets.windows(2).all(|w| w[0].1 <= w[1].1),
        "buckets are cumulative: {buckets:?}"
    );
    assert!(
        buckets
            .windows(2)
            .take(buckets.len() - 2)
            .all(|w| w[0].0.parse::<f64>().unwrap() < w[1].0.parse::<f64>().unwrap()),
        "bounds ascend: {buckets:?}"
    );
    assert_eq!(buckets.last().unwrap(), &("+Inf".to_string(), count));
    // The same numbers in the status document.
    let (_, status) = http_get(http, "/api/v1/status").await.unwrap();
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    let counts = status["uplink"]["publish_latency"]["counts"]
        .as_array()
        .unwrap();
    let total: u64 = counts.iter().map(|c| c.as_u64().unwrap()).sum();
    assert_eq!(total as f64, count);

    running.shutdown_token().cancel();
    tokio::time::timeout(WAIT, running.wait()).await.unwrap();
}
