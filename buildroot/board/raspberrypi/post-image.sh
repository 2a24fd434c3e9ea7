#!/bin/bash
#
# Post-image for the Raspberry Pi boards: lists the boot files into the
# genimage template, makes the blank start of the data partition, and
# writes sdcard.img.

set -euo pipefail

BINARIES_DIR="$1"
BOARD_DIR="$(dirname "$0")"

# Everything the firmware package and U-Boot put in BINARIES_DIR goes on
# the boot partition: firmware, config.txt, cmdline.txt (root= is added by
# boot.scr), overlays/, device trees, what config.txt names as its kernel
# (u-boot.bin) and U-Boot's boot script. The Linux kernel is not there: each
# root filesystem slot carries its own (/boot/Image), so an update brings
# its kernel with it.
kernel="$(sed -n 's/^kernel=//p' "${BINARIES_DIR}/rpi-firmware/config.txt")"
files=()
for f in "${BINARIES_DIR}"/rpi-firmware/* "${BINARIES_DIR}"/*.dtb "${BINARIES_DIR}/${kernel}" "${BINARIES_DIR}/boot.scr"; do
	[ -e "${f}" ] && files+=("$(printf '\t\t\t"%s",' "${f#"${BINARIES_DIR}"/}")")
done
config="${BINARIES_DIR}/genimage.cfg"
{
	sed '/#BOOT_FILES#/,$d' "${BOARD_DIR}/genimage.cfg.in"
	printf '%s\n' "${files[@]}"
	sed '1,/#BOOT_FILES#/d' "${BOARD_DIR}/genimage.cfg.in"
} >"${config}"

# Zeros over the first MiB of the data partition, so whatever an old card
# held there is not mistaken for a filesystem: S00seed-data formats a
# blank partition on first boot.
dd if=/dev/zero of="${BINARIES_DIR}/data-blank.img" bs=1M count=1 status=none

"${BOARD_DIR}/../common/genimage.sh" "${BINARIES_DIR}" "${config}"
