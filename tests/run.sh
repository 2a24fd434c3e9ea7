#!/usr/bin/env bash
# Runs every test of seed-gateway, after installing what the tests need.
#
#   bash tests/run.sh
#
# 1. Installs the Debian packages the tests use (Mosquitto, Chromium and its
#    driver, QEMU for x86_64 and arm64, RAUC, the image-building tools, the
#    aarch64 cross linker), only those missing: `apt-get update` once, then
#    one `apt-get install`. Adds dpkg's arm64 architecture (the arm64 test
#    image is made of Debian's arm64 packages) and the rustup target
#    aarch64-unknown-linux-gnu when missing.
# 2. Checks formatting and lints (cargo fmt --check, clippy -D warnings).
# 3. Builds the release binary (the QEMU image and black-box tests run it),
#    and cross-builds it for aarch64 (the arm64 QEMU image runs that one).
# 4. Runs every test of the workspace: unit, property, real-pty, real-UDP,
#    real-Mosquitto, real-Chromium and real-QEMU tests (x86_64 and arm64).
#
# Long fuzz and soak runs are not here: see tests/fuzz.sh and docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  mosquitto mosquitto-clients        # MQTT broker the uplink tests talk to
  chromium chromium-driver           # browser tests of the status page
  qemu-system-x86 qemu-utils         # boot test of the appliance image
  qemu-system-arm qemu-user-static   # ... and of its arm64 build
  binutils gcc-aarch64-linux-gnu libc6-dev-arm64-cross # the aarch64 cross build
  busybox-static kmod cpio gzip      # the test image's userland and modules
  e2fsprogs squashfs-tools dosfstools mtools fdisk util-linux genimage # its disks
  hostapd dnsmasq-base iw wpasupplicant iptables # the kiosk Wi-Fi in the image
  rauc dbus-daemon openssl           # update bundles, test keys, RAUC in the image
  faketime                           # a kiosk whose clock is hours off (peering_faults)
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
update=no
[ "${#missing[@]}" -gt 0 ] && update=yes
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  echo "run.sh: adding dpkg's arm64 architecture (the arm64 test image's packages)"
  $sudo dpkg --add-architecture arm64
  update=yes
fi
[ "$update" = yes ] && $sudo apt-get update -q
if [ "${#missing[@]}" -gt 0 ]; then
  echo "run.sh: installing ${missing[*]}"
  allow=()
  if printf '%s\n' "${missing[@]}" | grep -q '^qemu-system'; then
    # QEMU's packages must be of one version: a newer qemu-utils already
    # here (from backports) Breaks the archive's qemu-system-*. Take
    # qemu-utils at the version qemu-system-x86 comes in.
    qemu_version="$(apt-cache policy qemu-system-x86 | sed -n 's/^ *Candidate: //p')"
    missing+=("qemu-utils=$qemu_version")
    allow=(--allow-downgrades)
  fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${allow[@]}" "${missing[@]}"
fi
rustup target list --installed | grep -qx aarch64-unknown-linux-gnu ||
  rustup target add aarch64-unknown-linux-gnu

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
echo "run.sh: release build for aarch64 (the arm64 QEMU image's gateway)"
CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
  CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar \
  cargo build --release -p seed-gateway --target aarch64-unknown-linux-gnu

echo "run.sh: tests"
cargo test --workspace --no-fail-fast
