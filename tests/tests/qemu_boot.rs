//! Boot tests of the appliance image: the QEMU test image of `image/`, built
//! from Debian packages with buildroot/'s overlay, init scripts, default
//! configuration and partition layout, booted under software emulation.
//!
//! What they show is what a field technician relies on after flashing a card
//! and walking away: it boots to a status page on its own, the root
//! filesystem cannot be written, the data partition is formatted on first
//! boot and survives power cuts, and a dead gateway process comes back.
//!
//! Each test boots its own guest (tens of seconds under emulation). Boot
//! times are printed as benchmark figures, never asserted.

use std::time::Duration;

use seed_e2e::qemu::{BootTime, Guest, GuestOptions};

/// How long the supervisor may take to bring a killed gateway back (it
/// waits 1 s after the first crash; the rest is emulated start-up time).
const RESTART_LIMIT: Duration = Duration::from_secs(60);

fn report(label: &str, boot: &BootTime) {
    println!(
        "benchmark: {label}: power-on to status page: {:.1} s wall, {:.1} s guest uptime{}",
        boot.wall.as_secs_f64(),
        boot.guest_uptime.as_secs_f64(),
        boot.first_healthy_uptime
            .map(|t| format!(
                " (watchdog feeder saw it healthy at {:.1} s)",
                t.as_secs_f64()
            ))
            .unwrap_or_default()
    );
}

/// The pid the supervisor last started the gateway with.
async fn gateway_pid(guest: &mut Guest) -> String {
    let pid = guest
        .shell_ok("cat /run/seed-gateway/daemon.pid")
        .await
        .trim()
        .to_string();
    assert!(
        pid.parse::<u32>().is_ok(),
        "no gateway pid from the supervisor: {pid:?}"
    );
    pid
}

#[tokio::test(flavor = "multi_thread")]
async fn first_boot_formats_data_serves_status_page_and_restarts_a_killed_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let options = GuestOptions::new(dir.path().join("data.img"));
    let mut guest = Guest::boot(&options).await;
    let boot = guest.wait_healthy().await;
    report("first boot (blank data disk)", &boot);

    // The root filesystem is read-only at run time; /data is the writable
    // ext4 partition, formatted on this first boot.
    let root = guest.shell("touch /seed-write-test").await;
    assert_ne!(root.status, 0, "writing to / succeeded: {}", root.output);
    assert!(
        root.output.contains("Read-only file system"),
        "unexpected failure writing to /: {}",
        root.output
    );
    let mounts = guest.shell_ok("cat /proc/mounts").await;
    assert!(
        mounts
            .lines()
            .any(|l| l.starts_with("/dev/vda1 / ext4 ro,")),
        "root is not ext4 mounted ro from rootfs.0:\n{mounts}"
    );
    assert!(
        mounts
            .lines()
            .any(|l| l.starts_with("/dev/vdb /data ext4 rw,")),
        "/data is not the ext4 data disk mounted rw:\n{mounts}"
    );
    guest
        .shell_ok("echo kept > /data/write-test && sync && cat /data/write-test")
        .await;
    let data_log = guest.shell_ok("cat /data/log/seed-data.log").await;
    assert!(
        data_log.contains("is blank: formatting it ext4"),
        "the data disk was not formatted on first boot:\n{data_log}"
    );
    assert!(
        guest
            .shell_ok("ls /data/log/messages && ls -d /data/seed-gateway")
            .await
            .contains("/data/seed-gateway"),
        "system log or gateway data dir missing on /data"
    );

    // The RNode port is a tty in the guest, as a USB RNode would be.
    guest
        .shell_ok("test -c /dev/virtio-ports/rnode0 && stty -F /dev/virtio-ports/rnode0 raw -echo")
        .await;

    // Killed, the gateway comes back by itself under a new pid.
    let before = gateway_pid(&mut guest).await;
    guest.shell_ok(&format!("kill -9 {before}")).await;
    let mut after = before.clone();
    let deadline = tokio::time::Instant::now() + RESTART_LIMIT;
    while after == before {
        assert!(
            tokio::time::Instant::now() < deadline,
            "gateway not restarted within {RESTART_LIMIT:?}\n{}",
            guest.diagnostics()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
        after = guest
            .shell("cat /run/seed-gateway/daemon.pid 2>/dev/null")
            .await
            .output
            .trim()
            .to_string();
    }
    let back = guest.wait_healthy_within(RESTART_LIMIT).await;
    println!(
        "benchmark: gateway killed (-9): status page back {:.1} s after the new process started",
        back.as_secs_f64()
    );
    let log = guest.shell_ok("cat /data/log/messages").await;
    assert!(
        log.contains("exited with status 137"),
        "the supervisor did not log the kill:\n{log}"
    );

    guest.poweroff().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn power_cut_keeps_the_data_partition_and_the_box_boots_again() {
    let dir = tempfile::tempdir().unwrap();
    let options = GuestOptions::new(dir.path().join("data.img"));

    let mut guest = Guest::boot(&options).await;
    guest.wait_healthy().await;
    // Something durable (synced), then writes in flight when the power goes.
    guest.shell_ok("seq 1 2000 > /data/durable && sync").await;
    guest
        .shell_ok("(while :; do date >> /data/in-flight; done) >/dev/null 2>&1 &")
        .await;
    guest.power_cut().await;

    let mut guest = Guest::boot(&options).await;
    let boot = guest.wait_healthy().await;
    report("boot after a power cut", &boot);
    let mounts = guest.shell_ok("cat /proc/mounts").await;
    assert!(
        mounts
            .lines()
            .any(|l| l.starts_with("/dev/vdb /data ext4 rw,")),
        "/data not mounted rw after the power cut:\n{mounts}\n{}",
        guest.diagnostics()
    );
    let durable = guest
        .shell_ok("wc -l < /data/durable && tail -n 1 /data/durable")
        .await;
    assert_eq!(
        durable.split_whitespace().collect::<Vec<_>>(),
        ["2000", "2000"],
        "synced data changed across the power cut"
    );
    // The second boot did not reformat: the log holds one format, from the
    // first boot, and two mounts.
    let data_log = guest.shell_ok("cat /data/log/seed-data.log").await;
    assert_eq!(data_log.matches("formatting").count(), 1, "{data_log}");
    assert_eq!(
        data_log.matches("mounted /dev/vdb").count(),
        2,
        "{data_log}"
    );

    guest.poweroff().await;
}
