#!/usr/bin/env bash
#
# Proves this BR2_EXTERNAL tree against a real Buildroot, offline: the step a
# release goes through before its image is built (docs/image.md).
#
# Usage: buildroot/check-against-buildroot.sh [--commit REV] [--keep] [--any-buildroot] BUILDROOT_DIR
#   BUILDROOT_DIR    a checkout of Buildroot at the pinned release (below)
#   --commit REV     the commit make-tarball.sh packs (default HEAD)
#   --keep           keep the work directory (Buildroot output dirs, logs)
#   --any-buildroot  run against another Buildroot version too (for trying
#                    the next release; the result then proves nothing about the pin)
#
# For every defconfig in configs/ it checks that:
#  1. every symbol the defconfig sets is set so in the .config Buildroot makes
#     of it (a symbol Buildroot does not know, or whose dependencies are not
#     met, is dropped silently by kconfig: this is where it is caught);
#  2. savedefconfig, loaded again, gives the same .config (the round trip);
#  3. `make show-info` runs, and every download of our own packages is named
#     in the package's .hash file (BR2_DOWNLOAD_FORCE_CHECK_HASHES is on, so a
#     name Buildroot makes up, such as the cargo infrastructure's
#     `<name>-<version>-cargoN.tar.gz`, fails every build);
#  4. the seed-gateway package downloads (file:// from dist/, the tarball
#     make-tarball.sh made; the cargo download post-process sees VENDOR/),
#     passes its hash check and extracts, and the extracted workspace
#     resolves every crate offline from VENDOR/ with an empty cargo home.
#
# What it does not do: build anything. A full build needs the network (the
# toolchain, kernel and host packages are downloaded and hash-checked).
# Step 4 runs without host-rustc and host-tar, which Buildroot would download
# and build first: host-rustc only runs `cargo vendor` for tarballs without
# VENDOR/, and host-tar exists for reproducible tarball creation (the host's
# tar extracts our tarball as well). Both are overridden on the make command
# line of that step only.
#
# Needs: what Buildroot's `make` needs on the host (support/dependencies;
# on Debian build-essential, rsync, bc, cpio, unzip, file, wget), python3, git,
# cargo and what make-tarball.sh needs. About 20 minutes on 2 busy cores
# (2026-12-03), most of it make-tarball.sh and Buildroot's kconfig.

set -euo pipefail

# The Buildroot the tree is tested with; docs/image.md names the same.
PINNED_BUILDROOT_VERSION=2026.05.1
PINNED_BUILDROOT_COMMIT=cb857ba4c87a93e5265a9e4a3f32071abf39e14a

commit=HEAD
keep=no
any_buildroot=no
while [ $# -gt 0 ]; do
	case "$1" in
	--commit) commit="$2"; shift 2 ;;
	--keep) keep=yes; shift ;;
	--any-buildroot) any_buildroot=yes; shift ;;
	-h|--help) sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; exit 0 ;;
	-*) echo "check-against-buildroot.sh: unknown option '$1' (try --help)" >&2; exit 2 ;;
	*) break ;;
	esac
done
if [ $# -ne 1 ] || [ ! -f "$1/Makefile" ] || [ ! -d "$1/package" ]; then
	echo "usage: $0 [--commit REV] [--keep] [--any-buildroot] BUILDROOT_DIR (a Buildroot checkout)" >&2
	exit 2
fi
buildroot="$(cd "$1" && pwd)"
external="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

failures=0
fail() {
	echo "FAIL: $*" >&2
	failures=$((failures + 1))
}
step() {
	echo "== $*"
}

br_version="$(sed -n 's/^export BR2_VERSION := //p' "${buildroot}/Makefile")"
br_commit="$(git -C "${buildroot}" rev-parse --verify -q 'HEAD^{commit}' 2>/dev/null || echo "not a git checkout")"
step "Buildroot ${br_version} (${br_commit}) in ${buildroot}"
if [ "${br_version}" != "${PINNED_BUILDROOT_VERSION}" ] ||
	{ [ "${br_commit}" != "not a git checkout" ] && [ "${br_commit}" != "${PINNED_BUILDROOT_COMMIT}" ]; }; then
	msg="the tree is pinned to Buildroot ${PINNED_BUILDROOT_VERSION} (${PINNED_BUILDROOT_COMMIT})"
	if [ "${any_buildroot}" = yes ]; then
		echo "warning: ${msg}; going on (--any-buildroot)" >&2
	else
		echo "check-against-buildroot.sh: ${msg}; check out that commit, or pass --any-buildroot" >&2
		exit 2
	fi
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/seed-br-check.XXXXXX")"
if [ "${keep}" = yes ]; then
	echo "work directory: ${work} (kept)"
else
	trap 'rm -rf "${work}"' EXIT
fi

# Buildroot's make, quiet unless it fails; its output goes to a log per call.
br_make() {
	local out="$1" log="$2"
	shift 2
	if ! make -C "${buildroot}" O="${out}" BR2_EXTERNAL="${external}" "$@" >"${log}" 2>&1; then
		tail -n 20 "${log}" >&2
		return 1
	fi
}

# Prints the symbol lines (set or "is not set") of a defconfig or .config.
symbol_lines() {
	grep -E '^(BR2_[A-Za-z0-9_]+=|# BR2_[A-Za-z0-9_]+ is not set$)' "$1" || true
}

# Every symbol the defconfig names must have the value it gives in .config.
check_symbols_kept() {
	local defconfig="$1" config="$2" line sym
	local dropped=0
	while IFS= read -r line; do
		case "${line}" in
		"# "*)
			sym="${line#\# }"
			sym="${sym%% *}"
			if grep -q "^${sym}=" "${config}"; then
				fail "$(basename "${defconfig}"): ${sym} is meant to be unset but is $(grep "^${sym}=" "${config}")"
				dropped=1
			fi
			;;
		*)
			if ! grep -qxF -- "${line}" "${config}"; then
				sym="${line%%=*}"
				fail "$(basename "${defconfig}"): '${line}' was dropped; .config has: $(grep -E "^(# )?${sym}[= ]" "${config}" || echo "no ${sym} at all (unknown symbol or unmet dependency)")"
				dropped=1
			fi
			;;
		esac
	done < <(symbol_lines "${defconfig}")
	return "${dropped}"
}

defconfigs=()
for path in "${external}"/configs/*_defconfig; do
	defconfigs+=("$(basename "${path}")")
done

for defconfig in "${defconfigs[@]}"; do
	name="${defconfig%_defconfig}"
	out="${work}/${name}"
	step "${defconfig}: load, round trip through savedefconfig"
	if ! br_make "${out}" "${work}/${name}.defconfig.log" "${defconfig}"; then
		fail "${defconfig}: Buildroot does not load it (log above)"
		continue
	fi
	check_symbols_kept "${external}/configs/${defconfig}" "${out}/.config" &&
		echo "   all $(symbol_lines "${external}/configs/${defconfig}" | wc -l) symbols kept"

	saved="${work}/${name}.saved_defconfig"
	br_make "${out}" "${work}/${name}.savedefconfig.log" savedefconfig BR2_DEFCONFIG="${saved}" ||
		fail "${defconfig}: savedefconfig failed"
	br_make "${work}/${name}-roundtrip" "${work}/${name}.roundtrip.log" defconfig BR2_DEFCONFIG="${saved}" ||
		fail "${defconfig}: the saved defconfig does not load"
	# BR2_DEFCONFIG records which file the .config was made from: it differs by design.
	if diff -u <(symbol_lines "${out}/.config" | grep -v '^BR2_DEFCONFIG=') \
		<(symbol_lines "${work}/${name}-roundtrip/.config" | grep -v '^BR2_DEFCONFIG=') \
		>"${work}/${name}.roundtrip.diff"; then
		echo "   savedefconfig round trip: same .config"
	else
		cat "${work}/${name}.roundtrip.diff" >&2
		fail "${defconfig}: savedefconfig does not give the same .config back"
	fi
	# A symbol of ours that savedefconfig leaves out is implied (a default, or
	# selected by another): not an error, but worth knowing when a later
	# release changes a default.
	redundant="$(comm -23 <(symbol_lines "${external}/configs/${defconfig}" | sort) <(symbol_lines "${saved}" | sort) |
		sed 's/=.*//; s/^# \(BR2_[A-Za-z0-9_]*\).*/\1/' | tr '\n' ' ')"
	[ -n "${redundant}" ] && echo "   implied, so savedefconfig omits them: ${redundant}"

	step "${defconfig}: make show-info"
	if make -C "${buildroot}" O="${out}" BR2_EXTERNAL="${external}" -s show-info \
		>"${work}/${name}.show-info.json" 2>"${work}/${name}.show-info.err" &&
		python3 - "${work}/${name}.show-info.json" "${external}" <<-'EOF'
			# Every download of a package from this tree must be named in one of
			# its .hash files, or the forced hash check fails the build.
			import json, os, sys
			info = json.load(open(sys.argv[1]))
			external = os.path.realpath(sys.argv[2])
			bad = 0
			ours = 0
			for name, pkg in sorted(info.items()):
			    pkg_dir = pkg.get("package_dir") or ""
			    if not os.path.realpath(pkg_dir).startswith(external + os.sep):
			        continue
			    ours += 1
			    hashed = set()
			    for hash_file in pkg.get("hashes", []):
			        for line in open(hash_file):
			            fields = line.split()
			            if len(fields) == 3 and not line.startswith("#"):
			                hashed.add(fields[2])
			    for download in pkg.get("downloads", []):
			        source = download["source"]
			        if source not in hashed:
			            print(f"FAIL: {name} {pkg.get('version')}: Buildroot fetches {source!r}, "
			                  f"but its .hash names {sorted(hashed) or 'nothing'}", file=sys.stderr)
			            bad += 1
			        else:
			            print(f"   {name} {pkg.get('version')}: {source} is in its .hash")
			if ours == 0:
			    print("FAIL: show-info lists no package of this tree", file=sys.stderr)
			    bad += 1
			sys.exit(1 if bad else 0)
		EOF
	then
		:
	else
		fail "${defconfig}: make show-info failed or names an unhashed download (above)"
	fi
done

step "seed-gateway: the tarball, as make-tarball.sh makes it (commit ${commit})"
pkg_dir="${external}/package/seed-gateway"
tarball_log="${work}/make-tarball.log"
if ! "${pkg_dir}/make-tarball.sh" --commit "${commit}" --no-hash >"${tarball_log}" 2>&1; then
	tail -n 20 "${tarball_log}" >&2
	echo "check-against-buildroot.sh: make-tarball.sh failed (log above)" >&2
	exit 1
fi
tarball="$(grep '^/.*\.tar\.gz$' "${tarball_log}" | tail -n 1)"
made_hash="$(sha256sum "${tarball}" | cut -d' ' -f1)"
echo "   ${tarball} sha256 ${made_hash}"
if ! grep -q "^sha256  ${made_hash}  $(basename "${tarball}")$" "${pkg_dir}/seed-gateway.hash"; then
	fail "seed-gateway.hash does not pin the tarball of ${commit}: run make-tarball.sh (it rewrites the .hash) and commit the .hash; it says:
$(cat "${pkg_dir}/seed-gateway.hash")"
fi

for defconfig in "${defconfigs[@]}"; do
	name="${defconfig%_defconfig}"
	out="${work}/${name}"
	[ -f "${out}/.config" ] || continue
	step "${defconfig}: seed-gateway download (file://), hash check, cargo post-process, extract"
	# A download directory of its own: nothing may come from an earlier run.
	if ! BR2_DL_DIR="${work}/dl-${name}" br_make "${out}" "${work}/${name}.extract.log" \
		SEED_GATEWAY_DOWNLOAD_DEPENDENCIES= BR2_TAR_HOST_DEPENDENCY= TAR=tar \
		seed-gateway-extract; then
		fail "${defconfig}: make seed-gateway-extract failed (log above)"
		continue
	fi
	src="${out}/build/seed-gateway-$(sed -n 's/^SEED_GATEWAY_VERSION = //p' "${pkg_dir}/seed-gateway.mk")"
	if [ ! -d "${src}/VENDOR" ] || [ ! -f "${src}/.cargo/config.toml" ]; then
		fail "${defconfig}: the extracted source has no VENDOR/ or .cargo/config.toml"
		continue
	fi
	# What Buildroot's build step does first, from the directory it builds in
	# (SEED_GATEWAY_SUBDIR), with no cargo cache to fall back on.
	if (cd "${src}/gateway" && CARGO_HOME="${work}/empty-cargo-home" \
		cargo fetch --offline --locked --manifest-path Cargo.toml) >"${work}/${name}.fetch.log" 2>&1; then
		echo "   extracted; every crate resolves offline from VENDOR/ ($(find "${src}/VENDOR" -mindepth 1 -maxdepth 1 -type d | wc -l) crates)"
	else
		tail -n 20 "${work}/${name}.fetch.log" >&2
		fail "${defconfig}: the extracted workspace does not resolve offline (log above)"
	fi
done

if [ "${failures}" -ne 0 ]; then
	echo "check-against-buildroot.sh: ${failures} failure(s) against Buildroot ${br_version}" >&2
	exit 1
fi
echo "check-against-buildroot.sh: the tree passes against Buildroot ${br_version} (${br_commit})"
