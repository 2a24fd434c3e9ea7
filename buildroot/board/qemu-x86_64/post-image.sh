#!/bin/sh
#
# Post-image for QEMU x86_64: the system disk (genimage.cfg) and a blank
# data disk, plus the command line to boot them (start-qemu.sh).

set -eu

BINARIES_DIR="$1"
BOARD_DIR="$(dirname "$0")"

"${BOARD_DIR}/../common/genimage.sh" "${BINARIES_DIR}" "${BOARD_DIR}/genimage.cfg"

# Blank: S00seed-data formats it on first boot. Never overwrite an existing
# one, it holds the gateway's messages.
[ -e "${BINARIES_DIR}/data.img" ] || truncate -s 256M "${BINARIES_DIR}/data.img"

install -m 0755 "${BOARD_DIR}/start-qemu.sh" "${BINARIES_DIR}/start-qemu.sh"
