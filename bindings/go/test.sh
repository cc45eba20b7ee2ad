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
# Every Go block of docs/guide/go.md compiles: a block that declares a function stays at the
# top level; any other is the body of a function of its own, beside the stand-ins the page
# names (redirect, show, credit) and the client, context and error it starts from.
guide=$(mktemp -d -p . guide-snippets.XXXX)
trap 'rm -rf "$snippet" "$guide"' EXIT
{
  printf 'package main\n\nimport (\n'
  for p in context errors fmt io log net/http os strings time; do printf '\t"%s"\n' "$p"; done
  printf '\n\tintentkit "github.com/intentkit/intentkit/bindings/go"\n'
  printf '\tintentkitv1 "github.com/intentkit/intentkit/bindings/go/gen/intentkit/v1"\n)\n\n'
  printf 'var (\n\tclient *intentkit.Client\n\tctx    = context.Background()\n\terr    error\n)\n\n'
  printf 'var _, _, _, _, _, _ = errors.Is, fmt.Sprint, io.EOF, log.Printf, os.Getenv, strings.Join\n'
  printf 'var _ = time.Second\nvar _ = http.StatusOK\n\n'
  printf 'func redirect(string)     {}\nfunc show(string, string) {}\n'
  printf 'func credit(context.Context, string, int64) error { return nil }\n\nfunc main() {}\n'
  awk '/^```go$/{on=1; n++; body=""; next}
       on && /^```$/{on=0
         if (body ~ /^func /) printf "\n%s", body
         else printf "\nfunc block%d() error {\n%s\treturn nil\n}\n", n, body
         next}
       on {body = body $0 "\n"}' ../../docs/guide/go.md
} >"$guide/main.go"
go vet "./$guide" || { cat -n "$guide/main.go" >&2; echo "a Go block of docs/guide/go.md does not compile" >&2; exit 1; }
rm -rf "$guide"
out=$(mktemp)
trap 'rm -f "$out"' EXIT
if ! go test -race -count=1 -v ./... >"$out" 2>&1; then
  grep -vE '^=== (RUN|PAUSE|CONT)' "$out" >&2
  exit 1
fi
echo "go: $(grep -c -- '^--- PASS' "$out") passed, $(grep -c -- '^--- FAIL' "$out") failed, $(grep -c -- '^--- SKIP' "$out") skipped (the consumer child's body)"
