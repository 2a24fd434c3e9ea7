//! MQTT over TLS, black-box: the real `seed-gateway` binary against a real
//! Mosquitto whose only listener for the gateway is `mqtts://` and wants a
//! client certificate. (The broker's plain observer listener on loopback is
//! the test's own window onto what was published.)
//!
//! With the right CA file and client certificate a device's message
//! reaches the broker; with the wrong CA, or an expired client
//! certificate, the status page says what is wrong in words, and the
//! message waits on disk.

mod common;

use std::time::Duration;

use common::wait_status;
use radio_bridge::gwmp::Eui;
use radio_bridge::identity::Identity;
use radio_bridge::simulator::packet_forwarder::{PacketForwarder, PacketForwarderConfig};
use seed_e2e::frames::transaction;
use seed_e2e::gateway::{GatewayProcess, TestConfig};
use seed_e2e::mosquitto::{Mosquitto, MosquittoOptions, Subscriber, TlsListener};
use seed_e2e::pki::TestPki;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);

async fn tls_only_broker(pki: &TestPki) -> Mosquitto {
    Mosquitto::start(
        MosquittoOptions::new().with_tls(TlsListener::requiring_client_certificates(pki)),
    )
    .await
}

/// A gateway config that reaches `broker` only over `mqtts://`.
fn tls_config(
    dir: &std::path::Path,
    broker: &Mosquitto,
    ca: &std::path::Path,
    cert: &std::path::Path,
    key: &std::path::Path,
) -> TestConfig {
    let mut config = TestConfig::new(dir);
    config.mqtt_url = Some(broker.tls_url());
    config.mqtt_extra = format!("ca_file = {ca:?}\ncert_file = {cert:?}\nkey_file = {key:?}\n");
    config
}

fn last_error(status: &Value) -> String {
    status["uplink"]["last_error"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Starts the gateway, has a device send one message, and waits until the
/// status page reports an uplink error; returns it. The message stays
/// in the backlog.
async fn refused(config: &TestConfig, device: &Identity) -> String {
    let gateway = GatewayProcess::start(config).await;
    let forwarder = PacketForwarder::start(PacketForwarderConfig::new(config.gwmp, Eui([7; 8])))
        .await
        .expect("packet forwarder emulator starts");
    forwarder
        .inject(&transaction(device, 1), -80.0, 8.0)
        .await
        .unwrap();
    let status = wait_status(&gateway, WAIT, "an uplink error on the status page", |s| {
        !last_error(s).is_empty() && s["uplink"]["backlog"].as_u64() >= Some(1)
    })
    .await;
    assert_eq!(status["uplink"]["connected"], false);
    assert!(gateway.stop().await, "clean exit on SIGTERM");
    last_error(&status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_over_mqtts_delivers() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::generate(dir.path(), "broker");
    let broker = tls_only_broker(&pki).await;
    let mut watcher = Subscriber::connect(broker.observer_port(), "seed/v1/gw/+/up/#").await;
    let config = tls_config(
        dir.path(),
        &broker,
        &pki.ca_cert,
        &pki.client_cert,
        &pki.client_key,
    );
    let gateway = GatewayProcess::start(&config).await;
    let forwarder = PacketForwarder::start(PacketForwarderConfig::new(config.gwmp, Eui([7; 8])))
        .await
        .unwrap();
    let device = Identity::from_seed([31; 32]);
    forwarder
        .inject(&transaction(&device, 1), -80.0, 8.0)
        .await
        .unwrap();
    let published = watcher
        .collect_until(WAIT, "the transaction published over mqtts", |got| {
            got.iter().any(|p| p.topic.ends_with("/up/transaction"))
        })
        .await;
    assert!(!published.is_empty());
    let status = wait_status(&gateway, WAIT, "the uplink connected", |s| {
        s["uplink"]["connected"] == true
    })
    .await;
    let broker_url = status["uplink"]["broker"].as_str().unwrap_or_default();
    assert!(broker_url.starts_with("mqtts://localhost:"), "{broker_url}");
    assert!(gateway.stop().await, "clean exit on SIGTERM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_ca_or_an_expired_client_certificate_is_explained_on_the_status_page() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::generate(dir.path(), "broker");
    let stranger = TestPki::generate(dir.path(), "stranger");
    let broker = tls_only_broker(&pki).await;
    let device = Identity::from_seed([32; 32]);

    // The broker's certificate is not signed by the CA the gateway trusts.
    let wrong_ca = dir.path().join("wrong-ca");
    let config = tls_config(
        &wrong_ca,
        &broker,
        &stranger.ca_cert,
        &pki.client_cert,
        &pki.client_key,
    );
    let error = refused(&config, &device).await;
    assert!(
        error.starts_with("TLS handshake with MQTT broker mqtts://localhost:")
            && error.contains("certificate"),
        "wrong CA: {error}"
    );

    // The right CA, but the client certificate expired yesterday.
    let (cert, key) = pki.expired_client();
    let expired = dir.path().join("expired");
    let config = tls_config(&expired, &broker, &pki.ca_cert, &cert, &key);
    let error = refused(&config, &device).await;
    assert!(
        error.contains("rejected our client certificate")
            && error.contains("CertificateExpired")
            && error.contains("mqtt.cert_file"),
        "expired client certificate: {error}"
    );
}
