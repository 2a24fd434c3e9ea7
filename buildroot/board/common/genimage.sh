#!/bin/sh
#
# Runs genimage on CONFIG with the images of BINARIES_DIR as input and
# output, the way every Seed board's post-image script needs it.
#
# Usage: genimage.sh BINARIES_DIR CONFIG
#
# The root filesystem image is built by Buildroot already, so genimage gets
# an empty root path instead of a copy of the target tree.

set -eu

binaries_dir="$1"
config="$2"
work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT

mkdir -p "${work}/root"
genimage \
	--rootpath "${work}/root" \
	--tmppath "${work}/tmp" \
	--inputpath "${binaries_dir}" \
	--outputpath "${binaries_dir}" \
	--config "${config}"
