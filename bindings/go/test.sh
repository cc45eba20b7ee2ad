#!/usr/bin/env bash
# The Go client's checks: generated stubs match proto/ (no drift), gofmt, go vet, then
# go test -race against the real intentkitd ($INTENTKITD, or target/debug/intentkitd).
set -euo pipefail
cd "$(dirname "$0")"
bash generate.sh --check
unformatted=$(gofmt -l .)
[ -z "$unformatted" ] || { echo "gofmt: $unformatted" >&2; exit 1; }
go vet ./...
out=$(mktemp)
trap 'rm -f "$out"' EXIT
if ! go test -race -count=1 -v ./... >"$out" 2>&1; then
  grep -vE '^=== (RUN|PAUSE|CONT)' "$out" >&2
  exit 1
fi
echo "go: $(grep -c -- '^--- PASS' "$out") passed, $(grep -c -- '^--- FAIL' "$out") failed, $(grep -c -- '^--- SKIP' "$out") skipped (the consumer child's body)"
