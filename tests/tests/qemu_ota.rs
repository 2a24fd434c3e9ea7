//! Signed A/B updates of the appliance image, end to end in QEMU with
//! Debian's RAUC 1.8 in the guest, driven the way a backend drives them:
//! update commands on the host's Mosquitto, bundles on an HTTP server on
//! the host, and the gateway's own reports on `ota/progress` (docs/ota.md).
//!
//! One appliance, one story. It runs slot A. A bundle for another board is
//! refused by the gateway's checks, and a bundle with a changed payload
//! byte (its signature still verifies) fails in `rauc install`; neither
//! changes the boot state. Update 2.0.0 is downloaded, checked, installed
//! into slot B; the gateway stops cleanly and reboots; B boots on trial,
//! the new gateway checks its health, marks B good and reports `installed`.
//! Then a broken update (3.0.0, whose gateway exits at once) goes into A:
//! A boots on trial three times, the guard reboots it each time because
//! nothing marks it good, the boot selector goes back to B, and B's gateway
//! reports `rolled_back`. What was written to /data before the updates is
//! still there at the end.
//!
//! The story runs for both architectures of the test image
//! (`...::x86_64`, `...::aarch64`): the arm64 image's bundles carry its own
//! compatible, `seed-gateway-qemu-aarch64`, and the cross-built gateway.
//!
//! The cost is boots under software emulation: five reboots after the
//! first boot. The time of each phase is printed as a benchmark figure,
//! never asserted.

use std::path::Path;
use std::time::Duration;

use seed_e2e::bundle_server::{BundleServer, Served};
use seed_e2e::mosquitto::{Backend, Mosquitto, MosquittoOptions, Subscriber};
use seed_e2e::on_each_arch;
use seed_e2e::ota_reports::{reports_until, sha256_hex};
use seed_e2e::qemu::{
    data_disk_with, ensure_image, image_dir, writable_system_disk, Arch, Guest, GuestOptions,
    STATUS_PATH,
};
use seed_e2e::rauc::{
    ext4_replace, flip_byte, info, make_bundle, manifest_of, small_rootfs, TestKeys,
};
use serde_json::{json, Value};
use tokio::time::Instant;

/// Longest one reboot may take to the boot selector's line on the console
/// (the shutdown, firmware, kernel and initramfs under emulation).
const REBOOT_LIMIT: Duration = Duration::from_secs(240);
/// Longest the status page may take after the boot selector chose a slot.
const UP_LIMIT: Duration = Duration::from_secs(240);
/// Longest a download, check and install may take under emulation.
const INSTALL_LIMIT: Duration = Duration::from_secs(300);
/// How long the trial of the broken update waits for a confirmation before
/// the guard reboots: short, so the three tries cost boots, not waiting.
const TEST_CONFIRM_DEADLINE_S: u32 = 5;
/// Tries a slot on trial has (docs/ota.md).
const TRIES: usize = 3;

/// The technician's configuration on /data: the host's broker (as QEMU's
/// user network shows it), the appliance's OTA settings, and the
/// concentrator link of the default configuration (no radio is attached).
fn guest_config(broker_port: u16) -> String {
    format!(
        "[gateway]\ndata_dir = \"/data/seed-gateway\"\nlog_level = \"info\"\n\
         [http]\nbind = \"0.0.0.0:8080\"\n\
         [mqtt]\nurl = \"mqtt://10.0.2.2:{broker_port}\"\nreconnect_min_ms = 500\nreconnect_max_ms = 5000\n\
         [[link]]\nname = \"sx1302\"\ntype = \"gwmp\"\nbind = \"127.0.0.1:1700\"\n\
         [ota]\nrauc = \"/usr/bin/rauc\"\nreboot_command = [\"/sbin/reboot\"]\n"
    )
}

/// The backend's side: commands out, reports in.
struct Rollout {
    backend: Backend,
    progress: Subscriber,
    command_topic: String,
}

impl Rollout {
    /// Sends an update command for the bundle `name` served by `server`.
    async fn command(
        &mut self,
        server: &BundleServer,
        id: &str,
        name: &str,
        version: &str,
        bytes: &[u8],
    ) {
        let command = json!({
            "id": id,
            "url": server.url("10.0.2.2", name),
            "version": version,
            "sha256": sha256_hex(bytes),
        });
        let topic = self.command_topic.clone();
        self.backend
            .publish(&topic, command.to_string().as_bytes())
            .await;
    }

    /// Reports of update `id` until one in state `until` (or any final
    /// state); returns them in order of arrival.
    async fn reports_until(&mut self, id: &str, until: &[&str], limit: Duration) -> Vec<Value> {
        reports_until(&mut self.progress, Some(id), until, limit).await
    }
}

fn last_state(reports: &[Value]) -> (&str, &Value) {
    let last = reports.last().expect("at least one report");
    (last["state"].as_str().unwrap_or_default(), last)
}

/// Fails unless the boot state is A's alone, nothing on trial.
async fn assert_untouched(guest: &mut Guest, after: &str) {
    let state = boot_state(guest).await;
    for line in [
        "BOOT_ORDER=A B",
        "BOOT_A_LEFT=3",
        "BOOT_B_LEFT=0",
        "BOOT_TRIAL=",
    ] {
        assert!(
            state.lines().any(|l| l == line),
            "{after} changed the boot state (no {line}):\n{state}"
        );
    }
}

/// `rauc status --output-format=json` in the guest: (booted bootname,
/// boot_status of each bootname).
async fn rauc_status(guest: &mut Guest) -> (String, Vec<(String, String)>) {
    let out = guest
        .shell_ok("rauc status --output-format=json 2>/dev/null")
        .await;
    let json: serde_json::Value = serde_json::from_str(out.trim())
        .unwrap_or_else(|e| panic!("rauc status printed no JSON ({e}): {out}"));
    let booted = json["booted"]
        .as_str()
        .unwrap_or_else(|| panic!("no booted slot in rauc status: {json}"))
        .to_string();
    let mut slots: Vec<(String, String)> = json["slots"]
        .as_array()
        .expect("slots array")
        .iter()
        .flat_map(|slot| slot.as_object().expect("slot object").values())
        .map(|slot| {
            (
                slot["bootname"].as_str().unwrap_or_default().to_string(),
                slot["boot_status"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    slots.sort();
    (booted, slots)
}

/// The boot state (bootstate show): KEY=value lines.
async fn boot_state(guest: &mut Guest) -> String {
    guest.shell_ok("/usr/libexec/seed/bootstate show").await
}

async fn version_id(guest: &mut Guest) -> String {
    guest
        .shell_ok("sed -n 's/^VERSION_ID=//p' /etc/os-release")
        .await
        .trim()
        .to_string()
}

/// The guest gateway's `/api/v1/status`.
async fn status_of(guest: &Guest) -> Value {
    let (_, status) = guest.http_get(STATUS_PATH).await.expect("status answers");
    serde_json::from_str(&status).expect("status JSON")
}

/// Waits until the guest that just chose its slot serves its status page
/// and its debug shell answers.
async fn wait_up(guest: &mut Guest) {
    guest.wait_shell(UP_LIMIT).await;
    guest.wait_for_200(STATUS_PATH, UP_LIMIT).await;
}

fn phase(arch: Arch, label: &str, started: Instant) {
    println!(
        "benchmark: {}: OTA {label}: {:.1} s wall",
        arch.name(),
        started.elapsed().as_secs_f64()
    );
}

/// A copy of the image's root filesystem whose gateway exits 1 at once.
fn broken_rootfs(arch: Arch, dir: &Path) -> std::path::PathBuf {
    let rootfs = dir.join("broken-rootfs.ext4");
    let status = std::process::Command::new("cp")
        .arg("--sparse=always")
        .arg(image_dir(arch).join("rootfs.ext4"))
        .arg(&rootfs)
        .status()
        .expect("run cp");
    assert!(status.success(), "copy rootfs.ext4");
    ext4_replace(
        &rootfs,
        "/usr/bin/seed-gateway",
        b"#!/bin/sh\necho 'seed-gateway: broken on purpose by the OTA rollback test' >&2\nexit 1\n",
        0o755,
    );
    rootfs
}

async fn an_update_is_confirmed_on_trial_and_a_broken_one_rolls_back_to_it(arch: Arch) {
    let total = Instant::now();
    let image = ensure_image(arch);
    let compatible = arch.compatible();
    let dir = tempfile::tempdir().unwrap();
    let keys = TestKeys::of_test_image(arch);

    // The updates, signed with the key of the image's test keyring.
    let bundles = dir.path().join("bundles");
    std::fs::create_dir_all(&bundles).unwrap();
    let started = Instant::now();
    let v2 = make_bundle(
        &keys,
        compatible,
        "2.0.0",
        Some(&image.join("rootfs.ext4")),
        &bundles.join("seed-2.0.0.raucb"),
    );
    let broken = broken_rootfs(arch, dir.path());
    let v3 = make_bundle(
        &keys,
        compatible,
        "3.0.0",
        Some(&broken),
        &bundles.join("seed-3.0.0.raucb"),
    );
    assert_eq!(
        manifest_of(&info(&keys.ca_cert, &v3)),
        (compatible.to_string(), "3.0.0".to_string())
    );
    // A payload byte changed: the signature still verifies, device-mapper
    // verity catches it while the slot is written. And one for another board.
    let tampered = bundles.join("tampered.raucb");
    std::fs::copy(&v2, &tampered).unwrap();
    flip_byte(&tampered, 5 * 1024 * 1024);
    let for_a_pi = make_bundle(
        &keys,
        "seed-gateway-rpi4",
        "2.0.0",
        Some(&small_rootfs(&dir.path().join("small.ext4"), "1.0.0")),
        &bundles.join("for-a-pi.raucb"),
    );
    phase(arch, "bundles made on the host", started);
    let server = BundleServer::start("127.0.0.1:0".parse().unwrap()).await;
    let mut files = std::collections::HashMap::new();
    for (name, path) in [
        ("seed-2.0.0.raucb", &v2),
        ("seed-3.0.0.raucb", &v3),
        ("tampered.raucb", &tampered),
        ("for-a-pi.raucb", &for_a_pi),
    ] {
        let bytes = std::fs::read(path).unwrap();
        server.put(name, Served::file(bytes.clone()));
        files.insert(name, bytes);
    }

    // --- first boot: slot A, the image's version -----------------------------
    let broker = Mosquitto::start(MosquittoOptions::new()).await;
    let data = dir.path().join("data.img");
    data_disk_with(
        &data,
        &[("seed-gateway/config.toml", &guest_config(broker.port()))],
    );
    let started = Instant::now();
    let options = GuestOptions::new(arch, &data)
        .system_disk(writable_system_disk(arch, &dir.path().join("disk.img")));
    let mut guest = Guest::boot(&options).await;
    guest.wait_status_page().await;
    assert_eq!(guest.wait_boot(1, REBOOT_LIMIT).await, "A");
    phase(arch, "first boot", started);
    let base_version = version_id(&mut guest).await;
    assert!(!base_version.is_empty(), "no VERSION_ID in /etc/os-release");
    let (booted, _) = rauc_status(&mut guest).await;
    assert_eq!(booted, "A", "rauc does not see slot A booted");
    let status = status_of(&guest).await;
    let gateway_id = status["gateway"]["id"]
        .as_str()
        .expect("gateway id")
        .to_string();
    let mut backend = Rollout {
        backend: Backend::connect(&broker).await,
        progress: Subscriber::connect(
            broker.observer_port(),
            &format!("seed/v1/gw/{gateway_id}/ota/progress"),
        )
        .await,
        command_topic: format!("seed/v1/gw/{gateway_id}/ota/command"),
    };
    guest
        .shell_ok("mkdir -p /data/ota-test && echo 'written before the updates' > /data/ota-test/kept && sync")
        .await;
    // And a row in the store: a downlink for a device that is never heard
    // waits in its mailbox through both updates.
    let absent_device = "5e".repeat(32);
    backend
        .backend
        .publish(
            &format!("seed/v1/gw/{gateway_id}/down/{absent_device}"),
            br#"{"message_type":"transaction","payload":"aGVsbG8="}"#,
        )
        .await;
    let deadline = Instant::now() + UP_LIMIT;
    loop {
        // `mailboxes.pending`: downlinks the store holds for devices not
        // heard since.
        let pending = status_of(&guest).await["mailboxes"]["pending"].clone();
        if pending == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the downlink for the absent device is not in its mailbox (pending: {pending})"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // --- refused and failed updates leave the box as it was --------------------
    let started = Instant::now();
    backend
        .command(
            &server,
            "for-a-pi",
            "for-a-pi.raucb",
            "2.0.0",
            &files["for-a-pi.raucb"],
        )
        .await;
    let reports = backend.reports_until("for-a-pi", &[], INSTALL_LIMIT).await;
    let (state, report) = last_state(&reports);
    assert_eq!(state, "refused", "{reports:?}");
    assert!(
        report["reason"]
            .as_str()
            .is_some_and(|r| r.contains("seed-gateway-rpi4") && r.contains(compatible)),
        "{report}"
    );
    assert_untouched(&mut guest, "a bundle for another board").await;
    backend
        .command(
            &server,
            "tampered",
            "tampered.raucb",
            "2.0.0",
            &files["tampered.raucb"],
        )
        .await;
    let reports = backend.reports_until("tampered", &[], INSTALL_LIMIT).await;
    let (state, report) = last_state(&reports);
    assert_eq!(state, "failed", "{reports:?}");
    assert!(
        report["reason"].as_str().is_some_and(|r| r.starts_with("installing failed") && r.contains("Input/output error")),
        "{report}"
    );
    assert_untouched(&mut guest, "a tampered bundle").await;
    phase(arch, "a refused and a failed update", started);

    // --- update 2.0.0 into B, the gateway reboots, B confirms itself -----------
    let started = Instant::now();
    backend
        .command(
            &server,
            "to-2",
            "seed-2.0.0.raucb",
            "2.0.0",
            &files["seed-2.0.0.raucb"],
        )
        .await;
    let reports = backend
        .reports_until("to-2", &["rebooting"], INSTALL_LIMIT)
        .await;
    let states: Vec<&str> = reports.iter().filter_map(|r| r["state"].as_str()).collect();
    assert_eq!(last_state(&reports).0, "rebooting", "{reports:?}");
    assert_eq!(last_state(&reports).1["slot"], "B", "{reports:?}");
    for state in ["downloading", "verifying", "installing"] {
        assert!(
            states.contains(&state),
            "no {state:?} progress in {states:?}"
        );
    }
    assert!(
        server
            .requests()
            .iter()
            .any(|r| r.path == "/seed-2.0.0.raucb"),
        "the guest did not fetch the bundle from the host: {:?}",
        server.requests()
    );
    phase(arch, "download and install 2.0.0", started);

    let started = Instant::now();
    assert_eq!(
        guest.wait_boot(2, REBOOT_LIMIT).await,
        "B",
        "the new slot did not boot"
    );
    // `reboot` returns before the system is down; a gateway that exited
    // then was started again by its supervisor on the old slot (and took
    // the update for rolled back).
    let console = guest.console();
    let first_boot = &console[..console.rfind("seed-boot: slot B").expect("boot line")];
    assert!(
        !first_boot.contains("seed-gateway exited with status"),
        "the gateway exited before the reboot and was restarted on slot A:\n{}",
        guest.diagnostics()
    );
    let reports = backend
        .reports_until("to-2", &["installed"], UP_LIMIT + INSTALL_LIMIT)
        .await;
    let (state, report) = last_state(&reports);
    assert_eq!(state, "installed", "{reports:?}");
    assert_eq!(report["running_version"], "2.0.0", "{report}");
    assert_eq!(report["slot"], "B", "{report}");
    phase(arch, "reboot into 2.0.0, health check, mark-good", started);
    wait_up(&mut guest).await;
    assert_eq!(version_id(&mut guest).await, "2.0.0");
    assert_ne!(base_version, "2.0.0");
    // The backend sees the new system in the retained state, beside the
    // gateway software's own version.
    let mut state_topic = Subscriber::connect(
        broker.observer_port(),
        &format!("seed/v1/gw/{gateway_id}/state"),
    )
    .await;
    state_topic
        .collect_until(UP_LIMIT, "state online with system_version 2.0.0", |got| {
            got.iter().any(|p| {
                serde_json::from_slice::<Value>(&p.payload).is_ok_and(|state| {
                    state["state"] == "online" && state["system_version"] == "2.0.0"
                })
            })
        })
        .await;
    let (booted, slots) = rauc_status(&mut guest).await;
    assert_eq!(booted, "B", "rauc does not see slot B booted");
    assert!(
        slots.contains(&("B".to_string(), "good".to_string())),
        "B not good: {slots:?}"
    );
    let state = boot_state(&mut guest).await;
    assert!(
        state.lines().any(|l| l == "BOOT_B_LEFT=3") && state.lines().any(|l| l == "BOOT_TRIAL="),
        "the gateway's mark-good did not end the trial:\n{state}"
    );

    // --- update 3.0.0 (broken) into A: three trial boots, then back to B ------
    guest
        .shell_ok(&format!(
            "echo OTA_CONFIRM_DEADLINE={TEST_CONFIRM_DEADLINE_S} > /data/seed-gateway/ota-guard.conf"
        ))
        .await;
    let started = Instant::now();
    backend
        .command(
            &server,
            "to-3",
            "seed-3.0.0.raucb",
            "3.0.0",
            &files["seed-3.0.0.raucb"],
        )
        .await;
    let reports = backend
        .reports_until("to-3", &["rebooting"], INSTALL_LIMIT)
        .await;
    assert_eq!(last_state(&reports).0, "rebooting", "{reports:?}");
    assert_eq!(last_state(&reports).1["slot"], "A", "{reports:?}");
    phase(arch, "download and install 3.0.0", started);

    let started = Instant::now();
    for try_number in 1..=TRIES {
        let slot = guest.wait_boot(2 + try_number, REBOOT_LIMIT).await;
        assert_eq!(
            slot, "A",
            "trial boot {try_number} of the broken update chose {slot}"
        );
    }
    let slot = guest.wait_boot(3 + TRIES, REBOOT_LIMIT).await;
    assert_eq!(
        slot, "B",
        "after {TRIES} unconfirmed boots of A the box did not go back to B"
    );
    let reports = backend
        .reports_until("to-3", &["rolled_back"], UP_LIMIT + INSTALL_LIMIT)
        .await;
    let (state, report) = last_state(&reports);
    assert_eq!(state, "rolled_back", "{reports:?}");
    assert_eq!(report["version"], "3.0.0", "{report}");
    assert_eq!(report["running_version"], "2.0.0", "{report}");
    phase(
        arch,
        "three unconfirmed trial boots of 3.0.0, the rollback and its report",
        started,
    );
    wait_up(&mut guest).await;

    let console = guest.console();
    let guard_reboots = console
        .matches("seed-ota-guard: slot A (on trial) not marked good within 5 s")
        .count();
    assert_eq!(
        guard_reboots, TRIES,
        "the guard did not reboot each trial boot once"
    );
    assert!(
        console.contains("seed-gateway: broken on purpose by the OTA rollback test")
            || console.contains("seed-gateway exited with status 1"),
        "the broken gateway never ran"
    );

    // Back on the confirmed system, which says so truthfully.
    assert_eq!(version_id(&mut guest).await, "2.0.0");
    let (booted, slots) = rauc_status(&mut guest).await;
    assert_eq!(booted, "B");
    assert!(
        slots.contains(&("A".to_string(), "bad".to_string()))
            && slots.contains(&("B".to_string(), "good".to_string())),
        "rauc status after the rollback: {slots:?}"
    );
    let guard = guest
        .shell("test -e /var/run/seed-ota-guard.pid && echo running")
        .await;
    assert!(
        !guard.output.contains("running"),
        "the guard runs on a confirmed boot"
    );
    assert_eq!(
        guest.shell_ok("cat /data/ota-test/kept").await.trim(),
        "written before the updates"
    );
    // The gateway's identity and store on /data are the ones it had before
    // both updates (its reports from every system reached the backend
    // through the same outbox).
    let status = status_of(&guest).await;
    assert_eq!(
        status["gateway"]["id"],
        gateway_id.as_str(),
        "the gateway's key on /data survived"
    );
    assert_eq!(
        status["mailboxes"]["pending"], 1,
        "the downlink stored before the updates is gone: {status}"
    );
    assert_eq!(guest.booted_slots(), ["A", "B", "A", "A", "A", "B"]);
    guest.poweroff().await;
    phase(arch, "whole test", total);
}
on_each_arch!(an_update_is_confirmed_on_trial_and_a_broken_one_rolls_back_to_it);
