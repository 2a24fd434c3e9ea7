//! The MQTT uplink against a real Mosquitto: queueing without a broker,
//! broker restarts mid-stream, state and Last Will, TLS, refused logins,
//! downlinks with manual acks, re-sending after a restart.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use rumqttc::{AsyncClient, MqttOptions, Publish, QoS};
use seed_e2e::memory_outbox::{decode_test_msg_id, MemoryOutbox};
use seed_e2e::mosquitto::{unused_port, Mosquitto, MosquittoOptions, Subscriber, TlsListener};
use seed_e2e::pki::TestPki;
use seed_gateway::uplink::{
    ExtraTopic, IncomingKind, IncomingMessage, MqttConfig, PublishError, Uplink, UplinkStatus,
};
use serde_json::Value;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(30);

fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "seed_gateway=info".into()),
        )
        .with_test_writer()
        .try_init();
}

/// Test settings: fast reconnects, short grace.
fn config(url: &str) -> MqttConfig {
    let mut c = MqttConfig::from_url(url);
    c.reconnect_min_ms = 50;
    c.reconnect_max_ms = 400;
    c.keep_alive_secs = 5;
    c.shutdown_grace_ms = 3_000;
    c
}

/// An uplink as a host gateway starts it (no appliance system version).
fn start_uplink(
    config: &MqttConfig,
    gateway_id: &str,
    outbox: &MemoryOutbox,
    shutdown: &CancellationToken,
) -> (Uplink, UnboundedReceiver<IncomingMessage>) {
    Uplink::start(config, gateway_id, None, outbox.clone(), shutdown.clone())
        .expect("the uplink starts")
}

fn up_filter(gw: &str) -> String {
    format!("seed/v1/gw/{gw}/up/#")
}

async fn wait_status(
    status: &mut watch::Receiver<UplinkStatus>,
    what: &str,
    pred: impl Fn(&UplinkStatus) -> bool,
) -> UplinkStatus {
    let found = tokio::time::timeout(WAIT, status.wait_for(|s| pred(s)))
        .await
        .map(|r| r.map(|s| s.clone()));
    match found {
        Ok(Ok(s)) => s,
        Ok(Err(_)) => panic!("uplink stopped while waiting for {what}"),
        Err(_) => panic!(
            "uplink status did not show {what} within {WAIT:?}; last: {:?}",
            *status.borrow()
        ),
    }
}

fn json(p: &Publish) -> Value {
    serde_json::from_slice(&p.payload)
        .unwrap_or_else(|e| panic!("payload on {} is not JSON ({e})", p.topic))
}

fn msg_id_of(p: &Publish) -> [u8; 16] {
    let v = json(p);
    let hex_id = v["msg_id"].as_str().expect("msg_id is a string");
    hex::decode(hex_id)
        .expect("msg_id is hex")
        .try_into()
        .expect("msg_id has 16 bytes")
}

fn unique_ids(got: &[Publish]) -> BTreeSet<[u8; 16]> {
    got.iter().map(msg_id_of).collect()
}

/// Collects until `n` distinct msg_ids arrived (counting incrementally:
/// the predicate runs after every message).
async fn collect_distinct(watcher: &mut Subscriber, n: usize) -> Vec<Publish> {
    let mut seen = BTreeSet::new();
    watcher
        .collect_until(WAIT, &format!("{n} distinct messages"), |got| {
            if let Some(p) = got.last() {
                seen.insert(msg_id_of(p));
            }
            seen.len() >= n
        })
        .await
}

/// For each device, the first arrival of each message must come in the
/// order the device sent them (re-sends after a reconnect start again from
/// the oldest unacknowledged message, so they never overtake).
fn assert_per_device_order(got: &[Publish]) {
    let mut seen = BTreeSet::new();
    let mut last: HashMap<u8, u32> = HashMap::new();
    for p in got {
        let id = msg_id_of(p);
        if !seen.insert(id) {
            continue;
        }
        let (device, n) = decode_test_msg_id(&id).expect("test msg id");
        if let Some(prev) = last.insert(device, n) {
            assert!(
                n > prev,
                "device {device}: message {n} first arrived after message {prev}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_wait_for_an_absent_broker_then_all_arrive() {
    init_logs();
    let gw = "gwabsent";
    let mut broker = Mosquitto::start(MosquittoOptions::new()).await;
    // A persistent watcher session, so it gets what is published while it
    // reconnects after the broker comes back.
    let mut watcher =
        Subscriber::persistent(broker.observer_port(), "watch-absent", &up_filter(gw)).await;
    broker.stop().await;

    let outbox = MemoryOutbox::new();
    let ids: BTreeSet<_> = outbox.push_many(0, 200, 4).into_iter().collect();
    let shutdown = CancellationToken::new();
    let (uplink, _incoming) = start_uplink(&config(&broker.url()), gw, &outbox, &shutdown);
    let mut status = uplink.status();
    let st = wait_status(&mut status, "a connection error", |s| {
        s.last_error.is_some()
    })
    .await;
    assert!(!st.connected);
    let err = st.last_error.unwrap();
    assert!(err.contains("connection refused"), "{err}");
    assert_eq!(
        outbox.unpublished(),
        200,
        "nothing leaves the store without a broker"
    );
    assert_eq!(outbox.mark_calls(), 0);

    broker.restart().await;
    outbox.wait_drained(WAIT).await;
    let got = collect_distinct(&mut watcher, 200).await;
    assert_eq!(unique_ids(&got), ids);
    assert_per_device_order(&got);
    let st = status.borrow().clone();
    assert!(st.connected);
    assert_eq!(st.published_total, 200);

    // The payload follows the contract.
    let v = json(&got[0]);
    assert!(got[0].topic.ends_with("/up/heartbeat"), "{}", got[0].topic);
    assert_eq!(
        v["message"]["msg_type"], "heartbeat",
        "message embedded as JSON"
    );
    assert_eq!(v["rx"]["link"], "sim0");
    assert_eq!(v["rx"]["freq"], 869_525_000);
    assert!(v["rx"]["received_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(v["device_id"].as_str().unwrap().len(), 64);

    shutdown.cancel();
    uplink.finished().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restarts_mid_stream_lose_nothing() {
    init_logs();
    let gw = "gwrestart";
    const TOTAL: u32 = 1500;
    let mut broker = Mosquitto::start(MosquittoOptions::new()).await;
    let mut watcher =
        Subscriber::persistent(broker.observer_port(), "watch-restart", &up_filter(gw)).await;
    let outbox = MemoryOutbox::new();
    let shutdown = CancellationToken::new();
    let mut cfg = config(&broker.url());
    cfg.max_inflight = 32;
    let (uplink, _incoming) = start_uplink(&cfg, gw, &outbox, &shutdown);
    let mut status = uplink.status();
    wait_status(&mut status, "connected", |s| s.connected).await;

    // Ingest keeps adding while the broker restarts underneath.
    let feeder = {
        let outbox = outbox.clone();
        let waker = uplink.waker();
        tokio::spawn(async move {
            let mut pushed = 0;
            while pushed < TOTAL {
                if outbox.unpublished() < 100 {
                    outbox.push_many(pushed, 50, 5);
                    pushed += 50;
                    waker.wake();
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    for threshold in [300, 700, 1100] {
        outbox.wait_marked(threshold, WAIT).await;
        broker.restart().await;
    }
    feeder.await.unwrap();
    outbox.wait_drained(WAIT).await;

    let got = collect_distinct(&mut watcher, TOTAL as usize).await;
    let expected: BTreeSet<[u8; 16]> = (0..TOTAL)
        .map(|n| seed_e2e::memory_outbox::test_entry((n % 5) as u8, n).msg_id)
        .collect();
    assert_eq!(unique_ids(&got), expected, "every message arrived");
    assert_per_device_order(&got);
    let st = wait_status(&mut status, "connected after the last restart", |s| {
        s.connected
    })
    .await;
    assert!(st.connects_total >= 4, "{st:?}");
    assert!(st.published_total >= u64::from(TOTAL));
    eprintln!(
        "restarts: published_total={} republished_total={} received={} unique={}",
        st.published_total,
        st.republished_total,
        got.len(),
        unique_ids(&got).len()
    );

    shutdown.cancel();
    uplink.finished().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_is_retained_online_then_offline_on_shutdown() {
    init_logs();
    let gw = "gwstate";
    let state_topic = format!("seed/v1/gw/{gw}/state");
    let broker = Mosquitto::start(MosquittoOptions::new()).await;
    let outbox = MemoryOutbox::new();
    outbox.push_many(0, 3, 1);
    let shutdown = CancellationToken::new();
    let (uplink, _incoming) = start_uplink(&config(&broker.url()), gw, &outbox, &shutdown);
    let mut status = uplink.status();
    wait_status(&mut status, "connected", |s| s.connected).await;
    let mut live = Subscriber::connect(broker.observer_port(), &state_topic).await;
    live.collect_until(WAIT, "an online state", |got| {
        got.iter().any(|p| json(p)["state"] == "online")
    })
    .await;

    // A newcomer gets the retained state.
    let mut newcomer = Subscriber::connect(broker.observer_port(), &state_topic).await;
    let retained = newcomer.wait_for(1, WAIT).await.remove(0);
    assert!(retained.retain, "state is retained");
    let v = json(&retained);
    assert_eq!(v["state"], "online");
    assert_eq!(v["version"], seed_gateway::uplink::VERSION);
    assert!(v["uptime_s"].is_u64(), "{v}");
    assert!(v["queue_depth"].is_u64(), "{v}");

    // A one-off publish (the gateway heartbeat) is acknowledged.
    let mut heartbeats = Subscriber::connect(
        broker.observer_port(),
        &format!("seed/v1/gw/{gw}/heartbeat"),
    )
    .await;
    uplink
        .publish(ExtraTopic::Heartbeat, b"signed-heartbeat".to_vec())
        .await
        .expect("heartbeat acknowledged");
    let hb = heartbeats.wait_for(1, WAIT).await.remove(0);
    assert_eq!(&hb.payload[..], b"signed-heartbeat");

    shutdown.cancel();
    uplink.finished().await;
    let offline = live
        .collect_until(WAIT, "the offline state", |got| {
            got.iter().any(|p| json(p)["state"] == "offline")
        })
        .await;
    let v = json(offline.last().unwrap());
    assert_eq!(v["reason"], "shutdown");
    let mut after = Subscriber::connect(broker.observer_port(), &state_topic).await;
    let retained = after.wait_for(1, WAIT).await.remove(0);
    assert!(retained.retain);
    assert_eq!(json(&retained)["state"], "offline", "offline is retained");
    assert_eq!(
        outbox.unpublished(),
        0,
        "everything was published before stopping"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_will_marks_the_gateway_offline_when_it_dies() {
    init_logs();
    let gw = "gwwill";
    let state_topic = format!("seed/v1/gw/{gw}/state");
    let broker = Mosquitto::start(MosquittoOptions::new()).await;
    // The gateway runs on a runtime of its own, which we then tear down:
    // its sockets close without an MQTT DISCONNECT, like a crashed process.
    let gateway_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (uplink, _incoming) = {
        let _guard = gateway_rt.enter();
        start_uplink(
            &config(&broker.url()),
            gw,
            &MemoryOutbox::new(),
            &CancellationToken::new(),
        )
    };
    let mut status = uplink.status();
    wait_status(&mut status, "connected", |s| s.connected).await;
    let mut live = Subscriber::connect(broker.observer_port(), &state_topic).await;
    live.collect_until(WAIT, "the online state", |got| {
        got.iter().any(|p| json(p)["state"] == "online")
    })
    .await;

    gateway_rt.shutdown_background();
    let got = live
        .collect_until(WAIT, "the Last Will", |got| {
            got.iter().any(|p| json(p)["state"] == "offline")
        })
        .await;
    let will = json(got.last().unwrap());
    assert_eq!(will["reason"], "connection_lost");
    let mut after = Subscriber::connect(broker.observer_port(), &state_topic).await;
    let retained = after.wait_for(1, WAIT).await.remove(0);
    assert_eq!(json(&retained)["state"], "offline", "the will is retained");
}

fn tls_config(broker: &Mosquitto, ca: &TestPki, client: Option<&TestPki>) -> MqttConfig {
    let mut cfg = config(&broker.tls_url());
    cfg.ca_file = Some(ca.ca_cert.clone());
    if let Some(client) = client {
        cfg.cert_file = Some(client.client_cert.clone());
        cfg.key_file = Some(client.client_key.clone());
    }
    cfg
}

async fn tls_broker(pki: &TestPki) -> Mosquitto {
    Mosquitto::start(
        MosquittoOptions::new().with_tls(TlsListener::requiring_client_certificates(pki)),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_client_certificate_delivers() {
    init_logs();
    let gw = "gwtls";
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::generate(dir.path(), "good");
    let broker = tls_broker(&pki).await;
    let mut watcher = Subscriber::connect(broker.observer_port(), &up_filter(gw)).await;
    let outbox = MemoryOutbox::new();
    let ids: BTreeSet<_> = outbox.push_many(0, 20, 2).into_iter().collect();
    let shutdown = CancellationToken::new();
    let (uplink, _incoming) = start_uplink(
        &tls_config(&broker, &pki, Some(&pki)),
        gw,
        &outbox,
        &shutdown,
    );
    outbox.wait_drained(WAIT).await;
    let got = collect_distinct(&mut watcher, 20).await;
    assert_eq!(unique_ids(&got), ids);
    assert!(uplink
        .status()
        .borrow()
        .broker
        .starts_with("mqtts://localhost:"));
    shutdown.cancel();
    uplink.finished().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_problems_are_reported_not_fatal() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::generate(dir.path(), "real");
    let stranger = TestPki::generate(dir.path(), "stranger");
    let broker = tls_broker(&pki).await;

    // The broker's certificate is not signed by the CA we trust.
    let outbox = MemoryOutbox::new();
    outbox.push_many(0, 5, 1);
    let shutdown = CancellationToken::new();
    let (uplink, _incoming) = start_uplink(
        &tls_config(&broker, &stranger, Some(&pki)),
        "gwtlsbad",
        &outbox,
        &shutdown,
    );
    let mut status = uplink.status();
    let st = wait_status(&mut status, "a TLS error", |s| s.last_error.is_some()).await;
    let err = st.last_error.unwrap();
    assert!(
        err.starts_with("TLS handshake with MQTT broker mqtts://localhost:"),
        "{err}"
    );
    assert!(err.contains("certificate"), "{err}");
    assert!(!st.connected);
    // It keeps trying (a second attempt reports again) and keeps the data.
    let first_ms = st.last_error_ms;
    wait_status(&mut status, "a second attempt", |s| {
        s.last_error_ms != first_ms
    })
    .await;
    assert_eq!(outbox.unpublished(), 5);
    shutdown.cancel();
    uplink.finished().await;

    // Trusted broker, but we present no client certificate.
    let shutdown = CancellationToken::new();
    let (uplink, _incoming) = start_uplink(
        &tls_config(&broker, &pki, None),
        "gwtlsnocert",
        &outbox,
        &shutdown,
    );
    let mut status = uplink.status();
    let st = wait_status(&mut status, "a refused connection", |s| {
        s.last_error.is_some()
    })
    .await;
    assert!(!st.connected, "{st:?}");
    assert_eq!(outbox.unpublished(), 5);
    let err = st.last_error.unwrap();
    assert!(
        err.contains("requires a client certificate") && err.contains("mqtt.cert_file"),
        "{err}"
    );

    // A missing CA file is an error in the status, not a crash.
    shutdown.cancel();
    uplink.finished().await;
    let mut cfg = tls_config(&broker, &pki, None);
    cfg.ca_file = Some(dir.path().join("missing-ca.pem"));
    let shutdown = CancellationToken::new();
    let (uplink, _incoming) = start_uplink(&cfg, "gwtlsmissing", &outbox, &shutdown);
    let mut status = uplink.status();
    let st = wait_status(&mut status, "a file error", |s| s.last_error.is_some()).await;
    let err = st.last_error.unwrap();
    assert!(
        err.contains("mqtt.ca_file") && err.contains("missing-ca.pem"),
        "{err}"
    );
    shutdown.cancel();
    uplink.finished().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_explained_then_recovers() {
    init_logs();
    let gw = "gwlogin";
    let mut broker = Mosquitto::start(MosquittoOptions::new().with_user("gw", "right")).await;
    let mut watcher =
        Subscriber::persistent(broker.observer_port(), "watch-login", &up_filter(gw)).await;
    let outbox = MemoryOutbox::new();
    let ids: BTreeSet<_> = outbox.push_many(0, 10, 1).into_iter().collect();
    let mut cfg = config(&broker.url());
    cfg.username = Some("gw".into());
    cfg.password = Some("typo".into());
    let shutdown = CancellationToken::new();
    let (uplink, _incoming) = start_uplink(&cfg, gw, &outbox, &shutdown);
    let mut status = uplink.status();
    let st = wait_status(&mut status, "a login error", |s| s.last_error.is_some()).await;
    let err = st.last_error.clone().unwrap();
    assert!(
        err.contains("refused login for user 'gw'"),
        "the status names the problem: {err}"
    );
    assert!(!st.connected);
    let first_ms = st.last_error_ms;
    wait_status(&mut status, "a retry", |s| s.last_error_ms != first_ms).await;
    assert_eq!(outbox.unpublished(), 10);

    // The broker admin changes the password to what the gateway has.
    broker.set_password("gw", "typo");
    broker.restart().await;
    outbox.wait_drained(WAIT).await;
    let got = collect_distinct(&mut watcher, 10).await;
    assert_eq!(unique_ids(&got), ids);
    assert!(status.borrow().connected);
    shutdown.cancel();
    uplink.finished().await;
}

async fn backend_client(port: u16) -> (AsyncClient, tokio::task::JoinHandle<()>) {
    let (client, mut eventloop) =
        AsyncClient::new(MqttOptions::new("test-backend", "127.0.0.1", port), 16);
    let task = tokio::spawn(async move {
        loop {
            if eventloop.poll().await.is_err() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });
    (client, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downlinks_come_back_until_the_consumer_acks() {
    init_logs();
    let gw = "gwdown";
    let broker = Mosquitto::start(MosquittoOptions::new()).await;
    let (backend, backend_task) = backend_client(broker.observer_port()).await;
    let device = [0x5a_u8; 32];
    let down_topic = format!("seed/v1/gw/{gw}/down/{}", hex::encode(device));
    let start = || {
        let shutdown = CancellationToken::new();
        let (uplink, incoming) =
            start_uplink(&config(&broker.url()), gw, &MemoryOutbox::new(), &shutdown);
        (uplink, incoming, shutdown)
    };

    let (uplink, mut incoming, shutdown) = start();
    wait_status(&mut uplink.status(), "subscribed", |s| {
        s.downlinks_subscribed
    })
    .await;
    backend
        .publish(&down_topic, QoS::AtLeastOnce, false, b"pay 5".to_vec())
        .await
        .unwrap();
    backend
        .publish(
            format!("seed/v1/gw/{gw}/down/not-a-device"),
            QoS::AtLeastOnce,
            false,
            b"x".to_vec(),
        )
        .await
        .unwrap();
    backend
        .publish(
            format!("seed/v1/gw/{gw}/ota/command"),
            QoS::AtLeastOnce,
            false,
            b"{\"update\":\"1.2\"}".to_vec(),
        )
        .await
        .unwrap();
    let first = tokio::time::timeout(WAIT, incoming.recv())
        .await
        .expect("downlink within the wait")
        .unwrap();
    assert_eq!(first.kind, IncomingKind::Downlink { device_id: device });
    assert_eq!(first.payload, b"pay 5");
    let ota = tokio::time::timeout(WAIT, incoming.recv())
        .await
        .expect("OTA command within the wait")
        .unwrap();
    assert_eq!(ota.kind, IncomingKind::OtaCommand);
    ota.ack.ack().await.unwrap();
    let mut status = uplink.status();
    wait_status(&mut status, "the malformed topic counted", |s| {
        s.incoming_malformed_total == 1
    })
    .await;
    // Not acked (the consumer "crashed" before storing): the broker keeps it.
    drop(first);
    shutdown.cancel();
    uplink.finished().await;

    let (uplink, mut incoming, shutdown) = start();
    let again = tokio::time::timeout(WAIT, incoming.recv())
        .await
        .expect("the unacked downlink is delivered again")
        .unwrap();
    assert_eq!(again.kind, IncomingKind::Downlink { device_id: device });
    assert_eq!(again.payload, b"pay 5");
    again.ack.ack().await.unwrap();
    // The PUBACK is queued ahead of the DISCONNECT that shutdown sends, so
    // the broker hears it first.
    shutdown.cancel();
    uplink.finished().await;

    let (uplink, mut incoming, shutdown) = start();
    wait_status(&mut uplink.status(), "subscribed", |s| {
        s.downlinks_subscribed
    })
    .await;
    // Acknowledged: not delivered a third time. (A pass only shows it did
    // not come back within this window.)
    if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(500), incoming.recv()).await {
        panic!("acked downlink delivered again: {:?}", m.topic);
    }
    shutdown.cancel();
    uplink.finished().await;
    backend_task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmarked_messages_are_sent_again_after_a_restart() {
    init_logs();
    let gw = "gwresend";
    let broker = Mosquitto::start(MosquittoOptions::new()).await;
    let mut watcher = Subscriber::connect(broker.observer_port(), &up_filter(gw)).await;
    let outbox = MemoryOutbox::new();
    let ids: BTreeSet<_> = outbox.push_many(0, 50, 3).into_iter().collect();
    // The broker acknowledges everything, but the store cannot record it.
    outbox.set_fail_marks(true);
    let shutdown = CancellationToken::new();
    let (uplink, _incoming) = start_uplink(&config(&broker.url()), gw, &outbox, &shutdown);
    let mut status = uplink.status();
    wait_status(&mut status, "50 acknowledged", |s| s.published_total == 50).await;
    let got = watcher.wait_for(50, WAIT).await;
    assert_eq!(unique_ids(&got), ids);
    assert_eq!(outbox.unpublished(), 50, "unmarked rows stay");
    // Marks are batched after the PUBACKs: wait (bounded) for the attempt.
    let deadline = tokio::time::Instant::now() + WAIT;
    while outbox.mark_calls() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "marking was never attempted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // With nothing marked, the window is still free again: no re-send of
    // acknowledged rows on the same connection.
    assert_eq!(status.borrow().republished_total, 0);
    shutdown.cancel();
    uplink.finished().await;

    // After a restart, every unmarked row goes out again.
    outbox.set_fail_marks(false);
    let shutdown = CancellationToken::new();
    let (uplink, _incoming) = start_uplink(&config(&broker.url()), gw, &outbox, &shutdown);
    outbox.wait_drained(WAIT).await;
    let again = watcher.wait_for(50, WAIT).await;
    assert_eq!(unique_ids(&again), ids);
    shutdown.cancel();
    uplink.finished().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_off_publish_without_broker_fails_cleanly() {
    init_logs();
    let shutdown = CancellationToken::new();
    let (uplink, _incoming) = start_uplink(
        &config(&format!("mqtt://127.0.0.1:{}", unused_port())),
        "gwnobroker",
        &MemoryOutbox::new(),
        &shutdown,
    );
    assert_eq!(
        uplink.publish(ExtraTopic::Receipt, b"r".to_vec()).await,
        Err(PublishError::NotConnected)
    );
    shutdown.cancel();
    uplink.finished().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_rows_are_published_with_their_frame_and_counted() {
    init_logs();
    let gw = "gwdamaged";
    let broker = Mosquitto::start(MosquittoOptions::new()).await;
    let mut watcher = Subscriber::connect(broker.observer_port(), &up_filter(gw)).await;
    let outbox = MemoryOutbox::new();
    let mut entry = seed_e2e::memory_outbox::test_entry(1, 1);
    entry.message_json = "{broken".into();
    entry.message_type = "Bad/Type".into();
    outbox.push(entry);
    let shutdown = CancellationToken::new();
    let (uplink, _incoming) = start_uplink(&config(&broker.url()), gw, &outbox, &shutdown);
    outbox.wait_drained(WAIT).await;
    let got = watcher.wait_for(1, WAIT).await.remove(0);
    assert_eq!(got.topic, format!("seed/v1/gw/{gw}/up/unknown"));
    let v = json(&got);
    assert_eq!(v["message"], Value::Null);
    assert!(v["frame"].as_str().is_some_and(|f| !f.is_empty()));
    assert_eq!(uplink.status().borrow().damaged_total, 1);
    shutdown.cancel();
    uplink.finished().await;
}
