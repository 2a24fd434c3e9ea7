//! The diagnostic bundle from the admin page of a whole gateway: its own
//! recent log lines and the system log's tail, with secrets removed.
//! (Its own test binary: it installs the process-wide log subscriber.)

mod common;

use common::{admin_post, log_in, request, Rig, LINK};
use seed_gateway::config::MqttConfig;

const MQTT_PASSWORD: &str = "mqtt-s3cret/pass word";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bundle_has_recent_logs_and_the_system_log_but_no_secrets() {
    seed_gateway::daemon::init_logging("info");
    let dir = tempfile::tempdir().unwrap();
    let syslog = dir.path().join("messages");
    std::fs::write(
        &syslog,
        format!("Jan  1 00:00:01 seed kern.info kernel: syslog-marker-7781\nJan  1 00:00:02 seed user.warn app: login {MQTT_PASSWORD}\n"),
    )
    .unwrap();
    let mut config = common::config(dir.path());
    config.gateway.system_log = Some(syslog);
    // A broker nobody listens on: the uplink keeps retrying, with the
    // credentials configured.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut mqtt = MqttConfig::from_url(format!("mqtt://127.0.0.1:{port}"));
    mqtt.username = Some("kiosk".into());
    mqtt.password = Some(MQTT_PASSWORD.into());
    config.mqtt = Some(mqtt);
    let rig = Rig::start_with(dir, config).await;

    // Something the gateway logs because of this test.
    let session = log_in(rig.http).await;
    admin_post(rig.http, &session, "/admin/restart-link", &[("link", LINK)]).await;
    // A careless log line quoting the password must not leak either.
    tracing::warn!("test: connecting with password {MQTT_PASSWORD}");

    let reply = request(
        rig.http,
        "POST",
        "/admin/diagnostics",
        Some(&session.0),
        &[("csrf", &session.1)],
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let bundle = reply.text();
    let own_log = bundle
        .split("== gateway log")
        .nth(1)
        .expect("a gateway log section");
    assert!(
        own_log.contains(&format!("Radio {LINK} restarted by admin")),
        "{own_log}"
    );
    assert!(own_log.contains("test: connecting with password (removed)"));
    let system_log = bundle
        .split("== system log")
        .nth(1)
        .expect("a system log section");
    assert!(system_log.contains("syslog-marker-7781"), "{system_log}");
    assert!(
        !bundle.contains(MQTT_PASSWORD) && !bundle.contains("s3cret"),
        "the MQTT password leaked into the bundle"
    );
    rig.stop().await;
}
