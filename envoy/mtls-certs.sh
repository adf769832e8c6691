#!/usr/bin/env bash
# Writes TEST-ONLY certificates for envoy/mtls.yaml into DIR (default
# target/mtls-certs), with the openssl CLI. Private keys are written next to
# the certificates: never use them outside a test.
#
#   envoy/mtls-certs.sh [DIR]
#
#   ca.pem                          the test CA the shop-api listener trusts
#   shop-api.pem, shop-api.key      the server: DNS shop-api.palisade.test,
#                                   URI spiffe://palisade.test/ns/shop/sa/shop-api
#   orders.pem, orders.key          client, URI spiffe://palisade.test/ns/shop/sa/orders
#   intruder.pem, intruder.key      client, URI spiffe://palisade.test/ns/shop/sa/intruder
#   rogue-ca.pem                    a second CA that nobody trusts
#   rogue-orders.pem, .key          client signed by rogue-ca, claiming the
#                                   orders URI: must fail the handshake
#
# Keys are ECDSA P-256; certificates are valid for 30 days. Running it again
# replaces everything in DIR with new keys. The real-Envoy test
# tests/tests/envoy_mtls.rs runs this script, so what it writes is tested.
set -euo pipefail

DIR=${1:-target/mtls-certs}
DAYS=30
TRUST_DOMAIN=palisade.test

mkdir -p "$DIR"
cd "$DIR"
umask 077

# Extensions come from this file only: the system openssl.cnf can add its own
# defaults to `req -x509`, and they differ between distributions.
cat >ext.cnf <<'EOF'
[req]
distinguished_name = dn
[dn]
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = $ENV::SAN
[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectAltName = $ENV::SAN
EOF

# Runs a command, showing its chatter only when it fails.
quiet() { local out; out=$("$@" 2>&1) || { echo "$out" >&2; return 1; }; }

key() { quiet openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.key"; }

# ca NAME SUBJECT
ca() {
  key "$1"
  SAN= openssl req -x509 -new -key "$1.key" -subj "$2" -days "$DAYS" \
    -config ext.cnf -extensions ca -out "$1.pem"
}

# leaf NAME CA PROFILE SAN
leaf() {
  key "$1"
  SAN=$4 openssl req -new -key "$1.key" -subj "/O=Palisade test/CN=$1" \
    -config ext.cnf -out "$1.csr"
  SAN=$4 quiet openssl x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2.key" \
    -set_serial "0x$(openssl rand -hex 16)" -days "$DAYS" \
    -extfile ext.cnf -extensions "$3" -out "$1.pem"
  rm -f "$1.csr"
}

spiffe() { echo "URI:spiffe://$TRUST_DOMAIN/ns/shop/sa/$1"; }

ca ca "/O=Palisade test/CN=Palisade test CA"
leaf shop-api ca server "DNS:shop-api.$TRUST_DOMAIN, $(spiffe shop-api)"
leaf orders ca client "$(spiffe orders)"
leaf intruder ca client "$(spiffe intruder)"
ca rogue-ca "/O=Somebody else/CN=Rogue CA"
leaf rogue-orders rogue-ca client "$(spiffe orders)"

# Nobody needs the CA keys after signing; Envoy needs the leaf keys readable.
rm -f ca.key rogue-ca.key ext.cnf
chmod 644 ./*.pem
chmod 600 ./*.key
echo "test certificates written to $(pwd)" >&2
