//! The durable core, black-box: the real `seed-gateway` binary, a real
//! Mosquitto, simulated devices behind a real UDP packet forwarder
//! (`seed-gateway simulate`, a separate process).
//!
//! The promise under test: every message a device was told is safe (radio
//! ack) reaches the MQTT backend, whatever happens to the broker, the
//! process or the disk quota in between. The simulator's `acked_ids` are
//! exactly the messages the gateway acked, so each test ends by checking
//! that every one of them arrived on `seed/v1/gw/{id}/up/transaction`.
//!
//! Subscribers use persistent sessions on the broker's observer listener
//! and are connected *before* the gateway can publish, so nothing the
//! gateway publishes can slip past them, also across broker restarts.

mod common;

use std::time::Duration;

use common::{
    collect_transactions, collect_transactions_and, duplicates, num, tail, transaction_ids,
    wait_status,
};
use seed_e2e::gateway::{http_get, GatewayProcess, TestConfig, FAST_RADIO};
use seed_e2e::mosquitto::{Mosquitto, MosquittoOptions, Subscriber};
use seed_e2e::simulate::Simulation;
use serde_json::Value;

/// Longest a simulator run may take (its own deadline is shorter).
const SIM_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest the gateway may take to deliver its backlog once a broker is there.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

fn data_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("seed-e2e-core-")
        .tempdir()
        .expect("temp dir")
}

/// A broker that was up long enough for a persistent subscriber to register
/// on `filter`, then stopped: from the gateway's point of view no broker
/// exists, yet everything it publishes once the broker is back is queued for
/// the subscriber.
async fn absent_broker_with_subscriber(client_id: &str, filter: &str) -> (Mosquitto, Subscriber) {
    let mut broker = Mosquitto::start(MosquittoOptions::new()).await;
    let sub = Subscriber::persistent(broker.observer_port(), client_id, filter).await;
    broker.stop().await;
    (broker, sub)
}

/// A gateway on a fresh GWMP port, publishing to `broker`'s main listener,
/// with short-airtime radio settings so acks keep up with the simulator.
fn gateway_config(dir: &std::path::Path, broker: &Mosquitto) -> TestConfig {
    let mut config = TestConfig::new(dir);
    config.mqtt_url = Some(broker.url());
    config.link_extra = FAST_RADIO.into();
    config
}

fn assert_no_panic(gw: &GatewayProcess) {
    let log = gw.log();
    assert!(
        !log.contains("panicked"),
        "the gateway panicked; log:\n{}",
        tail(&log, 60)
    );
}

#[tokio::test]
async fn broker_absent_at_start_then_every_acked_message_arrives() {
    let dir = data_dir();
    let (mut broker, mut sub) =
        absent_broker_with_subscriber("e2e-absent", "seed/v1/gw/+/up/#").await;
    let config = gateway_config(dir.path(), &broker);
    let gw = GatewayProcess::start(&config).await;

    let summary = Simulation::gwmp(config.gwmp, 4, 25)
        .no_heartbeats()
        .deadline_s(40)
        .spawn()
        .finish(SIM_TIMEOUT)
        .await;
    assert_eq!(summary.sent, 100, "simulator summary: {summary:?}");
    assert_eq!(
        summary.acked, summary.sent,
        "with no broker the gateway must still ack every message it stored"
    );

    // Acks follow commits, so everything acked is already in the backlog,
    // beside at most one waiting heartbeat of the gateway itself (it keeps
    // only its newest while the uplink is down; docs/downlinks.md).
    let status = gw.api("/api/v1/status").await;
    let backlog = num(&status, &["uplink", "backlog"]);
    assert!(
        backlog == summary.acked || backlog == summary.acked + 1,
        "backlog {backlog} must be what was acked ({}), plus at most the gateway's own heartbeat: {status}",
        summary.acked
    );
    assert_eq!(status["uplink"]["configured"], true, "{status}");
    assert_eq!(status["uplink"]["connected"], false, "{status}");
    let why = status["uplink"]["last_error"].as_str().unwrap_or_default();
    assert!(
        why.contains("cannot reach MQTT broker"),
        "the status should say why nothing is published, got {why:?}"
    );
    assert_eq!(num(&status, &["uplink", "published_total"]), 0, "{status}");

    // The broker appears on the port the gateway was configured with.
    broker.restart().await;
    let got = collect_transactions(&mut sub, &summary.acked_ids, DELIVERY_TIMEOUT).await;
    let ids = transaction_ids(&got);
    assert_eq!(
        ids.keys()
            .cloned()
            .collect::<std::collections::BTreeSet<_>>(),
        summary.acked_ids,
        "MQTT carried transactions that were never acked"
    );
    let gateway_id = status["gateway"]["id"].as_str().expect("gateway id");
    for p in &got {
        assert_eq!(
            p.topic,
            format!("seed/v1/gw/{gateway_id}/up/transaction"),
            "unexpected topic"
        );
    }
    let status = wait_status(&gw, DELIVERY_TIMEOUT, "an empty backlog", |s| {
        s["uplink"]["connected"] == true && s["uplink"]["backlog"] == 0
    })
    .await;
    assert!(num(&status, &["uplink", "published_total"]) >= summary.acked);
    println!(
        "broker absent: {} acked, {} delivered, {} duplicate(s)",
        summary.acked,
        ids.len(),
        duplicates(&ids)
    );
    assert_no_panic(&gw);
}

#[tokio::test]
async fn broker_restarted_mid_stream_loses_nothing() {
    let dir = data_dir();
    let mut broker = Mosquitto::start(MosquittoOptions::new()).await;
    let mut sub = Subscriber::persistent(
        broker.observer_port(),
        "e2e-restarts",
        "seed/v1/gw/+/up/transaction",
    )
    .await;
    let config = gateway_config(dir.path(), &broker);
    let gw = GatewayProcess::start(&config).await;
    wait_status(&gw, DELIVERY_TIMEOUT, "the uplink to connect", |s| {
        s["uplink"]["connected"] == true
    })
    .await;

    // 6 devices × 100 transactions, about 4 s of sending at this speed.
    let sim = Simulation::gwmp(config.gwmp, 6, 100)
        .speed(5.0)
        .deadline_s(50)
        .spawn();
    for threshold in [100, 250, 400] {
        let before = wait_status(
            &gw,
            DELIVERY_TIMEOUT,
            &format!("{threshold} messages published"),
            |s| num(s, &["uplink", "published_total"]) >= threshold,
        )
        .await;
        broker.restart().await;
        // A reconnect moves `since_ms` (the disconnect did too): waiting for
        // it makes sure the next restart hits a live connection again.
        let since = before["uplink"]["since_ms"].clone();
        wait_status(&gw, DELIVERY_TIMEOUT, "the uplink to reconnect", |s| {
            s["uplink"]["connected"] == true && s["uplink"]["since_ms"] != since
        })
        .await;
    }
    let summary = sim.finish(SIM_TIMEOUT).await;
    assert_eq!(summary.sent, 600, "simulator summary: {summary:?}");
    assert_eq!(summary.acked, summary.sent, "every message must be acked");

    let got = collect_transactions(&mut sub, &summary.acked_ids, DELIVERY_TIMEOUT).await;
    let ids = transaction_ids(&got);
    let status = wait_status(&gw, DELIVERY_TIMEOUT, "an empty backlog", |s| {
        s["uplink"]["backlog"] == 0
    })
    .await;
    let published = num(&status, &["uplink", "published_total"]);
    assert!(
        published >= summary.acked,
        "published_total {published} < acked {}",
        summary.acked
    );
    println!(
        "3 broker restarts: {} acked, {} distinct delivered, {} duplicate(s) seen by the subscriber, \
         published_total {published}",
        summary.acked,
        ids.len(),
        duplicates(&ids)
    );
    assert_no_panic(&gw);
}

#[tokio::test]
async fn gateway_killed_mid_stream_every_acked_message_still_arrives() {
    let dir = data_dir();
    let broker = Mosquitto::start(MosquittoOptions::new()).await;
    let mut sub = Subscriber::persistent(
        broker.observer_port(),
        "e2e-sigkill",
        "seed/v1/gw/+/up/transaction",
    )
    .await;
    let config = gateway_config(dir.path(), &broker);
    let gw = GatewayProcess::start(&config).await;

    let sim = Simulation::gwmp(config.gwmp, 4, 100)
        .speed(10.0)
        .deadline_s(50)
        .spawn();
    let before = wait_status(&gw, DELIVERY_TIMEOUT, "100 messages accepted", |s| {
        num(s, &["frames", "accepted"]) >= 100
    })
    .await;
    let gateway_id = before["gateway"]["id"].clone();
    // A power cut: no shutdown sequence, whatever was in flight is cut off.
    gw.kill();

    let gw = GatewayProcess::start(&config).await;
    let after = gw.api("/api/v1/status").await;
    assert_eq!(
        after["gateway"]["id"], gateway_id,
        "same data dir, same identity"
    );
    let summary = sim.finish(SIM_TIMEOUT).await;
    assert_eq!(summary.sent, 400, "simulator summary: {summary:?}");
    assert_eq!(
        summary.acked, summary.sent,
        "the restarted gateway must ack every retransmitted message"
    );

    // THE promise: every msg_id the devices were told is safe reaches MQTT.
    let got = collect_transactions(&mut sub, &summary.acked_ids, DELIVERY_TIMEOUT).await;
    let ids = transaction_ids(&got);
    wait_status(&gw, DELIVERY_TIMEOUT, "an empty backlog", |s| {
        s["uplink"]["backlog"] == 0
    })
    .await;
    println!(
        "SIGKILL at {} accepted: {} acked, {} distinct delivered, {} duplicate(s)",
        num(&before, &["frames", "accepted"]),
        summary.acked,
        ids.len(),
        duplicates(&ids)
    );
    assert_no_panic(&gw);
}

#[tokio::test]
async fn quota_full_refuses_without_acking_and_loses_nothing() {
    let dir = data_dir();
    let (mut broker, mut sub) =
        absent_broker_with_subscriber("e2e-quota", "seed/v1/gw/+/up/#").await;
    let mut config = gateway_config(dir.path(), &broker);
    config.extra = "[storage]\nquota_mb = 1\n".into();
    let gw = GatewayProcess::start(&config).await;

    // 1600 transactions of about 800 accounted bytes each do not fit in 1 MiB.
    let sim = Simulation::gwmp(config.gwmp, 8, 200)
        .speed(20.0)
        .deadline_s(50)
        .spawn();
    let full = wait_status(&gw, SIM_TIMEOUT, "the storage quota to be full", |s| {
        s["storage"]["quota_state"] == "full" && num(s, &["frames", "refused_full"]) > 0
    })
    .await;
    assert!(
        num(&full, &["storage", "bytes_used"]) <= num(&full, &["storage", "quota_bytes"]),
        "the store went over its quota: {full}"
    );
    assert!(
        num(&full, &["uplink", "backlog"]) < 1600,
        "not everything can be stored: {full}"
    );
    // Backpressure is visible to a watchdog and to a person.
    let (code, health) = http_get(config.http, "/healthz")
        .await
        .expect("/healthz answers");
    assert_eq!(
        code, 503,
        "/healthz must fail while storage is full: {health}"
    );
    let health: Value = serde_json::from_str(&health).expect("/healthz JSON");
    assert!(
        health["reasons"]
            .as_array()
            .is_some_and(|r| r.iter().any(|r| r == "storage is full")),
        "/healthz must say why: {health}"
    );
    // The status page notices quota changes on its own once a second.
    wait_status(&gw, DELIVERY_TIMEOUT, "a `Storage full` event", |s| {
        s["events"].to_string().contains("Storage full")
    })
    .await;

    // The uplink comes back: the backlog drains, space frees, and the
    // devices' retransmissions of refused messages are accepted and acked.
    // Had the gateway acked a message it refused, the device would have
    // dropped it: it would be in `acked_ids` but never reach MQTT, and the
    // check below fails (tried: acking refused frames loses ~240 messages).
    broker.restart().await;
    let summary = sim.finish(SIM_TIMEOUT).await;
    assert_eq!(summary.sent, 1600, "simulator summary: {summary:?}");
    assert_eq!(
        summary.acked, summary.sent,
        "refused messages must be accepted once space frees (devices retry)"
    );
    let got = collect_transactions_and(
        &mut sub,
        &summary.acked_ids,
        DELIVERY_TIMEOUT,
        "heartbeat with a `compacted` count",
        |got| {
            got.iter().any(|p| {
                p.topic.ends_with("/up/heartbeat")
                    && common::body(p)["compacted"].as_u64().unwrap_or(0) > 0
            })
        },
    )
    .await;
    let ids = transaction_ids(&got);
    let status = wait_status(&gw, DELIVERY_TIMEOUT, "the quota to recover", |s| {
        s["uplink"]["backlog"] == 0 && s["storage"]["quota_state"] != "full"
    })
    .await;
    println!(
        "quota: {} refused while full, {} acked, {} distinct delivered, {} duplicate(s), \
         quota_state now {}",
        num(&status, &["frames", "refused_full"]),
        summary.acked,
        ids.len(),
        duplicates(&ids),
        status["storage"]["quota_state"]
    );
    assert_no_panic(&gw);
}

#[tokio::test]
async fn sigterm_exits_cleanly_and_leaves_offline_state() {
    let dir = data_dir();
    let broker = Mosquitto::start(MosquittoOptions::new()).await;
    let mut states = Subscriber::connect(broker.observer_port(), "seed/v1/gw/+/state").await;
    let mut ups = Subscriber::connect(broker.observer_port(), "seed/v1/gw/+/up/transaction").await;
    let config = gateway_config(dir.path(), &broker);
    let gw = GatewayProcess::start(&config).await;
    let gateway_id = gw.api("/api/v1/status").await["gateway"]["id"]
        .as_str()
        .expect("gateway id")
        .to_string();
    let state_topic = format!("seed/v1/gw/{gateway_id}/state");
    let state_is = |p: &rumqttc::Publish, want: &str| {
        p.topic == state_topic && common::body(p)["state"] == want
    };
    states
        .collect_until(DELIVERY_TIMEOUT, "state online", |got| {
            got.iter().any(|p| state_is(p, "online"))
        })
        .await;

    let summary = Simulation::gwmp(config.gwmp, 2, 5)
        .spawn()
        .finish(SIM_TIMEOUT)
        .await;
    assert_eq!(summary.acked, 10, "simulator summary: {summary:?}");
    collect_transactions(&mut ups, &summary.acked_ids, DELIVERY_TIMEOUT).await;

    let (clean, log) = gw.stop_and_log().await;
    assert!(clean, "SIGTERM must end the gateway with exit 0");
    assert!(
        !log.contains("Internet uplink lost"),
        "a clean stop must not read like a failure; log:\n{log}"
    );
    let got = states
        .collect_until(DELIVERY_TIMEOUT, "state offline", |got| {
            got.iter().any(|p| state_is(p, "offline"))
        })
        .await;
    let offline = got.iter().rev().find(|p| state_is(p, "offline")).unwrap();
    assert_eq!(common::body(offline)["reason"], "shutdown", "clean stop");

    // Whoever connects later sees the retained `offline` (with the clean
    // reason, not the Last Will).
    let mut late = Subscriber::connect(broker.observer_port(), &state_topic).await;
    let retained = late.wait_for(1, DELIVERY_TIMEOUT).await;
    assert!(retained[0].retain, "state must be retained");
    let body = common::body(&retained[0]);
    assert_eq!(body["state"], "offline", "retained state: {body}");
    assert_eq!(body["reason"], "shutdown", "retained state: {body}");
    assert!(
        !log.contains("panicked"),
        "the gateway panicked; log:\n{log}"
    );
}

#[tokio::test]
async fn wrong_broker_password_is_explained_then_fixed() {
    let dir = data_dir();
    let broker = Mosquitto::start(MosquittoOptions::new().with_user("gw", "right-password")).await;
    let mut sub = Subscriber::connect(broker.observer_port(), "seed/v1/gw/+/up/transaction").await;
    let mut config = gateway_config(dir.path(), &broker);
    config.mqtt_extra = "username = \"gw\"\npassword = \"wrong-password\"\n".into();
    let mut gw = GatewayProcess::start(&config).await;

    let status = wait_status(
        &gw,
        DELIVERY_TIMEOUT,
        "the login error in the status",
        |s| {
            s["uplink"]["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("refused login for user 'gw'"))
        },
    )
    .await;
    assert_eq!(status["uplink"]["connected"], false, "{status}");
    assert!(
        !status.to_string().contains("wrong-password"),
        "the status page must not show the password: {status}"
    );

    // Still a working gateway: it keeps what the devices send.
    let summary = Simulation::gwmp(config.gwmp, 2, 10)
        .no_heartbeats()
        .spawn()
        .finish(SIM_TIMEOUT)
        .await;
    assert_eq!(summary.acked, 20, "simulator summary: {summary:?}");
    assert!(gw.is_running(), "a bad password must not stop the gateway");
    let status = gw.api("/api/v1/status").await;
    // 20 device messages, beside at most the gateway's own waiting heartbeat.
    let backlog = num(&status, &["uplink", "backlog"]);
    assert!(
        backlog == 20 || backlog == 21,
        "backlog {backlog}: {status}"
    );
    assert_eq!(status["uplink"]["connected"], false, "{status}");

    // The technician fixes the password and restarts the service.
    assert!(gw.stop().await, "SIGTERM must end the gateway with exit 0");
    config.mqtt_extra = "username = \"gw\"\npassword = \"right-password\"\n".into();
    let gw = GatewayProcess::start(&config).await;
    collect_transactions(&mut sub, &summary.acked_ids, DELIVERY_TIMEOUT).await;
    wait_status(&gw, DELIVERY_TIMEOUT, "an empty backlog", |s| {
        s["uplink"]["connected"] == true && s["uplink"]["backlog"] == 0
    })
    .await;
    assert_no_panic(&gw);
}
