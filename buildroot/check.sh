#!/bin/sh
#
# Lints this BR2_EXTERNAL tree with Buildroot's own checker.
#
# Usage: buildroot/check.sh BUILDROOT_DIR
#
# BUILDROOT_DIR is a Buildroot checkout (git clone
# https://gitlab.com/buildroot.org/buildroot). check-package needs Python 3
# with the "magic" and "flake8" modules, and shellcheck (Debian:
# python3-magic python3-flake8 shellcheck).

set -eu

if [ $# -ne 1 ] || [ ! -x "$1/utils/check-package" ]; then
	echo "usage: $0 BUILDROOT_DIR (a Buildroot checkout with utils/check-package)" >&2
	exit 2
fi
buildroot="$(cd "$1" && pwd)"
external="$(cd "$(dirname "$0")" && pwd)"

# The first python3 on PATH may be a virtualenv without the modules.
python=
for candidate in python3 /usr/bin/python3; do
	if "${candidate}" -c 'import magic, flake8' 2>/dev/null; then
		python="${candidate}"
		break
	fi
done
if [ -z "${python}" ]; then
	echo "check.sh: no python3 with the magic and flake8 modules (Debian: python3-magic python3-flake8)" >&2
	exit 2
fi

# check-package takes paths relative to the tree it lints.
cd "${external}"
find . -type f ! -name '*.md' | sed 's|^\./||' | sort |
	xargs "${python}" "${buildroot}/utils/check-package" -b
