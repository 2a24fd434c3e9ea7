#!/usr/bin/env bash
#
# Builds the QEMU x86_64 test image of the Seed gateway from Debian packages,
# into image/out/:
#
#   vmlinuz              Debian's kernel (linux-image-amd64, downloaded once
#                        with apt-get download and cached in out/cache/)
#   initramfs.cpio.gz    loads virtio/ext4/watchdog modules, mounts root ro
#   disk.img             system disk: rootfs.0 (ext4), an empty rootfs.1 and
#                        a blank boot state partition, laid out by
#                        buildroot/board/qemu-x86_64/genimage.cfg
#   rootfs.ext4          the root filesystem in disk.img
#   data.img             blank data disk (created only when absent; the
#                        guest formats it on first boot)
#   test-keys/           a TEST update signing CA and key (image/test-keys.sh,
#                        NOT FOR PRODUCTION), made once, when no
#                        SEED_RAUC_KEYRING is given
#
# A full Buildroot build needs the internet; this needs only the Debian
# archive (once, for the kernel) and what is installed here. The root
# filesystem is BusyBox (busybox-static) plus the parts the product adds,
# taken unchanged from buildroot/: the rootfs overlay, the QEMU board
# overlay, the common post-build script, and the seed-gateway package's
# binary, supervisor, init script and default configuration, installed as
# package/seed-gateway/seed-gateway.mk installs them. image/rootfs-base/
# stands in for Buildroot's skeleton (inittab, rcS, syslogd, network).
#
# The binary is $CARGO_TARGET_DIR/release/seed-gateway (built with
# `cargo build --release -p seed-gateway` when missing or older than the
# sources), or $SEED_GATEWAY_BIN. It is linked against glibc: the shared
# libraries it needs are copied from this machine, as ldd lists them.
#
# Idempotent: when no input changed since the last build, it only says so.
# Several callers at once are serialised by a lock in out/.
#
# Usage: image/build.sh [--force]
# Environment: SEED_IMAGE_OUT (default image/out), CARGO_TARGET_DIR,
#              SEED_GATEWAY_BIN,
#              SEED_IMAGE_VERSION (VERSION_ID in /etc/os-release; default the
#              version of gateway/Cargo.toml),
#              SEED_RAUC_KEYRING (the update keyring, PEM; default the test
#              CA of out/test-keys/)
# Needs (Debian): busybox-static kmod e2fsprogs fdisk util-linux genimage
#                 cpio gzip apt (dpkg-deb, apt-get), hostapd dnsmasq-base iw
#                 wpasupplicant iptables (the kiosk Wi-Fi), rauc dbus-daemon
#                 openssl (the A/B updates), and cargo.

set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "${here}")"
br="${repo}/buildroot"
out="${SEED_IMAGE_OUT:-${here}/out}"
cache="${out}/cache"
target_dir="${CARGO_TARGET_DIR:-${repo}/target}"
gateway_bin="${SEED_GATEWAY_BIN:-${target_dir}/release/seed-gateway}"
busybox=/bin/busybox
force=no
[ "${1:-}" = --force ] && force=yes

say() { echo "image/build.sh: $*" >&2; }
die() { say "$*"; exit 1; }

for tool in busybox mke2fs e2fsck resize2fs sfdisk partx genimage cpio gzip depmod modprobe dpkg-deb apt-get ldd sha256sum flock \
	hostapd dnsmasq iw wpa_supplicant wpa_passphrase xtables-legacy-multi rauc dbus-daemon openssl; do
	command -v "${tool}" >/dev/null ||
		die "missing tool '${tool}' (Debian: busybox-static kmod e2fsprogs fdisk util-linux genimage cpio hostapd dnsmasq-base iw wpasupplicant iptables rauc dbus-daemon openssl)"
done
# ldd fails on a static binary; the image has no libraries for busybox.
if ldd "${busybox}" >/dev/null 2>&1; then
	die "${busybox} is not statically linked (install busybox-static)"
fi

mkdir -p "${out}" "${cache}"
exec 9>"${out}/.lock"
flock 9

# --- kernel: Debian's, downloaded once --------------------------------------
kernel_deb="$(find "${cache}" -maxdepth 1 -name 'linux-image-*.deb' | sort -V | tail -n 1)"
if [ -z "${kernel_deb}" ]; then
	package="$(apt-cache depends linux-image-amd64 | sed -n 's/^ *Depends: \(linux-image-[0-9].*\)$/\1/p' | head -n 1)"
	[ -n "${package}" ] || die "apt-cache does not know linux-image-amd64 (apt-get update?)"
	say "downloading ${package}"
	(cd "${cache}" && apt-get download "${package}" 2>&1 | grep -v '^W: Download is performed unsandboxed' >&2) ||
		die "apt-get download ${package} failed"
	kernel_deb="$(find "${cache}" -maxdepth 1 -name 'linux-image-*.deb' | sort -V | tail -n 1)"
fi
kernel_version="$(dpkg-deb -f "${kernel_deb}" Package | sed 's/^linux-image-//')"
kernel_dir="${cache}/kernel-${kernel_version}"
if [ ! -f "${kernel_dir}/.unpacked" ]; then
	rm -rf "${kernel_dir}"
	dpkg-deb -x "${kernel_deb}" "${kernel_dir}"
	# The package ships no modules.dep; modprobe needs it to resolve
	# dependencies below.
	depmod -b "${kernel_dir}" "${kernel_version}"
	touch "${kernel_dir}/.unpacked"
fi

# --- the gateway binary --------------------------------------------------------
# Sources of the binary: every crate but the black-box tests.
sources_newer() {
	[ -n "$(find "${repo}" \( -path "${repo}/target" -o -path "${repo}/.git" -o -path "${repo}/tests" \
		-o -path "${repo}/image" -o -path "${repo}/buildroot" -o -path "${repo}/dist" \) -prune -o \
		\( -name '*.rs' -o -name Cargo.toml -o -name Cargo.lock \) -newer "${gateway_bin}" -print -quit)" ]
}
if [ -z "${SEED_GATEWAY_BIN:-}" ] && { [ ! -x "${gateway_bin}" ] || sources_newer; }; then
	say "building seed-gateway (release)"
	(cd "${repo}" && CARGO_TARGET_DIR="${target_dir}" cargo build --release -p seed-gateway)
fi
[ -x "${gateway_bin}" ] || die "no gateway binary at ${gateway_bin}"

# --- the update keyring ----------------------------------------------------------
# A production build names its CA(s); otherwise the test CA, made once.
if [ -n "${SEED_RAUC_KEYRING:-}" ]; then
	keyring="${SEED_RAUC_KEYRING}"
	[ -f "${keyring}" ] || die "SEED_RAUC_KEYRING=${keyring}: no such file"
else
	"${here}/test-keys.sh" "${out}/test-keys"
	keyring="${out}/test-keys/test-ca.cert.pem"
fi

# --- nothing changed? ---------------------------------------------------------
inputs_hash="$(
	{
		echo "${kernel_deb##*/}"
		echo "version=${SEED_IMAGE_VERSION:-}"
		sha256sum "${gateway_bin}" "${busybox}" "${keyring}" "$(command -v rauc)" "$(command -v dbus-daemon)"
		sha256sum "${repo}/Cargo.toml" "${repo}/gateway/Cargo.toml"
		find "${here}" "${br}" -path "${out}" -prune -o -type f -print | LC_ALL=C sort | xargs sha256sum
	} | sha256sum | cut -d' ' -f1
)"
outputs=(vmlinuz initramfs.cpio.gz disk.img rootfs.ext4 data.img)
up_to_date=yes
for f in "${outputs[@]}"; do
	[ -e "${out}/${f}" ] || up_to_date=no
done
if [ "${force}" = no ] && [ "${up_to_date}" = yes ] && [ "$(cat "${out}/.inputs" 2>/dev/null)" = "${inputs_hash}" ]; then
	say "up to date (${out})"
	exit 0
fi

# copy_with_libs FILE DEST_IN_ROOT ROOT: installs a host binary and every
# shared library ldd lists for it, at the same paths.
copy_with_libs() {
	install -D -m 0755 "$1" "$3$2"
	{ ldd "$1" 2>/dev/null || true; } | sed -n 's/^[^/]*\(\/[^ ]*\) (0x.*$/\1/p' | while read -r lib; do
		[ -e "$3${lib}" ] || install -D -m 0755 "$(readlink -f "${lib}")" "$3${lib}"
	done
}

# --- root filesystem ---------------------------------------------------------
say "root filesystem"
rootfs="${out}/rootfs"
rm -rf "${rootfs}"
mkdir -p "${rootfs}"/{bin,sbin,usr/bin,usr/sbin,lib,etc,dev,proc,sys,tmp,run,root,var}
ln -s ../run "${rootfs}/var/run"
ln -s ../tmp "${rootfs}/var/log"
install -m 0755 "${busybox}" "${rootfs}/bin/busybox"
# Skip the name busybox itself: linking it would replace the binary.
"${busybox}" --list-full | grep -v -e '^bin/busybox$' -e '^linuxrc$' | while read -r applet; do
	ln -sf /bin/busybox "${rootfs}/${applet}"
done

cp -a "${here}/rootfs-base/." "${rootfs}/"

# What Buildroot's e2fsprogs and util-linux packages provide to S00seed-data.
for tool in /sbin/mke2fs /sbin/e2fsck /sbin/resize2fs /sbin/sfdisk /usr/bin/partx; do
	copy_with_libs "$(command -v "${tool##*/}")" "${tool}" "${rootfs}"
done
ln -sf mke2fs "${rootfs}/sbin/mkfs.ext4"
install -m 0644 /etc/mke2fs.conf "${rootfs}/etc/mke2fs.conf"

# What Buildroot's hostapd, dnsmasq, iw, wpa_supplicant and iptables
# (legacy) packages provide to the kiosk Wi-Fi (S60seed-wifi). QEMU has no
# Wi-Fi: a test loads mac80211_hwsim (see rootfs-modules) and drives it.
for tool in /usr/sbin/hostapd /usr/sbin/dnsmasq /usr/sbin/iw /usr/sbin/wpa_supplicant \
	/usr/bin/wpa_passphrase /usr/sbin/xtables-legacy-multi; do
	copy_with_libs "$(command -v "${tool##*/}")" "${tool}" "${rootfs}"
done
ln -sf xtables-legacy-multi "${rootfs}/usr/sbin/iptables"
xtables_dir=/usr/lib/x86_64-linux-gnu/xtables
mkdir -p "${rootfs}${xtables_dir}"
cp -a "${xtables_dir}/." "${rootfs}${xtables_dir}/"

# What Buildroot's rauc (with D-Bus) and dbus packages provide to the A/B
# updates (S05rauc; docs/ota.md).
copy_with_libs "$(command -v rauc)" /usr/bin/rauc "${rootfs}"
copy_with_libs "$(command -v dbus-daemon)" /usr/bin/dbus-daemon "${rootfs}"

# Modules for modprobe at run time, at their usual place, with modules.dep.
modules_dir="${kernel_dir}/lib/modules/${kernel_version}"
grep -v -e '^#' -e '^$' "${here}/rootfs-modules" | while read -r module; do
	modprobe -d "${kernel_dir}" -S "${kernel_version}" --show-depends "${module}" |
		sed -n 's/^insmod \([^ ]*\).*/\1/p'
done | sort -u | while read -r ko; do
	install -D -m 0644 "${ko}" "${rootfs}/lib/modules/${kernel_version}/${ko#"${modules_dir}"/}"
done
cp "${modules_dir}/modules.order" "${modules_dir}/modules.builtin" "${rootfs}/lib/modules/${kernel_version}/"
depmod -b "${rootfs}" "${kernel_version}"

# The seed-gateway package, as seed-gateway.mk installs it.
pkg="${br}/package/seed-gateway"
copy_with_libs "${gateway_bin}" /usr/bin/seed-gateway "${rootfs}"
install -D -m 0755 "${pkg}/supervise" "${rootfs}/usr/libexec/seed-gateway/supervise"
install -D -m 0644 "${pkg}/config.toml" "${rootfs}/etc/seed-gateway/config.toml"
install -D -m 0755 "${pkg}/S50seed-gateway" "${rootfs}/etc/init.d/S50seed-gateway"

# The overlays in the order seed_qemu_x86_64_defconfig lists them, then
# the post-build script.
cp -a "${br}/rootfs-overlay/." "${rootfs}/"
cp -a "${br}/board/qemu-x86_64/rootfs-overlay/." "${rootfs}/"
SEED_RAUC_KEYRING="${keyring}" sh "${br}/board/common/post-build.sh" "${rootfs}"

used_mb="$(du -sm "${rootfs}" | cut -f1)"
rm -f "${out}/rootfs.ext4"
mke2fs -q -t ext4 -L rootfs.0 -d "${rootfs}" -E root_owner=0:0 \
	"${out}/rootfs.ext4" "$((used_mb * 13 / 10 + 16))M"

# --- initramfs ------------------------------------------------------------------
say "initramfs (kernel ${kernel_version})"
initramfs="${out}/initramfs"
rm -rf "${initramfs}"
mkdir -p "${initramfs}"/{bin,dev,proc,sys,etc,newroot,tmp,lib/modules}
install -m 0755 "${busybox}" "${initramfs}/bin/busybox"
"${busybox}" --list | grep -v '^busybox$' | while read -r applet; do
	ln -sf busybox "${initramfs}/bin/${applet}"
done
install -m 0755 "${here}/initramfs/init" "${initramfs}/init"
# The boot selector: the same script and settings as the root filesystem's.
mkdir -p "${initramfs}/usr/libexec/seed" "${initramfs}/etc/default" "${initramfs}/etc/rauc"
install -m 0755 "${rootfs}/usr/libexec/seed/bootstate" "${initramfs}/usr/libexec/seed/bootstate"
install -m 0644 "${rootfs}/etc/default/seed-bootstate" "${initramfs}/etc/default/seed-bootstate"
install -m 0644 "${rootfs}/etc/rauc/system.conf" "${initramfs}/etc/rauc/system.conf"
: >"${initramfs}/etc/modules.order"
grep -v -e '^#' -e '^$' "${here}/modules" | while read -r module; do
	modprobe -d "${kernel_dir}" -S "${kernel_version}" --show-depends "${module}" |
		sed -n 's/^insmod \([^ ]*\).*/\1/p'
done | awk '!seen[$0]++' | while read -r ko; do
	install -m 0644 "${ko}" "${initramfs}/lib/modules/${ko##*/}"
	echo "${ko##*/}" >>"${initramfs}/etc/modules.order"
done
mknod -m 600 "${initramfs}/dev/console" c 5 1
mknod -m 666 "${initramfs}/dev/null" c 1 3
(cd "${initramfs}" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) |
	gzip -6 -n >"${out}/initramfs.cpio.gz"
install -m 0644 "${kernel_dir}/boot/vmlinuz-${kernel_version}" "${out}/vmlinuz"

# --- disks ------------------------------------------------------------------------
say "system disk (buildroot/board/qemu-x86_64/genimage.cfg)"
rm -f "${out}/disk.img"
if ! "${br}/board/common/genimage.sh" "${out}" "${br}/board/qemu-x86_64/genimage.cfg" >"${out}/genimage.log" 2>&1; then
	cat "${out}/genimage.log" >&2
	die "genimage failed"
fi
# Blank, as the QEMU board's post-image.sh makes it; never overwritten.
[ -e "${out}/data.img" ] || truncate -s 256M "${out}/data.img"

echo "${inputs_hash}" >"${out}/.inputs"
say "done: ${out} (rootfs ${used_mb} MiB, gateway $(du -h "${gateway_bin}" | cut -f1))"
