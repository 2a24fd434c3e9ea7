#!/usr/bin/env bash
#
# Makes a signed RAUC update bundle (format verity) of a root filesystem
# image, for the A/B updates of docs/ota.md.
#
# Usage: image/make-bundle.sh --cert CERT --key KEY --compatible C --version V
#                             [--rootfs ROOTFS.ext4] OUT.raucb
#
#   --cert, --key   the signing certificate and its key (PEM). Test ones:
#                   image/test-keys.sh DIR. A PKCS#11 URI works for --key
#                   too (rauc reads it; RAUC_PKCS11_MODULE/RAUC_PKCS11_PIN).
#   --compatible    must equal [system] compatible= of the target's
#                   /etc/rauc/system.conf: seed-gateway-qemu-x86_64,
#                   seed-gateway-qemu-aarch64, seed-gateway-rpi4 or
#                   seed-gateway-rpi0-2w
#   --version       the version of this update; written into the bundle's
#                   manifest AND into /etc/os-release (VERSION_ID) of the
#                   bundled root filesystem, so that the version the
#                   manifest announces is the version the box runs after
#                   installing it
#   --rootfs        the ext4 image (default image/out/rootfs.ext4). It is
#                   copied; the original is never changed.
#
# Needs (Debian): rauc squashfs-tools e2fsprogs (debugfs).

set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cert=
key=
compatible=
version=
rootfs="${SEED_IMAGE_OUT:-${here}/out}/rootfs.ext4"
out=

say() { echo "make-bundle.sh: $*" >&2; }
die() { say "$*"; exit 1; }
usage() { sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; exit 2; }

while [ $# -gt 0 ]; do
	case "$1" in
	--cert) cert="$2"; shift 2 ;;
	--key) key="$2"; shift 2 ;;
	--compatible) compatible="$2"; shift 2 ;;
	--version) version="$2"; shift 2 ;;
	--rootfs) rootfs="$2"; shift 2 ;;
	-h | --help) usage ;;
	-*) die "unknown option '$1' (try --help)" ;;
	*) [ -z "${out}" ] || die "more than one output file"; out="$1"; shift ;;
	esac
done
[ -n "${cert}" ] && [ -n "${key}" ] && [ -n "${compatible}" ] && [ -n "${version}" ] && [ -n "${out}" ] ||
	usage
# The version ends up in os-release and the manifest as is: keep it to
# what both can carry without quoting.
case "${version}" in
*[!A-Za-z0-9._+~-]* | "") die "version '${version}' may only contain A-Z a-z 0-9 . _ + ~ -" ;;
esac
case "${compatible}" in
*[!A-Za-z0-9._-]*) die "compatible '${compatible}' may only contain A-Z a-z 0-9 . _ -" ;;
esac
[ -f "${rootfs}" ] || die "no root filesystem image ${rootfs} (image/build.sh makes image/out/rootfs.ext4)"
[ -f "${cert}" ] || die "no certificate ${cert}"
for tool in rauc debugfs mksquashfs; do
	command -v "${tool}" >/dev/null || die "missing tool '${tool}' (Debian: rauc e2fsprogs squashfs-tools)"
done

work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT
mkdir "${work}/bundle"
cp --sparse=always "${rootfs}" "${work}/bundle/rootfs.ext4"

# Stamp the version into the copy's /etc/os-release, without mounting it.
debugfs -R "cat /etc/os-release" "${work}/bundle/rootfs.ext4" >"${work}/os-release" 2>"${work}/debugfs.log" ||
	die "cannot read /etc/os-release of ${rootfs}: $(cat "${work}/debugfs.log")"
grep -q '^VERSION_ID=' "${work}/os-release" ||
	die "${rootfs} has no VERSION_ID in /etc/os-release (not an image of image/build.sh?)"
sed -i -e "s/^VERSION_ID=.*/VERSION_ID=${version}/" \
	-e "s/^VERSION=.*/VERSION=\"${version}\"/" \
	-e "s/^PRETTY_NAME=.*/PRETTY_NAME=\"Seed gateway ${version}\"/" "${work}/os-release"
chmod 0644 "${work}/os-release"
debugfs -w -f - "${work}/bundle/rootfs.ext4" >"${work}/debugfs.log" 2>&1 <<CMDS
rm /etc/os-release
write ${work}/os-release /etc/os-release
sif /etc/os-release uid 0
sif /etc/os-release gid 0
CMDS
stamped="$(debugfs -R "cat /etc/os-release" "${work}/bundle/rootfs.ext4" 2>/dev/null | sed -n 's/^VERSION_ID=//p')"
[ "${stamped}" = "${version}" ] || die "stamping the version failed: $(cat "${work}/debugfs.log")"
# debugfs leaves the filesystem consistent; make sure before shipping it.
e2fsck -fn "${work}/bundle/rootfs.ext4" >"${work}/fsck.log" 2>&1 ||
	die "the stamped root filesystem does not check clean: $(cat "${work}/fsck.log")"

cat >"${work}/bundle/manifest.raucm" <<MANIFEST
[update]
compatible=${compatible}
version=${version}
description=Seed gateway ${version}

[bundle]
format=verity

[image.rootfs]
filename=rootfs.ext4
MANIFEST

mkdir -p "$(dirname "${out}")"
rm -f "${out}"
rauc bundle --cert "${cert}" --key "${key}" "${work}/bundle" "${out}" >"${work}/rauc.log" 2>&1 ||
	die "rauc bundle failed: $(cat "${work}/rauc.log")"
say "${out}: ${compatible} ${version} ($(du -h "${out}" | cut -f1))"
