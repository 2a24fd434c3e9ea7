#!/bin/sh
#
# Post-build for every Seed board: shapes the target tree for a read-only
# root filesystem with a separate data partition, and for A/B updates.
#
# Environment:
#   SEED_IMAGE_VERSION  the system's version, VERSION_ID in /etc/os-release
#                       (default: the version in the repository's
#                       gateway/Cargo.toml, or the workspace's)
#   SEED_RAUC_KEYRING   the CA certificate(s), PEM, that update bundles
#                       must be signed under: /etc/rauc/keyring.pem.
#                       Without it the image cannot install updates.

set -eu

TARGET_DIR="$1"
REPO_DIR="$(cd "$(dirname "$0")/../../.." && pwd)"

# Mount point of the data partition (S00seed-data mounts it).
mkdir -p "${TARGET_DIR}/data"

# seed-wifi starts dnsmasq for the access point with a generated
# configuration; the package's own init script would start a second one.
rm -f "${TARGET_DIR}/etc/init.d/S80dnsmasq"

# No daemon without a job: nothing on the appliance uses cron.
rm -f "${TARGET_DIR}/etc/init.d/S50crond"

# S05rauc starts the system bus RAUC needs, with its own configuration;
# the dbus package's script would start a second one.
rm -f "${TARGET_DIR}/etc/init.d/S30dbus"

# --- /etc/os-release: what the box runs, and what an update must exceed -------
cargo_version() {
	# The first `version = "..."` of [package] or [workspace.package].
	sed -n '/^\[\(package\|workspace\.package\)\]/,/^\[/s/^version *= *"\([^"]*\)".*/\1/p' "$1" | head -n 1
}
version="${SEED_IMAGE_VERSION:-}"
if [ -z "${version}" ]; then
	version="$(cargo_version "${REPO_DIR}/gateway/Cargo.toml")"
	[ -n "${version}" ] || version="$(cargo_version "${REPO_DIR}/Cargo.toml")"
fi
case "${version}" in
	"" | *[!A-Za-z0-9._+~-]*)
		echo "post-build.sh: bad or missing version '${version}' (SEED_IMAGE_VERSION)" >&2
		exit 1 ;;
esac
# A regular file in /etc (image/make-bundle.sh rewrites it in a bundle's
# copy); /usr/lib/os-release, where Buildroot writes its own, points here.
rm -f "${TARGET_DIR}/etc/os-release" "${TARGET_DIR}/usr/lib/os-release"
cat >"${TARGET_DIR}/etc/os-release" <<OS_RELEASE
NAME="Seed gateway"
ID=seed-gateway
VERSION="${version}"
VERSION_ID=${version}
PRETTY_NAME="Seed gateway ${version}"
OS_RELEASE
mkdir -p "${TARGET_DIR}/usr/lib"
ln -s ../../etc/os-release "${TARGET_DIR}/usr/lib/os-release"

# --- the update keyring ---------------------------------------------------------
if [ -n "${SEED_RAUC_KEYRING:-}" ]; then
	grep -q 'BEGIN CERTIFICATE' "${SEED_RAUC_KEYRING}" || {
		echo "post-build.sh: SEED_RAUC_KEYRING=${SEED_RAUC_KEYRING} holds no PEM certificate" >&2
		exit 1
	}
	install -D -m 0644 "${SEED_RAUC_KEYRING}" "${TARGET_DIR}/etc/rauc/keyring.pem"
elif [ ! -e "${TARGET_DIR}/etc/rauc/keyring.pem" ]; then
	echo "post-build.sh: WARNING: no SEED_RAUC_KEYRING: this image cannot install updates (docs/ota.md)" >&2
fi
