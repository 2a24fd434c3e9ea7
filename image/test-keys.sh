#!/usr/bin/env bash
#
# Makes a TEST signing key pair for RAUC bundles into DIR:
#
#   test-ca.cert.pem          the test CA (NOT FOR PRODUCTION): the keyring
#                             image/build.sh bakes into the QEMU test image
#   test-ca.key.pem           its private key
#   test-signing.cert.pem     a signing certificate issued by that CA
#   test-signing.key.pem      its private key (image/make-bundle.sh --key)
#   NOT-FOR-PRODUCTION        a note saying so
#
# Every common name says NOT FOR PRODUCTION, so a test key that slips into
# a release shows itself in `rauc info`, and every file says so in its
# first line. The keys are made on this machine
# and never committed; docs/ota.md says how to make and keep real ones.
#
# The extensions are the ones Debian's rauc 1.8 accepts with a default
# keyring: the CA is critical CA:TRUE with keyCertSign/cRLSign; the signing
# certificate is CA:FALSE with digitalSignature and NO extendedKeyUsage
# (codeSigning would need check-purpose=codesign in system.conf).
#
# Does nothing when DIR already holds the four PEM files (so the image's
# keyring stays the one earlier bundles were signed for).
#
# Usage: image/test-keys.sh DIR
# Needs: openssl

set -euo pipefail

[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
dir="$1"
mkdir -p "${dir}"
cd "${dir}"

if [ -f test-ca.cert.pem ] && [ -f test-ca.key.pem ] && [ -f test-signing.cert.pem ] && [ -f test-signing.key.pem ]; then
	exit 0
fi

work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT

cat >"${work}/ext.cnf" <<'CNF'
[req]
distinguished_name = dn
prompt = no

[dn]

[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash

[signing]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid,issuer
CNF

# The private keys are written with mode 0600.
umask 077
openssl req -x509 -newkey rsa:3072 -nodes -days 3650 -config "${work}/ext.cnf" -extensions ca \
	-subj "/O=Seed gateway TEST/CN=Seed gateway TEST update CA - NOT FOR PRODUCTION" \
	-keyout "${work}/ca.key" -out "${work}/ca.pem" 2>"${work}/log" || { cat "${work}/log" >&2; exit 1; }
openssl req -new -newkey rsa:3072 -nodes -config "${work}/ext.cnf" \
	-subj "/O=Seed gateway TEST/CN=Seed gateway TEST bundle signing - NOT FOR PRODUCTION" \
	-keyout "${work}/signing.key" -out "${work}/signing.csr" 2>"${work}/log" || { cat "${work}/log" >&2; exit 1; }
openssl x509 -req -in "${work}/signing.csr" -CA "${work}/ca.pem" -CAkey "${work}/ca.key" \
	-CAcreateserial -days 3650 -extfile "${work}/ext.cnf" -extensions signing \
	-out "${work}/signing.pem" 2>"${work}/log" || { cat "${work}/log" >&2; exit 1; }

umask 022
cat >"${work}/note" <<'NOTE'
These keys are TEST keys made by image/test-keys.sh. NOT FOR PRODUCTION.
Anyone with this directory can sign updates that the test image accepts.
A production image must get its keyring from SEED_RAUC_KEYRING (see docs/ota.md).
NOTE
# Each PEM file starts with a line saying what it is (OpenSSL and RAUC skip
# text before the PEM block).
marked() {
	echo "NOT FOR PRODUCTION: a test key of the Seed gateway, made by image/test-keys.sh"
	cat "$1"
}
marked "${work}/ca.pem" >"${work}/ca.marked"
marked "${work}/ca.key" >"${work}/ca.key.marked"
marked "${work}/signing.pem" >"${work}/signing.marked"
marked "${work}/signing.key" >"${work}/signing.key.marked"
install -m 0644 "${work}/ca.marked" test-ca.cert.pem
install -m 0600 "${work}/ca.key.marked" test-ca.key.pem
install -m 0644 "${work}/signing.marked" test-signing.cert.pem
install -m 0600 "${work}/signing.key.marked" test-signing.key.pem
install -m 0644 "${work}/note" NOT-FOR-PRODUCTION
