#!/usr/bin/env bash
# Every test intentkit has, from a fresh machine: installs what the suites need, then runs them.
# This is the README's test command, and .ci/run calls it after formatting and lints.
set -euo pipefail
cd "$(dirname "$0")/.."

need() { command -v "$1" >/dev/null 2>&1 || { echo "missing $1: $2" >&2; exit 1; }; }
need cargo "install Rust (rustup) first"

# Debian packages the suites use: Chromium and its driver for the hosted-page browser test;
# php-cli (with FFI) and valgrind for the bindings' tests; protoc for the Go client.
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
[ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
command -v php >/dev/null 2>&1 || missing+=(php-cli)
command -v valgrind >/dev/null 2>&1 || missing+=(valgrind)
command -v gcc >/dev/null 2>&1 || missing+=(gcc)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
# protoc with the well-known types, for the Go stubs' drift check and Java's codegen.
command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
[ -f /usr/include/google/protobuf/timestamp.proto ] || missing+=(libprotobuf-dev)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
  echo "installing ${missing[*]} from Debian"
  $sudo apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi

# A throwaway PostgreSQL cluster (installed from Debian if missing) for the store suite's
# PostgreSQL half, the multi-instance tests and the PHP workers on PostgreSQL. Each test makes
# its own database on it; INTENTKIT_REQUIRE_POSTGRES makes a missing server a failure.
pg_dir=$(mktemp -d)
INTENTKIT_TEST_POSTGRES=$(bash scripts/postgres.sh start "$pg_dir")
export INTENTKIT_TEST_POSTGRES INTENTKIT_REQUIRE_POSTGRES=1
# PgBouncer in transaction pooling mode in front of it (Debian's, its defaults), for the
# store's pooler test and the second run of the two-instance test.
bouncer_dir=$(mktemp -d)
db_dir=$(mktemp -d)
trap 'bash scripts/pgbouncer.sh stop "$bouncer_dir"; bash scripts/postgres.sh stop "$pg_dir"; rm -rf "$pg_dir" "$bouncer_dir" "$db_dir"' EXIT
INTENTKIT_TEST_PGBOUNCER=$(bash scripts/pgbouncer.sh start "$bouncer_dir" "$INTENTKIT_TEST_POSTGRES")
export INTENTKIT_TEST_PGBOUNCER INTENTKIT_REQUIRE_PGBOUNCER=1

# Rust: unit, property, store (both backends), contract, browser, gRPC, multi-instance and doc
# tests of every crate.
cargo test --workspace --locked

# The committed C and PHP headers are what the code generates (fails on drift).
cargo test -q --locked -p intentkit-ffi --features headers --test headers

# The C and PHP bindings against the simulators (C under valgrind); the Go and Java clients
# against the real intentkitd (built once there, shared by every suite that needs a server).
bash bindings/run-tests.sh

# The schema's compatibility (buf lint, buf breaking against the previous commit) and the
# server's reflection and health, with grpcurl and grpc-health-probe.
INTENTKITD="${CARGO_TARGET_DIR:-$PWD/target}/debug/intentkitd" bash scripts/grpc-tools.sh

# The main job, twice on one database file: the second run must replay every create, apply
# nothing new, and find the outbox fully acknowledged (exactly once across processes).
cargo run -q --locked -p intentkit-core --example walkthrough -- "$db_dir/walkthrough.db" >"$db_dir/first.txt"
cargo run -q --locked -p intentkit-core --example walkthrough -- "$db_dir/walkthrough.db" >"$db_dir/second.txt"
grep -q "intent.approved" "$db_dir/first.txt"
grep -q "replayed" "$db_dir/second.txt"
grep -q "nothing new" "$db_dir/second.txt"
if grep -q "applied:" "$db_dir/second.txt"; then
  echo "walkthrough: the second run applied a signal again" >&2
  cat "$db_dir/second.txt" >&2
  exit 1
fi
echo "walkthrough: 1 passed, 0 failed"
