#!/usr/bin/env bash
# The Go client's checks: generated stubs match proto/ (no drift), gofmt, go vet, then
# go test -race against the real intentkitd ($INTENTKITD, or target/debug/intentkitd).
set -euo pipefail
cd "$(dirname "$0")"
bash generate.sh --check
unformatted=$(gofmt -l .)
[ -z "$unformatted" ] || { echo "gofmt: $unformatted" >&2; exit 1; }
go vet ./...
# The README's Go snippet compiles as pasted (inside a main with ctx and a credit function).
snippet=$(mktemp -d -p . readme-snippet.XXXX)
trap 'rm -rf "$snippet"' EXIT
{
  printf 'package main\n\nimport (\n\t"context"\n\t"fmt"\n\t"log"\n\n'
  printf '\tintentkit "github.com/intentkit/intentkit/bindings/go"\n'
  printf '\tintentkitv1 "github.com/intentkit/intentkit/bindings/go/gen/intentkit/v1"\n)\n\n'
  printf 'func credit(*intentkit.Event) error { return nil }\n\nfunc main() {\n\tctx := context.Background()\n'
  awk '/^```go$/{on=1; next} on && /^```$/{exit} on' ../../README.md
  printf '\t_ = err\n}\n'
} >"$snippet/main.go"
go vet "./$snippet" || { cat -n "$snippet/main.go" >&2; exit 1; }
rm -rf "$snippet"
out=$(mktemp)
trap 'rm -f "$out"' EXIT
if ! go test -race -count=1 -v ./... >"$out" 2>&1; then
  grep -vE '^=== (RUN|PAUSE|CONT)' "$out" >&2
  exit 1
fi
echo "go: $(grep -c -- '^--- PASS' "$out") passed, $(grep -c -- '^--- FAIL' "$out") failed, $(grep -c -- '^--- SKIP' "$out") skipped (the consumer child's body)"
