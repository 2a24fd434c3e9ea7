#!/usr/bin/env bash
#
# Builds the QEMU test image of the Seed gateway from Debian packages, for
# x86_64 (into image/out/) or arm64 (aarch64, into image/out-aarch64/):
#
#   vmlinuz              Debian's kernel (linux-image-amd64 or -arm64,
#                        downloaded once with apt-get download and cached in
#                        out/cache/)
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
# arm64: the same image for `qemu-system-aarch64 -M virt` (image/boot.sh
# --arch aarch64). Everything that runs in the guest comes from Debian's
# arm64 packages instead of this machine (`dpkg --add-architecture arm64`,
# apt-get update, then apt-get download and dpkg-deb -x into
# out/cache/sysroot/, once): busybox-static, the tools above and the
# libraries they need (the packages this machine's amd64 copies of those
# libraries come from, in their arm64 build). The gateway is cross-built
# for aarch64-unknown-linux-gnu with Debian's gcc-aarch64-linux-gnu
# ($CARGO_TARGET_DIR/aarch64-unknown-linux-gnu/release/seed-gateway). The
# root filesystem's RAUC compatible is seed-gateway-qemu-aarch64, so an
# x86_64 bundle is refused. Overlay, scripts and A/B layout are the same.
#
# Idempotent: when no input changed since the last build, it only says so.
# Several callers at once are serialised by a lock in out/.
#
# Usage: image/build.sh [--arch x86_64|aarch64] [--force]
# Environment: SEED_IMAGE_ARCH (the default of --arch; default x86_64),
#              SEED_IMAGE_OUT (default image/out, image/out-aarch64 for
#              arm64), CARGO_TARGET_DIR, SEED_GATEWAY_BIN,
#              SEED_IMAGE_VERSION (VERSION_ID in /etc/os-release; default the
#              version of gateway/Cargo.toml),
#              SEED_RAUC_KEYRING (the update keyring, PEM; default the test
#              CA of out/test-keys/)
# Needs (Debian): busybox-static kmod e2fsprogs fdisk util-linux genimage
#                 cpio gzip apt (dpkg-deb, apt-get), hostapd dnsmasq-base iw
#                 wpasupplicant iptables (the kiosk Wi-Fi), rauc dbus-daemon
#                 openssl (the A/B updates), and cargo; for arm64 also
#                 the arm64 dpkg architecture, qemu-user-static (runs
#                 busybox --list), binutils (readelf), gcc-aarch64-linux-gnu
#                 libc6-dev-arm64-cross and the rustup target
#                 aarch64-unknown-linux-gnu.

set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "${here}")"
br="${repo}/buildroot"
arch="${SEED_IMAGE_ARCH:-x86_64}"
force=no
while [ $# -gt 0 ]; do
	case "$1" in
	--force) force=yes; shift ;;
	--arch) arch="${2:-}"; shift 2 ;;
	*) echo "image/build.sh: unknown argument '$1' (usage: image/build.sh [--arch x86_64|aarch64] [--force])" >&2; exit 2 ;;
	esac
done

say() { echo "image/build.sh: $*" >&2; }
die() { say "$*"; exit 1; }

# Per architecture: Debian's name for it, the GNU triplet of its library
# directories, the Rust target of a cross build (none: native).
case "${arch}" in
x86_64) debian_arch=amd64 triplet=x86_64-linux-gnu rust_target='' default_out="${here}/out" ;;
aarch64 | arm64) arch=aarch64 debian_arch=arm64 triplet=aarch64-linux-gnu rust_target=aarch64-unknown-linux-gnu default_out="${here}/out-aarch64" ;;
*) die "unknown architecture '${arch}' (x86_64 or aarch64)" ;;
esac
[ "${arch}" = "$(uname -m)" ] && native=yes || native=no
out="${SEED_IMAGE_OUT:-${default_out}}"
cache="${out}/cache"
target_dir="${CARGO_TARGET_DIR:-${repo}/target}"
gateway_bin="${SEED_GATEWAY_BIN:-${target_dir}/${rust_target:+${rust_target}/}release/seed-gateway}"

for tool in busybox mke2fs e2fsck resize2fs sfdisk partx genimage cpio gzip depmod modprobe dpkg-deb apt-get ldd sha256sum flock \
	hostapd dnsmasq iw wpa_supplicant wpa_passphrase xtables-legacy-multi rauc dbus-daemon openssl; do
	command -v "${tool}" >/dev/null ||
		die "missing tool '${tool}' (Debian: busybox-static kmod e2fsprogs fdisk util-linux genimage cpio hostapd dnsmasq-base iw wpasupplicant iptables rauc dbus-daemon openssl)"
done
if [ "${native}" = no ]; then
	for tool in "qemu-${arch}-static" readelf "${triplet}-gcc"; do
		command -v "${tool}" >/dev/null ||
			die "missing tool '${tool}' (Debian: qemu-user-static binutils gcc-${triplet} libc6-dev-${debian_arch}-cross)"
	done
	dpkg --print-foreign-architectures | grep -qx "${debian_arch}" ||
		die "dpkg does not know ${debian_arch} packages: dpkg --add-architecture ${debian_arch} && apt-get update"
fi

mkdir -p "${out}" "${cache}"
exec 9>"${out}/.lock"
flock 9

# download DIR PACKAGE...: apt-get download into DIR.
download() {
	local dir="$1"
	shift
	(cd "${dir}" && apt-get download "$@") >"${out}/download.log" 2>&1 ||
		die "apt-get download $* failed: $(cat "${out}/download.log")"
}

# --- kernel: Debian's, downloaded once --------------------------------------
kernel_deb="$(find "${cache}" -maxdepth 1 -name 'linux-image-*.deb' | sort -V | tail -n 1)"
if [ -z "${kernel_deb}" ]; then
	package="$(apt-cache depends "linux-image-${debian_arch}:${debian_arch}" | sed -n 's/^ *Depends: \(linux-image-[0-9].*\)$/\1/p' | head -n 1)"
	[ -n "${package}" ] || die "apt-cache does not know linux-image-${debian_arch}:${debian_arch} (apt-get update?)"
	say "downloading ${package}"
	download "${cache}" "${package}"
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

# --- the guest's userland (arm64: from Debian's arm64 packages) ---------------
# The programs the image carries besides the gateway, by the Debian package
# that has them.
tool_packages=(busybox-static e2fsprogs fdisk util-linux hostapd dnsmasq-base iw wpasupplicant iptables rauc dbus-daemon)
tools=(mke2fs e2fsck resize2fs sfdisk partx hostapd dnsmasq iw wpa_supplicant wpa_passphrase xtables-legacy-multi rauc dbus-daemon)
sysroot="${cache}/sysroot"
if [ "${native}" = yes ]; then
	busybox=/bin/busybox
	# ldd fails on a static binary; the image has no libraries for busybox.
	if ldd "${busybox}" >/dev/null 2>&1; then
		die "${busybox} is not statically linked (install busybox-static)"
	fi
	mke2fs_conf=/etc/mke2fs.conf
else
	# The libraries are the ones this machine's copies of the same tools
	# (same Debian release) use: their packages, in the arm64 build. The C
	# library and libgcc are the gateway's.
	library_packages() {
		for tool in "${tools[@]}"; do
			ldd "$(command -v "${tool}")" | sed -n 's/^[^/]*\/[^ ]*\/\([^/ ]*\) (0x.*$/\1/p'
		done | sort -u | while read -r soname; do
			dpkg -S "*/x86_64-linux-gnu/${soname}" 2>/dev/null | sed -n 's/^\([^:]*\):amd64: .*/\1/p' | head -n 1
		done
		echo libc6
		echo libgcc-s1
	}
	packages="$( { printf '%s\n' "${tool_packages[@]}"; library_packages; } | LC_ALL=C sort -u)"
	if [ ! -f "${sysroot}/.unpacked" ] || [ "$(cat "${sysroot}/.unpacked")" != "${packages}" ]; then
		say "downloading ${debian_arch} packages: $(echo "${packages}" | tr '\n' ' ')"
		rm -rf "${cache}/debs" "${sysroot}"
		mkdir -p "${cache}/debs" "${sysroot}"
		mapfile -t names <<<"${packages}"
		download "${cache}/debs" "${names[@]/%/:${debian_arch}}"
		for deb in "${cache}/debs"/*.deb; do
			dpkg-deb -x "${deb}" "${sysroot}"
		done
		echo "${packages}" >"${sysroot}/.unpacked"
	fi
	busybox="${sysroot}/bin/busybox"
	mke2fs_conf="${sysroot}/etc/mke2fs.conf"
fi

# run_in_guest_arch PROGRAM ARGS...: runs a program of the guest's
# architecture here (with QEMU's user mode emulation when it is not ours).
run_in_guest_arch() {
	if [ "${native}" = yes ]; then
		"$@"
	else
		"qemu-${arch}-static" -L "${sysroot}" "$@"
	fi
}

# --- the gateway binary --------------------------------------------------------
# Sources of the binary: every crate but the black-box tests.
sources_newer() {
	[ -n "$(find "${repo}" \( -path "${repo}/target" -o -path "${repo}/.git" -o -path "${repo}/tests" \
		-o -path "${repo}/image" -o -path "${repo}/buildroot" -o -path "${repo}/dist" \) -prune -o \
		\( -name '*.rs' -o -name Cargo.toml -o -name Cargo.lock \) -newer "${gateway_bin}" -print -quit)" ]
}
if [ -z "${SEED_GATEWAY_BIN:-}" ] && { [ ! -x "${gateway_bin}" ] || sources_newer; }; then
	if [ "${native}" = yes ]; then
		say "building seed-gateway (release)"
		(cd "${repo}" && CARGO_TARGET_DIR="${target_dir}" cargo build --release -p seed-gateway)
	else
		say "building seed-gateway (release, ${rust_target}, linked by ${triplet}-gcc)"
		linker_var="CARGO_TARGET_$(echo "${rust_target}" | tr 'a-z-' 'A-Z_')_LINKER"
		(cd "${repo}" && env CARGO_TARGET_DIR="${target_dir}" "${linker_var}=${triplet}-gcc" \
			"CC_${rust_target//-/_}=${triplet}-gcc" "AR_${rust_target//-/_}=${triplet}-ar" \
			cargo build --release -p seed-gateway --target "${rust_target}")
	fi
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
		echo "${arch} ${kernel_deb##*/}"
		echo "version=${SEED_IMAGE_VERSION:-}"
		sha256sum "${gateway_bin}" "${busybox}" "${keyring}"
		if [ "${native}" = yes ]; then
			sha256sum "$(command -v rauc)" "$(command -v dbus-daemon)"
		else
			ls "${cache}/debs"
		fi
		sha256sum "${repo}/Cargo.toml" "${repo}/gateway/Cargo.toml"
		find "${here}" "${br}" \( -path "${out}" -o -path "${here}/out" -o -path "${here}/out-*" \) -prune -o -type f -print |
			LC_ALL=C sort | xargs sha256sum
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

# program NAME: where the guest's copy of a tool is: this machine's, or the
# one in the arm64 packages.
program() {
	if [ "${native}" = yes ]; then
		command -v "$1" || die "no $1 on this machine"
	else
		for dir in /sbin /usr/sbin /bin /usr/bin; do
			[ -x "${sysroot}${dir}/$1" ] && { echo "${sysroot}${dir}/$1"; return; }
		done
		die "no $1 in the ${debian_arch} packages (${tool_packages[*]})"
	fi
}

# sysroot_file PATH: the file a path in the arm64 packages names, following
# symbolic links inside them.
sysroot_file() {
	local file="${sysroot}$1" target
	while [ -L "${file}" ]; do
		target="$(readlink "${file}")"
		case "${target}" in
		/*) file="${sysroot}${target}" ;;
		*) file="$(dirname "${file}")/${target}" ;;
		esac
	done
	echo "${file}"
}

# install_libs FILE ROOT: installs into ROOT, at the paths the dynamic
# loader looks at, the loader and every shared library FILE needs,
# recursively: from this machine as ldd lists them, or from the arm64
# packages as the ELF headers (readelf) name them.
install_libs() {
	if [ "${native}" = yes ]; then
		{ ldd "$1" 2>/dev/null || true; } | sed -n 's/^[^/]*\(\/[^ ]*\) (0x.*$/\1/p' | while read -r lib; do
			[ -e "$2${lib}" ] || install -D -m 0755 "$(readlink -f "${lib}")" "$2${lib}"
		done
		return
	fi
	local interpreter soname dir found
	interpreter="$(readelf -l "$1" | sed -n 's/.*\[Requesting program interpreter: \(.*\)\]$/\1/p')"
	if [ -n "${interpreter}" ] && [ ! -e "$2${interpreter}" ]; then
		install -D -m 0755 "$(sysroot_file "${interpreter}")" "$2${interpreter}"
	fi
	for soname in $(readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]$/\1/p'); do
		found=
		for dir in "/lib/${triplet}" "/usr/lib/${triplet}" /lib /usr/lib; do
			[ -e "${sysroot}${dir}/${soname}" ] && { found="${dir}/${soname}"; break; }
		done
		[ -n "${found}" ] || die "$1 needs ${soname}, which none of the ${debian_arch} packages has"
		if [ ! -e "$2${found}" ]; then
			install -D -m 0755 "$(sysroot_file "${found}")" "$2${found}"
			install_libs "$2${found}" "$2"
		fi
	done
}

# copy_with_libs FILE DEST_IN_ROOT ROOT: installs a binary and the shared
# libraries it needs.
copy_with_libs() {
	install -D -m 0755 "$1" "$3$2"
	install_libs "$1" "$3"
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
run_in_guest_arch "${busybox}" --list-full | grep -v -e '^bin/busybox$' -e '^linuxrc$' | while read -r applet; do
	ln -sf /bin/busybox "${rootfs}/${applet}"
done

cp -a "${here}/rootfs-base/." "${rootfs}/"

# What Buildroot's e2fsprogs and util-linux packages provide to S00seed-data.
for tool in /sbin/mke2fs /sbin/e2fsck /sbin/resize2fs /sbin/sfdisk /usr/bin/partx; do
	copy_with_libs "$(program "${tool##*/}")" "${tool}" "${rootfs}"
done
ln -sf mke2fs "${rootfs}/sbin/mkfs.ext4"
install -m 0644 "${mke2fs_conf}" "${rootfs}/etc/mke2fs.conf"

# What Buildroot's hostapd, dnsmasq, iw, wpa_supplicant and iptables
# (legacy) packages provide to the kiosk Wi-Fi (S60seed-wifi). QEMU has no
# Wi-Fi: a test loads mac80211_hwsim (see rootfs-modules) and drives it.
for tool in /usr/sbin/hostapd /usr/sbin/dnsmasq /usr/sbin/iw /usr/sbin/wpa_supplicant \
	/usr/bin/wpa_passphrase /usr/sbin/xtables-legacy-multi; do
	copy_with_libs "$(program "${tool##*/}")" "${tool}" "${rootfs}"
done
ln -sf xtables-legacy-multi "${rootfs}/usr/sbin/iptables"
xtables_dir="/usr/lib/${triplet}/xtables"
mkdir -p "${rootfs}${xtables_dir}"
cp -a "$([ "${native}" = yes ] || echo "${sysroot}")${xtables_dir}/." "${rootfs}${xtables_dir}/"

# What Buildroot's rauc (with D-Bus) and dbus packages provide to the A/B
# updates (S05rauc; docs/ota.md).
copy_with_libs "$(program rauc)" /usr/bin/rauc "${rootfs}"
copy_with_libs "$(program dbus-daemon)" /usr/bin/dbus-daemon "${rootfs}"

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
# The QEMU board's overlay is all QEMU plumbing (virtio ports, disks, the
# host's broker) but for two things that name the machine: RAUC's
# compatible, which keeps bundles for one architecture off the other, and
# the serial console's name (the arm64 virt machine's PL011 is ttyAMA0).
if [ "${arch}" != x86_64 ]; then
	sed -i "s/^compatible=seed-gateway-qemu-x86_64\$/compatible=seed-gateway-qemu-${arch}/" "${rootfs}/etc/rauc/system.conf"
	grep -qx "compatible=seed-gateway-qemu-${arch}" "${rootfs}/etc/rauc/system.conf" ||
		die "the QEMU board's system.conf has no compatible=seed-gateway-qemu-x86_64 to replace"
	sed -i 's/^ttyS0::/ttyAMA0::/' "${rootfs}/etc/inittab"
fi

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
run_in_guest_arch "${busybox}" --list | grep -v '^busybox$' | while read -r applet; do
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
