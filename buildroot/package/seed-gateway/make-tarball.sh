#!/usr/bin/env bash
#
# Packs the seed-gateway Cargo workspace at a git commit, with every crate it
# depends on vendored, into dist/seed-gateway-VERSION.tar.gz, and records the
# tarball's sha256 in seed-gateway.hash.
#
# Why a tarball of our own: Buildroot builds cargo packages with
# `cargo build --offline --locked`, so the crates must be in the source. For a
# remote tarball Buildroot vendors them at download time, but a local source
# (site method "local") skips that step. A tarball that already carries
# VENDOR/ and .cargo/config.toml is left untouched by Buildroot's cargo
# post-process, builds with no network, and BR2_DOWNLOAD_FORCE_CHECK_HASHES
# can pin all of it with one hash.
#
# The archive is reproducible: the same commit (and the same Cargo.lock)
# gives the same bytes. Only the Rust workspace goes in (buildroot/, image/
# and docs/ are left out), and the timestamps are those of the last commit
# that touched it, so a commit that only updates the .hash file does not
# change the tarball.
#
# Usage: make-tarball.sh [--commit REV] [--out DIR] [--no-hash] [--print-name]
#   --commit REV  commit to pack (default HEAD; uncommitted changes are not packed)
#   --out DIR     where the tarball goes (default <repo>/dist, which is where
#                 SEED_GATEWAY_SITE points)
#   --no-hash     do not rewrite seed-gateway.hash
#   --print-name  print the tarball's file name and stop (SEED_GATEWAY_SOURCE
#                 in seed-gateway.mk must be this name; a test checks it)
#
# Needs: git, cargo (network access to crates.io, or every crate already in
# the cargo cache), GNU tar, gzip, sha256sum.

set -euo pipefail

pkg_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(git -C "${pkg_dir}" rev-parse --show-toplevel)"
commit=HEAD
out_dir="${repo}/dist"
update_hash=yes
print_name=no

while [ $# -gt 0 ]; do
	case "$1" in
	--commit) commit="$2"; shift 2 ;;
	--out) out_dir="$2"; shift 2 ;;
	--no-hash) update_hash=no; shift ;;
	--print-name) print_name=yes; shift ;;
	-h|--help) sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; exit 0 ;;
	*) echo "make-tarball.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
	esac
done

# The version lives in two places; a tarball named after one but built from
# the other would be a silent lie, so refuse.
mk_version="$(sed -n 's/^SEED_GATEWAY_VERSION = //p' "${pkg_dir}/seed-gateway.mk")"
cargo_version="$(git -C "${repo}" show "${commit}:Cargo.toml" |
	sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p')"
if [ "${mk_version}" != "${cargo_version}" ]; then
	echo "make-tarball.sh: seed-gateway.mk says ${mk_version}, Cargo.toml at ${commit} says ${cargo_version};" \
		"set SEED_GATEWAY_VERSION to the workspace version" >&2
	exit 1
fi

name="seed-gateway-${mk_version}"
tarball_name="${name}.tar.gz"
if [ "${print_name}" = yes ]; then
	echo "${tarball_name}"
	exit 0
fi
sha="$(git -C "${repo}" rev-parse --verify "${commit}^{commit}")"
# Everything but the appliance tree itself.
pathspec=(. ':(exclude)buildroot' ':(exclude)image' ':(exclude)docs')
epoch="$(git -C "${repo}" log -1 --format=%ct "${sha}" -- "${pathspec[@]}")"

work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT

git -C "${repo}" archive --format=tar --prefix="${name}/" "${sha}" -- "${pathspec[@]}" |
	tar -x -C "${work}"

echo "Vendoring crates for ${name} (commit ${sha:0:12})..." >&2
(
	cd "${work}/${name}"
	mkdir -p .cargo
	# The same command Buildroot's cargo post-process runs, so the result is
	# what a remote tarball would have become.
	cargo vendor --locked --manifest-path gateway/Cargo.toml VENDOR >.cargo/config.toml
	echo "(.cargo/config.toml written with the lines above)" >&2
)

mkdir -p "${out_dir}"
tarball="${out_dir}/${tarball_name}"
tar -C "${work}" \
	--sort=name --format=posix \
	--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
	--mtime="@${epoch}" --owner=0 --group=0 --numeric-owner \
	--mode='go=u,go-w' \
	-cf - "${name}" | gzip -9 -n >"${tarball}.tmp"
mv "${tarball}.tmp" "${tarball}"

hash="$(sha256sum "${tarball}" | cut -d' ' -f1)"
echo "${tarball}" >&2
echo "sha256 ${hash}" >&2

if [ "${update_hash}" = yes ]; then
	cat >"${pkg_dir}/seed-gateway.hash" <<-EOF
		# Locally computed by make-tarball.sh from commit ${sha}
		sha256  ${hash}  ${tarball_name}
	EOF
	echo "updated ${pkg_dir}/seed-gateway.hash" >&2
fi
