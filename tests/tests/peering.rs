//! Trusted neighbour gateways, black-box (docs/peering.md): two real
//! `seed-gateway` processes with their own data directories and simulated
//! devices, and a real Mosquitto that only one of them can reach.
//!
//! The promise under test: every message the cut-off gateway acked to its
//! devices reaches MQTT on its own topics, published by its neighbour,
//! whatever happens to either process in between; and a gateway whose key
//! is not listed gets nowhere.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use common::{body, collect_transactions, tail, wait_api, wait_status};
use seed_e2e::gateway::{keygen, peer_entry, GatewayProcess, TestConfig, FAST_RADIO};
use seed_e2e::mosquitto::{unused_port, Mosquitto, MosquittoOptions, Subscriber};
use seed_e2e::simulate::Simulation;
use serde_json::Value;

const SIM_TIMEOUT: Duration = Duration::from_secs(90);
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(60);

fn data_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("seed-e2e-peer-")
        .tempdir()
        .expect("temp dir")
}

/// The pair of the tests: `a` (the market kiosk) has a broker URL nobody
/// answers on, `b` (the school) reaches the real broker and listens for
/// neighbours on `b_port`.
struct Pair {
    a: TestConfig,
    b: TestConfig,
    a_id: String,
    b_id: String,
    b_port: u16,
}

fn pair(dir: &Path, broker: &Mosquitto) -> Pair {
    let mut a = TestConfig::new(&dir.join("a"));
    let mut b = TestConfig::new(&dir.join("b"));
    let (a_id, b_id) = (keygen(&a), keygen(&b));
    let b_port = unused_port();
    a.link_extra = FAST_RADIO.into();
    a.mqtt_url = Some(format!("mqtt://127.0.0.1:{}", unused_port()));
    a.extra = format!(
        "[peering]\ncustody_after_s = 1\n{}",
        peer_entry("school", b_port, &b_id)
    );
    b.link_extra = FAST_RADIO.into();
    b.mqtt_url = Some(broker.url());
    // `a` does not listen; `b`'s own link towards it just stays down.
    b.extra = format!(
        "[peering]\nbind = \"127.0.0.1:{b_port}\"\n{}",
        peer_entry("market", unused_port(), &a_id)
    );
    Pair {
        a,
        b,
        a_id,
        b_id,
        b_port,
    }
}

/// Polls `/api/v1/peers` until `done` holds.
async fn wait_peers(
    gw: &GatewayProcess,
    timeout: Duration,
    what: &str,
    done: impl FnMut(&Value) -> bool,
) -> Value {
    wait_api(gw, "/api/v1/peers", timeout, what, done).await
}

/// A number of the first configured neighbour in `/api/v1/peers`.
fn first_peer(peers: &Value, key: &str) -> u64 {
    peers["peers"][0][key].as_u64().unwrap_or(0)
}

fn assert_no_panic(gw: &GatewayProcess) {
    assert!(
        !gw.log().contains("panicked"),
        "the gateway panicked; log:\n{}",
        tail(&gw.log(), 60)
    );
}

/// Every acked id arrived on `a`'s topic, relayed by `b`.
async fn expect_relayed(sub: &mut Subscriber, acked: &BTreeSet<String>, relay: &str) {
    let got = collect_transactions(sub, acked, DELIVERY_TIMEOUT).await;
    for publish in got.iter().filter(|p| p.topic.ends_with("/up/transaction")) {
        assert_eq!(
            body(publish)["relayed_by"],
            relay,
            "a message of the cut-off gateway reached MQTT without its relay named: {}",
            String::from_utf8_lossy(&publish.payload)
        );
    }
}

#[tokio::test]
async fn every_message_acked_by_the_cut_off_gateway_arrives_through_its_neighbour() {
    let dir = data_dir();
    let broker = Mosquitto::start(MosquittoOptions::new()).await;
    let p = pair(dir.path(), &broker);
    let mut sub = Subscriber::persistent(
        broker.observer_port(),
        "e2e-peer-relay",
        &format!("seed/v1/gw/{}/up/transaction", p.a_id),
    )
    .await;
    let b = GatewayProcess::start(&p.b).await;
    let a = GatewayProcess::start(&p.a).await;

    let summary = Simulation::gwmp(p.a.gwmp, 4, 50)
        .deadline_s(60)
        .spawn()
        .finish(SIM_TIMEOUT)
        .await;
    assert_eq!(summary.acked, summary.sent, "{summary:?}");
    expect_relayed(&mut sub, &summary.acked_ids, &p.b_id).await;

    wait_status(&a, DELIVERY_TIMEOUT, "a's outbox emptied by custody", |s| {
        s["uplink"]["backlog"] == 0
    })
    .await;
    let a_peers = wait_peers(&a, DELIVERY_TIMEOUT, "200 rows handed over", |v| {
        first_peer(v, "handed_over_total") >= 200
    })
    .await;
    assert_eq!(a_peers["peers"][0]["outbound"]["connected"], true);
    assert_eq!(a_peers["peers"][0]["peer_uplink_up"], true);
    let b_peers = wait_peers(&b, DELIVERY_TIMEOUT, "200 rows relayed", |v| {
        first_peer(v, "relayed_for_peer_total") >= 200
    })
    .await;
    assert_eq!(b_peers["peers"][0]["inbound"]["connected"], true);
    wait_peers(&b, DELIVERY_TIMEOUT, "nothing left in custody", |v| {
        v["peers"][0]["held_for_peer"] == 0
    })
    .await;
    let metrics = seed_e2e::gateway::http_get(p.b.http, "/metrics")
        .await
        .expect("metrics")
        .1;
    assert!(
        metrics.contains(&format!(
            "seed_peer_inbound_connected{{peer=\"market\",gateway_id=\"{}\"}} 1",
            p.a_id
        )),
        "{metrics}"
    );
    assert_no_panic(&a);
    assert_no_panic(&b);
}

#[tokio::test]
async fn sigkill_of_either_gateway_mid_transfer_loses_nothing_acked() {
    let dir = data_dir();
    let broker = Mosquitto::start(MosquittoOptions::new()).await;
    let p = pair(dir.path(), &broker);
    let mut sub = Subscriber::persistent(
        broker.observer_port(),
        "e2e-peer-sigkill",
        &format!("seed/v1/gw/{}/up/transaction", p.a_id),
    )
    .await;
    let b = GatewayProcess::start(&p.b).await;
    let a = GatewayProcess::start(&p.a).await;
    let sim = Simulation::gwmp(p.a.gwmp, 4, 100).deadline_s(80).spawn();

    // The origin dies with rows offered and not yet acknowledged.
    wait_peers(&a, DELIVERY_TIMEOUT, "custody under way", |v| {
        first_peer(v, "handed_over_total") >= 40
    })
    .await;
    a.kill();
    let a = GatewayProcess::start(&p.a).await;

    // The custodian dies with rows taken and not yet published.
    wait_peers(&b, DELIVERY_TIMEOUT, "relaying under way", |v| {
        first_peer(v, "relayed_for_peer_total") >= 20
    })
    .await;
    b.kill();
    let b = GatewayProcess::start(&p.b).await;

    let summary = sim.finish(SIM_TIMEOUT).await;
    assert_eq!(summary.sent, 400, "{summary:?}");
    assert_eq!(summary.acked, summary.sent, "{summary:?}");
    expect_relayed(&mut sub, &summary.acked_ids, &p.b_id).await;
    wait_status(&a, DELIVERY_TIMEOUT, "a's outbox emptied by custody", |s| {
        s["uplink"]["backlog"] == 0
    })
    .await;
    wait_peers(&b, DELIVERY_TIMEOUT, "nothing left in custody", |v| {
        v["peers"][0]["held_for_peer"] == 0
    })
    .await;
    assert_no_panic(&a);
    assert_no_panic(&b);
}

#[tokio::test]
async fn an_unlisted_gateway_is_refused_and_a_wrong_key_is_named() {
    let dir = data_dir();
    let broker = Mosquitto::start(MosquittoOptions::new()).await;
    let p = pair(dir.path(), &broker);
    let b = GatewayProcess::start(&p.b).await;
    // A third kiosk `b` never heard of: it lists `b` correctly, and once
    // more under the market kiosk's id, as if the address were wrong.
    let mut c = TestConfig::new(&dir.path().join("c"));
    let c_id = keygen(&c);
    c.extra = format!(
        "[peering]\ncustody_after_s = 1\n{}{}",
        peer_entry("school", p.b_port, &p.b_id),
        peer_entry("not-the-market", p.b_port, &p.a_id)
    );
    let c = GatewayProcess::start(&c).await;

    let refused = wait_peers(&b, DELIVERY_TIMEOUT, "an unlisted key refused", |v| {
        v["refused_total"]["unlisted_key"].as_u64().unwrap_or(0) >= 1
    })
    .await;
    assert_eq!(refused["peers"][0]["inbound"]["connected"], false);
    let c_peers = wait_peers(&c, DELIVERY_TIMEOUT, "the wrong key named", |v| {
        v["peers"][1]["outbound"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("presented gateway id"))
    })
    .await;
    let wrong = c_peers["peers"][1]["outbound"]["last_error"]
        .as_str()
        .unwrap_or("");
    assert!(
        wrong.contains(&p.b_id) && wrong.contains(&p.a_id),
        "{wrong}"
    );
    assert_eq!(c_peers["peers"][0]["outbound"]["connected"], false);
    let expected = format!("unlisted gateway id {c_id}");
    assert!(
        b.log().contains(&expected),
        "b's log does not name the refused id ({expected}):\n{}",
        tail(&b.log(), 40)
    );
    assert_no_panic(&b);
    assert_no_panic(&c);
}

#[tokio::test]
async fn with_both_uplinks_down_nothing_moves_and_the_origin_resumes_by_itself() {
    let dir = data_dir();
    let mut broker_a = Mosquitto::start(MosquittoOptions::new()).await;
    let mut broker_b = Mosquitto::start(MosquittoOptions::new()).await;
    let mut p = pair(dir.path(), &broker_b);
    p.a.mqtt_url = Some(broker_a.url());
    let topic = format!("seed/v1/gw/{}/up/transaction", p.a_id);
    let mut direct = Subscriber::persistent(broker_a.observer_port(), "e2e-peer-own", &topic).await;
    let mut relayed =
        Subscriber::persistent(broker_b.observer_port(), "e2e-peer-relayed", &topic).await;
    broker_a.stop().await;
    broker_b.stop().await;
    let b = GatewayProcess::start(&p.b).await;
    let a = GatewayProcess::start(&p.a).await;

    // Neither kiosk has internet: the messages stay where they were acked.
    let first = Simulation::gwmp(p.a.gwmp, 2, 20)
        .seed(1)
        .spawn()
        .finish(SIM_TIMEOUT)
        .await;
    assert_eq!(first.acked, first.sent, "{first:?}");
    let peers = wait_peers(&a, DELIVERY_TIMEOUT, "b saying its uplink is down", |v| {
        v["peers"][0]["outbound"]["connected"] == true && v["peers"][0]["peer_uplink_up"] == false
    })
    .await;
    assert_eq!(first_peer(&peers, "handed_over_total"), 0, "{peers}");
    let status = a.api("/api/v1/status").await;
    assert!(
        status["uplink"]["backlog"].as_u64().unwrap_or(0) >= first.acked,
        "the acked messages must still be in a's outbox: {status}"
    );

    // The school gets its internet back: the market's messages go through it.
    broker_b.restart().await;
    expect_relayed(&mut relayed, &first.acked_ids, &p.b_id).await;

    // The market's own internet returns: it publishes by itself again.
    broker_a.restart().await;
    wait_peers(&a, DELIVERY_TIMEOUT, "custody to end", |v| {
        v["peers"][0]["custody_active"] == false
    })
    .await;
    wait_status(&a, DELIVERY_TIMEOUT, "a's own uplink", |s| {
        s["uplink"]["connected"] == true
    })
    .await;
    let second = Simulation::gwmp(p.a.gwmp, 2, 20)
        .seed(2)
        .spawn()
        .finish(SIM_TIMEOUT)
        .await;
    assert_eq!(second.acked, second.sent, "{second:?}");
    let got = collect_transactions(&mut direct, &second.acked_ids, DELIVERY_TIMEOUT).await;
    for publish in got
        .iter()
        .filter(|p| second.acked_ids.contains(&common::msg_id(p)))
    {
        assert!(
            body(publish).get("relayed_by").is_none(),
            "a published its own message through b after its uplink returned: {}",
            String::from_utf8_lossy(&publish.payload)
        );
    }
    assert_no_panic(&a);
    assert_no_panic(&b);
}

/// The school kiosk's status page, in a real headless Chromium, shows the
/// market kiosk as a connected neighbour whose messages it relays.
#[tokio::test]
async fn the_status_page_shows_the_neighbour() {
    if let Some(why) = seed_e2e::browser::unavailable() {
        eprintln!("SKIPPED: needs Chromium: {why}");
        return;
    }
    let dir = data_dir();
    let broker = Mosquitto::start(MosquittoOptions::new()).await;
    let p = pair(dir.path(), &broker);
    let b = GatewayProcess::start(&p.b).await;
    let a = GatewayProcess::start(&p.a).await;
    Simulation::gwmp(p.a.gwmp, 1, 5)
        .spawn()
        .finish(SIM_TIMEOUT)
        .await;
    wait_peers(&b, DELIVERY_TIMEOUT, "a message relayed", |v| {
        first_peer(v, "relayed_for_peer_total") >= 5
    })
    .await;

    let browser = seed_e2e::browser::Browser::start().await;
    browser.goto(&format!("http://{}/", p.b.http)).await;
    let line = browser
        .wait_until(
            "the market kiosk as a connected neighbour",
            "var e = document.querySelector('#peer-market'); \
             return !document.getElementById('peers').hidden && e && \
             e.textContent.indexOf('market: connected') === 0 && \
             e.textContent.indexOf('relayed for it') > 0 ? e.textContent : null;",
        )
        .await;
    println!("neighbour line: {line}");
    browser.quit().await;
    assert_no_panic(&a);
    assert_no_panic(&b);
}
