//! What a restart must not forget, black-box: the real `seed-gateway`
//! binary SIGKILLed and started again on the same data directory, with a
//! packet-forwarder emulator on real UDP in front of it.
//!
//! - The airtime already spent in the last hour still counts: a gateway
//!   restarted near a sub-band's budget may only send what is left of it.
//! - Acks asked for before the forwarder's first keep-alive after the
//!   restart still reach the device, and what cannot go out in time is
//!   counted on the status page and in `/metrics`.
//! - `demo` started again on its data directory: its simulated devices
//!   carry on with new frames instead of repeating the first run's.

mod common;

use std::time::Duration;

use common::{num, wait_status};
use radio_bridge::airtime::time_on_air;
use radio_bridge::frame::{Frame, Message, MsgId};
use radio_bridge::gwmp::Eui;
use radio_bridge::identity::Identity;
use radio_bridge::link::RadioParams;
use radio_bridge::simulator::packet_forwarder::{
    HeardDownlink, PacketForwarder, PacketForwarderConfig,
};
use seed_e2e::demo::{DemoOptions, DemoProcess};
use seed_e2e::frames::transaction;
use seed_e2e::gateway::{http_get, GatewayProcess, TestConfig};
use serde_json::Value;
use tokio::sync::broadcast;

/// Band N (868.7–869.2 MHz): 0.1 %, 3.6 s of airtime per hour, so a
/// handful of acks fills it.
const BAND_N_HZ: u32 = 868_900_000;
const BAND_N_NAME: &str = "868.7–869.2 MHz";
const BAND_N_BUDGET_MS: u64 = 3_600;

/// Longest wait for something the gateway does at once.
const WAIT: Duration = Duration::from_secs(15);

fn band_n_radio() -> RadioParams {
    RadioParams {
        freq_hz: BAND_N_HZ,
        ..RadioParams::default()
    }
}

fn band_n_used_ms(status: &Value) -> u64 {
    status["duty_cycle"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|band| band["band"] == BAND_N_NAME)
        .map_or(0, |band| num(band, &["used_ms"]))
}

fn link_counter(status: &Value, key: &str) -> u64 {
    num(&status["links"][0], &[key])
}

/// `seed_link_tx_held_total{link="gwmp0",outcome=…}` from `/metrics`.
async fn held_metric(config: &TestConfig, outcome: &str) -> f64 {
    let (_, metrics) = http_get(config.http, "/metrics")
        .await
        .expect("/metrics answers");
    let sample = format!("seed_link_tx_held_total{{link=\"gwmp0\",outcome=\"{outcome}\"}} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&sample))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {sample} in /metrics:\n{metrics}"))
}

/// A forwarder that keeps quiet after its first PULL_DATA unless told,
/// so the test decides when the gateway learns where to send.
async fn quiet_forwarder(gateway: &TestConfig) -> PacketForwarder {
    let mut config = PacketForwarderConfig::new(gateway.gwmp, Eui([0x17; 8]));
    config.keepalive = Duration::from_secs(3600);
    PacketForwarder::start(config)
        .await
        .expect("packet forwarder emulator starts")
}

/// The ids of the next ack heard within `wait`, skipping anything else
/// (the gateway's own heartbeat); `None` if none came.
async fn next_ack(
    downlinks: &mut broadcast::Receiver<HeardDownlink>,
    heard: &mut Vec<HeardDownlink>,
    wait: Duration,
) -> Option<Vec<MsgId>> {
    tokio::time::timeout(wait, async {
        loop {
            let sent = downlinks.recv().await.expect("downlinks channel open");
            heard.push(sent.clone());
            let frame = Frame::decode(&sent.bytes).expect("the gateway sends signed frames");
            if let Message::Ack(ack) = frame.envelope.message {
                return ack.acked;
            }
        }
    })
    .await
    .ok()
}

/// Airtime of everything the forwarder was asked to send, in ms.
fn airtime_ms(heard: &[HeardDownlink]) -> u64 {
    heard
        .iter()
        .map(|d| time_on_air(d.bytes.len(), &band_n_radio()).as_millis() as u64)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_gateway_sends_only_what_is_left_of_the_hour() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = TestConfig::new(dir.path());
    config.region = "EU868".into();
    config.link_extra = format!("frequency_hz = {BAND_N_HZ}\n");
    let device = Identity::from_seed([17; 32]);

    // First run: acks until the band says no more.
    let gateway = GatewayProcess::start(&config).await;
    let forwarder = quiet_forwarder(&config).await;
    let mut downlinks = forwarder.subscribe_downlinks();
    let mut heard = Vec::new();
    let mut counter = 0;
    loop {
        counter += 1;
        assert!(counter < 20, "band N never filled: {heard:?}");
        forwarder
            .inject(&transaction(&device, counter), -80.0, 8.0)
            .await
            .unwrap();
        if next_ack(&mut downlinks, &mut heard, Duration::from_secs(5))
            .await
            .is_none()
        {
            break;
        }
    }
    let spent_before = airtime_ms(&heard);
    let status = gateway.api("/api/v1/status").await;
    let used_before = band_n_used_ms(&status);
    assert!(
        spent_before <= BAND_N_BUDGET_MS && used_before >= spent_before,
        "first run: {spent_before} ms heard, {used_before} ms counted"
    );
    gateway.kill();

    // Second run, same data dir: the hour is not new.
    let gateway = GatewayProcess::start(&config).await;
    let status = gateway.api("/api/v1/status").await;
    let used_after = band_n_used_ms(&status);
    assert!(
        used_after >= used_before,
        "after SIGKILL and restart band N counts {used_after} ms, before it counted {used_before} ms"
    );
    forwarder.pull_data().await.unwrap();
    let mut heard_after = Vec::new();
    for _ in 0..5 {
        counter += 1;
        forwarder
            .inject(&transaction(&device, counter), -80.0, 8.0)
            .await
            .unwrap();
        next_ack(&mut downlinks, &mut heard_after, Duration::from_secs(3)).await;
    }
    let spent_after = airtime_ms(&heard_after);
    assert!(
        spent_before + spent_after <= BAND_N_BUDGET_MS,
        "{spent_before} ms before the SIGKILL and {spent_after} ms after it: \
         more than band N's {BAND_N_BUDGET_MS} ms in one hour"
    );
    // Still counted, and the frames it could not send are waiting, not lost.
    let status = gateway.api("/api/v1/status").await;
    assert!(band_n_used_ms(&status) >= used_before + spent_after);
    assert!(gateway.stop().await, "clean exit on SIGTERM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_asked_for_before_the_forwarders_first_keepalive_reach_the_device() {
    let dir = tempfile::tempdir().unwrap();
    let config = TestConfig::new(dir.path());
    let device = Identity::from_seed([18; 32]);

    let gateway = GatewayProcess::start(&config).await;
    let forwarder = quiet_forwarder(&config).await;
    let mut downlinks = forwarder.subscribe_downlinks();
    let mut heard = Vec::new();
    forwarder
        .inject(&transaction(&device, 1), -80.0, 8.0)
        .await
        .unwrap();
    next_ack(&mut downlinks, &mut heard, WAIT)
        .await
        .expect("an ack before the restart");
    gateway.kill();

    // Restarted; the forwarder's next keep-alive is far off, and the
    // device speaks first.
    let gateway = GatewayProcess::start(&config).await;
    let frame = transaction(&device, 2);
    let msg_id = Frame::decode(&frame).unwrap().msg_id;
    forwarder.inject(&frame, -80.0, 8.0).await.unwrap();
    wait_status(&gateway, WAIT, "the ack held for the forwarder", |s| {
        link_counter(s, "tx_held") >= 1
    })
    .await;
    forwarder.pull_data().await.unwrap();
    let acked = next_ack(&mut downlinks, &mut heard, WAIT)
        .await
        .expect("the held ack went out once the forwarder's PULL_DATA came");
    assert_eq!(acked, vec![msg_id]);

    let status = gateway.api("/api/v1/status").await;
    assert_eq!(link_counter(&status, "tx_too_late"), 0);
    assert!(held_metric(&config, "held").await >= 1.0);
    gateway.kill();

    // Restarted again, and this time no forwarder asks within the hold:
    // the ack is not sent, and the page and /metrics say so.
    let gateway = GatewayProcess::start(&config).await;
    forwarder
        .inject(&transaction(&device, 3), -80.0, 8.0)
        .await
        .unwrap();
    wait_status(&gateway, WAIT, "the held ack counted as too late", |s| {
        link_counter(s, "tx_too_late") >= 1
    })
    .await;
    assert!(held_metric(&config, "too_late").await >= 1.0);
    assert!(gateway.stop().await, "clean exit on SIGTERM");
}

/// `frames.<key>` from the demo's status document.
async fn demo_frames(demo: &DemoProcess, key: &str) -> u64 {
    let (_, body) = http_get(demo.http, "/api/v1/status")
        .await
        .expect("the demo's status page answers");
    let status: Value = serde_json::from_str(&body).expect("status is JSON");
    num(&status, &["frames", key])
}

/// Waits until the demo has accepted `n` more frames than `from`.
async fn demo_accepts(demo: &DemoProcess, from: u64, n: u64) -> u64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let accepted = demo_frames(demo, "accepted").await;
        if accepted >= from + n {
            return accepted;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the demo accepted {} of {n} frames within 60 s; log:\n{}",
            accepted - from,
            demo.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_demo_killed_and_started_again_carries_on_instead_of_repeating_itself() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = DemoOptions::new(dir.path());
    options.speed = 10.0;
    let demo = DemoProcess::start(&options).await;
    demo_accepts(&demo, 0, 12).await;
    drop(demo); // SIGKILL, as a person closing the terminal would

    let demo = DemoProcess::start(&options).await;
    let accepted = demo_frames(&demo, "accepted").await;
    let repeats = demo_frames(&demo, "duplicates").await + demo_frames(&demo, "replayed").await;
    demo_accepts(&demo, accepted, 8).await;
    let repeats_after =
        demo_frames(&demo, "duplicates").await + demo_frames(&demo, "replayed").await;
    // Before the fix the first run's frames came again, one for one
    // (12 or more), before anything new.
    assert!(
        repeats_after - repeats < 4,
        "{} repeated frames while 8 new ones came in",
        repeats_after - repeats
    );
}
