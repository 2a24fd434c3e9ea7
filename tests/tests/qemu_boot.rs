//! Boot tests of the appliance image: the QEMU test image of `image/`, built
//! from Debian packages with buildroot/'s overlay, init scripts, default
//! configuration and partition layout, booted under software emulation.
//!
//! What they show is what a field technician relies on after flashing a card
//! and walking away: it boots to a status page on its own, the root
//! filesystem cannot be written, the data partition is formatted on first
//! boot and survives power cuts, a dead gateway process comes back, the
//! kiosk's Wi-Fi leads a phone to the status page (simulated radios:
//! QEMU has no Wi-Fi, the kernel's mac80211_hwsim stands in), and what
//! devices send through an RNode reaches the MQTT broker on the host,
//! nothing acknowledged lost when the power goes mid-stream, and an admin
//! password left on the card's boot partition from a PC is taken once and
//! wiped.
//!
//! Each test runs on both architectures of the test image
//! (`NAME::x86_64`, `NAME::aarch64`: the same image built for
//! `qemu-system-aarch64 -M virt` with a cross-built gateway) and boots its
//! own guest (tens of seconds under emulation). Boot times are printed as
//! benchmark figures, never asserted; one ignored test is a benchmark only
//! (the gateway's memory with 100,000 queued messages, docs/benchmarks.md).

use std::collections::HashSet;
use std::process::Stdio;
use std::time::Duration;

use seed_e2e::mosquitto::{Mosquitto, MosquittoOptions, Subscriber};
use seed_e2e::on_each_arch;
use seed_e2e::qemu::{
    data_disk_with, fat_boot_partition, fat_files, Arch, BootTime, Guest, GuestOptions, RnodeHost,
    STATUS_PATH,
};
use seed_e2e::simulate::Simulation;
use web_ui::auth::password::{verify_password, Verdict};

/// How long the supervisor may take to bring a killed gateway back (it
/// waits 1 s after the first crash; the rest is emulated start-up time).
const RESTART_LIMIT: Duration = Duration::from_secs(60);

fn report(arch: Arch, label: &str, boot: &BootTime) {
    println!(
        "benchmark: {}: {label}: power-on to status page: {:.1} s wall, {:.1} s guest uptime{}",
        arch.name(),
        boot.wall.as_secs_f64(),
        boot.guest_uptime.as_secs_f64(),
        boot.feeder_uptime
            .map(|t| format!(
                " (watchdog feeder's first answer at {:.1} s)",
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

async fn first_boot_formats_data_serves_status_page_and_restarts_a_killed_gateway(arch: Arch) {
    let dir = tempfile::tempdir().unwrap();
    let options = GuestOptions::new(arch, dir.path().join("data.img"));
    let mut guest = Guest::boot(&options).await;
    let boot = guest.wait_status_page().await;
    report(arch, "first boot (blank data disk)", &boot);

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

    // The hardware watchdog (QEMU's i6300esb) gets armed, fed while the
    // gateway answers.
    wait_for_log(&mut guest, "seed-watchdog: feeding /dev/watchdog").await;

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
    let back = guest.wait_for_200(STATUS_PATH, RESTART_LIMIT).await;
    println!(
        "benchmark: {}: gateway killed (-9): status page back {:.1} s after the new process started",
        arch.name(),
        back.as_secs_f64()
    );
    wait_for_log(&mut guest, "seed-gateway exited with status 137").await;

    guest.poweroff().await;
}
on_each_arch!(first_boot_formats_data_serves_status_page_and_restarts_a_killed_gateway);

async fn power_cut_keeps_the_data_partition_and_the_box_boots_again(arch: Arch) {
    let dir = tempfile::tempdir().unwrap();
    let options = GuestOptions::new(arch, dir.path().join("data.img"));

    let mut guest = Guest::boot(&options).await;
    guest.wait_status_page().await;
    // Something durable (synced), then writes in flight when the power goes.
    guest.shell_ok("seq 1 2000 > /data/durable && sync").await;
    guest
        .shell_ok("(while :; do date >> /data/in-flight; done) >/dev/null 2>&1 &")
        .await;
    guest.power_cut().await;

    let mut guest = Guest::boot(&options).await;
    let boot = guest.wait_status_page().await;
    report(arch, "boot after a power cut", &boot);
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
on_each_arch!(power_cut_keeps_the_data_partition_and_the_box_boots_again);

/// Three simulated radios (mac80211_hwsim): phy0 is the box's wlan0, phy1
/// becomes a village Wi-Fi network (its own network namespace), phy2 a
/// visitor's phone (another namespace). Namespace holders' pids go to /tmp.
const RADIOS: &str = r#"
modprobe mac80211_hwsim radios=3
unshare -n sleep 100000 >/dev/null 2>&1 &
echo $! > /tmp/village.ns
unshare -n sleep 100000 >/dev/null 2>&1 &
echo $! > /tmp/phone.ns
for i in $(seq 1 50); do [ -e /sys/class/ieee80211/phy2 ] && break; sleep 0.1; done
iw phy phy1 set netns $(cat /tmp/village.ns)
iw phy phy2 set netns $(cat /tmp/phone.ns)
cat > /tmp/phone-dhcp.sh <<'X'
#!/bin/sh
case "$1" in
bound) ifconfig "$interface" "$ip" netmask "$subnet"; echo "$ip $opt114" > /tmp/phone-lease;;
esac
X
chmod +x /tmp/phone-dhcp.sh
"#;

/// The phone joins the open network named $SSID, takes a DHCP lease, asks
/// the box's DNS for an arbitrary name and opens http://192.168.4.1/ (port
/// 80). Prints "lease IP OPT114", "dns ADDRESS", "page <title>...</title>".
const PHONE: &str = r#"
printf 'network={\n\tssid="%s"\n\tkey_mgmt=NONE\n}\n' "$SSID" > /tmp/phone.conf
nsenter -t $(cat /tmp/phone.ns) -n sh -c '
  ip link set lo up; ip link set wlan2 up
  kill $(cat /tmp/phone-wpa.pid 2>/dev/null) 2>/dev/null; rm -f /tmp/phone-lease
  wpa_supplicant -B -i wlan2 -c /tmp/phone.conf -P /tmp/phone-wpa.pid >/dev/null
  for i in $(seq 1 100); do iw dev wlan2 link | grep -q Connected && break; sleep 0.2; done
  udhcpc -i wlan2 -n -q -t 10 -O 114 -s /tmp/phone-dhcp.sh >/dev/null 2>&1
  echo "lease $(cat /tmp/phone-lease)"
  echo "dns $(nslookup any.example.org 192.168.4.1 | sed -n "s/^Address: *\([0-9.]*\)$/\1/p" | head -n 1)"
  echo "page $(wget -q -O - http://192.168.4.1/ | grep -o "<title>[^<]*</title>")"
'
"#;

/// A village network to join for the uplink: WPA2 "village-net" with DHCP.
const VILLAGE: &str = r#"
printf 'interface=wlan1\ndriver=nl80211\nssid=village-net\nhw_mode=g\nchannel=11\nwpa=2\nwpa_key_mgmt=WPA-PSK\nrsn_pairwise=CCMP\nwpa_passphrase=correct horse\n' > /tmp/village-hostapd.conf
printf 'start 10.9.0.10\nend 10.9.0.20\ninterface wlan1\nopt router 10.9.0.1\nopt subnet 255.255.255.0\nlease_file /tmp/village.leases\n' > /tmp/village-udhcpd.conf
touch /tmp/village.leases
nsenter -t $(cat /tmp/village.ns) -n sh -c '
  ip link set lo up
  hostapd -B /tmp/village-hostapd.conf >/tmp/village-hostapd.out
  ip addr add 10.9.0.1/24 dev wlan1
  udhcpd /tmp/village-udhcpd.conf
'
"#;

/// Waits (bounded) until the system log has a line containing `needle`.
async fn wait_for_log(guest: &mut Guest, needle: &str) {
    let command = format!(
        "for i in $(seq 1 200); do grep -qF '{needle}' /data/log/messages && exit 0; sleep 0.5; done; \
         tail -n 30 /data/log/messages; exit 1"
    );
    let out = guest.shell(&command).await;
    assert_eq!(
        out.status, 0,
        "no log line with {needle:?} within 100 s; the log ends:\n{}",
        out.output
    );
}

fn phone_report(output: &str, key: &str) -> String {
    output
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{key} ")))
        .unwrap_or_default()
        .trim()
        .to_string()
}

async fn kiosk_wifi_leads_phones_to_the_status_page_and_joins_an_uplink(arch: Arch) {
    let dir = tempfile::tempdir().unwrap();
    let mut guest = Guest::boot(&GuestOptions::new(arch, dir.path().join("data.img"))).await;
    guest.wait_status_page().await;
    let (status, body) = guest
        .http_get("/api/v1/status")
        .await
        .expect("status API answers");
    assert_eq!(status, 200, "{body}");
    let status: serde_json::Value = serde_json::from_str(&body).expect("status is JSON");
    let id = status["gateway"]["id"]
        .as_str()
        .expect("status has gateway.id")
        .to_string();
    let ssid = format!("Seed-{}", &id[..8.min(id.len())]);
    // What the status page looks like from the host, through the port forward.
    let page = guest.http_get("/").await.expect("status page answers").1;
    let title = page
        .split_once("<title>")
        .and_then(|(_, rest)| rest.split_once("</title>"))
        .map(|(title, _)| format!("<title>{title}</title>"))
        .expect("the status page has a title");

    guest.shell_ok(RADIOS).await;
    // The box booted without Wi-Fi hardware; now it has a radio.
    guest.shell_ok("/etc/init.d/S60seed-wifi restart").await;
    wait_for_log(&mut guest, &format!("access point \"{ssid}\" on wlan0")).await;

    // A phone on the open access point is led to the status page.
    let phone = guest.shell_ok(&format!("SSID='{ssid}'\n{PHONE}")).await;
    let lease = phone_report(&phone, "lease");
    assert!(
        lease.starts_with("192.168.4."),
        "no lease on the AP: {phone}"
    );
    assert!(
        lease.ends_with(&hex::encode("http://192.168.4.1/")),
        "DHCP option 114 does not name the portal: {phone}"
    );
    assert_eq!(phone_report(&phone, "dns"), "192.168.4.1", "{phone}");
    assert_eq!(phone_report(&phone, "page"), title, "{phone}");

    // With a village network configured, the box joins it for the uplink
    // and keeps the access point on a second interface, same channel.
    guest.shell_ok(VILLAGE).await;
    guest
        .shell_ok(
            "printf 'WIFI_CLIENT_SSID=village-net\\nWIFI_CLIENT_PASSPHRASE=\"correct horse\"\\n' \
             > /data/seed-gateway/wifi.conf && /etc/init.d/S60seed-wifi restart",
        )
        .await;
    wait_for_log(
        &mut guest,
        &format!("access point \"{ssid}\" on uap0, channel 11"),
    )
    .await;
    let uplink = guest
        .shell_ok(
            "for i in $(seq 1 120); do ip -4 addr show wlan0 | grep -q 'inet 10.9.0.' && break; sleep 0.5; done; \
             ip -4 addr show wlan0; ping -c 1 -W 5 10.9.0.1",
        )
        .await;
    assert!(uplink.contains("inet 10.9.0."), "no uplink lease: {uplink}");
    let phone = guest.shell_ok(&format!("SSID='{ssid}'\n{PHONE}")).await;
    assert!(
        phone_report(&phone, "lease").starts_with("192.168.4."),
        "no lease on the AP beside the uplink: {phone}"
    );
    assert_eq!(phone_report(&phone, "page"), title, "{phone}");

    guest.poweroff().await;
}
on_each_arch!(kiosk_wifi_leads_phones_to_the_status_page_and_joins_an_uplink);

/// The message ids (`msg_id`) of uplink publications.
fn uplink_ids(publications: &[rumqttc::Publish]) -> HashSet<String> {
    publications
        .iter()
        .filter_map(|p| serde_json::from_slice::<serde_json::Value>(&p.payload).ok())
        .filter_map(|v| v["msg_id"].as_str().map(str::to_string))
        .collect()
}

async fn radio_messages_reach_mqtt_and_nothing_acked_is_lost_when_the_power_goes(arch: Arch) {
    const DEVICES: u64 = 4;
    const MESSAGES: u64 = 10;
    let broker = Mosquitto::start(MosquittoOptions::new()).await;
    let mut uplinks = Subscriber::connect(broker.observer_port(), "seed/v1/gw/+/up/#").await;
    let dir = tempfile::tempdir().unwrap();

    // Seed devices behind an emulated RNode, whose serial port QEMU wires to
    // the guest's RNode port. It sends DEVICES x MESSAGES transactions and
    // retransmits each until the gateway acks it, power cut or not.
    let rnode = dir.path().join("rnode0");
    // Retransmissions every 2.5 s growing to 15 s (speed 4), not 10 s to
    // 60 s: the same behaviour, without waiting out an emulated reboot at
    // full backoff.
    let simulate = Simulation::serial(&rnode, DEVICES as usize, MESSAGES)
        .speed(4.0)
        .seed(7)
        .deadline_s(900)
        .no_heartbeats()
        .spawn();
    let appeared = tokio::time::timeout(Duration::from_secs(30), async {
        while !rnode.exists() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(appeared.is_ok(), "the emulated RNode's pty never appeared");

    // The technician's override on /data: this broker (the host, as QEMU's
    // user network shows it) and the RNode port.
    let config = format!(
        "[gateway]\ndata_dir = \"/data/seed-gateway\"\nlog_level = \"info\"\n\
         [http]\nbind = \"0.0.0.0:8080\"\n\
         [mqtt]\nurl = \"mqtt://10.0.2.2:{}\"\n\
         [[link]]\nname = \"rnode0\"\ntype = \"rnode\"\nport = \"/dev/virtio-ports/rnode0\"\n\
         [storage]\nquota_mb = 64\n",
        broker.port()
    );
    let data = dir.path().join("data.img");
    data_disk_with(&data, &[("seed-gateway/config.toml", &config)]);
    let options = GuestOptions::new(arch, &data).rnode(RnodeHost::Serial(rnode.clone()));

    let mut guest = Guest::boot(&options).await;
    let boot = guest.wait_status_page().await;
    report(arch, "boot with a configured uplink", &boot);
    // With its only link, the emulated RNode, detected and configured, the
    // gateway reports itself healthy.
    guest
        .wait_for_200("/healthz", Duration::from_secs(120))
        .await;
    let log = guest
        .shell_ok("grep 'seed-gateway-supervise: starting' /data/log/messages")
        .await;
    assert!(
        log.contains("--config /data/seed-gateway/config.toml"),
        "the /data override was not used:\n{log}"
    );

    // Messages flow from the radio to the broker; cut the power mid-stream.
    let before = uplinks
        .collect_until(Duration::from_secs(600), "the first uplinks", |got| {
            got.len() >= 5
        })
        .await;
    guest.power_cut().await;

    // Power on again: same disk, same radio. The devices keep retransmitting
    // what was not acked; the store publishes what was acked but not yet
    // published.
    let mut guest = Guest::boot(&options).await;
    let boot = guest.wait_status_page().await;
    report(arch, "boot after a power cut mid-stream", &boot);

    let summary = simulate.finish(Duration::from_secs(900)).await;
    let acked: HashSet<String> = summary.acked_ids.iter().cloned().collect();
    assert_eq!(
        acked.len() as u64,
        DEVICES * MESSAGES,
        "not every message was acked: {summary:?}"
    );

    let mut published = uplink_ids(&before);
    let after = uplinks
        .collect_until(
            Duration::from_secs(300),
            "every acked message on MQTT",
            |got| {
                let seen: HashSet<String> = uplink_ids(got);
                acked
                    .iter()
                    .all(|id| published.contains(id) || seen.contains(id))
            },
        )
        .await;
    assert!(
        !uplink_ids(&after).is_subset(&uplink_ids(&before)),
        "nothing new arrived after the power cut: it did not come mid-stream"
    );
    published.extend(uplink_ids(&after));
    let lost: Vec<&String> = acked.difference(&published).collect();
    assert!(lost.is_empty(), "acked but never published: {lost:?}");

    guest.poweroff().await;
}
on_each_arch!(radio_messages_reach_mqtt_and_nothing_acked_is_lost_when_the_power_goes);

async fn first_boot_grows_the_data_partition_to_the_end_of_the_disk(arch: Arch) {
    // As on a freshly flashed SD card: the image's data partition is small
    // and blank, the card behind it much larger.
    const DISK_SECTORS: u64 = 256 * 2048;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data.img");
    std::fs::File::create(&data)
        .and_then(|f| f.set_len(DISK_SECTORS * 512))
        .expect("create the data disk");
    let mut sfdisk = std::process::Command::new("sfdisk")
        .arg("--quiet")
        .arg(&data)
        .stdin(Stdio::piped())
        .spawn()
        .expect("run sfdisk (fdisk package)");
    {
        use std::io::Write;
        let mut stdin = sfdisk.stdin.take().unwrap();
        stdin
            .write_all(b"label: dos\nstart=2048, size=65536, type=83\n")
            .unwrap();
    }
    assert!(sfdisk.wait().unwrap().success(), "sfdisk failed");

    let options = GuestOptions::new(arch, &data).kernel_append("seed.data=/dev/vdb1");
    let mut guest = Guest::boot(&options).await;
    let boot = guest.wait_status_page().await;
    report(arch, "first boot growing a partition", &boot);

    let size: u64 = guest
        .shell_ok("cat /sys/class/block/vdb1/size")
        .await
        .trim()
        .parse()
        .expect("partition size in sectors");
    assert_eq!(
        size,
        DISK_SECTORS - 2048,
        "vdb1 was not grown to the disk's end"
    );
    let mounts = guest.shell_ok("cat /proc/mounts").await;
    assert!(
        mounts
            .lines()
            .any(|l| l.starts_with("/dev/vdb1 /data ext4 rw,")),
        "/data is not the grown partition:\n{mounts}"
    );
    // The filesystem fills the partition (df counts 1 KiB blocks; ext4's own
    // metadata takes a few percent).
    let blocks: u64 = guest
        .shell_ok("df -k /data | tail -n 1 | awk '{print $2}'")
        .await
        .trim()
        .parse()
        .expect("df size");
    assert!(blocks > 230 * 1024, "/data is only {blocks} KiB");
    let log = guest.shell_ok("cat /data/log/seed-data.log").await;
    assert!(log.contains("growing /dev/vdb1"), "{log}");
    assert!(log.contains("is blank: formatting it ext4"), "{log}");
    guest.poweroff().await;
}
on_each_arch!(first_boot_grows_the_data_partition_to_the_end_of_the_disk);

async fn an_admin_password_left_on_the_boot_partition_is_taken_once_and_wiped(arch: Arch) {
    // What a technician does on a PC after flashing: one text file on the
    // card's FAT partition, the one every OS can open.
    const PASSWORD: &str = "kiosk keeper 2026 sunrise";
    let dir = tempfile::tempdir().unwrap();
    let boot_partition = dir.path().join("boot.img");
    fat_boot_partition(
        &boot_partition,
        &[("seed-admin-password.txt", &format!("{PASSWORD}\r\n"))],
    );
    let options =
        GuestOptions::new(arch, dir.path().join("data.img")).boot_partition(&boot_partition);
    let mut guest = Guest::boot(&options).await;
    let boot = guest.wait_status_page().await;
    report(arch, "first boot taking an admin password", &boot);

    let (code, page) = guest
        .http_get("/admin/login")
        .await
        .expect("the admin login page answers");
    assert_eq!(code, 200);
    assert!(
        page.contains("id=\"login-form\""),
        "the admin pages are not switched on:\n{page}"
    );
    let hash = guest
        .shell_ok("cat /data/seed-gateway/admin.hash")
        .await
        .trim()
        .to_string();
    assert_eq!(
        verify_password(PASSWORD, &hash),
        Verdict::Match,
        "the stored hash is not of the password on the card: {hash}"
    );
    let log = guest.shell_ok("cat /data/log/seed-boot-settings.log").await;
    assert!(log.contains("admin password set"), "{log}");
    assert!(!log.contains(PASSWORD), "the log shows the password: {log}");
    guest.poweroff().await;

    // The plain password did not stay on the card.
    let left = fat_files(&boot_partition);
    assert!(
        !left
            .iter()
            .any(|f| f.eq_ignore_ascii_case("seed-admin-password.txt")),
        "the password file is still on the boot partition: {left:?}"
    );
    let raw = std::fs::read(&boot_partition).unwrap();
    assert!(
        !raw.windows(PASSWORD.len())
            .any(|w| w == PASSWORD.as_bytes()),
        "the password's bytes are still on the boot partition"
    );
}
on_each_arch!(an_admin_password_left_on_the_boot_partition_is_taken_once_and_wiped);

/// `gateway/examples/fill_store` (built when missing): fills a data
/// directory with queued transactions on the host.
fn fill_store(dir: &std::path::Path, count: u64) {
    let root = seed_e2e::qemu::repo_root();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let example = target.join("release/examples/fill_store");
    if !example.exists() {
        let status = std::process::Command::new(env!("CARGO"))
            .args([
                "build",
                "--release",
                "-p",
                "seed-gateway",
                "--example",
                "fill_store",
            ])
            .current_dir(&root)
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building the fill_store example failed");
    }
    let output = std::process::Command::new(&example)
        .arg(dir)
        .arg(count.to_string())
        .output()
        .expect("run fill_store");
    assert!(
        output.status.success(),
        "fill_store failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A benchmark, not part of the test command (one more boot per
/// architecture, and the store takes a while to fill):
///
///     cargo test -p seed-e2e --test qemu_boot -- --ignored --nocapture resident_memory
///
/// The gateway in the guest with 100,000 queued messages in its store (made
/// on the host, as `docs/benchmarks.md` "Memory and idle CPU" makes it) and
/// no broker to drain them: its resident memory once the status page
/// answers and again a minute later, printed; that it reports every
/// message queued, asserted.
async fn resident_memory_with_100000_queued_messages(arch: Arch) {
    const QUEUED: u64 = 100_000;
    let dir = tempfile::tempdir().unwrap();
    let staging = dir.path().join("data");
    fill_store(&staging.join("seed-gateway"), QUEUED);
    std::fs::write(
        staging.join("seed-gateway/config.toml"),
        "[gateway]\ndata_dir = \"/data/seed-gateway\"\nlog_level = \"info\"\n\
         [http]\nbind = \"0.0.0.0:8080\"\n\
         [[link]]\nname = \"sx1302\"\ntype = \"gwmp\"\nbind = \"127.0.0.1:1700\"\n",
    )
    .unwrap();
    let data = dir.path().join("data.img");
    seed_e2e::qemu::ext4_image_of(&staging, &data, "data", "256M");

    let mut guest = Guest::boot(&GuestOptions::new(arch, &data)).await;
    let boot = guest.wait_status_page().await;
    report(arch, "first boot with 100,000 queued messages", &boot);
    let (_, status) = guest.http_get(STATUS_PATH).await.expect("status answers");
    let status: serde_json::Value = serde_json::from_str(&status).expect("status is JSON");
    assert_eq!(
        status["uplink"]["backlog"], QUEUED,
        "the store made on the host is not the gateway's backlog: {status}"
    );
    let pid = gateway_pid(&mut guest).await;
    let memory = format!("grep -e VmRSS -e VmHWM /proc/{pid}/status | tr -s ' \\t' ' '");
    let at_start = guest.shell_ok(&memory).await;
    guest.shell_ok("sleep 60").await;
    let idle = guest.shell_ok(&memory).await;
    println!(
        "benchmark: {}: gateway with {QUEUED} queued messages, no broker: {} at the first status page; {} a minute later",
        arch.name(),
        at_start.trim().replace('\n', ", "),
        idle.trim().replace('\n', ", ")
    );
    guest.poweroff().await;
}

on_each_arch!(
    #[ignore = "benchmark: cargo test -p seed-e2e --test qemu_boot -- --ignored --nocapture resident_memory"]
    resident_memory_with_100000_queued_messages
);
