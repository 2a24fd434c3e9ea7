#!/usr/bin/env bash
# Runs every test of seed-gateway, after installing what the tests need.
#
#   bash tests/run.sh
#
# 1. Installs the Debian packages the tests use (Mosquitto, Chromium and its
#    driver, QEMU, RAUC, the image-building tools), only those missing:
#    `apt-get update` once, then one `apt-get install`.
# 2. Checks formatting and lints (cargo fmt --check, clippy -D warnings).
# 3. Builds the release binary (the QEMU image and black-box tests run it).
# 4. Runs every test of the workspace: unit, property, real-pty, real-UDP,
#    real-Mosquitto, real-Chromium and real-QEMU tests.
#
# Long fuzz and soak runs are not here: see tests/fuzz.sh and docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  mosquitto mosquitto-clients        # MQTT broker the uplink tests talk to
  chromium chromium-driver           # browser tests of the status page
  qemu-system-x86 qemu-utils         # boot test of the appliance image
  busybox-static kmod cpio gzip      # the test image's userland and modules
  e2fsprogs squashfs-tools dosfstools mtools fdisk util-linux genimage # its disks
  hostapd dnsmasq-base iw wpasupplicant iptables # the kiosk Wi-Fi in the image
  rauc dbus-daemon openssl           # update bundles, test keys, RAUC in the image
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "run.sh: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# A clean run (build, image, QEMU disks) took 4.7 GB on 2026-11-23; a
# machine short of that fails in confusing places (a half-written disk
# image, a linker error), so say it before starting.
target_dir="${CARGO_TARGET_DIR:-target}"
mkdir -p "$target_dir"
free_kb=$(df -Pk "$target_dir" | awk 'NR == 2 { print $4 }')
free_tmp_kb=$(df -Pk "${TMPDIR:-/tmp}" | awk 'NR == 2 { print $4 }')
echo "run.sh: free disk: $((free_kb / 1048576)) GB for $target_dir, $((free_tmp_kb / 1048576)) GB for ${TMPDIR:-/tmp}"
if [ "$free_kb" -lt $((8 * 1048576)) ] || [ "$free_tmp_kb" -lt $((3 * 1048576)) ]; then
  echo "run.sh: WARNING: less than 8 GB (build) or 3 GB (temporary disks) free;" \
    "tests may fail with 'No space left on device'" >&2
fi

echo "run.sh: formatting and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings

echo "run.sh: release build (used by the black-box and QEMU tests)"
cargo build --release -p seed-gateway

echo "run.sh: tests"
cargo test --workspace --no-fail-fast
