#!/bin/sh
#
# Post-build for every Seed board: shapes the target tree for a read-only
# root filesystem with a separate data partition.

set -eu

TARGET_DIR="$1"

# Mount point of the data partition (S00seed-data mounts it).
mkdir -p "${TARGET_DIR}/data"

# seed-wifi starts dnsmasq for the access point with a generated
# configuration; the package's own init script would start a second one.
rm -f "${TARGET_DIR}/etc/init.d/S80dnsmasq"

# No daemon without a job: nothing on the appliance uses cron.
rm -f "${TARGET_DIR}/etc/init.d/S50crond"
