#!/usr/bin/env bash
# The cost the C ABI adds to `get`: the call from C through libintentkit (JSON request in,
# JSON intent out, panic guard, blocking on the handle's runtime) beside the same engine call
# from Rust on the same database, in one run, both release builds. Target: under 5 µs added.
# Usage: bash bench/ffi_get.sh [CALLS]   (default 20000)
set -euo pipefail
cd "$(dirname "$0")/.."
calls=${1:-20000}
cargo build -q --release --locked -p intentkit-ffi -p intentkit-sandbox
cargo bench -q --locked -p intentkit-bench --bench ffi_get --no-run 2>/dev/null
rel=${CARGO_TARGET_DIR:-$PWD/target}/release
work=$(mktemp -d)
sim=""
trap '[ -n "$sim" ] && kill $sim 2>/dev/null; rm -rf "$work"' EXIT
"$rel/intentkit-sandbox" --pientegra 127.0.0.1:0 --decentro 127.0.0.1:0 >"$work/sim.txt" 2>&1 &
sim=$!
for _ in $(seq 100); do grep -q "control endpoints" "$work/sim.txt" && break; sleep 0.1; done
p_base=$(sed -n 's/^pientegra simulator: base_url \([^ ]*\).*/\1/p' "$work/sim.txt")
cat >"$work/ffi.toml" <<TOML
[ffi]
database = "$work/bench.db"
[pientegra.tr-main]
base_url = "$p_base"
api_key = "pk_sandbox"
webhook_secret = "whsec_c2FuZGJveA"
TOML
gcc -std=c11 -O2 -Wall -Wextra -Werror -I bindings/c bench/ffi/ffi_get.c -L "$rel" -lintentkit \
  -Wl,-rpath,"$rel" -o "$work/ffi_get"
read -r id c_ns < <("$work/ffi_get" "$work/ffi.toml" "$calls")
rust_ns=$(FFI_BENCH_DB="$work/bench.db" FFI_BENCH_ID="$id" FFI_BENCH_CALLS="$calls" \
  cargo bench -q --locked -p intentkit-bench --bench ffi_get 2>/dev/null | tail -1)
awk -v c="$c_ns" -v r="$rust_ns" -v n="$calls" 'BEGIN {
  printf "get, %d calls each: from C through the ABI %.2f us/call; from Rust %.2f us/call\n", n, c/1000, r/1000;
  printf "the ABI adds %.2f us per call (target < 5 us); ratio C/Rust %.2fx\n", (c-r)/1000, c/r }'
