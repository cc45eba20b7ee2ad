#!/usr/bin/env bash
# Test-only certificates for the TLS and mTLS tests (TlsTest): a CA, a server certificate for
# localhost/127.0.0.1 and a client certificate, all signed by the CA, valid for 100 years.
# Not secrets: regenerate with `bash generate.sh` if ever needed.
set -euo pipefail
cd "$(dirname "$0")"
days=36500
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days $days -subj "/CN=intentkit test CA" 2>/dev/null
for who in server client; do
  openssl req -newkey rsa:2048 -nodes -keyout "$who.key.pkcs1" -out "$who.csr" -subj "/CN=intentkit test $who" 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=%s\n' \
    "$([ "$who" = server ] && echo serverAuth || echo clientAuth)" >"$who.ext"
  openssl x509 -req -in "$who.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -out "$who.pem" -days $days \
    -extfile "$who.ext" 2>/dev/null
  openssl pkcs8 -topk8 -nocrypt -in "$who.key.pkcs1" -out "$who.key"
  rm -f "$who.csr" "$who.ext" "$who.key.pkcs1"
done
# A second CA that signed nothing here: a client trusting only it must refuse the server.
openssl req -x509 -newkey rsa:2048 -nodes -keyout /dev/null -out other-ca.pem -days $days -subj "/CN=another CA" 2>/dev/null
rm -f ca.key ca.srl
