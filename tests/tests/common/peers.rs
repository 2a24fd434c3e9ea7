//! Two real gateways paired as neighbours (docs/peering.md), for the
//! peering test binaries: keys made before the first start, configs that
//! list each other, and waits on `/api/v1/peers`.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

pub use seed_e2e::gateway::{keygen, peer_entry};
use seed_e2e::gateway::{GatewayProcess, TestConfig, FAST_RADIO};
use seed_e2e::mosquitto::{unused_port, Mosquitto, Subscriber};
use serde_json::Value;

use super::{body, collect_transactions, tail, wait_api};

pub const SIM_TIMEOUT: Duration = Duration::from_secs(90);
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(60);

pub fn data_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("seed-e2e-peer-")
        .tempdir()
        .expect("temp dir")
}

/// The pair of the tests: `a` (the market kiosk) has a broker URL nobody
/// answers on, `b` (the school) reaches the real broker and listens for
/// neighbours on `b_port`.
pub struct Pair {
    pub a: TestConfig,
    pub b: TestConfig,
    pub a_id: String,
    pub b_id: String,
    pub b_port: u16,
}

pub fn pair(dir: &Path, broker: &Mosquitto) -> Pair {
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
pub async fn wait_peers(
    gw: &GatewayProcess,
    timeout: Duration,
    what: &str,
    done: impl FnMut(&Value) -> bool,
) -> Value {
    wait_api(gw, "/api/v1/peers", timeout, what, done).await
}

/// A number of the first configured neighbour in `/api/v1/peers`.
pub fn first_peer(peers: &Value, key: &str) -> u64 {
    peers["peers"][0][key].as_u64().unwrap_or(0)
}

pub fn assert_no_panic(gw: &GatewayProcess) {
    assert!(
        !gw.log().contains("panicked"),
        "the gateway panicked; log:\n{}",
        tail(&gw.log(), 60)
    );
}

/// Every acked id arrived on `a`'s topic, relayed by `b`.
pub async fn expect_relayed(sub: &mut Subscriber, acked: &BTreeSet<String>, relay: &str) {
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
