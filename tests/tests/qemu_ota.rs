//! Signed A/B updates of the appliance image, end to end in QEMU with
//! Debian's RAUC 1.8 in the guest (docs/ota.md).
//!
//! One appliance, one story: it runs slot A; a bundle with a changed
//! payload byte and a bundle for another board are refused at install and
//! change nothing; an update (version 2.0.0) is
//! downloaded from a server on the host and installed into slot B; B boots
//! on trial and is marked good. Then a broken update (3.0.0, whose gateway
//! exits at once) goes into A: A boots on trial three times, the guard
//! reboots it each time because nothing marks it good, and the boot
//! selector goes back to B, the confirmed system: the rollback. What was
//! written to /data before the updates is still there at the end.
//!
//! Installing is [`install_bundle`]: today through the debug shell, later
//! through the gateway's own OTA command.
//!
//! The cost is boots under software emulation: five reboots after the
//! first boot. The time of each phase is printed as a benchmark figure,
//! never asserted.

use std::path::Path;
use std::time::Duration;

use seed_e2e::file_server::FileServer;
use seed_e2e::qemu::{
    ensure_image, image_dir, writable_system_disk, Guest, GuestOptions, ShellOutput, STATUS_PATH,
};
use seed_e2e::rauc::{
    ext4_replace, flip_byte, info, make_bundle, manifest_of, small_rootfs, TestKeys,
    QEMU_COMPATIBLE,
};
use tokio::time::Instant;

/// Longest one reboot may take to the boot selector's line on the console
/// (the shutdown, firmware, kernel and initramfs under emulation).
const REBOOT_LIMIT: Duration = Duration::from_secs(240);
/// Longest the status page may take after the boot selector chose a slot.
const UP_LIMIT: Duration = Duration::from_secs(240);
/// How long the trial of the broken update waits for a confirmation before
/// the guard reboots: short, so the three tries cost boots, not waiting.
const TEST_CONFIRM_DEADLINE_S: u32 = 5;
/// Tries a slot on trial has (docs/ota.md).
const TRIES: usize = 3;

/// What installing a bundle came to: the version its signed manifest
/// announced (`rauc info --keyring`), and `rauc install`'s exit status and
/// output.
struct Installed {
    version: String,
    install: ShellOutput,
}

/// Installs the bundle at `url` on the running guest: download to /data,
/// check its signature against the image's keyring (`rauc info`), `rauc
/// install`. (The gateway's OTA agent takes this over.)
async fn install_bundle(guest: &mut Guest, url: &str) -> Installed {
    guest
        .shell_ok(&format!(
            "mkdir -p /data/ota && rm -f /data/ota/update.raucb && wget -q -O /data/ota/update.raucb {url}"
        ))
        .await;
    let checked = guest
        .shell_ok(
            "rauc info --keyring /etc/rauc/keyring.pem --output-format=json /data/ota/update.raucb 2>/dev/null",
        )
        .await;
    let manifest: serde_json::Value = serde_json::from_str(checked.trim())
        .unwrap_or_else(|e| panic!("rauc info in the guest printed no JSON ({e}): {checked}"));
    let install = guest.shell("rauc install /data/ota/update.raucb").await;
    guest.shell_ok("rm -f /data/ota/update.raucb").await;
    Installed {
        version: manifest["version"].as_str().unwrap_or_default().to_string(),
        install,
    }
}

/// Installs and fails the test unless RAUC reports success for `version`.
async fn install_ok(guest: &mut Guest, url: &str, version: &str) {
    let installed = install_bundle(guest, url).await;
    assert_eq!(installed.version, version, "the guest read another bundle");
    assert!(
        installed.install.status == 0
            && installed
                .install
                .output
                .contains("Installing `/data/ota/update.raucb` succeeded"),
        "rauc install failed:\n{}",
        installed.install.output
    );
}

/// Installs and fails the test unless RAUC refuses with `reason`, leaving
/// the box as it was: A first and alone, B empty, nothing on trial.
async fn install_refused(guest: &mut Guest, url: &str, reason: &str) {
    let installed = install_bundle(guest, url).await;
    assert_ne!(
        installed.install.status, 0,
        "rauc install accepted {url}:\n{}",
        installed.install.output
    );
    assert!(
        installed.install.output.contains(reason),
        "rauc install refused {url} for another reason than {reason:?}:\n{}",
        installed.install.output
    );
    let state = boot_state(guest).await;
    for line in [
        "BOOT_ORDER=A B",
        "BOOT_A_LEFT=3",
        "BOOT_B_LEFT=0",
        "BOOT_TRIAL=",
    ] {
        assert!(
            state.lines().any(|l| l == line),
            "a refused install changed the boot state (no {line}):\n{state}"
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

/// Reboots the guest and waits for boot number `count` to choose a slot.
async fn reboot(guest: &mut Guest, count: usize) -> String {
    guest.shell_ok("reboot").await;
    guest.wait_boot(count, REBOOT_LIMIT).await
}

/// Waits until the guest that just chose its slot serves its status page
/// and its debug shell answers.
async fn wait_up(guest: &mut Guest) {
    guest.wait_shell(UP_LIMIT).await;
    guest.wait_for_200(STATUS_PATH, UP_LIMIT).await;
}

fn phase(label: &str, started: Instant) {
    println!(
        "benchmark: OTA {label}: {:.1} s wall",
        started.elapsed().as_secs_f64()
    );
}

/// A copy of the image's root filesystem whose gateway exits 1 at once.
fn broken_rootfs(dir: &Path) -> std::path::PathBuf {
    let rootfs = dir.join("broken-rootfs.ext4");
    let status = std::process::Command::new("cp")
        .arg("--sparse=always")
        .arg(image_dir().join("rootfs.ext4"))
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

#[tokio::test(flavor = "multi_thread")]
async fn an_update_is_confirmed_on_trial_and_a_broken_one_rolls_back_to_it() {
    let total = Instant::now();
    ensure_image();
    let dir = tempfile::tempdir().unwrap();
    let keys = TestKeys::of_test_image();

    // The two updates, signed with the key of the image's test keyring.
    let bundles = dir.path().join("bundles");
    std::fs::create_dir_all(&bundles).unwrap();
    let started = Instant::now();
    make_bundle(
        &keys,
        QEMU_COMPATIBLE,
        "2.0.0",
        None,
        &bundles.join("seed-2.0.0.raucb"),
    );
    let broken = broken_rootfs(dir.path());
    make_bundle(
        &keys,
        QEMU_COMPATIBLE,
        "3.0.0",
        Some(&broken),
        &bundles.join("seed-3.0.0.raucb"),
    );
    let v3 = info(&keys.ca_cert, &bundles.join("seed-3.0.0.raucb"));
    assert_eq!(
        manifest_of(&v3),
        (QEMU_COMPATIBLE.to_string(), "3.0.0".to_string())
    );
    // Two that must be refused at install: a payload byte changed (the
    // signature still verifies; device-mapper verity catches it while the
    // slot is written), and a bundle for another board.
    std::fs::copy(
        bundles.join("seed-2.0.0.raucb"),
        bundles.join("tampered.raucb"),
    )
    .unwrap();
    flip_byte(&bundles.join("tampered.raucb"), 5 * 1024 * 1024);
    make_bundle(
        &keys,
        "seed-gateway-rpi4",
        "2.0.0",
        Some(&small_rootfs(&dir.path().join("small.ext4"), "1.0.0")),
        &bundles.join("for-a-pi.raucb"),
    );
    phase("bundles made on the host", started);
    let server = FileServer::start(&bundles).await;

    // --- first boot: slot A, the image's version -----------------------------
    let started = Instant::now();
    let options = GuestOptions::new(dir.path().join("data.img"))
        .system_disk(writable_system_disk(&dir.path().join("disk.img")));
    let mut guest = Guest::boot(&options).await;
    guest.wait_status_page().await;
    assert_eq!(guest.wait_boot(1, REBOOT_LIMIT).await, "A");
    phase("first boot", started);
    let base_version = version_id(&mut guest).await;
    assert!(!base_version.is_empty(), "no VERSION_ID in /etc/os-release");
    let (booted, _) = rauc_status(&mut guest).await;
    assert_eq!(booted, "A", "rauc does not see slot A booted");
    guest
        .shell_ok("mkdir -p /data/ota-test && echo 'written before the updates' > /data/ota-test/kept && sync")
        .await;

    // --- refused bundles leave the box as it was -------------------------------
    let started = Instant::now();
    install_refused(
        &mut guest,
        &server.guest_url("tampered.raucb"),
        "Failed updating slot rootfs.1: Failed splicing data: Error reading from file: Input/output error",
    )
    .await;
    install_refused(
        &mut guest,
        &server.guest_url("for-a-pi.raucb"),
        "Compatible mismatch: Expected 'seed-gateway-qemu-x86_64' but bundle manifest has 'seed-gateway-rpi4'",
    )
    .await;
    phase("two refused installs", started);

    // --- update 2.0.0 into B, trial boot, confirmation ------------------------
    let started = Instant::now();
    install_ok(&mut guest, &server.guest_url("seed-2.0.0.raucb"), "2.0.0").await;
    let state = boot_state(&mut guest).await;
    for line in ["BOOT_ORDER=B A", "BOOT_B_LEFT=3", "BOOT_TRIAL=B"] {
        assert!(
            state.lines().any(|l| l == line),
            "after install into B, no {line}:\n{state}"
        );
    }
    phase("download and install 2.0.0", started);
    assert!(
        server
            .requests()
            .iter()
            .any(|r| r.path == "/seed-2.0.0.raucb" && r.status == 200),
        "the guest did not fetch the bundle from the host: {:?}",
        server.requests()
    );

    let started = Instant::now();
    assert_eq!(
        reboot(&mut guest, 2).await,
        "B",
        "the new slot did not boot"
    );
    wait_up(&mut guest).await;
    phase("reboot into 2.0.0 (trial)", started);
    let state = boot_state(&mut guest).await;
    assert!(
        state.lines().any(|l| l == "BOOT_B_LEFT=2") && state.lines().any(|l| l == "BOOT_TRIAL=B"),
        "the trial boot did not count down B's tries:\n{state}"
    );
    let guard = guest.shell_ok("cat /var/run/seed-ota-guard.pid").await;
    assert!(!guard.trim().is_empty(), "the trial guard does not run");
    guest.shell_ok("rauc status mark-good").await;
    let (booted, slots) = rauc_status(&mut guest).await;
    assert_eq!(booted, "B", "rauc does not see slot B booted");
    assert!(
        slots.contains(&("B".to_string(), "good".to_string())),
        "B not good after mark-good: {slots:?}"
    );
    let state = boot_state(&mut guest).await;
    assert!(
        state.lines().any(|l| l == "BOOT_B_LEFT=3") && state.lines().any(|l| l == "BOOT_TRIAL="),
        "mark-good did not end the trial:\n{state}"
    );
    assert_eq!(version_id(&mut guest).await, "2.0.0");
    assert_ne!(base_version, "2.0.0");

    // --- update 3.0.0 (broken) into A: three trial boots, then back to B ------
    guest
        .shell_ok(&format!(
            "echo OTA_CONFIRM_DEADLINE={TEST_CONFIRM_DEADLINE_S} > /data/seed-gateway/ota-guard.conf"
        ))
        .await;
    let started = Instant::now();
    install_ok(&mut guest, &server.guest_url("seed-3.0.0.raucb"), "3.0.0").await;
    let state = boot_state(&mut guest).await;
    for line in ["BOOT_ORDER=A B", "BOOT_A_LEFT=3", "BOOT_TRIAL=A"] {
        assert!(
            state.lines().any(|l| l == line),
            "after install into A, no {line}:\n{state}"
        );
    }
    phase("download and install 3.0.0", started);

    let started = Instant::now();
    guest.shell_ok("reboot").await;
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
    wait_up(&mut guest).await;
    phase(
        "three unconfirmed trial boots of 3.0.0 and the rollback",
        started,
    );

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
    // No trial left running on the confirmed slot.
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
    assert_eq!(guest.booted_slots(), ["A", "B", "A", "A", "A", "B"]);
    guest.poweroff().await;
    phase("whole test", total);
}
