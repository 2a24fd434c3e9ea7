//! `/metrics` of a whole gateway in this process, fed over real UDP by the
//! emulated packet forwarder and publishing to a real Mosquitto.

use std::net::SocketAddr;
use std::time::Duration;

use radio_bridge::gwmp::Eui;
use radio_bridge::identity::Identity;
use radio_bridge::simulator::packet_forwarder::{PacketForwarder, PacketForwarderConfig};
use seed_e2e::frames::transaction;
use seed_e2e::gateway::http_get;
use seed_e2e::in_process::InProcessGateway;
use seed_e2e::mosquitto::{Mosquitto, MosquittoOptions};
use seed_gateway::config::MqttConfig;
use tokio::time::Instant;

const WAIT: Duration = Duration::from_secs(30);

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
    let mut mqtt = MqttConfig::from_url(broker.url());
    mqtt.reconnect_min_ms = 50;
    mqtt.reconnect_max_ms = 400;
    let gateway = InProcessGateway::start(&["gwmp0"], Some(mqtt)).await;
    let (http, gwmp) = (gateway.http, gateway.gwmp[0]);
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
    // And in words on the status page.
    let told = status["summary"]["publish_latency"]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(
        told.starts_with("Half reached the broker within ") && told.contains(" since start"),
        "{told:?}"
    );

    gateway.stop().await;
}

/// Two concentrators on one gateway: a keeper must be able to tell which
/// one brings the bad frames, so decoded outcomes are counted per link.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frame_outcomes_are_counted_per_radio_link() {
    let gateway = InProcessGateway::start(&["gwmp0", "gwmp1"], None).await;
    let (http, forwarders) = (gateway.http, gateway.gwmp.clone());
    let good = PacketForwarder::start(PacketForwarderConfig::new(forwarders[0], Eui([6; 8])))
        .await
        .unwrap();
    let bad = PacketForwarder::start(PacketForwarderConfig::new(forwarders[1], Eui([7; 8])))
        .await
        .unwrap();
    let device = Identity::from_seed([12; 32]);
    for counter in 1..=2 {
        good.inject(&transaction(&device, counter), -90.0, 5.0)
            .await
            .unwrap();
    }
    // The signature is the frame's last element: flipping its last byte
    // leaves valid CBOR whose signature does not verify.
    let mut forged = transaction(&device, 3);
    *forged.last_mut().unwrap() ^= 0x01;
    bad.inject(&forged, -100.0, 1.0).await.unwrap();

    let series = |link: &str, outcome: &str| {
        format!("seed_frames_total{{link=\"{link}\",outcome=\"{outcome}\"}}")
    };
    let deadline = Instant::now() + WAIT;
    let text = loop {
        let text = metrics(http).await;
        let accepted = sample(&text, &series("gwmp0", "accepted")).unwrap_or(0.0);
        let forged = sample(&text, &series("gwmp1", "bad_signature")).unwrap_or(0.0);
        if accepted >= 2.0 && forged >= 1.0 {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "2 accepted frames on gwmp0 and 1 bad signature on gwmp1 never counted:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for (link, outcome, count) in [
        ("gwmp0", "accepted", 2.0),
        ("gwmp0", "bad_signature", 0.0),
        ("gwmp1", "bad_signature", 1.0),
        ("gwmp1", "accepted", 0.0),
    ] {
        let name = series(link, outcome);
        assert_eq!(sample(&text, &name), Some(count), "{name} in:\n{text}");
    }
    // The status document carries the same split, and the totals.
    let (_, status) = http_get(http, "/api/v1/status").await.unwrap();
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    let links = status["links"].as_array().unwrap();
    let link = |name: &str| links.iter().find(|l| l["name"] == name).unwrap().clone();
    assert_eq!(link("gwmp0")["frames"]["accepted"], 2, "{status}");
    assert_eq!(link("gwmp1")["frames"]["bad_signature"], 1, "{status}");
    assert_eq!(status["frames"]["accepted"], 2, "{status}");
    assert_eq!(status["frames"]["bad_signature"], 1, "{status}");

    gateway.stop().await;
}
