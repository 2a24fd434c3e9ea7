//! The gateway's OTA agent on the host, black box: the real binary, a real
//! Mosquitto carrying the backend's `ota/command`, a real HTTP server with
//! the bundles, and Debian's real `rauc` checking them against test keys.
//!
//! Everything before the installation is covered here: the refusals
//! (tampered download, a bundle signed by another CA, the wrong
//! compatible, a downgrade, a malformed command, a disk too small) and a
//! resumed download. Installing needs RAUC's service, device-mapper and
//! A/B slots: on this host `rauc install` fails and the agent must say so;
//! the installation, reboot, health check and rollback are exercised in
//! the QEMU image (tests/qemu_ota.rs).

use std::time::Duration;

use seed_e2e::bundle_server::{BundleServer, Served};
use seed_e2e::gateway::{GatewayProcess, TestConfig};
use seed_e2e::mosquitto::{Backend, Mosquitto, MosquittoOptions, Subscriber};
use seed_e2e::ota_reports::{is_final, reports_until, sha256_hex};
use seed_e2e::rauc::{make_bundle, ota_section, pretend_system, small_rootfs, TestKeys};
use serde_json::{json, Value};

/// Bound on every wait; a pass never depends on it being short.
const WAIT: Duration = Duration::from_secs(60);
const COMPATIBLE: &str = "seed-gateway-test";
const RUNNING_VERSION: &str = "1.0.0";

struct Rig {
    _dir: tempfile::TempDir,
    broker: Mosquitto,
    gateway: GatewayProcess,
    backend: Backend,
    progress: Subscriber,
    server: BundleServer,
    command_topic: String,
    state_topic: String,
    bundles: std::path::PathBuf,
}

impl Rig {
    /// A gateway with `[ota]` pointing at a pretend system running 1.0.0
    /// (`ota` false: no `[ota]` section at all).
    async fn start(ota: bool) -> Rig {
        let dir = tempfile::tempdir().expect("temp dir");
        let broker = Mosquitto::start(MosquittoOptions::new()).await;
        let bundles = dir.path().join("bundles");
        std::fs::create_dir_all(&bundles).expect("bundle dir");
        let trusted = TestKeys::generate(&bundles.join("trusted"));
        let (system_conf, release) = pretend_system(dir.path(), COMPATIBLE, RUNNING_VERSION);
        let mut config = TestConfig::new(dir.path());
        config.mqtt_url = Some(broker.url());
        if ota {
            config.extra = ota_section(&system_conf, &release, &trusted.ca_cert);
        }
        let gateway = GatewayProcess::start(&config).await;
        let gateway_id = gateway.api("/api/v1/status").await["gateway"]["id"]
            .as_str()
            .expect("gateway id in status")
            .to_string();
        let progress = Subscriber::connect(
            broker.observer_port(),
            &format!("seed/v1/gw/{gateway_id}/ota/progress"),
        )
        .await;
        let backend = Backend::connect(&broker).await;
        let server = BundleServer::start("127.0.0.1:0".parse().expect("address")).await;
        Rig {
            command_topic: format!("seed/v1/gw/{gateway_id}/ota/command"),
            state_topic: format!("seed/v1/gw/{gateway_id}/state"),
            _dir: dir,
            broker,
            gateway,
            backend,
            progress,
            server,
            bundles,
        }
    }

    /// The keys the gateway trusts (`trusted`) or a new unrelated pair.
    fn keys(&self, name: &str) -> TestKeys {
        let dir = self.bundles.join(name);
        if dir.join("test-ca.cert.pem").exists() {
            TestKeys {
                ca_cert: dir.join("test-ca.cert.pem"),
                signing_cert: dir.join("test-signing.cert.pem"),
                signing_key: dir.join("test-signing.key.pem"),
            }
        } else {
            TestKeys::generate(&dir)
        }
    }

    /// Builds a bundle (a small root filesystem saying `version`) as
    /// `name` and returns its bytes.
    fn bundle(&self, name: &str, keys: &TestKeys, compatible: &str, version: &str) -> Vec<u8> {
        let rootfs = small_rootfs(&self.bundles.join(format!("{name}.ext4")), version);
        let path = make_bundle(
            keys,
            compatible,
            version,
            Some(&rootfs),
            &self.bundles.join(name),
        );
        std::fs::read(path).expect("bundle built")
    }

    async fn command(&mut self, command: Value) {
        let topic = self.command_topic.clone();
        self.backend
            .publish(&topic, command.to_string().as_bytes())
            .await;
    }

    /// The gateway's retained `state` message (its first `online`).
    async fn online_state(&self) -> Value {
        let mut state = Subscriber::connect(self.broker.observer_port(), &self.state_topic).await;
        loop {
            let message = state.wait_for(1, WAIT).await.remove(0);
            let state: Value = serde_json::from_slice(&message.payload).expect("state is JSON");
            if state["state"] == "online" {
                return state;
            }
        }
    }

    /// Progress messages of update `id` (any, for `None`) until its
    /// outcome; returns them in order of arrival.
    async fn until_outcome(&mut self, id: Option<&str>) -> Vec<Value> {
        reports_until(&mut self.progress, id, &[], WAIT).await
    }
}

fn outcome(reports: &[Value]) -> &Value {
    reports.iter().find(|r| is_final(r)).expect("an outcome")
}

fn reason_of(report: &Value) -> &str {
    report["reason"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn bundles_that_must_not_be_installed_are_refused_with_the_reason() {
    let mut rig = Rig::start(true).await;
    // An updatable gateway tells the backend which system it runs, the
    // version updates are compared with, beside its own software version.
    let state = rig.online_state().await;
    assert_eq!(state["system_version"], RUNNING_VERSION, "{state}");
    assert!(state["version"].is_string(), "{state}");
    let trusted = rig.keys("trusted");
    let stranger = rig.keys("stranger");

    // A download that is not what the backend hashed (one payload byte
    // changed on the way).
    let good = rig.bundle("good.raucb", &trusted, COMPATIBLE, "2.0.0");
    let mut tampered = good.clone();
    tampered[1000] ^= 0x01;
    rig.server.put("tampered.raucb", Served::file(tampered));
    let url = rig.server.url("127.0.0.1", "tampered.raucb");
    rig.command(
        json!({"id": "tampered", "url": url, "version": "2.0.0", "sha256": sha256_hex(&good)}),
    )
    .await;
    let reports = rig.until_outcome(Some("tampered")).await;
    let report = outcome(&reports);
    assert_eq!(report["id"], "tampered");
    assert_eq!(report["state"], "refused", "{report}");
    assert!(reason_of(report).contains("SHA-256"), "{report}");
    assert_eq!(report["running_version"], RUNNING_VERSION);

    // Signed by a CA the gateway does not trust: RAUC's reason comes through.
    let foreign = rig.bundle("foreign.raucb", &stranger, COMPATIBLE, "2.0.0");
    rig.server
        .put("foreign.raucb", Served::file(foreign.clone()));
    let url = rig.server.url("127.0.0.1", "foreign.raucb");
    rig.command(
        json!({"id": "foreign", "url": url, "version": "2.0.0", "sha256": sha256_hex(&foreign)}),
    )
    .await;
    let report = outcome(&rig.until_outcome(Some("foreign")).await).clone();
    assert_eq!(report["state"], "refused", "{report}");
    assert!(
        reason_of(&report).contains("signature verification failed"),
        "{report}"
    );

    // A bundle with a changed signature byte (the signature is at the end).
    let mut bad_signature = good.clone();
    let at = bad_signature.len() - 300;
    bad_signature[at] ^= 0x01;
    rig.server
        .put("bad-signature.raucb", Served::file(bad_signature.clone()));
    let url = rig.server.url("127.0.0.1", "bad-signature.raucb");
    rig.command(json!({"id": "bad-signature", "url": url, "version": "2.0.0", "sha256": sha256_hex(&bad_signature)}))
        .await;
    let report = outcome(&rig.until_outcome(Some("bad-signature")).await).clone();
    assert_eq!(report["state"], "refused", "{report}");
    assert!(
        reason_of(&report).contains("RAUC does not accept the bundle"),
        "{report}"
    );

    // For another board.
    let other_board = rig.bundle(
        "other-board.raucb",
        &trusted,
        "seed-gateway-other-board",
        "2.0.0",
    );
    rig.server
        .put("other-board.raucb", Served::file(other_board.clone()));
    let url = rig.server.url("127.0.0.1", "other-board.raucb");
    rig.command(json!({"id": "other-board", "url": url, "version": "2.0.0", "sha256": sha256_hex(&other_board)}))
        .await;
    let report = outcome(&rig.until_outcome(Some("other-board")).await).clone();
    assert_eq!(report["state"], "refused", "{report}");
    assert!(
        reason_of(&report).contains("seed-gateway-other-board"),
        "{report}"
    );
    assert!(reason_of(&report).contains(COMPATIBLE), "{report}");

    // Older than what runs.
    let older = rig.bundle("older.raucb", &trusted, COMPATIBLE, "0.9.0");
    rig.server.put("older.raucb", Served::file(older.clone()));
    let url = rig.server.url("127.0.0.1", "older.raucb");
    rig.command(
        json!({"id": "older", "url": url, "version": "0.9.0", "sha256": sha256_hex(&older)}),
    )
    .await;
    let report = outcome(&rig.until_outcome(Some("older")).await).clone();
    assert_eq!(report["state"], "refused", "{report}");
    assert!(
        reason_of(&report).contains("not newer than the running version 1.0.0"),
        "{report}"
    );

    // The bundle says another version than the command.
    rig.command(
        json!({"id": "mislabelled", "url": url, "version": "3.0.0", "sha256": sha256_hex(&older)}),
    )
    .await;
    let report = outcome(&rig.until_outcome(Some("mislabelled")).await).clone();
    assert_eq!(report["state"], "refused", "{report}");
    assert!(reason_of(&report).contains("\"0.9.0\""), "{report}");

    // A command that is not one.
    rig.command(json!({"url": "http://127.0.0.1/x", "version": "2.0.0"}))
        .await;
    let report = outcome(&rig.until_outcome(None).await).clone();
    assert_eq!(report["state"], "refused", "{report}");
    assert!(reason_of(&report).contains("sha256"), "{report}");

    // More than the disk holds: refused before a byte is written.
    rig.server.put(
        "huge.raucb",
        Served {
            claimed_length: Some(1 << 50),
            ..Served::file(Vec::new())
        },
    );
    let url = rig.server.url("127.0.0.1", "huge.raucb");
    rig.command(json!({"id": "huge", "url": url, "version": "2.0.0", "sha256": "ab".repeat(32)}))
        .await;
    let report = outcome(&rig.until_outcome(Some("huge")).await).clone();
    assert_eq!(report["state"], "failed", "{report}");
    assert!(
        reason_of(&report).starts_with("not enough space"),
        "{report}"
    );

    assert!(
        rig.gateway.is_running(),
        "the gateway survived every refusal"
    );
}

#[tokio::test]
async fn a_broken_download_resumes_where_it_stopped_and_reaches_the_installation() {
    let mut rig = Rig::start(true).await;
    let trusted = rig.keys("trusted");
    let good = rig.bundle("good.raucb", &trusted, COMPATIBLE, "2.0.0");
    let half = good.len() / 2;
    rig.server.put(
        "good.raucb",
        Served {
            break_first_after: Some(half),
            ..Served::file(good.clone())
        },
    );
    let url = rig.server.url("127.0.0.1", "good.raucb");
    rig.command(
        json!({"id": "resume", "url": url, "version": "2.0.0", "sha256": sha256_hex(&good)}),
    )
    .await;
    let reports = rig.until_outcome(Some("resume")).await;
    let states: Vec<&str> = reports.iter().filter_map(|r| r["state"].as_str()).collect();
    for state in ["downloading", "verifying", "installing"] {
        assert!(
            states.contains(&state),
            "no {state:?} progress in {states:?}"
        );
    }
    // The second request asked only for what was missing.
    let requests = rig.server.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert_eq!(requests[0].range, None);
    let range = requests[1]
        .range
        .as_deref()
        .expect("the second request has a Range");
    let from: usize = range
        .strip_prefix("bytes=")
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected Range {range:?}"));
    assert!(
        from > 0 && from <= half,
        "resumed from {from}, the first transfer broke after {half}"
    );
    // Every check passed; this host has no RAUC service, so installing is
    // where it ends, and the agent says why.
    let report = outcome(&reports);
    assert_eq!(report["state"], "failed", "{report}");
    assert!(
        reason_of(report).starts_with("installing failed"),
        "{report}"
    );
    let progress_with_size = reports
        .iter()
        .find(|r| r["state"] == "downloading" && r["total"].as_u64() == Some(good.len() as u64));
    assert!(
        progress_with_size.is_some(),
        "download progress names the size: {reports:?}"
    );
}

#[tokio::test]
async fn a_gateway_without_ota_refuses_commands_and_says_why() {
    let mut rig = Rig::start(false).await;
    // Not an updatable appliance: the host's os-release is not the gateway's.
    let state = rig.online_state().await;
    assert!(state.get("system_version").is_none(), "{state}");
    rig.command(json!({"id": "no-ota", "url": "http://127.0.0.1:9/b.raucb", "version": "2.0.0", "sha256": "ab".repeat(32)}))
        .await;
    let report = outcome(&rig.until_outcome(Some("no-ota")).await).clone();
    assert_eq!(report["id"], "no-ota");
    assert_eq!(report["state"], "refused", "{report}");
    assert!(reason_of(&report).contains("not enabled"), "{report}");
}
