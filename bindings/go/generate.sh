#!/usr/bin/env bash
# Generates the Go stubs in gen/ from proto/intentkit/v1 with pinned plugins.
#   bash bindings/go/generate.sh          rewrite gen/ (commit the result)
#   bash bindings/go/generate.sh --check  regenerate into a temporary directory; fail on any drift
# Needs protoc with the well-known types (Debian: protobuf-compiler + libprotobuf-dev) and Go.
set -euo pipefail
cd "$(dirname "$0")"
root=$(cd ../.. && pwd)

# Pinned: a change of either version is a change of the committed code.
PROTOC_GEN_GO=v1.36.12
PROTOC_GEN_GO_GRPC=v1.6.2

tools="$root/target/go-tools"
mkdir -p "$tools"
want="$PROTOC_GEN_GO $PROTOC_GEN_GO_GRPC"
if [ "$(cat "$tools/versions" 2>/dev/null)" != "$want" ]; then
  GOBIN="$tools" go install "google.golang.org/protobuf/cmd/protoc-gen-go@$PROTOC_GEN_GO"
  GOBIN="$tools" go install "google.golang.org/grpc/cmd/protoc-gen-go-grpc@$PROTOC_GEN_GO_GRPC"
  echo "$want" >"$tools/versions"
fi

generate() { # generate OUT_DIR
  mkdir -p "$1"
  PATH="$tools:$PATH" protoc -I "$root/proto" \
    --go_out="$1" --go_opt=module=github.com/intentkit/intentkit/bindings/go \
    --go-grpc_out="$1" --go-grpc_opt=module=github.com/intentkit/intentkit/bindings/go \
    "$root"/proto/intentkit/v1/*.proto
}

if [ "${1:-}" = "--check" ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  generate "$tmp"
  # The protoc version line is ignored: another protoc that writes the same code is no drift.
  if ! diff -ru -I '^// 	protoc  *v' gen "$tmp/gen"; then
    echo "bindings/go/gen differs from what proto/ generates: run bash bindings/go/generate.sh and commit" >&2
    exit 1
  fi
  echo "go stubs: no drift"
else
  rm -rf gen
  generate .
fi
