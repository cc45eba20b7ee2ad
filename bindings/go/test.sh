#!/usr/bin/env bash
# The Go client's checks: generated stubs match proto/ (no drift), gofmt, go vet, the doc lint
# (every exported identifier documented), the README snippet compiles, the install steps of
# docs/guide/go.md work in a module outside bindings/go, every Go block of that page runs
# against a real `intentkitd --sandbox` and prints what the page says, then go test -race
# (unit tests, the fake's tests, and the tests against the real intentkitd, which start their
# own servers). The server is $INTENTKITD, or target/debug/intentkitd.
set -euo pipefail
cd "$(dirname "$0")"
root=$(cd ../.. && pwd)
export INTENTKITD=${INTENTKITD:-$root/target/debug/intentkitd}
[ -x "$INTENTKITD" ] || { echo "no intentkitd at $INTENTKITD: cargo build -p intentkit-grpc-server, or set INTENTKITD" >&2; exit 1; }

# The user modules live outside bindings/go, as a user's would.
work=$(mktemp -d)
sandbox_pid=""
cleanup() {
  if [ -n "$sandbox_pid" ]; then kill "$sandbox_pid" 2>/dev/null || true; wait "$sandbox_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

bash generate.sh --check
unformatted=$(gofmt -l .)
[ -z "$unformatted" ] || { echo "gofmt: $unformatted" >&2; exit 1; }
go vet ./...
go run ./internal/doccheck . ./intentkittest
echo "go doc lint: every exported identifier documented, every Type.Member in a comment exists"

# The README's Go snippet compiles as pasted (inside a main with ctx and a credit function).
snippet=$(mktemp -d -p . readme-snippet.XXXX)
{
  printf 'package main\n\nimport (\n\t"context"\n\t"fmt"\n\t"log"\n\n'
  printf '\tintentkit "github.com/intentkit/intentkit/bindings/go"\n'
  printf '\tintentkitv1 "github.com/intentkit/intentkit/bindings/go/gen/intentkit/v1"\n)\n\n'
  printf 'func credit(*intentkit.Event) error { return nil }\n\nfunc main() {\n\tctx := context.Background()\n'
  awk '/^```go$/{on=1; next} on && /^```$/{exit} on' ../../README.md
  printf '\t_ = err\n}\n'
} >"$snippet/main.go"
go vet "./$snippet" || { cat -n "$snippet/main.go" >&2; rm -rf "$snippet"; exit 1; }
rm -rf "$snippet"

# A sandbox on free ports (each listener binds port 0; the addresses come from what it prints).
INTENTKIT_SERVER_GRPC_ADDR=127.0.0.1:0 INTENTKIT_SERVER_HTTP_ADDR=127.0.0.1:0 INTENTKIT_SERVER_METRICS_ADDR= \
  INTENTKIT_SANDBOX_PIENTEGRA_ADDR=127.0.0.1:0 INTENTKIT_SANDBOX_DECENTRO_ADDR=127.0.0.1:0 \
  "$INTENTKITD" --sandbox --data-dir "$work/data" >"$work/sandbox.txt" 2>"$work/sandbox.err" &
sandbox_pid=$!
for _ in $(seq 300); do grep -q "simulators" "$work/sandbox.txt" && break; sleep 0.1; done
grpc_addr=$(sed -n 's/^ *gRPC *\([^ ]*\).*/\1/p' "$work/sandbox.txt")
pientegra=$(sed -n 's/^ *simulators *pientegra *\([^ ]*\).*/\1/p' "$work/sandbox.txt")
[ -n "$grpc_addr" ] && [ -n "$pientegra" ] || { cat "$work/sandbox.txt" "$work/sandbox.err" >&2; echo "the sandbox did not start" >&2; exit 1; }

sh_block() { # sh_block N: the Nth sh block of docs/guide/go.md
  awk -v want="$1" '/^```sh$/{on=1; n++; next} on && /^```$/{on=0; next} on && n == want' "$root/docs/guide/go.md"
}

# The guide's program, in a module of its own that uses the client as the Install section says
# (its first sh block: go mod edit -replace, go mod tidy).
mkdir "$work/guide"
(cd "$work/guide" && go mod init example.com/guide >/dev/null 2>&1)
{
  printf 'package main\n\nimport (\n'
  for p in cmp context errors fmt io log log/slog net/http net/http/httptest os strings time; do printf '\t"%s"\n' "$p"; done
  printf '\n\tintentkit "github.com/intentkit/intentkit/bindings/go"\n'
  printf '\tintentkitv1 "github.com/intentkit/intentkit/bindings/go/gen/intentkit/v1"\n'
  printf '\t"github.com/intentkit/intentkit/bindings/go/intentkittest"\n'
  printf '\t"google.golang.org/grpc"\n\t"google.golang.org/grpc/credentials/insecure"\n'
  printf '\t"google.golang.org/grpc/keepalive"\n\t"google.golang.org/grpc/status"\n)\n\n'
  printf 'var _, _, _, _, _, _ = cmp.Or[string], errors.Is, io.EOF, log.Printf, os.Getenv, strings.Join\n'
  printf 'var _, _, _, _ = slog.Default, http.StatusOK, httptest.NewRecorder, time.Second\n'
  printf 'var _, _, _, _ = intentkittest.NewServer, grpc.NewClient, insecure.NewCredentials, status.Code\n'
  printf 'var _ keepalive.ClientParameters\nvar _ intentkitv1.Provider\n\n'
  printf '// Stand-ins for the host'"'"'s own code.\n'
  printf 'func redirect(string)     {}\nfunc show(string, string) {}\n'
  printf 'func credit(context.Context, string, int64) error { return nil }\n\n'
  printf 'func main() {\n\tif err := run(context.Background()); err != nil {\n\t\tlog.Fatal(err)\n\t}\n}\n'
} >"$work/guide/main.go"
awk -v PROG="$work/guide/main.go" -v WANT="$work/guide/want.txt" -f guide.awk "$root/docs/guide/go.md" \
  || { echo "no Go block found in docs/guide/go.md" >&2; exit 1; }
(cd "$work/guide" && INTENTKIT="$root" bash -euo pipefail -c "$(sh_block 1)") \
  || { echo "the Install steps of docs/guide/go.md failed" >&2; exit 1; }
grep -q '^replace github.com/intentkit/intentkit/bindings/go' "$work/guide/go.mod" \
  || { cat "$work/guide/go.mod" >&2; echo "the Install steps left no replace directive" >&2; exit 1; }
(cd "$work/guide" && gofmt -w main.go && go vet . && go build -o guide .) \
  || { cat -n "$work/guide/main.go" >&2; echo "the Go blocks of docs/guide/go.md do not compile" >&2; exit 1; }
(cd "$work/guide" && INTENTKIT_ADDR="$grpc_addr" INTENTKIT_TOKEN=sandbox-token PIENTEGRA_SIMULATOR="${pientegra%/api/v1}" \
  timeout 120 ./guide >got.txt 2>stderr.txt) \
  || { cat "$work/guide/got.txt" "$work/guide/stderr.txt" >&2; echo "the program of docs/guide/go.md failed" >&2; exit 1; }
diff -u "$work/guide/want.txt" "$work/guide/got.txt" \
  || { echo "docs/guide/go.md: a block printed other than the page says (- the page, + the run)" >&2; exit 1; }
blocks=$(grep -c '^--- block' "$work/guide/want.txt")
echo "go guide: install (replace) ok; $blocks blocks ran against the sandbox, $blocks printed as the page says"

# The workspace way (the second sh block), in another module: builds and runs.
mkdir "$work/ws"
(cd "$work/ws" && go mod init example.com/ws >/dev/null 2>&1)
printf 'package main\n\nimport (\n\t"fmt"\n\n\tintentkit "github.com/intentkit/intentkit/bindings/go"\n)\n\nfunc main() { fmt.Println(intentkit.Version) }\n' >"$work/ws/main.go"
(cd "$work/ws" && INTENTKIT="$root" bash -euo pipefail -c "$(sh_block 2)" && go build -o ws . && ./ws >version.txt) \
  || { echo "the workspace steps of docs/guide/go.md failed" >&2; exit 1; }
echo "go guide: install (go.work) ok, version $(cat "$work/ws/version.txt")"
kill "$sandbox_pid"; wait "$sandbox_pid" 2>/dev/null || true; sandbox_pid=""

out="$work/go-test.txt"
if ! go test -race -count=1 -v ./... >"$out" 2>&1; then
  grep -vE '^=== (RUN|PAUSE|CONT)' "$out" >&2
  exit 1
fi
grep -oE 'recovery: .*' "$out" || true
echo "go: $(grep -c -- '^\s*--- PASS' "$out") passed, $(grep -c -- '^\s*--- FAIL' "$out") failed, $(grep -c -- '^\s*--- SKIP' "$out") skipped (the consumer child's body)"
